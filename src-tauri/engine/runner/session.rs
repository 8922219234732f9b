//! Everything that touches llama.cpp: loading (CPU-variant modules, mmap), the one context, the
//! KV-cache prefix reuse, the sampler chain and the decode loop. It must never write to stdout
//! except through [`Output`], never decode a batch larger than `n_batch`, and never let a
//! client's input (prompt, options, grammar) reach a llama.cpp call that aborts the process.

use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use super::text::{StopMatcher, Utf8Buffer};
use super::{platform, Input, Output, RequestError, RunnerArgs};
use crate::engine::protocol::{Event, GenerationStats, SamplingOptions};

/// The sequence this runner serves today; continuous batching (several requests in one context)
/// would give each request its own sequence id and its own cached tokens.
const SEQ: i32 = 0;

/// llama.cpp's "pick a random seed" value.
const RANDOM_SEED: u32 = 0xFFFF_FFFF;

pub struct Loaded {
    backend: LlamaBackend,
    model: LlamaModel,
}

impl Loaded {
    pub fn load(args: &RunnerArgs) -> Result<Self, String> {
        if !args.model.is_file() {
            return Err(format!("model file not found: {}", args.model.display()));
        }
        // The CPU kernels are modules, one per CPU variant; ggml scores each against this CPU
        // and keeps the best. Without them there is no CPU backend at all.
        let dir = platform::backend_dir().ok_or_else(|| {
            format!(
                "no ggml CPU backend modules (libggml-cpu-*.so) next to the executable; set {} to their directory",
                platform::LIB_DIR_ENV
            )
        })?;
        llama_cpp_2::llama_backend::load_backends_from_path(&dir);
        let backend = LlamaBackend::init().map_err(|e| format!("llama.cpp backend: {e}"))?;
        let cpu = llama_cpp_2::list_llama_ggml_backend_devices()
            .iter()
            .any(|d| d.backend.eq_ignore_ascii_case("cpu"));
        if !cpu {
            return Err(format!("no usable CPU backend module in {}", dir.display()));
        }
        let mut params = LlamaModelParams::default().with_use_mmap(true);
        if let Some(n) = args.gpu_layers {
            params = params.with_n_gpu_layers(n);
        }
        let model = LlamaModel::load_from_file(&backend, &args.model, &params).map_err(|e| {
            format!("llama.cpp could not load {} ({e}); its log is on stderr", args.model.display())
        })?;
        Ok(Self { backend, model })
    }

    pub fn session(&self, args: &RunnerArgs) -> Result<Session<'_>, String> {
        let n_ctx_train = self.model.n_ctx_train().max(1);
        let n_ctx = args.ctx.clamp(16, n_ctx_train);
        let parallel = args.parallel.max(1);
        let threads = args.threads.unwrap_or_else(platform::physical_cores).max(1);
        let n_batch = args.batch.max(1);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx * parallel))
            .with_n_batch(n_batch)
            // A micro-batch as large as the batch: one graph per chunk, the fastest prefill on CPU.
            .with_n_ubatch(n_batch)
            .with_n_seq_max(parallel)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32)
            // Sliding-window models (Gemma 2/3, …) otherwise keep only the last window of the KV
            // cache, so a conversation's earlier turns could not be reused; keep all of it.
            .with_swa_full(true);
        let ctx = self
            .model
            .new_context(&self.backend, params)
            .map_err(|e| format!("llama.cpp could not create a context of {n_ctx} tokens: {e}"))?;
        // llama.cpp rounds the context up (to 256); the request's size is still the limit.
        let n_ctx = (ctx.n_ctx() / parallel).min(n_ctx);
        let n_batch = ctx.n_batch() as usize;
        Ok(Session {
            model: &self.model,
            ctx,
            batch: LlamaBatch::new(n_batch, parallel as i32),
            n_batch,
            n_ctx,
            n_ctx_train,
            parallel,
            threads,
            cached: Vec::new(),
        })
    }
}

pub struct Session<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    n_ctx: u32,
    n_ctx_train: u32,
    parallel: u32,
    threads: u32,
    /// The tokens whose keys and values the KV cache of [`SEQ`] holds, in order.
    cached: Vec<LlamaToken>,
}

impl Session<'_> {
    pub fn ready_event(&self, load_ms: u64) -> Event {
        let vocab = self.model.vocab();
        Event::Ready {
            n_ctx: self.n_ctx,
            n_ctx_train: self.n_ctx_train,
            n_parallel: self.parallel,
            threads: self.threads,
            bos_token: self.special_text(vocab.bos()),
            eos_token: self.special_text(vocab.eos()),
            load_ms,
        }
    }

    fn special_text(&self, token: LlamaToken) -> String {
        if token.0 < 0 || token.0 >= self.model.n_vocab() {
            return String::new();
        }
        String::from_utf8_lossy(&self.model.vocab().token_to_piece(token, true, None)).into_owned()
    }

    /// The prompt's tokens: special tokens parsed, BOS added when the model wants one unless the
    /// rendered template already starts with it (no double BOS).
    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        let mut tokens = vocab.tokenize(text.as_bytes(), false, true);
        let bos = vocab.bos();
        if vocab.should_add_bos() && bos.0 >= 0 && tokens.first() != Some(&bos) {
            tokens.insert(0, bos);
        }
        tokens
    }

    pub fn count_tokens(&self, text: &str) -> u32 {
        self.tokenize(text).len() as u32
    }

    pub fn generate(
        &mut self,
        id: u64,
        prompt: &str,
        options: &SamplingOptions,
        grammar: Option<&str>,
        input: &mut Input,
        out: &Output,
    ) -> Result<GenerationStats, RequestError> {
        let tokens = self.tokenize(prompt);
        if tokens.is_empty() {
            return Err(RequestError::new("empty_prompt", "the prompt has no tokens"));
        }
        if tokens.len() >= self.n_ctx as usize {
            return Err(RequestError::new(
                "context_overflow",
                format!(
                    "the prompt is {} tokens; the context holds {} (prompt and reply together)",
                    tokens.len(),
                    self.n_ctx
                ),
            ));
        }
        let mut sampler = Sampler::new(self.model, options, grammar, self.n_ctx)?;

        // Prefill: only the tokens after the longest prefix the KV cache still holds.
        let t_prompt = Instant::now();
        let cached = self.reuse_prefix(&tokens);
        let mut stats = GenerationStats {
            prompt_tokens: tokens.len() as u32,
            prompt_cached_tokens: cached as u32,
            ..Default::default()
        };
        let chunks: Vec<&[LlamaToken]> = tokens[cached..].chunks(self.n_batch).collect();
        let last_chunk = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            if input.should_stop(id, out) {
                stats.prompt_eval_ns = t_prompt.elapsed().as_nanos() as u64;
                stats.done_reason = "cancel".into();
                return Ok(stats);
            }
            self.decode(chunk, i == last_chunk)?;
        }
        self.ctx.synchronize();
        stats.prompt_eval_ns = t_prompt.elapsed().as_nanos() as u64;

        // Generation: sample, emit, decode the sampled token, until a stop.
        let t_eval = Instant::now();
        let limit = options.num_predict.filter(|n| *n >= 0).map(|n| n as u32);
        let mut utf8 = Utf8Buffer::new();
        let mut stops = StopMatcher::new(&options.stop);
        let mut piece = Vec::with_capacity(32);
        let mut logits_at = self.batch.n_tokens() - 1;
        let mut hit_stop = false;
        let reason = loop {
            if limit.is_some_and(|n| stats.eval_tokens >= n) {
                break "length";
            }
            let token = sampler.sample(&self.ctx, logits_at)?;
            if self.model.vocab().is_eog(token) {
                break "stop";
            }
            stats.eval_tokens += 1;
            piece.clear();
            self.model.vocab().token_to_piece_into(token, &mut piece, false, None);
            let text = utf8.push(&piece);
            let o = stops.push(&text);
            if !o.emit.is_empty() {
                out.send(&Event::Piece { id, text: o.emit });
            }
            if o.stopped {
                hit_stop = true;
                break "stop";
            }
            if limit.is_some_and(|n| stats.eval_tokens >= n) {
                break "length";
            }
            // The sampled token must go into the cache for the next one: no room, no next token.
            if self.cached.len() + 1 >= self.n_ctx as usize {
                break "length";
            }
            if input.should_stop(id, out) {
                break "cancel";
            }
            self.decode(&[token], true)?;
            logits_at = 0;
        };
        // Text held back at EOS or length is the reply's end; after a stop sequence or a cancel
        // it is not (it follows the stop, or nobody waits for it).
        if reason != "cancel" && !hit_stop {
            let mut tail = stops.push(&utf8.finish()).emit;
            tail.push_str(&stops.finish());
            if !tail.is_empty() {
                out.send(&Event::Piece { id, text: tail });
            }
        }
        stats.eval_ns = t_eval.elapsed().as_nanos() as u64;
        stats.done_reason = reason.into();
        Ok(stats)
    }

    /// Keeps the KV cache of the longest common prefix of `tokens` and the cached tokens, drops
    /// the rest, and returns how many tokens are reused. At least the last prompt token is
    /// always decoded again, since its logits are needed to sample.
    fn reuse_prefix(&mut self, tokens: &[LlamaToken]) -> usize {
        let common = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        let common = common.min(tokens.len() - 1);
        // Nothing worth keeping (at most a BOS): start from an empty cache, so that a new
        // conversation decodes exactly as in a fresh process (cell placement changes rounding).
        if common <= 1 {
            self.ctx.clear_kv_cache();
            self.cached.clear();
            return 0;
        }
        if self.ctx.clear_kv_cache_seq(Some(SEQ as u32), Some(common as u32), None).unwrap_or(false) {
            self.cached.truncate(common);
            common
        } else {
            // Memory that cannot drop a tail (recurrent models): start over.
            self.ctx.clear_kv_cache();
            self.cached.clear();
            0
        }
    }

    /// Decodes `tokens` (at most `n_batch`) after the cached ones; logits for the last one only
    /// when `want_logits`.
    fn decode(&mut self, tokens: &[LlamaToken], want_logits: bool) -> Result<(), RequestError> {
        debug_assert!(tokens.len() <= self.n_batch);
        self.batch.clear();
        let start = self.cached.len();
        let last = tokens.len() - 1;
        for (i, &t) in tokens.iter().enumerate() {
            self.batch
                .add(t, (start + i) as i32, &[SEQ], want_logits && i == last)
                .map_err(|e| RequestError::new("decode", format!("batch: {e}")))?;
        }
        if let Err(e) = self.ctx.decode(&mut self.batch) {
            // The cache may hold part of the batch: forget it all rather than guess.
            self.ctx.clear_kv_cache();
            self.cached.clear();
            return Err(RequestError::new("decode", format!("llama.cpp decode failed: {e}")));
        }
        self.cached.extend_from_slice(tokens);
        Ok(())
    }
}

/// The sampler chain for one request, Ollama's option names and defaults. A grammar is kept
/// apart from the chain: checking one candidate against it is cheap, filtering the whole
/// vocabulary is not, so the full filter runs only when the chain's pick is rejected.
struct Sampler {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
}

impl Sampler {
    fn new(
        model: &LlamaModel,
        o: &SamplingOptions,
        grammar: Option<&str>,
        n_ctx: u32,
    ) -> Result<Self, RequestError> {
        let temperature = o.temperature.unwrap_or(0.8);
        let chain = if temperature <= 0.0 {
            // Greedy: the most likely token, nothing else applied (what `temperature: 0` means
            // to users and to a reproducible reference loop).
            LlamaSampler::greedy()
        } else {
            let mut v = Vec::new();
            let repeat = o.repeat_penalty.unwrap_or(1.1);
            let freq = o.frequency_penalty.unwrap_or(0.0);
            let presence = o.presence_penalty.unwrap_or(0.0);
            let last_n = match o.repeat_last_n.unwrap_or(64) {
                n if n < 0 => n_ctx as i32,
                n => n,
            };
            if last_n > 0 && (repeat != 1.0 || freq != 0.0 || presence != 0.0) {
                let repeat = if repeat > 0.0 { repeat } else { 1.0 };
                v.push(LlamaSampler::penalties(model.n_vocab(), last_n, repeat, freq, presence));
            }
            let top_k = o.top_k.unwrap_or(40);
            if top_k > 0 {
                v.push(LlamaSampler::top_k(top_k));
            }
            let top_p = o.top_p.unwrap_or(0.9);
            if top_p > 0.0 && top_p < 1.0 {
                v.push(LlamaSampler::top_p(top_p, 1));
            }
            let min_p = o.min_p.unwrap_or(0.0);
            if min_p > 0.0 {
                v.push(LlamaSampler::min_p(min_p, 1));
            }
            v.push(LlamaSampler::temp(temperature));
            v.push(LlamaSampler::dist(o.seed.unwrap_or(RANDOM_SEED)));
            LlamaSampler::chain_simple(v)
        };
        let grammar = match grammar {
            None => None,
            Some(g) => Some(
                LlamaSampler::grammar(model, g, "root")
                    .map_err(|e| RequestError::new("grammar", format!("invalid grammar: {e}")))?,
            ),
        };
        Ok(Self { chain, grammar })
    }

    /// Samples (and accepts, once) the next token from the logits of batch row `idx`.
    fn sample(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> Result<LlamaToken, RequestError> {
        let Some(grammar) = self.grammar.as_mut() else {
            // `sample` applies the chain and accepts the token itself.
            return Ok(self.chain.sample(ctx, idx));
        };
        let candidates = LlamaTokenDataArray::from_iter(ctx.candidates_ith(idx), false);
        let mut first = candidates.clone();
        first.apply_sampler(&mut self.chain);
        let mut token = first.selected_token();
        if let Some(t) = token {
            let mut probe = LlamaTokenDataArray::new(vec![LlamaTokenData::new(t, 0.0, 0.0)], false);
            probe.apply_sampler(grammar);
            if !probe.data[0].logit().is_finite() {
                token = None;
            }
        }
        let token = match token {
            Some(t) => t,
            None => {
                let mut all = candidates;
                all.apply_sampler(grammar);
                if !all.data.iter().any(|d| d.logit().is_finite()) {
                    return Err(RequestError::new("grammar", "the grammar allows no next token"));
                }
                all.apply_sampler(&mut self.chain);
                all.selected_token()
                    .ok_or_else(|| RequestError::new("grammar", "no token left after the grammar"))?
            }
        };
        // The checked accept: a grammar that rejects the token is an error, not an abort.
        grammar
            .try_accept(token)
            .map_err(|e| RequestError::new("grammar", format!("grammar rejected the token: {e}")))?;
        self.chain.accept(token);
        Ok(token)
    }
}
