//! Requests on a held runner: generation ([`Generation`], which keeps the hold until it ends and
//! cancels when dropped unfinished), token counts and embeddings, each under a fresh id whose
//! reply the runner's event router delivers. It must never load, stop or evict a runner, never
//! take the model table, and never leave a request's reply registered once the request is over.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::Duration;

use super::process::{LoadedModel, Reply};
use super::scheduling::RunnerGuard;
use super::{EngineError, StreamEvent, Supervisor};
use crate::engine::protocol::{EmbedInput, Request, SamplingOptions};

impl Supervisor {
    /// Starts generating on the held runner; the generation keeps the hold until it ends.
    /// Dropping the returned [`Generation`] before it is done cancels it (a client that went
    /// away frees the runner within one token).
    pub fn generate(self: &Arc<Self>, runner: RunnerGuard, prompt: String, options: SamplingOptions, grammar: Option<String>) -> Result<Generation, EngineError> {
        self.generate_with_images(runner, prompt, Vec::new(), None, options, grammar, Vec::new())
    }

    /// [`generate`](Self::generate) with the byte ranges of outside text tokenised as plain text
    /// (see [`crate::engine::untrusted`]), the length of the prompt's fixed prefix (kept by the
    /// prompt cache) and images (base64) at the prompt's image markers.
    #[allow(clippy::too_many_arguments)]
    pub fn generate_with_images(self: &Arc<Self>, runner: RunnerGuard, prompt: String, plain: Vec<(usize, usize)>, fixed_prefix: Option<usize>, options: SamplingOptions, grammar: Option<String>, images: Vec<String>) -> Result<Generation, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        runner.pending.lock().unwrap().insert(id, Reply::Stream(tx));
        let request = Request::Generate { id, prompt, plain, options, grammar, images, fixed_prefix };
        if let Err(e) = runner.send(&request) {
            runner.pending.lock().unwrap().remove(&id);
            return Err(e);
        }
        Ok(Generation { id, runner, rx, finished: false })
    }

    /// How many tokens `text` takes as a prompt for `model`.
    pub fn count_tokens(&self, model: &LoadedModel, text: &str) -> Result<u32, EngineError> {
        self.count_prompt_tokens(model, text, Vec::new())
    }

    /// How many tokens `text` takes as a prompt with `plain` ranges, as a generation counts them.
    pub fn count_prompt_tokens(&self, model: &LoadedModel, text: &str, plain: Vec<(usize, usize)>) -> Result<u32, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        model.pending.lock().unwrap().insert(id, Reply::Tokens(tx));
        if let Err(e) = model.send(&Request::Tokenize { id, text: text.to_string(), plain, ids: false }) {
            model.pending.lock().unwrap().remove(&id);
            return Err(e);
        }
        let count = rx.recv().unwrap_or_else(|_| Err(model.exit_error()));
        model.pending.lock().unwrap().remove(&id);
        count
    }

    /// Embeds `inputs` on the held embedding runner: pooled vectors in input order and the
    /// tokens they took. The guard keeps the runner from keep-alive and eviction meanwhile.
    pub fn embed(&self, runner: &RunnerGuard, inputs: Vec<EmbedInput>, truncate: bool) -> Result<(Vec<Vec<f32>>, u32), EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        runner.pending.lock().unwrap().insert(id, Reply::Embeddings(tx));
        let result = runner.send(&Request::Embed { id, inputs, truncate }).and_then(|_| rx.recv().unwrap_or_else(|_| Err(runner.exit_error())));
        runner.pending.lock().unwrap().remove(&id);
        result
    }
}

/// A generation in progress. It holds its runner until it ends.
pub struct Generation {
    id: u64,
    runner: RunnerGuard,
    rx: Receiver<StreamEvent>,
    finished: bool,
}

impl Generation {
    /// The next event; `None` after `Done` or `Error`.
    pub fn next_event(&mut self) -> Option<StreamEvent> {
        if self.finished {
            return None;
        }
        let ev = self.rx.recv().unwrap_or_else(|_| StreamEvent::Error(self.runner.model.exit_error()));
        if !matches!(ev, StreamEvent::Piece(_)) {
            self.finish();
        }
        Some(ev)
    }

    /// Like [`Self::next_event`] but gives up after `timeout` (returns `None` then too).
    pub fn next_event_timeout(&mut self, timeout: Duration) -> Option<StreamEvent> {
        if self.finished {
            return None;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => {
                if !matches!(ev, StreamEvent::Piece(_)) {
                    self.finish();
                }
                Some(ev)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.finish();
                Some(StreamEvent::Error(self.runner.model.exit_error()))
            }
        }
    }

    /// Asks the runner to stop; the stream then ends with `Done` (reason "cancel").
    pub fn cancel(&self) {
        let _ = self.runner.model.send(&Request::Cancel { id: self.id });
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.runner.model
    }

    fn finish(&mut self) {
        self.finished = true;
        self.runner.model.pending.lock().unwrap().remove(&self.id);
        self.runner.release();
    }
}

impl Iterator for Generation {
    type Item = StreamEvent;
    fn next(&mut self) -> Option<StreamEvent> {
        self.next_event()
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel();
            self.finish();
        }
    }
}
