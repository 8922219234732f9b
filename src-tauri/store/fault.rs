//! Fault injection for crash-safety tests: every step of an import that writes to disk calls
//! [`FaultPlan::step`]; a plan makes the N-th step fail (or abort the process, like `kill -9`).
//! Off unless a test asks for it (in-process via options, or `AIRLOCK_TEST_FAULT=error:N|abort:N`
//! for the CLI).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct FaultPlan {
    at: Option<(u64, bool)>,
    steps: AtomicU64,
}

impl FaultPlan {
    pub fn none() -> Self {
        FaultPlan::default()
    }

    /// Fail the `n`-th step (1-based) with an error, or abort the process when `abort`.
    pub fn at_step(n: u64, abort: bool) -> Self {
        FaultPlan { at: Some((n, abort)), steps: AtomicU64::new(0) }
    }

    /// Reads `AIRLOCK_TEST_FAULT` (`error:N` or `abort:N`).
    pub fn from_env() -> Self {
        let Ok(v) = std::env::var("AIRLOCK_TEST_FAULT") else { return Self::none() };
        let parsed = v.split_once(':').and_then(|(mode, n)| Some((mode, n.parse::<u64>().ok()?)));
        match parsed {
            Some(("error", n)) => Self::at_step(n, false),
            Some(("abort", n)) => Self::at_step(n, true),
            _ => Self::none(),
        }
    }

    /// How many steps have run so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    pub fn step(&self, what: &str) -> std::io::Result<()> {
        let n = self.steps.fetch_add(1, Ordering::SeqCst) + 1;
        match self.at {
            Some((at, true)) if at == n => std::process::abort(),
            Some((at, false)) if at == n => Err(std::io::Error::other(format!("injected fault at step {n} ({what})"))),
            _ => Ok(()),
        }
    }
}
