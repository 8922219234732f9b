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
        Ok(Draft { model, ctx, batch: LlamaBatch::new(n_batch, parallel as i32), n_batch, cached: vec![Vec::new(); parallel as usize] })
    }

    /// Up to `max` tokens the draft expects after `known` (the slot's tokens and the one just
    /// sampled), in slot `seq`'s sequence; fewer where it is unsure, none when it fails.
    pub fn propose(&mut self, seq: usize, known: &[LlamaToken], max: usize) -> Vec<LlamaToken> {
        if max == 0 || known.is_empty() {
            return Vec::new();
        }
        match self.try_propose(seq, known, max) {
            Ok(tokens) => tokens,
            Err(_) => {
                // Start the sequence over next time; the real model goes on without drafts.
                let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                self.cached[seq].clear();
                Vec::new()
            }
        }
    }

    fn try_propose(&mut self, seq: usize, known: &[LlamaToken], max: usize) -> Result<Vec<LlamaToken>, String> {
        let id = seq as i32;
        // Keep the common prefix; the last known token is decoded again for its logits.
        let cached = &mut self.cached[seq];
        let mut keep = cached.iter().zip(known).take_while(|(a, b)| a == b).count().min(known.len() - 1);
        if keep < cached.len() {
            if !self.ctx.clear_kv_cache_seq(Some(seq as u32), Some(keep as u32), None).unwrap_or(false) {
                self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None).map_err(|e| e.to_string())?;
                keep = 0;
            }
            cached.truncate(keep);
        }
        let mut row = 0;
        for chunk in known[keep..].chunks(self.n_batch) {
            self.batch.clear();
            let start = self.cached[seq].len();
            for (i, &t) in chunk.iter().enumerate() {
                self.batch.add(t, (start + i) as i32, &[id], start + i + 1 == known.len()).map_err(|e| e.to_string())?;
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
    fn the_most_likely_token_and_its_probability() {
        let (t, p) = most_likely(&[0.0, 2.0, 0.0]);
        assert_eq!(t, LlamaToken(1));
        let expected = 2f32.exp() / (2.0 + 2f32.exp());
        assert!((p - expected).abs() < 1e-6, "{p} vs {expected}");
        // A sure token.
        assert!(most_likely(&[-50.0, 50.0]).1 > 0.999);
    }
}
