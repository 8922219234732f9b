//! The batched decode step (continuous batching): every running request advances by one token
//! per step and new prompts' chunks join the same batch, images are decoded by the projector, and
//! each sequence with logits is sampled, streamed and ended on EOS, a stop sequence or its
//! length. It must never decode a batch larger than `n_batch`, never write to stdout except
//! through [`Output`], and never leave a slot's token list out of step with its KV cache.

use std::time::Instant;

use super::session::Session;
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
        for (s, slot) in self.slots.iter_mut().enumerate() {
            let Some(job) = slot.job.as_mut() else { continue };
            job.logits = None;
            if let Some(t) = job.pending {
                if let Err(e) = self.batch.add(t, slot.cached.len() as i32 + slot.pos_shift, &[s as i32], true) {
                    failed = Some(format!("batch: {e}"));
                }
                job.logits = Some(rows as i32);
                rows += 1;
                added.push((s, 1));
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
                self.slots[s].cached.clear();
                if let Some(job) = self.slots[s].job.take() {
                    out.send(&Event::Error { id: Some(job.id), code: "decode".into(), message: message.clone() });
                }
            }
            return;
        }
        let mut synced = false;
        for &(s, n) in &added {
            let slot = &mut self.slots[s];
            let job = slot.job.as_mut().unwrap();
            match job.pending.take() {
                Some(t) => slot.cached.push(t),
                None => {
                    slot.cached.extend_from_slice(&job.tokens[job.next..job.next + n]);
                    job.next += n;
                    if job.next == job.tokens.len() {
                        if !synced {
                            self.ctx.synchronize();
                            synced = true;
                        }
                        job.stats.prompt_eval_ns = job.t_prompt.elapsed().as_nanos() as u64;
                        job.t_eval = Some(Instant::now());
                    }
                }
            }
        }
        for s in 0..self.slots.len() {
            if let Some(idx) = self.slots[s].job.as_ref().and_then(|j| j.logits) {
                self.advance(s, idx, out);
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
                    if !self.ctx.clear_kv_cache_seq(Some(s as u32), Some(keep as u32), None).unwrap_or(false) {
                        let _ = self.ctx.clear_kv_cache_seq(Some(s as u32), None, None);
                        slot.cached.clear();
                    }
                    slot.cached.truncate(keep);
                    let job = slot.job.take().unwrap();
                    out.send(&Event::Error { id: Some(job.id), code: "images".into(), message });
                }
            }
        }
    }
}
