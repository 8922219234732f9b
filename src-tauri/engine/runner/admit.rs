//! Admission and KV-cache prefix reuse: waiting requests move into free slots, each into the
//! slot whose cache shares the longest prefix with its prompt, and that slot's cache is cut back
//! to the common prefix (never inside an image) so only the rest of the prompt is decoded. It
//! must never decode anything itself (that is the decode step's), and never keep a cached token
//! that differs from the prompt's.

use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::session::Session;
use super::slot::{Job, MediaTail};
use super::text::{StopMatcher, Utf8Buffer};
use super::window;
use super::Output;
use crate::engine::protocol::{Event, GenerationStats};

impl Session<'_> {
    /// Moves waiting requests into free slots, each into the free slot whose cache shares the
    /// longest prefix with its prompt (ties: the least recently used).
    pub(super) fn admit(&mut self, out: &Output) {
        while !self.waiting.is_empty() {
            let best = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.job.is_none())
                .map(|(i, s)| {
                    let p = &self.waiting[0].tokens;
                    let common = s.cached.iter().zip(p).take_while(|(a, b)| a == b).count();
                    (i, common, s.last_used)
                })
                .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)));
            let Some((s, _, _)) = best else { return };
            let p = self.waiting.pop_front().unwrap();
            // With images: reuse never stops inside one, and the projector decodes the chunks
            // from the first image not cached on (its opening tokens included), after the
            // text before them.
            let keep = match (&p.media, &self.vision) {
                (Some(m), Some(v)) => v.clamp_reuse(m, p.tokens.len()),
                _ => p.tokens.len(),
            };
            let mut cached = self.reuse_prefix(s, &p.tokens, keep);
            let mut media = None;
            if let (Some(m), Some(v)) = (&p.media, &self.vision) {
                let cached_now = v.clamp_reuse(m, cached);
                if let Some(k) = v.first_uncached(m, cached_now) {
                    match v.tail(m, k) {
                        Ok((start, chunks)) => media = Some(MediaTail { start, chunks }),
                        Err(e) => {
                            out.send(&Event::Error { id: Some(p.id), code: e.code.into(), message: e.message });
                            continue;
                        }
                    }
                }
                let limit = media.as_ref().map_or(cached_now, |t: &MediaTail| t.start.min(cached_now));
                if limit < cached {
                    cached = self.reuse_prefix(s, &p.tokens, limit);
                }
            }
            // The draft holds text only: a prompt with images is not drafted for.
            let draft_max = if p.media.is_none() && self.draft.is_some() { p.draft_max } else { 0 };
            if let Some(draft) = self.draft.as_mut() {
                draft.new_reply(s);
            }
            if let (Some(cache), true) = (&self.prompt_cache, p.fixed > cached) {
                let prefix = &p.tokens[..p.fixed];
                if cache.has(prefix) {
                    // A saved prefix beats a shorter reuse: the sequence starts over from it.
                    cached = window::cut_back(&mut self.ctx, s, &mut self.slots[s], self.window, 0);
                    if cache.restore(&mut self.ctx, s as i32, prefix) {
                        self.slots[s].cached = prefix.to_vec();
                        cached = p.fixed;
                    }
                }
                if cached < p.fixed && !self.unsaved_prefixes.iter().any(|u| u.as_slice() == prefix) {
                    // Saved once the runner is idle (see `save_prefixes`).
                    self.unsaved_prefixes.push(prefix.to_vec());
                }
            }
            self.clock += 1;
            let slot = &mut self.slots[s];
            slot.last_used = self.clock;
            slot.job = Some(Job {
                id: p.id,
                stats: GenerationStats {
                    prompt_tokens: p.tokens.len() as u32,
                    prompt_cached_tokens: cached as u32,
                    ..Default::default()
                },
                tokens: p.tokens,
                next: cached,
                media,
                sampler: p.sampler,
                limit: p.limit,
                utf8: Utf8Buffer::new(),
                stops: StopMatcher::new(&p.stop),
                t_prompt: Instant::now(),
                t_eval: None,
                pending: None,
                logits: None,
                draft_max,
                drafts: Vec::new(),
            });
        }
    }

    /// Keeps slot `s`'s KV cache of the longest common prefix of `tokens` and its cached
    /// tokens (or of as much of it as a sliding-window cache can continue from), drops the rest,
    /// and returns how many tokens are reused. At least the last prompt token is always decoded
    /// again, since its logits are needed to sample.
    fn reuse_prefix(&mut self, s: usize, tokens: &[LlamaToken], keep: usize) -> usize {
        let slot = &mut self.slots[s];
        // Positions equal token counts below any image (see `Vision::clamp_reuse`).
        slot.pos_shift = 0;
        let common = slot.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        let common = common.min(keep).min(tokens.len() - 1);
        // Nothing worth keeping (at most a BOS): start from an empty cache, so that a new
        // conversation decodes exactly as in a fresh process (cell placement changes rounding).
        let keep = if common <= 1 { 0 } else { common };
        if keep == 0 && self.parallel == 1 {
            self.ctx.clear_kv_cache();
        }
        window::cut_back(&mut self.ctx, s, slot, self.window, keep)
    }
}
