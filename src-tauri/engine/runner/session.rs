//! Everything that touches llama.cpp: loading (CPU-variant modules, mmap), the one context with
//! its `--parallel` sequences (slots), the queue of requests waiting for a slot, per-slot
//! KV-cache prefix reuse, the sampler chains and the batched decode step (continuous batching:
//! every running request advances by one token per step, new prompts join the same batch). It must never write to stdout
//! except through [`Output`], never decode a batch larger than `n_batch`, and never let a
//! client's input (prompt, options, grammar) reach a llama.cpp call that aborts the process.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use super::text::{StopMatcher, Utf8Buffer};
use super::vision::{MediaPrompt, Vision};
use super::{platform, Output, RequestError, RunnerArgs};
use crate::engine::protocol::{Event, GenerationStats, SamplingOptions};

/// llama.cpp's "pick a random seed" value.
const RANDOM_SEED: u32 = 0xFFFF_FFFF;

pub struct Loaded {
    pub(super) backend: LlamaBackend,
    pub(super) model: LlamaModel,
    adapter: Option<LlamaLoraAdapter>,
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
        if args.gpu_layers == 0 {
            // On the CPU by decision: hide every GPU, or ggml would still open the devices and
            // move large prompt batches to them.
            for var in ["GGML_VK_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"] {
                std::env::set_var(var, "");
            }
        }
        super::placement::capture_log();
        platform::load_backends(&dir, args.avoid_amx).map_err(|e| format!("cannot load the ggml modules from {}: {e}", dir.display()))?;
        let backend = LlamaBackend::init().map_err(|e| format!("llama.cpp backend: {e}"))?;
        let cpu = llama_cpp_2::list_llama_ggml_backend_devices()
            .iter()
            .any(|d| d.backend.eq_ignore_ascii_case("cpu"));
        if !cpu {
            return Err(format!("no usable CPU backend module in {}", dir.display()));
        }
        let params = LlamaModelParams::default().with_use_mmap(true).with_n_gpu_layers(args.gpu_layers);
        let mut model = LlamaModel::load_from_file(&backend, &args.model, &params).map_err(|e| {
            format!("llama.cpp could not load {} ({e}); its log is on stderr", args.model.display())
        })?;
        let adapter = match &args.lora {
            None => None,
            Some(path) if !path.is_file() => return Err(format!("LoRA adapter file not found: {}", path.display())),
            Some(path) => Some(model.lora_adapter_init(path).map_err(|e| format!("llama.cpp could not load the LoRA adapter {} ({e}); is it an adapter for this model? Its log is on stderr", path.display()))?),
        };
        Ok(Self { backend, model, adapter })
    }

    pub fn session(&mut self, args: &RunnerArgs) -> Result<Session<'_>, String> {
        let Loaded { backend, model, adapter } = self;
        let model: &LlamaModel = model;
        let n_ctx_train = model.n_ctx_train().max(1);
        let n_ctx = args.ctx.clamp(16, n_ctx_train);
        let parallel = args.parallel.max(1);
        let threads = args.threads.unwrap_or_else(crate::hardware::physical_cores).max(1);
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
        let mut ctx = model
            .new_context(backend, params)
            .map_err(|e| format!("llama.cpp could not create a context of {n_ctx} tokens: {e}"))?;
        if let Some(adapter) = adapter.as_mut() {
            ctx.lora_adapter_set(adapter, 1.0).map_err(|e| format!("llama.cpp could not apply the LoRA adapter: {e}"))?;
        }
        // llama.cpp rounds the context up (to 256); the request's size is still the limit.
        let n_ctx = (ctx.n_ctx() / parallel).min(n_ctx);
        let n_batch = ctx.n_batch() as usize;
        warm_up(model, &mut ctx, parallel)?;
        let vision = match &args.projector {
            Some(path) => Some(Vision::load(path, model, threads, args.gpu_layers > 0)?),
            None => None,
        };
        Ok(Session {
            vision,
            model,
            ctx,
            batch: LlamaBatch::new(n_batch, parallel as i32),
            n_batch,
            n_ctx,
            n_ctx_train,
            parallel,
            threads,
            slots: (0..parallel).map(|_| Slot { cached: Vec::new(), pos_shift: 0, job: None, last_used: 0 }).collect(),
            waiting: VecDeque::new(),
            clock: 0,
            piece: Vec::with_capacity(32),
        })
    }
}

/// Decodes a few tokens once before the runner says it is ready: the first decode pages the
/// weights in and builds the compute graph, and a CPU or GPU kernel that cannot run on this
/// machine (an illegal instruction, a driver fault) fails the load, where the supervisor can
/// react, instead of a user's first request.
fn warm_up(model: &LlamaModel, ctx: &mut LlamaContext<'_>, parallel: u32) -> Result<(), String> {
    let bos = model.vocab().bos();
    let token = if bos.0 >= 0 && bos.0 < model.n_vocab() { bos } else { LlamaToken(0) };
    let mut batch = LlamaBatch::new(8, parallel as i32);
    for pos in 0..4 {
        batch.add(token, pos, &[0], pos == 3).map_err(|e| format!("warm-up batch: {e}"))?;
    }
    ctx.decode(&mut batch).map_err(|e| format!("llama.cpp could not decode its warm-up batch: {e}"))?;
    ctx.clear_kv_cache();
    Ok(())
}

pub struct Session<'m> {
    model: &'m LlamaModel,
    /// The projector, when the model has one (`--projector`): prompts may carry images.
    vision: Option<Vision>,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    /// Per sequence: a sequence's prompt and generation together never exceed it.
    n_ctx: u32,
    n_ctx_train: u32,
    parallel: u32,
    threads: u32,
    /// One per parallel sequence; slot `i` is llama.cpp sequence id `i`.
    slots: Vec<Slot>,
    /// Accepted requests waiting for a free slot, in arrival order.
    waiting: VecDeque<Pending>,
    /// Admission counter, for preferring the least recently used slot.
    clock: u64,
    piece: Vec<u8>,
}

/// One sequence of the context: the tokens its KV cache holds, and the request it serves.
struct Slot {
    /// The tokens whose keys and values this sequence's KV cache holds, in order.
    cached: Vec<LlamaToken>,
    /// The next position minus `cached.len()`: 0 unless an image of an M-RoPE model took fewer
    /// positions than tokens.
    pos_shift: i32,
    job: Option<Job>,
    last_used: u64,
}


/// A validated request waiting for a slot.
struct Pending {
    id: u64,
    tokens: Vec<LlamaToken>,
    /// The prompt's images, when it has any (`tokens` holds their image tokens).
    media: Option<MediaPrompt>,
    sampler: Sampler,
    limit: Option<u32>,
    stop: Vec<String>,
}

/// A request being served by a slot.
struct Job {
    id: u64,
    /// The prompt's tokens; `next` of them are in the slot's cache.
    tokens: Vec<LlamaToken>,
    next: usize,
    /// Images still to decode: the chunks from `start` of `tokens` to the end, decoded by the
    /// projector once the text before them is in the cache.
    media: Option<MediaTail>,
    sampler: Sampler,
    limit: Option<u32>,
    utf8: Utf8Buffer,
    stops: StopMatcher,
    stats: GenerationStats,
    t_prompt: Instant,
    t_eval: Option<Instant>,
    /// The last sampled token, to be decoded in the next step.
    pending: Option<LlamaToken>,
    /// This step's batch row holding the job's logits.
    logits: Option<i32>,
}

struct MediaTail {
    start: usize,
    chunks: llama_cpp_2::mtmd::MtmdInputChunks,
}

impl Job {
    fn prefilling(&self) -> bool {
        self.pending.is_none() && self.next < self.tokens.len()
    }

    /// Where the session's text batches stop prefilling: the start of the images still to
    /// decode, else the prompt's end.
    fn text_end(&self) -> usize {
        self.media.as_ref().map_or(self.tokens.len(), |m| m.start)
    }
}

impl Session<'_> {
    pub fn ready_event(&self, load_ms: u64) -> Event {
        let vocab = self.model.vocab();
        Event::Ready {
            n_ctx: self.n_ctx,
            n_ctx_train: self.n_ctx_train,
            n_parallel: self.parallel,
            threads: self.threads,
            bos_token: special_text(&self.model, vocab.bos()),
            eos_token: special_text(&self.model, vocab.eos()),
            load_ms,
            // Offloadable layers: the repeating blocks and the output layer.
            placement: super::placement::collected(self.model.n_layer() + 1),
        }
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

    /// True while any request is being served or waits for a slot.
    pub fn busy(&self) -> bool {
        !self.waiting.is_empty() || self.slots.iter().any(|s| s.job.is_some())
    }

    /// Accepts a generation: validated now (an error is answered at once), served when a slot
    /// is free, in arrival order.
    pub fn submit(
        &mut self,
        id: u64,
        prompt: &str,
        options: &SamplingOptions,
        grammar: Option<&str>,
        images: &[String],
    ) -> Result<(), RequestError> {
        let media = if images.is_empty() {
            None
        } else {
            let vision = self.vision.as_ref().ok_or_else(|| {
                RequestError::new("images", "this model has no vision projector, so it cannot read images; send text only")
            })?;
            let vocab = self.model.vocab();
            let bos = (vocab.should_add_bos() && vocab.bos().0 >= 0).then(|| special_text(self.model, vocab.bos()));
            Some(vision.prepare(prompt, images, bos.as_deref())?)
        };
        let tokens = match &media {
            Some(m) => m.tokens.clone(),
            None => self.tokenize(prompt),
        };
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
        let sampler = Sampler::new(self.model, options, grammar, self.n_ctx)?;
        let limit = options.num_predict.filter(|n| *n >= 0).map(|n| n as u32);
        self.waiting.push_back(Pending { id, tokens, media, sampler, limit, stop: options.stop.clone() });
        Ok(())
    }

    /// Stops request `id` (running or waiting) with its `Done` (reason "cancel"); an unknown id
    /// (already finished) is moot.
    pub fn cancel(&mut self, id: u64, out: &Output) {
        if let Some(at) = self.waiting.iter().position(|p| p.id == id) {
            self.waiting.remove(at);
            let stats = GenerationStats { done_reason: "cancel".into(), ..Default::default() };
            out.send(&Event::Done { id, stats });
            return;
        }
        if let Some(s) = self.slots.iter().position(|s| s.job.as_ref().is_some_and(|j| j.id == id)) {
            self.finish(s, "cancel", false, out);
        }
    }

    /// Cancels everything (stdin closed: nobody is listening).
    pub fn cancel_all(&mut self, out: &Output) {
        let ids: Vec<u64> = self
            .slots
            .iter()
            .filter_map(|s| s.job.as_ref().map(|j| j.id))
            .chain(self.waiting.iter().map(|p| p.id))
            .collect();
        for id in ids {
            self.cancel(id, out);
        }
    }

    /// Moves waiting requests into free slots, each into the free slot whose cache shares the
    /// longest prefix with its prompt (ties: the least recently used).
    fn admit(&mut self, out: &Output) {
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
            });
        }
    }

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

    /// Ends slot `s`'s request with `reason`, streaming held-back text when it is the reply's
    /// end (not after a stop sequence or a cancel). The slot keeps its cache for reuse.
    fn finish(&mut self, s: usize, reason: &str, hit_stop: bool, out: &Output) {
        let Some(mut job) = self.slots[s].job.take() else { return };
        if reason != "cancel" && !hit_stop {
            let mut tail = job.stops.push(&job.utf8.finish()).emit;
            tail.push_str(&job.stops.finish());
            if !tail.is_empty() {
                out.send(&Event::Piece { id: job.id, text: tail });
            }
        }
        match job.t_eval {
            Some(t) => job.stats.eval_ns = t.elapsed().as_nanos() as u64,
            None => job.stats.prompt_eval_ns = job.t_prompt.elapsed().as_nanos() as u64,
        }
        job.stats.done_reason = reason.into();
        out.send(&Event::Done { id: job.id, stats: job.stats });
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

    /// Keeps slot `s`'s KV cache of the longest common prefix of `tokens` and its cached
    /// tokens, drops the rest, and returns how many tokens are reused. At least the last prompt
    /// token is always decoded again, since its logits are needed to sample.
    fn reuse_prefix(&mut self, s: usize, tokens: &[LlamaToken], keep: usize) -> usize {
        let slot = &mut self.slots[s];
        // Positions equal token counts below any image (see `Vision::clamp_reuse`).
        slot.pos_shift = 0;
        let common = slot.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count();
        let common = common.min(keep).min(tokens.len() - 1);
        // Nothing worth keeping (at most a BOS): start from an empty cache, so that a new
        // conversation decodes exactly as in a fresh process (cell placement changes rounding).
        if common <= 1 {
            if self.parallel == 1 {
                self.ctx.clear_kv_cache();
            } else {
                let _ = self.ctx.clear_kv_cache_seq(Some(s as u32), None, None);
            }
            slot.cached.clear();
            return 0;
        }
        if self.ctx.clear_kv_cache_seq(Some(s as u32), Some(common as u32), None).unwrap_or(false) {
            slot.cached.truncate(common);
            common
        } else {
            // Memory that cannot drop a tail (recurrent models): start this sequence over.
            let _ = self.ctx.clear_kv_cache_seq(Some(s as u32), None, None);
            slot.cached.clear();
            0
        }
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

/// A special token's text ("" for a token the model does not have), for the handshake.
pub(super) fn special_text(model: &LlamaModel, token: LlamaToken) -> String {
    if token.0 < 0 || token.0 >= model.n_vocab() {
        return String::new();
    }
    String::from_utf8_lossy(&model.vocab().token_to_piece(token, true, None)).into_owned()
}
