//! The batched decode step (continuous batching): every running request advances by one token
//! per step (more when a draft model's tokens are kept, see `draft.rs`) and new prompts' chunks
//! join the same batch, images are decoded by the projector, and each sequence with logits is
//! sampled, streamed and ended on EOS, a stop sequence or its length. It must never decode a
//! batch larger than `n_batch`, never write to stdout except through [`Output`], and never leave
//! a slot's token list out of step with its KV cache.

use std::time::Instant;

use super::session::Session;
use super::window;
use super::Output;
use crate::engine::protocol::Event;

impl Session<'_> {
    /// One decode step for every running request: admits waiting ones, decodes one batch (each
    /// generating sequence's last token, then prompt chunks of new ones, at most `n_batch`
    /// tokens), samples each sequence that has logits, streams its piece and ends it on EOS,
    /// a stop sequence or its length. Does nothing when idle.
    pub fn step(&mut self, out: &Output) {
        self.admit(out);
        self.decode_images(out);
        self.batch.clear();
        // (slot, tokens added this step); sampled tokens first, so generation never waits on
        // a prompt.
        let mut added: Vec<(usize, usize)> = Vec::new();
        let mut rows = 0usize;
        let mut failed: Option<String> = None;
        // Drafted tokens share the batch: each generating sequence gets an equal part of it.
        let generating = self.slots.iter().filter(|s| s.job.as_ref().is_some_and(|j| j.pending.is_some())).count();
        let draft_room = (self.n_batch / generating.max(1)).saturating_sub(1);
        for (s, slot) in self.slots.iter_mut().enumerate() {
            let Some(job) = slot.job.as_mut() else { continue };
            job.logits = None;
            job.drafts.clear();
            if let Some(t) = job.pending {
                let pos = slot.cached.len() as i32 + slot.pos_shift;
                if let Err(e) = self.batch.add(t, pos, &[s as i32], true) {
                    failed = Some(format!("batch: {e}"));
                }
                job.logits = Some(rows as i32);
                rows += 1;
                if let Some(draft) = self.draft.as_mut().filter(|_| job.draft_max > 0) {
                    // No more than the reply and the context still have room for.
                    let left = job.limit.map_or(usize::MAX, |n| n.saturating_sub(job.stats.eval_tokens + 1) as usize);
                    let room = (self.n_ctx as usize).saturating_sub(slot.cached.len() + 2);
                    let max = (job.draft_max as usize).min(draft_room).min(left).min(room);
                    job.drafts = draft.propose(s, &slot.cached, t, max);
                    for (i, &d) in job.drafts.iter().enumerate() {
                        if let Err(e) = self.batch.add(d, pos + 1 + i as i32, &[s as i32], true) {
                            failed = Some(format!("batch: {e}"));
                        }
                    }
                    job.stats.draft_tokens += job.drafts.len() as u32;
                    rows += job.drafts.len();
                }
                added.push((s, 1 + job.drafts.len()));
            }
        }
        for (s, slot) in self.slots.iter_mut().enumerate() {
            let Some(job) = slot.job.as_mut() else { continue };
            if !job.prefilling() || rows >= self.n_batch {
                continue;
            }
            let take = (self.n_batch - rows).min(job.text_end() - job.next);
            if take == 0 {
                continue;
            }
            let start = (slot.cached.len() as i32 + slot.pos_shift) as usize;
            let last = job.next + take == job.tokens.len();
            for i in 0..take {
                let t = job.tokens[job.next + i];
                let logits = last && i == take - 1;
                if let Err(e) = self.batch.add(t, (start + i) as i32, &[s as i32], logits) {
                    failed = Some(format!("batch: {e}"));
                }
            }
            if last {
                job.logits = Some((rows + take - 1) as i32);
            }
            rows += take;
            added.push((s, take));
        }
        if rows == 0 {
            return;
        }
        if failed.is_none() {
            if let Err(e) = self.ctx.decode(&mut self.batch) {
                failed = Some(format!("llama.cpp decode failed: {e}"));
            }
        }
        if let Some(message) = failed {
            // The cache may hold part of the batch: forget it all rather than guess, and fail
            // every request that was in it.
            self.ctx.clear_kv_cache();
            for s in 0..self.slots.len() {
                window::forget(&mut self.slots[s]);
                if let Some(job) = self.slots[s].job.take() {
                    out.send(&Event::Error { id: Some(job.id), code: "decode".into(), message: message.clone() });
                }
            }
            return;
        }
        let mut synced = false;
        let mut prompts_done = Vec::new();
        for &(s, n) in &added {
            let slot = &mut self.slots[s];
            let job = slot.job.as_mut().unwrap();
            match job.pending.take() {
                // Drafted tokens after it join the cache as `check_drafts` keeps them.
                Some(t) => slot.cached.push(t),
                None => {
                    slot.cached.extend_from_slice(&job.tokens[job.next..job.next + n]);
                    job.next += n;
                    if job.next == job.tokens.len() {
                        if !synced {
                            self.ctx.synchronize();
                            synced = true;
                        }
                        prompts_done.push(s);
                        job.stats.prompt_eval_ns = job.t_prompt.elapsed().as_nanos() as u64;
                        job.t_eval = Some(Instant::now());
                    }
                }
            }
        }
        for s in prompts_done {
            window::checkpoint(&self.ctx, s, &mut self.slots[s], self.window, self.args.checkpoints as usize);
        }
        for s in 0..self.slots.len() {
            if let Some(idx) = self.slots[s].job.as_ref().and_then(|j| j.logits) {
                let drafts = std::mem::take(&mut self.slots[s].job.as_mut().unwrap().drafts);
                self.advance(s, idx, out);
                if !drafts.is_empty() {
                    self.check_drafts(s, idx, &drafts, out);
                }
            }
        }
    }

    /// Speculative decoding's check: the model's own pick after each kept token decides. While
    /// it picks the drafted token, that token (already in the cache) is kept and the next row's
    /// logits pick again; the first other pick is the next token, as without a draft. Drafted
    /// tokens after it leave the cache.
    fn check_drafts(&mut self, s: usize, first_row: i32, drafts: &[llama_cpp_2::token::LlamaToken], out: &Output) {
        for (i, &d) in drafts.iter().enumerate() {
            let slot = &mut self.slots[s];
            let Some(job) = slot.job.as_mut() else { break };
            if job.pending != Some(d) {
                break;
            }
            job.pending = None;
            job.stats.draft_accepted += 1;
            slot.cached.push(d);
            self.advance(s, first_row + 1 + i as i32, out);
        }
        let slot = &mut self.slots[s];
        let keep = slot.cached.len();
        if window::cut_back(&mut self.ctx, s, slot, self.window, keep) != keep {
            // A cache that cannot drop a tail (recurrent models): the sequence starts over.
            if let Some(job) = slot.job.take() {
                out.send(&Event::Error { id: Some(job.id), code: "draft".into(), message: "this model's cache cannot drop drafted tokens; speculative decoding does not work with it: remove the draft".into() });
            }
        }
    }

    /// Samples slot `s`'s next token from batch row `idx`, streams it, and either keeps the
    /// token for the next step or ends the request.
    fn advance(&mut self, s: usize, idx: i32, out: &Output) {
        let n_ctx = self.n_ctx as usize;
        let slot = &mut self.slots[s];
        let job = slot.job.as_mut().unwrap();
        if job.limit.is_some_and(|n| job.stats.eval_tokens >= n) {
            return self.finish(s, "length", false, out);
        }
        let token = match job.sampler.sample(&self.ctx, idx) {
            Ok(t) => t,
            Err(e) => {
                let job = slot.job.take().unwrap();
                out.send(&Event::Error { id: Some(job.id), code: e.code.into(), message: e.message });
                return;
            }
        };
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            return self.finish(s, "stop", false, out);
        }
        job.stats.eval_tokens += 1;
        self.piece.clear();
        vocab.token_to_piece_into(token, &mut self.piece, false, None);
        let text = job.utf8.push(&self.piece);
        let o = job.stops.push(&text);
        if !o.emit.is_empty() {
            out.send(&Event::Piece { id: job.id, text: o.emit });
        }
        if o.stopped {
            return self.finish(s, "stop", true, out);
        }
        if job.limit.is_some_and(|n| job.stats.eval_tokens >= n) {
            return self.finish(s, "length", false, out);
        }
        // The sampled token must go into the cache for the next one: no room, no next token.
        if slot.cached.len() + 1 >= n_ctx {
            return self.finish(s, "length", false, out);
        }
        job.pending = Some(token);
    }

    /// Decodes the images of every request whose text before them is in the cache (the
    /// projector encodes them and decodes them with the rest of the prompt), then samples its
    /// first token from the logits that left. One request at a time: the shared batch of this
    /// step is decoded after.
    fn decode_images(&mut self, out: &Output) {
        for s in 0..self.slots.len() {
            let ready = self.slots[s].job.as_ref().is_some_and(|j| j.pending.is_none() && j.media.as_ref().is_some_and(|m| m.start == j.next));
            if !ready {
                continue;
            }
            let Some(vision) = self.vision.as_mut() else { continue };
            let slot = &mut self.slots[s];
            let job = slot.job.as_mut().unwrap();
            let media = job.media.take().unwrap();
            let pos = slot.cached.len() as i32 + slot.pos_shift;
            match vision.eval(&media.chunks, &mut self.ctx, pos, s as i32, self.n_batch as i32) {
                Ok(next_pos) => {
                    slot.cached.extend_from_slice(&job.tokens[media.start..]);
                    job.next = job.tokens.len();
                    slot.pos_shift = next_pos - slot.cached.len() as i32;
                    job.stats.prompt_eval_ns = job.t_prompt.elapsed().as_nanos() as u64;
                    job.t_eval = Some(Instant::now());
                    self.advance(s, -1, out);
                }
                Err(message) => {
                    // Part of the images may be in the cache: drop everything after the text.
                    let keep = media.start.min(slot.cached.len());
                    window::cut_back(&mut self.ctx, s, slot, self.window, keep);
                    let job = slot.job.take().unwrap();
                    out.send(&Event::Error { id: Some(job.id), code: "images".into(), message });
                }
            }
        }
    }
}
