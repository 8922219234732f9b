//! One progress type for long work (import, export, verify). The CLI renders it with a progress
//! bar or plain lines, the desktop app sends it through a Channel, the API as NDJSON.
//!
//! Uses no other module of Airlock.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    /// What is happening: "verifying", "copying", "publishing", …
    pub phase: &'static str,
    /// The model or file being worked on, if any.
    pub item: String,
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// Receives progress; must be cheap, as it is called for every chunk.
pub trait ProgressSink: Send + Sync {
    fn report(&self, progress: &Progress);
}

/// Discards progress.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn report(&self, _: &Progress) {}
}

impl<F: Fn(&Progress) + Send + Sync> ProgressSink for F {
    fn report(&self, progress: &Progress) {
        self(progress)
    }
}
