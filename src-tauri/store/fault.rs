//! Fault injection for crash-safety tests: every step of an import that writes to disk calls
//! [`FaultPlan::step`]; a plan makes the N-th step fail (or abort the process, like `kill -9`).
//! A plan can only be made by [`FaultPlan::at_step`], which exists only in test builds (feature
//! `test-hooks`, which the tests turn on); no binary reads a switch for it. In a release build
//! every plan is [`FaultPlan::none`] and `step` only counts.

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
    #[cfg(any(test, feature = "test-hooks"))]
    pub fn at_step(n: u64, abort: bool) -> Self {
        FaultPlan { at: Some((n, abort)), steps: AtomicU64::new(0) }
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
