//! The per-request state of the session: a slot (one llama.cpp sequence and the tokens its KV
//! cache holds), a validated request waiting for one, and the job a slot is serving. Plain data
//! and two questions about a job; the session and its decode step change them. Nothing here may
//! call llama.cpp or write to stdout.

use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::sampler::Sampler;
use super::text::{StopMatcher, Utf8Buffer};
use super::vision::MediaPrompt;
use crate::engine::protocol::GenerationStats;

/// One sequence of the context: the tokens its KV cache holds, and the request it serves.
pub(super) struct Slot {
    /// The tokens whose keys and values this sequence's KV cache holds, in order.
    pub(super) cached: Vec<LlamaToken>,
    /// The next position minus `cached.len()`: 0 unless an image of an M-RoPE model took fewer
    /// positions than tokens.
    pub(super) pos_shift: i32,
    pub(super) job: Option<Job>,
    pub(super) last_used: u64,
    /// Sliding-window models: the window layers' state at earlier prompt ends, oldest first
    /// (see `window.rs`).
    pub(super) checkpoints: Vec<Checkpoint>,
}

/// The window layers' KV state of a slot's sequence when it held its first `tokens` tokens.
pub(super) struct Checkpoint {
    pub(super) tokens: usize,
    pub(super) pos_shift: i32,
    pub(super) state: llama_cpp_2::SeqState,
}

/// A validated request waiting for a slot.
pub(super) struct Pending {
    pub(super) id: u64,
    pub(super) tokens: Vec<LlamaToken>,
    /// The prompt's images, when it has any (`tokens` holds their image tokens).
    pub(super) media: Option<MediaPrompt>,
    pub(super) sampler: Sampler,
    pub(super) limit: Option<u32>,
    pub(super) stop: Vec<String>,
    /// Tokens a draft model may propose per step (0: no drafting).
    pub(super) draft_max: u32,
    /// Leading tokens that are the prompt's fixed prefix, for the prompt cache (0: none).
    pub(super) fixed: usize,
}

/// A request being served by a slot.
pub(super) struct Job {
    pub(super) id: u64,
    /// The prompt's tokens; `next` of them are in the slot's cache.
    pub(super) tokens: Vec<LlamaToken>,
    pub(super) next: usize,
    /// Images still to decode: the chunks from `start` of `tokens` to the end, decoded by the
    /// projector once the text before them is in the cache.
    pub(super) media: Option<MediaTail>,
    pub(super) sampler: Sampler,
    pub(super) limit: Option<u32>,
    pub(super) utf8: Utf8Buffer,
    pub(super) stops: StopMatcher,
    pub(super) stats: GenerationStats,
    pub(super) t_prompt: Instant,
    pub(super) t_eval: Option<Instant>,
    /// The last sampled token, to be decoded in the next step.
    pub(super) pending: Option<LlamaToken>,
    /// This step's batch row holding the job's logits.
    pub(super) logits: Option<i32>,
    pub(super) draft_max: u32,
    /// Drafted tokens in this step's batch, in the rows after `logits`.
    pub(super) drafts: Vec<LlamaToken>,
}

pub(super) struct MediaTail {
    pub(super) start: usize,
    pub(super) chunks: llama_cpp_2::mtmd::MtmdInputChunks,
}

impl Job {
    pub(super) fn prefilling(&self) -> bool {
        self.pending.is_none() && self.next < self.tokens.len()
    }

    /// Where the session's text batches stop prefilling: the start of the images still to
    /// decode, else the prompt's end.
    pub(super) fn text_end(&self) -> usize {
        self.media.as_ref().map_or(self.tokens.len(), |m| m.start)
    }
}
