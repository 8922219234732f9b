//! Renders [`Progress`] on stderr: a bar on a terminal, a plain line every few seconds otherwise
//! (so logs and scripts get something readable and stdout stays clean).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::format::human_bytes;
use crate::progress::{Progress, ProgressSink};

pub enum CliProgress {
    Bar {
        bar: ProgressBar,
        phase: Mutex<&'static str>,
    },
    /// `started` is when the current phase began, so each phase's rate and ETA are its own.
    Lines {
        started: Mutex<(Instant, &'static str)>,
        last: Mutex<Option<Instant>>,
    },
}

impl CliProgress {
    pub fn new() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{msg:20!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            CliProgress::Bar { bar, phase: Mutex::new("") }
        } else {
            CliProgress::Lines { started: Mutex::new((Instant::now(), "")), last: Mutex::new(None) }
        }
    }

    pub fn finish(&self) {
        if let CliProgress::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

impl ProgressSink for CliProgress {
    fn report(&self, p: &Progress) {
        match self {
            CliProgress::Bar { bar, phase } => {
                // A new phase (a kit packs, exports, then hashes) starts its own rate and ETA.
                let mut phase = phase.lock().unwrap_or_else(|e| e.into_inner());
                if *phase != p.phase {
                    *phase = p.phase;
                    bar.reset();
                }
                bar.set_length(p.total_bytes);
                bar.set_position(p.done_bytes);
                bar.set_message(p.phase);
            }
            CliProgress::Lines { started, last } => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                let mut started = started.lock().unwrap_or_else(|e| e.into_inner());
                if started.1 != p.phase {
                    *started = (Instant::now(), p.phase);
                }
                let finished = p.done_bytes == p.total_bytes;
                if !finished && last.is_some_and(|t| t.elapsed() < Duration::from_secs(2)) {
                    return;
                }
                *last = Some(Instant::now());
                let secs = started.0.elapsed().as_secs_f64().max(1e-3);
                let rate = p.done_bytes as f64 / secs;
                let eta = if rate > 0.0 { (p.total_bytes - p.done_bytes.min(p.total_bytes)) as f64 / rate } else { 0.0 };
                eprintln!(
                    "{}: {} / {} ({}/s, ETA {:.0}s) {}",
                    p.phase,
                    human_bytes(p.done_bytes),
                    human_bytes(p.total_bytes),
                    human_bytes(rate as u64),
                    eta,
                    p.item
                );
            }
        }
    }
}
