//! The embedding runner (`airlock runner --embedding`): one model in a context created with
//! embeddings on, answering `Embed` requests. Pooling is the model's own (`<arch>.pooling_type`
//! in the GGUF: CLS for BERT-like encoders, last-token for some decoder embedders), else mean
//! pooling, which makes any decoder-only model (a chat model) usable for retrieval. The vectors
//! go back pooled but not normalised; the API normalises them as Ollama does.
//!
//! Batching: many inputs decode together in one llama.cpp batch, each as its own sequence, so a
//! request of 64 short texts costs a decode call or two, not 64. A sequence never spans two
//! batches (pooling sees one micro-batch at a time), so the batch must hold the longest input.
//! The context starts at `--batch` tokens and is made again, larger, only when an input needs
//! it: its compute buffer grows with the batch, and with a decoder model every token's logits
//! are computed (llama.cpp outputs all tokens when pooling), which for a large vocabulary is
//! gigabytes at a 4,096-token batch. Like the text runner, nothing here may write to stdout except
//! through [`Output`], and no client input (token ids, lengths) may reach a llama.cpp call that
//! aborts the process.

use std::num::NonZeroU32;
use std::process::ExitCode;
use std::time::Instant;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::session::Loaded;
use super::{Input, Line, Output, RequestError, RunnerArgs};
use crate::engine::protocol::{EmbedInput, Event, Request};

/// Inputs decoded together in one batch at most (each one llama.cpp sequence).
pub const MAX_SEQUENCES: u32 = 64;

pub fn main(args: RunnerArgs) -> ExitCode {
    let out = Output::default();
    let started = Instant::now();
    let loaded = match Loaded::load(&args) {
        Ok(l) => l,
        Err(message) => {
            out.send(&Event::Error { id: None, code: "load".into(), message });
            return ExitCode::from(1);
        }
    };
    let mut embedder = match Embedder::new(&loaded, &args) {
        Ok(e) => e,
        Err(message) => {
            out.send(&Event::Error { id: None, code: "load".into(), message });
            return ExitCode::from(1);
        }
    };
    out.send(&embedder.ready_event(started.elapsed().as_millis() as u64));
    let mut input = Input::spawn();
    loop {
        let lines = input.wait();
        for line in lines {
            match line {
                Line::Request(Request::Embed { id, inputs, truncate }) => match embedder.embed(&inputs, truncate) {
                    Ok((embeddings, prompt_tokens)) => out.send(&Event::Embeddings { id, embeddings, prompt_tokens }),
                    Err(e) => out.send(&Event::Error { id: Some(id), code: e.code.into(), message: e.message }),
                },
                Line::Request(Request::Tokenize { id, text, .. }) => {
                    let count = embedder.tokenize(&text).len() as u32;
                    out.send(&Event::Tokens { id, count, ids: Vec::new() });
                }
                Line::Request(Request::Generate { id, .. }) => out.send(&Event::Error {
                    id: Some(id),
                    code: "embedding_only".into(),
                    message: "this model process computes embeddings; text generation needs a runner started without --embedding".into(),
                }),
                // Embedding requests finish before the next line is read: a cancel is moot.
                Line::Request(Request::Cancel { .. }) => {}
                Line::Bad(message) => out.send(&Event::Error { id: None, code: "protocol".into(), message }),
            }
        }
        if input.closed {
            break;
        }
    }
    ExitCode::SUCCESS
}

/// The pooling the context is created with: the model's own when its GGUF names one (other than
/// "none"), else mean pooling over the input's tokens.
pub fn pooling_for(model: &LlamaModel) -> (LlamaPoolingType, &'static str) {
    let declared = model
        .meta_val_str("general.architecture")
        .ok()
        .and_then(|arch| model.meta_val_str(&format!("{arch}.pooling_type")).ok())
        .and_then(|v| v.trim().parse::<i32>().ok());
    match declared.map(LlamaPoolingType::from) {
        Some(LlamaPoolingType::Mean) => (LlamaPoolingType::Unspecified, "mean (the model's)"),
        Some(LlamaPoolingType::Cls) => (LlamaPoolingType::Unspecified, "cls (the model's)"),
        Some(LlamaPoolingType::Last) => (LlamaPoolingType::Unspecified, "last (the model's)"),
        Some(LlamaPoolingType::Rank) => (LlamaPoolingType::Unspecified, "rank (the model's)"),
        _ => (LlamaPoolingType::Mean, "mean (the model declares none)"),
    }
}

/// A batch size llama.cpp can reserve a pooling graph for: a multiple of the sequences it holds
/// (else its mean-pooling matrix and the outputs disagree, and it aborts).
fn batch_size(tokens: usize) -> usize {
    tokens.max(1).div_ceil(MAX_SEQUENCES as usize) * MAX_SEQUENCES as usize
}

struct Embedder<'m> {
    loaded: &'m Loaded,
    model: &'m LlamaModel,
    /// `None` only while it is being made again, larger.
    ctx: Option<LlamaContext<'m>>,
    batch: LlamaBatch<'static>,
    /// Tokens one batch holds (and the context in all) now; at most `n_ctx`'s worth beyond
    /// `--batch`.
    n_batch: usize,
    n_batch_max: usize,
    pooling: LlamaPoolingType,
    /// Tokens one input may take.
    n_ctx: u32,
    n_ctx_train: u32,
    threads: u32,
}

impl<'m> Embedder<'m> {
    fn new(loaded: &'m Loaded, args: &RunnerArgs) -> Result<Self, String> {
        let model = &loaded.model;
        let n_ctx_train = model.n_ctx_train().max(1);
        let n_ctx = args.ctx.clamp(16, n_ctx_train);
        let n_batch = batch_size(args.batch.clamp(16, n_ctx) as usize);
        let threads = args.threads.unwrap_or_else(crate::hardware::physical_cores).max(1);
        let (pooling, pooling_words) = pooling_for(model);
        eprintln!("airlock embedding runner: pooling {pooling_words}, {n_ctx} tokens per input, {n_batch} per batch to start with");
        let mut embedder = Embedder {
            loaded,
            model,
            ctx: None,
            batch: LlamaBatch::new(n_batch, 1),
            n_batch,
            n_batch_max: batch_size(args.batch.max(n_ctx) as usize),
            pooling,
            n_ctx,
            n_ctx_train,
            threads,
        };
        embedder.ctx = Some(embedder.context(n_batch)?);
        // As the text runner does: the first decode pages the weights in and runs every kernel
        // once, so a CPU or driver fault fails the load rather than a user's request.
        let bos = model.vocab().bos();
        let token = if bos.0 >= 0 && bos.0 < model.n_vocab() { bos } else { LlamaToken(0) };
        embedder.run(&[vec![token; 4]]).map_err(|e| format!("llama.cpp could not decode its warm-up batch: {}", e.message))?;
        Ok(embedder)
    }

    /// A context whose batch, micro-batch and KV cache hold `n_batch` tokens.
    fn context(&self, n_batch: usize) -> Result<LlamaContext<'m>, String> {
        let params = LlamaContextParams::default()
            .with_embeddings(true)
            .with_pooling_type(self.pooling)
            .with_n_ctx(NonZeroU32::new(n_batch as u32))
            .with_n_batch(n_batch as u32)
            .with_n_ubatch(n_batch as u32)
            .with_n_seq_max(MAX_SEQUENCES)
            // One cache shared by the batch's sequences: each may use all of it.
            .with_kv_unified(true)
            .with_swa_full(true)
            .with_n_threads(self.threads as i32)
            .with_n_threads_batch(self.threads as i32);
        self.model
            .new_context(&self.loaded.backend, params)
            .map_err(|e| format!("llama.cpp could not create an embedding context of {n_batch} tokens: {e}"))
    }

    /// Makes the batch hold at least `tokens` (a power of two, at most `n_batch_max`).
    fn grow(&mut self, tokens: usize) -> Result<(), RequestError> {
        if tokens <= self.n_batch {
            return Ok(());
        }
        let n_batch = batch_size(tokens.next_power_of_two().min(self.n_batch_max).max(tokens));
        // The old context goes first: never both buffers at once.
        self.ctx = None;
        let ctx = self.context(n_batch).or_else(|e| {
            // Back to the size that worked, so the runner keeps serving shorter inputs.
            self.ctx = Some(self.context(self.n_batch).map_err(|e| RequestError::new("load", e))?);
            Err(RequestError::new("too_large", format!("{e}; shorten the input or lower num_ctx")))
        })?;
        self.ctx = Some(ctx);
        self.n_batch = n_batch;
        self.batch = LlamaBatch::new(n_batch, 1);
        eprintln!("airlock embedding runner: batch now {n_batch} tokens");
        Ok(())
    }

    fn ready_event(&self, load_ms: u64) -> Event {
        Event::Ready {
            n_ctx: self.n_ctx,
            n_ctx_train: self.n_ctx_train,
            n_parallel: 1,
            threads: self.threads,
            bos_token: super::session::special_text(&self.model, self.model.vocab().bos()),
            eos_token: super::session::special_text(&self.model, self.model.vocab().eos()),
            special_tokens: Vec::new(),
            load_ms,
            placement: super::placement::collected(self.model.n_layer() + 1),
        }
    }

    /// Text as the model's embedding inputs are tokenised: with its special tokens added (BOS,
    /// and CLS/SEP for encoders), as llama.cpp's embedding example and Ollama do, but the text
    /// itself never parsed into control tokens: it is all from outside (a caller, a document).
    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), true, false)
    }

    /// Validates and tokenises every input, then embeds them in as few batches as they fit.
    fn embed(&mut self, inputs: &[EmbedInput], truncate: bool) -> Result<(Vec<Vec<f32>>, u32), RequestError> {
        let n_vocab = self.model.n_vocab() as i64;
        let mut all = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let mut tokens = match input {
                EmbedInput::Text(text) => self.tokenize(text),
                EmbedInput::Tokens(ids) => {
                    if let Some(bad) = ids.iter().find(|t| !(0..n_vocab).contains(*t)) {
                        return Err(RequestError::new("bad_token", format!("input {i} has token id {bad}; this model's ids are 0 to {}", n_vocab - 1)));
                    }
                    ids.iter().map(|&t| LlamaToken(t as i32)).collect()
                }
            };
            if tokens.is_empty() {
                return Err(RequestError::new("empty_input", format!("input {i} is empty; give each input some text")));
            }
            if tokens.len() > self.n_ctx as usize {
                if !truncate {
                    return Err(RequestError::new(
                        "context_overflow",
                        format!("input {i} is {} tokens; the context holds {} (shorten it, raise num_ctx, or allow truncation)", tokens.len(), self.n_ctx),
                    ));
                }
                tokens.truncate(self.n_ctx as usize);
            }
            all.push(tokens);
        }
        let prompt_tokens = all.iter().map(|t| t.len() as u32).sum();
        self.grow(all.iter().map(Vec::len).max().unwrap_or(0))?;
        let mut vectors = Vec::with_capacity(all.len());
        let mut start = 0;
        while start < all.len() {
            // As many whole inputs as the batch holds.
            let (mut end, mut used) = (start, 0);
            while end < all.len() && end - start < MAX_SEQUENCES as usize && used + all[end].len() <= self.n_batch {
                used += all[end].len();
                end += 1;
            }
            vectors.extend(self.run(&all[start..end])?);
            start = end;
        }
        Ok((vectors, prompt_tokens))
    }

    /// Decodes `inputs` (each fits the batch, together too) as sequences 0, 1, … of one batch
    /// and reads each sequence's pooled vector.
    fn run(&mut self, inputs: &[Vec<LlamaToken>]) -> Result<Vec<Vec<f32>>, RequestError> {
        let ctx = self.ctx.as_mut().ok_or_else(|| RequestError::new("load", "no embedding context"))?;
        // Each batch starts from an empty cache: inputs never attend to earlier ones.
        ctx.clear_kv_cache();
        self.batch.clear();
        for (seq, tokens) in inputs.iter().enumerate() {
            for (pos, &t) in tokens.iter().enumerate() {
                self.batch
                    .add(t, pos as i32, &[seq as i32], true)
                    .map_err(|e| RequestError::new("decode", format!("batch: {e}")))?;
            }
        }
        ctx.decode(&mut self.batch).map_err(|e| RequestError::new("decode", format!("llama.cpp decode failed: {e}")))?;
        let mut out = Vec::with_capacity(inputs.len());
        let mut row = 0i32;
        for (seq, tokens) in inputs.iter().enumerate() {
            row += tokens.len() as i32;
            let v = match ctx.embeddings_seq_ith(seq as i32) {
                Ok(v) => v.to_vec(),
                // No pooled vector (pooling none): the last token's, as Ollama falls back to.
                Err(_) => ctx
                    .embeddings_ith(row - 1)
                    .map_err(|_| RequestError::new("decode", "llama.cpp returned no embedding for the input"))?
                    .to_vec(),
            };
            if v.iter().any(|x| !x.is_finite()) {
                return Err(RequestError::new("decode", "the model produced a non-finite embedding"));
            }
            out.push(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_are_multiples_of_the_sequences() {
        assert_eq!(batch_size(512), 512);
        assert_eq!(batch_size(300), 320);
        assert_eq!(batch_size(1), 64);
        assert_eq!(batch_size(4096), 4096);
    }
}
