//! Everything that touches llama.cpp's model and context: loading (CPU-variant modules, mmap,
//! LoRA), the one context with its `--parallel` sequences (slots), the queue of requests waiting
//! for a slot, and a request's life from `submit` to its `Done` or `Error`. It builds on
//! `slot.rs` (the slot, request and job state) and `sampler.rs` (the sampler chains); the
//! queue's admission with KV-cache prefix reuse (`admit.rs`) and the batched decode step
//! (`step.rs`; continuous batching: every running request advances by one token per step, new
//! prompts join the same batch) add their methods to [`Session`] from above. It must never write
//! to stdout except through [`Output`], never decode a batch larger than `n_batch`, and never let
//! a client's input (prompt, options, grammar) reach a llama.cpp call that aborts the process.

use std::collections::VecDeque;
use std::num::NonZeroU32;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaLoraAdapter, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use super::draft::{Draft, DEFAULT_DRAFT_MAX};
use super::prompt_cache::{PromptCache, MIN_PREFIX_TOKENS};
use super::sampler::Sampler;
use super::slot::{Pending, Slot};
use super::vision::Vision;
use super::{Output, RequestError, RunnerArgs};
use crate::backends;
use crate::engine::protocol::{Event, GenerationStats, SamplingOptions};

pub struct Loaded {
    pub(super) backend: LlamaBackend,
    pub(super) model: LlamaModel,
    adapter: Option<LlamaLoraAdapter>,
    /// The draft model for speculative decoding (`--draft`).
    draft: Option<LlamaModel>,
}

impl Loaded {
    pub fn load(args: &RunnerArgs) -> Result<Self, String> {
        if !args.model.is_file() {
            return Err(format!("model file not found: {}", args.model.display()));
        }
        // The CPU kernels are modules, one per CPU variant; ggml scores each against this CPU
        // and keeps the best. Without them there is no CPU backend at all.
        let dir = backends::backend_dir().ok_or_else(|| {
            format!(
                "no ggml CPU backend modules (libggml-cpu-*.so) next to the executable; set {} to their directory",
                backends::LIB_DIR_ENV
            )
        })?;
        if args.gpu_layers == 0 || args.hide_local_gpus {
            // Off this machine's GPUs by decision: hide every one, or ggml would still open the
            // devices and move large prompt batches to them.
            for var in ["GGML_VK_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"] {
                std::env::set_var(var, "");
            }
        }
        super::placement::capture_log();
        backends::load_backends(&dir, args.avoid_amx, args.gpu_layers == 0).map_err(|e| format!("cannot load the ggml modules from {}: {e}", dir.display()))?;
        let backend = LlamaBackend::init().map_err(|e| format!("llama.cpp backend: {e}"))?;
        if args.gpu_layers > 0 && !args.rpc.is_empty() {
            super::remote::add_workers(&args.rpc)?;
        }
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
        let draft = super::draft::load(&backend, args, &model)?;
        Ok(Self { backend, model, adapter, draft })
    }

    pub fn session(&mut self, args: &RunnerArgs) -> Result<Session<'_>, String> {
        let Loaded { backend, model, adapter, draft } = self;
        let model: &LlamaModel = model;
        let n_ctx_train = model.n_ctx_train().max(1);
        let n_ctx = args.ctx.clamp(16, n_ctx_train);
        let parallel = args.parallel.max(1);
        let threads = args.threads.unwrap_or_else(crate::hardware::physical_cores).max(1);
        let n_batch = args.batch.max(1);
        let window = super::window::sliding_window(model);
        let params = context_params(args, n_ctx * parallel, n_batch, parallel, threads, window);
        let mut ctx = model
            .new_context(backend, params)
            .map_err(|e| format!("llama.cpp could not create a context of {n_ctx} tokens with a {} KV cache and flash attention {} ({e}); its log is on stderr", args.kv_cache_type.as_str(), args.flash_attention.as_str()))?;
        let mut adapter = adapter.as_mut();
        if let Some(adapter) = adapter.as_deref_mut() {
            ctx.lora_adapter_set(adapter, 1.0).map_err(|e| format!("llama.cpp could not apply the LoRA adapter: {e}"))?;
        }
        // llama.cpp rounds the context up (to 256); the request's size is still the limit.
        let n_ctx = (ctx.n_ctx() / parallel).min(n_ctx);
        let n_batch = ctx.n_batch() as usize;
        warm_up(model, &mut ctx, parallel)?;
        let vision = match &args.projector {
            Some(path) => Some(Vision::load(path, model, threads, args.gpu_layers > 0 && !args.hide_local_gpus)?),
            None => None,
        };
        let draft = match draft.as_ref() {
            Some(d) => Some(Draft::new(backend, d, n_ctx, parallel, threads, n_batch as u32)?),
            None => None,
        };
        Ok(Session {
            draft,
            adapter,
            prompt_cache: PromptCache::open(args),
            unsaved_prefixes: Vec::new(),
            backend,
            args: args.clone(),
            vision,
            model,
            ctx,
            batch: LlamaBatch::new(n_batch, parallel as i32),
            n_batch,
            n_ctx,
            n_ctx_train,
            parallel,
            threads,
            window,
            slots: (0..parallel).map(|_| Slot { cached: Vec::new(), pos_shift: 0, job: None, last_used: 0, checkpoints: Vec::new() }).collect(),
            waiting: VecDeque::new(),
            clock: 0,
            piece: Vec::with_capacity(32),
        })
    }
}

/// A context of `n_ctx` tokens over `n_seq` sequences, built as `args` say; a model with a known
/// attention `window` keeps only that window in its sliding-window layers.
fn context_params(args: &RunnerArgs, n_ctx: u32, n_batch: u32, n_seq: u32, threads: u32, window: Option<u32>) -> LlamaContextParams {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        // A micro-batch as large as the batch: one graph per chunk, the fastest prefill on CPU.
        .with_n_ubatch(n_batch)
        .with_n_seq_max(n_seq)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32)
        // Without a window to check a cut against (`window.rs`), keep sliding-window layers whole.
        .with_swa_full(window.is_none());
    with_attention(params, args)
}

/// The context's flash attention policy and KV cache types (K and V alike).
pub fn with_attention(params: LlamaContextParams, args: &RunnerArgs) -> LlamaContextParams {
    use crate::engine::attention::{FlashAttention, KvCacheType};
    use llama_cpp_2::context::params::KvCacheType as Ggml;
    let policy = match args.flash_attention {
        FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
        FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
    };
    let cache = match args.kv_cache_type {
        KvCacheType::F16 => Ggml::F16,
        KvCacheType::Q8_0 => Ggml::Q8_0,
        KvCacheType::Q4_0 => Ggml::Q4_0,
    };
    params.with_flash_attention_policy(policy).with_type_k(cache).with_type_v(cache)
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
    pub(super) model: &'m LlamaModel,
    /// The projector, when the model has one (`--projector`): prompts may carry images.
    pub(super) vision: Option<Vision>,
    /// The draft model's side of speculative decoding, when the runner has one (`--draft`).
    pub(super) draft: Option<Draft<'m>>,
    /// Prompt prefixes kept across restarts (`--prompt-cache`), and those still to be saved.
    pub(super) prompt_cache: Option<PromptCache>,
    pub(super) unsaved_prefixes: Vec<Vec<LlamaToken>>,
    /// The LoRA adapter every context of this runner applies (`--lora`).
    adapter: Option<&'m mut LlamaLoraAdapter>,
    backend: &'m LlamaBackend,
    pub(super) args: RunnerArgs,
    pub(super) ctx: LlamaContext<'m>,
    pub(super) batch: LlamaBatch<'static>,
    pub(super) n_batch: usize,
    /// Per sequence: a sequence's prompt and generation together never exceed it.
    pub(super) n_ctx: u32,
    n_ctx_train: u32,
    pub(super) parallel: u32,
    threads: u32,
    /// The attention window of the model's sliding-window layers, when their cache keeps only it.
    pub(super) window: Option<u32>,
    /// One per parallel sequence; slot `i` is llama.cpp sequence id `i`.
    pub(super) slots: Vec<Slot>,
    /// Accepted requests waiting for a free slot, in arrival order.
    pub(super) waiting: VecDeque<Pending>,
    /// Admission counter, for preferring the least recently used slot.
    pub(super) clock: u64,
    pub(super) piece: Vec<u8>,
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
            special_tokens: special_tokens(self.model),
            load_ms,
            // Offloadable layers: the repeating blocks and the output layer.
            placement: super::placement::collected(self.model.n_layer() + 1),
        }
    }

    /// The prompt's tokens: special tokens parsed except in the byte ranges `plain` (text from
    /// outside the template, which must not become control tokens), BOS added when the model
    /// wants one unless the rendered template already starts with it (no double BOS). Without
    /// `plain` ranges the prompt is tokenised in one piece, exactly as before they existed.
    pub fn tokenize(&self, text: &str, plain: &[(usize, usize)]) -> Result<Vec<LlamaToken>, RequestError> {
        let vocab = self.model.vocab();
        let mut tokens = Vec::new();
        let mut at = 0;
        for &(start, end) in plain {
            if start < at || end < start || end > text.len() || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
                return Err(RequestError::new("protocol", format!("plain range {start}..{end} is not an ordered range of whole characters of the prompt")));
            }
            tokens.extend(vocab.tokenize(text[at..start].as_bytes(), false, true));
            tokens.extend(vocab.tokenize(text[start..end].as_bytes(), false, false));
            at = end;
        }
        tokens.extend(vocab.tokenize(text[at..].as_bytes(), false, true));
        let bos = vocab.bos();
        if vocab.should_add_bos() && bos.0 >= 0 && tokens.first() != Some(&bos) {
            tokens.insert(0, bos);
        }
        Ok(tokens)
    }

    /// How many of `tokens` (the whole prompt's) are its fixed prefix of `bytes` bytes: those the
    /// prefix alone tokenises to, less the last (the text after it may join it), or 0 when that
    /// is too short to be worth a file.
    fn fixed_tokens(&self, prompt: &str, plain: &[(usize, usize)], bytes: usize, tokens: &[LlamaToken]) -> Result<usize, RequestError> {
        if bytes > prompt.len() || !prompt.is_char_boundary(bytes) {
            return Err(RequestError::new("protocol", format!("fixed prefix {bytes} is not a character boundary of the prompt")));
        }
        let inside: Vec<(usize, usize)> = plain.iter().filter(|r| r.0 < bytes).map(|&(a, b)| (a, b.min(bytes))).collect();
        let head = self.tokenize(&prompt[..bytes], &inside)?;
        let common = head.iter().zip(tokens).take_while(|(a, b)| a == b).count().saturating_sub(1);
        Ok(if common >= MIN_PREFIX_TOKENS { common } else { 0 })
    }

    /// Saves the prefixes the prompt cache lacks, each decoded alone in a context of its own:
    /// a live prompt is decoded in one piece as always, so the cache never changes a reply's
    /// arithmetic. Called when idle and at stop; stops between chunks once `interrupted` says
    /// a request came or the time is up (the rest waits for the next idle moment).
    pub fn save_prefixes(&mut self, interrupted: &mut dyn FnMut() -> bool) {
        let Some(cache) = &self.prompt_cache else { return };
        while let Some(prefix) = self.unsaved_prefixes.last() {
            if cache.has(prefix) {
                self.unsaved_prefixes.pop();
                continue;
            }
            // As many sequences as the live context: llama.cpp keeps one cache stream per
            // sequence, and a saved state loads only into a cache of the same shape.
            let params = context_params(&self.args, (prefix.len() as u32 + 1) * self.parallel, self.n_batch as u32, self.parallel, self.threads, self.window);
            // A prefix that fails is dropped, not tried again at every idle moment.
            let mut ctx = match self.model.new_context(self.backend, params) {
                Ok(ctx) => ctx,
                Err(e) => {
                    self.unsaved_prefixes.pop();
                    return eprintln!("airlock runner: prompt cache: no context to save a prefix in: {e}");
                }
            };
            if let Some(adapter) = self.adapter.as_deref_mut() {
                if let Err(e) = ctx.lora_adapter_set(adapter, 1.0) {
                    self.unsaved_prefixes.pop();
                    return eprintln!("airlock runner: prompt cache: the adapter could not be applied: {e}");
                }
            }
            let mut batch = LlamaBatch::new(self.n_batch, self.parallel as i32);
            for (c, chunk) in prefix.chunks(self.n_batch).enumerate() {
                if interrupted() {
                    return;
                }
                batch.clear();
                for (i, &t) in chunk.iter().enumerate() {
                    let _ = batch.add(t, (c * self.n_batch + i) as i32, &[0], false);
                }
                if let Err(e) = ctx.decode(&mut batch) {
                    self.unsaved_prefixes.pop();
                    return eprintln!("airlock runner: prompt cache: decoding a prefix failed: {e}");
                }
            }
            if let Err(e) = cache.save(&ctx, 0, prefix) {
                eprintln!("airlock runner: prompt cache: {e}");
            }
            self.unsaved_prefixes.pop();
        }
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
        plain: &[(usize, usize)],
        fixed_prefix: Option<usize>,
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
            None => self.tokenize(prompt, plain)?,
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
        let draft_max = options.draft_max.unwrap_or(DEFAULT_DRAFT_MAX);
        let fixed = match (fixed_prefix, &media) {
            (Some(bytes), None) if self.prompt_cache.is_some() => self.fixed_tokens(prompt, plain, bytes, &tokens)?,
            _ => 0,
        };
        self.waiting.push_back(Pending { id, tokens, media, sampler, limit, stop: options.stop.clone(), draft_max, fixed });
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

    /// Ends slot `s`'s request with `reason`, streaming held-back text when it is the reply's
    /// end (not after a stop sequence or a cancel). The slot keeps its cache for reuse.
    pub(super) fn finish(&mut self, s: usize, reason: &str, hit_stop: bool, out: &Output) {
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
}

/// A special token's text ("" for a token the model does not have), for the handshake.
/// The text of every token that parsing special tokens can produce from text: control,
/// user-defined and unknown tokens, as llama.cpp's tokenizer matches them.
fn special_tokens(model: &LlamaModel) -> Vec<String> {
    use llama_cpp_2::token_type::LlamaTokenAttr;
    let vocab = model.vocab();
    let special = LlamaTokenAttr::Control | LlamaTokenAttr::UserDefined | LlamaTokenAttr::Unknown;
    vocab
        .tokens()
        .filter(|t| vocab.attr(*t).intersects(special))
        .filter_map(|t| vocab.text(t).map(|c| c.to_string_lossy().into_owned()))
        .filter(|text| !text.is_empty())
        .collect()
}

pub(super) fn special_text(model: &LlamaModel, token: LlamaToken) -> String {
    if token.0 < 0 || token.0 >= model.n_vocab() {
        return String::new();
    }
    String::from_utf8_lossy(&model.vocab().token_to_piece(token, true, None)).into_owned()
}
