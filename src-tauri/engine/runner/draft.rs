//! Speculative decoding's draft side: a small model with the same vocabulary proposes the next
//! few tokens greedily, and the decode step checks them all in one batch of the real model
//! (`step.rs`), keeping each one the real model's sampler picks itself. With a greedy draft that
//! rule is exact: a drafted token is kept with the probability the real model gives it, and the
//! token sampled in its place otherwise, so replies follow the real model's distribution (and are
//! identical under greedy decoding). The draft has its own context with one sequence per slot,
//! kept in step with the tokens the slot holds. Nothing here may write to stdout.

use std::num::NonZeroU32;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::RunnerArgs;

/// Tokens drafted per step when the request does not say (llama.cpp's default).
pub const DEFAULT_DRAFT_MAX: u32 = 16;
/// Drafting stops at a token the draft itself gives less than this probability: a likely miss
/// costs a batch row for nothing (llama.cpp's `--draft-p-min`).
const P_MIN: f32 = 0.75;
/// The most steps a slot goes without asking the draft after its proposals came back empty: an
/// unsure draft still costs a step of its own each time. It catches up on the tokens it missed
/// in one batch when asked again.
const MAX_BACKOFF: u32 = 8;

/// Loads the draft model: on the GPU only when the real model is wholly there.
pub fn load(backend: &LlamaBackend, args: &RunnerArgs, target: &LlamaModel) -> Result<Option<LlamaModel>, String> {
    let Some(path) = &args.draft else { return Ok(None) };
    if !path.is_file() {
        return Err(format!("draft model file not found: {}", path.display()));
    }
    let on_gpu = args.gpu_layers > target.n_layer() && !args.hide_local_gpus;
    let params = LlamaModelParams::default().with_use_mmap(true).with_n_gpu_layers(if on_gpu { u32::MAX } else { 0 });
    let draft = LlamaModel::load_from_file(backend, path, &params).map_err(|e| format!("llama.cpp could not load the draft model {} ({e}); its log is on stderr", path.display()))?;
    same_vocabulary(target, &draft)?;
    Ok(Some(draft))
}

/// The draft must tokenise text as the model does: the same tokens with the same texts and the
/// same special tokens, or its proposals would mean other words.
pub fn same_vocabulary(target: &LlamaModel, draft: &LlamaModel) -> Result<(), String> {
    let (t, d) = (target.vocab(), draft.vocab());
    if target.n_vocab() != draft.n_vocab() {
        return Err(format!("the draft model's vocabulary has {} tokens, the model's {}: a draft must share the model's vocabulary", draft.n_vocab(), target.n_vocab()));
    }
    if t.bos() != d.bos() || t.eos() != d.eos() {
        return Err("the draft model's BOS/EOS tokens differ from the model's: a draft must share the model's vocabulary".into());
    }
    if let Some(token) = t.tokens().find(|&tok| t.text(tok) != d.text(tok)) {
        return Err(format!("the draft model's token {} differs from the model's: a draft must share the model's vocabulary", token.0));
    }
    Ok(())
}

pub struct Draft<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// Per slot: the tokens the draft's sequence holds.
    cached: Vec<Vec<LlamaToken>>,
    /// Per slot: steps still to pass without drafting, and how many the next empty proposal
    /// sets (doubling up to [`MAX_BACKOFF`], back to none once the draft proposes again).
    backoff: Vec<(u32, u32)>,
}

impl<'m> Draft<'m> {
    pub fn new(backend: &LlamaBackend, model: &'m LlamaModel, n_ctx: u32, parallel: u32, threads: u32, n_batch: u32) -> Result<Self, String> {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx * parallel))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(parallel)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32)
            .with_swa_full(true);
        let ctx = model.new_context(backend, params).map_err(|e| format!("llama.cpp could not create the draft model's context ({e}); its log is on stderr"))?;
        let n_batch = ctx.n_batch() as usize;
        Ok(Draft { model, ctx, batch: LlamaBatch::new(n_batch, parallel as i32), n_batch, cached: vec![Vec::new(); parallel as usize], backoff: vec![(0, 0); parallel as usize] })
    }

    /// Slot `seq` starts another reply: the draft is asked from its first token on.
    pub fn new_reply(&mut self, seq: usize) {
        self.backoff[seq] = (0, 0);
    }

    /// Up to `max` tokens the draft expects after the slot's tokens `cached` and the one just
    /// sampled, `last`, in slot `seq`'s sequence; fewer where it is unsure, none when it fails.
    pub fn propose(&mut self, seq: usize, cached: &[LlamaToken], last: LlamaToken, max: usize) -> Vec<LlamaToken> {
        let (skip, _) = &mut self.backoff[seq];
        if max == 0 || *skip > 0 {
            *skip = skip.saturating_sub(1);
            return Vec::new();
        }
        let drafted = match self.try_propose(seq, cached, last, max) {
            Ok(tokens) => tokens,
            Err(_) => {
                // Start the sequence over next time; the real model goes on without drafts.
                let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                self.cached[seq].clear();
                Vec::new()
            }
        };
        let (skip, next) = &mut self.backoff[seq];
        *next = backoff_after(!drafted.is_empty(), *next);
        *skip = *next;
        drafted
    }

    fn try_propose(&mut self, seq: usize, known: &[LlamaToken], last: LlamaToken, max: usize) -> Result<Vec<LlamaToken>, String> {
        let id = seq as i32;
        // Keep the common prefix of what the draft holds and `known`; the tokens after it and
        // `last` are decoded (the last for its logits).
        let cached = &mut self.cached[seq];
        let mut keep = cached.iter().zip(known).take_while(|(a, b)| a == b).count();
        if keep < cached.len() {
            if !self.ctx.clear_kv_cache_seq(Some(seq as u32), Some(keep as u32), None).unwrap_or(false) {
                self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None).map_err(|e| e.to_string())?;
                keep = 0;
            }
            cached.truncate(keep);
        }
        let fresh: Vec<LlamaToken> = known[keep..].iter().copied().chain([last]).collect();
        let mut row = 0;
        for chunk in fresh.chunks(self.n_batch) {
            self.batch.clear();
            let start = self.cached[seq].len();
            for (i, &t) in chunk.iter().enumerate() {
                self.batch.add(t, (start + i) as i32, &[id], start + i + 1 == keep + fresh.len()).map_err(|e| e.to_string())?;
            }
            self.ctx.decode(&mut self.batch).map_err(|e| e.to_string())?;
            self.cached[seq].extend_from_slice(chunk);
            row = chunk.len() as i32 - 1;
        }
        let vocab = self.model.vocab();
        let mut drafted = Vec::new();
        loop {
            let (token, p) = most_likely(self.ctx.get_logits_ith(row));
            // The reply's end is the model's to find: a drafted one would save no step.
            if p < P_MIN || vocab.is_eog(token) {
                break;
            }
            drafted.push(token);
            if drafted.len() >= max {
                break;
            }
            self.batch.clear();
            self.batch.add(token, self.cached[seq].len() as i32, &[id], true).map_err(|e| e.to_string())?;
            self.ctx.decode(&mut self.batch).map_err(|e| e.to_string())?;
            self.cached[seq].push(token);
            row = 0;
        }
        Ok(drafted)
    }
}

/// The steps to pass without drafting after a proposal: none after drafted tokens, else twice the
/// last wait (one at first), at most [`MAX_BACKOFF`].
fn backoff_after(drafted: bool, last: u32) -> u32 {
    if drafted { 0 } else { (last * 2).clamp(1, MAX_BACKOFF) }
}

/// The most likely token and its probability (softmax over all logits).
fn most_likely(logits: &[f32]) -> (LlamaToken, f32) {
    let (best, max) = logits.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bm), (i, &l)| if l > bm { (i, l) } else { (bi, bm) });
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    (LlamaToken(best as i32), if sum > 0.0 { 1.0 / sum } else { 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsure_draft_is_asked_less_often_until_it_proposes_again() {
        let mut waits = Vec::new();
        let mut last = 0;
        for drafted in [false, false, false, false, false, true, false] {
            last = backoff_after(drafted, last);
            waits.push(last);
        }
        assert_eq!(waits, [1, 2, 4, 8, 8, 0, 1]);
    }

    #[test]
    fn the_most_likely_token_and_its_probability() {
        let (t, p) = most_likely(&[0.0, 2.0, 0.0]);
        assert_eq!(t, LlamaToken(1));
        let expected = 2f32.exp() / (2.0 + 2f32.exp());
        assert!((p - expected).abs() < 1e-6, "{p} vs {expected}");
        // A sure token.
        assert!(most_likely(&[-50.0, 50.0]).1 > 0.999);
    }
}
