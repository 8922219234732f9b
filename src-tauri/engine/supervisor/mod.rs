//! The supervisor: which models are loaded, each in its own runner child process (`airlock
//! runner`, the same executable), so that a llama.cpp abort costs that model only — never the app
//! or the server. It routes requests to runners, streams their events back, fails in-flight
//! requests with "model process exited: …" when a runner dies (the next request loads it again),
//! and unloads models when their keep-alive runs out.
//!
//! Runners are keyed by what they load ([`RunnerKey`]: the weights file, the context, the GPU
//! layers asked for), never by the name a request used, so names that share weights (an alias
//! made with `/api/copy`) share one runner. Each key has at most one loader: requests for a key
//! that is loading wait for that load (they count toward the busy limit), while requests for
//! other models, loaded or loading, go on. A load whose runner does not say `ready` in time
//! ([`EngineConfig::load_timeout_for`]) is stopped and fails its requests. A request holds its
//! runner ([`RunnerGuard`]) from the moment `load` returns it until its reply ends: the
//! keep-alive reaper and eviction only ever stop runners nobody holds.
//!
//! It never links llama.cpp itself and never blocks on a runner while holding its model table.
//!
//! Files: `mod.rs` holds the types callers use (errors, the config, what to load, the events of a
//! generation) and the [`Supervisor`] itself; `scheduling` owns the model table, loads and their
//! waiters, holds, eviction and keep-alive; `placement` decides a runner's GPU layers and retries a
//! load that failed there; `process` owns one runner process (spawn, handshake, stderr tail, event
//! routing); `requests` sends generations, token counts and embeddings to a held runner.

mod placement;
mod process;
mod requests;
mod scheduling;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

use super::attention::{FlashAttention, KvCacheType};
use super::protocol::{GenerationStats, Placement};
use super::untrusted::SpecialTokens;

use scheduling::Table;

pub use process::LoadedModel;
pub use requests::Generation;
pub use scheduling::RunnerGuard;

/// Ollama's default keep-alive.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5 * 60);
/// A runner gets at least this long to load and say `ready` (`AIRLOCK_LOAD_TIMEOUT` in seconds)…
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// …plus this long per GiB of weights (a slow disk, a GPU upload).
pub const DEFAULT_LOAD_TIMEOUT_PER_GIB: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("model process exited: {0}")]
    RunnerExited(String),
    #[error("cannot load model {model}: {message}")]
    Load { model: String, message: String },
    #[error("cannot start the model process {exe}: {message}")]
    Spawn { exe: String, message: String },
    /// Every slot of the model is busy and its queue is full; try again shortly.
    #[error("model {model} is busy ({waiting} requests running or waiting); try again shortly")]
    Busy { model: String, waiting: usize },
    /// As many models as may be loaded at once are loading now; try again shortly.
    #[error("cannot load model {model} now: {loading} models are loading already, as many as may be loaded at once (AIRLOCK_MAX_LOADED_MODELS); try again shortly")]
    TooManyLoads { model: String, loading: usize },
    /// The runner did not finish loading in time; it was stopped.
    #[error("model {model} did not finish loading within {secs} s, so its process was stopped; the disk may be very slow or the machine overloaded — try again, or raise AIRLOCK_LOAD_TIMEOUT (seconds)")]
    LoadTimeout { model: String, secs: u64 },
    /// The runner refused the request (`code` says why: "context_overflow", "grammar", …).
    #[error("{message}")]
    Request { code: String, message: String },
}

/// How many layers a runner gets on GPUs, on which, and why, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GpuPlan {
    layers: u32,
    why: String,
    /// The RPC workers whose devices the runner adds (each answered just now).
    rpc: Vec<String>,
    /// This machine's GPUs stay closed (`AIRLOCK_GPU=off`): only the workers' devices are used.
    hide_local_gpus: bool,
}

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The executable that has the `runner` subcommand (normally this one).
    pub runner_exe: PathBuf,
    /// Threads per runner; `None` lets the runner use the physical core count.
    pub threads: Option<u32>,
    /// At most this many models loaded at once; the least recently used idle one goes first.
    pub max_loaded: usize,
    pub default_keep_alive: Duration,
    /// Requests allowed to wait per model beyond its parallel slots (while it runs or while it
    /// loads); more are refused as busy.
    pub max_queue: usize,
    /// How long a runner may take to say `ready`: this floor…
    pub load_timeout: Duration,
    /// …plus this much per GiB of weights.
    pub load_timeout_per_gib: Duration,
    /// Start runners without the CPU's AMX kernels from the first (otherwise learnt from the first
    /// runner they crash).
    pub avoid_amx: bool,
    /// llama.cpp RPC workers (`HOST:PORT`) whose devices runners may use (`AIRLOCK_RPC`, `serve --rpc`).
    pub rpc: Vec<String>,
    /// Flash attention and the KV cache type when neither the request nor the model sets them.
    pub flash_attention: FlashAttention,
    pub kv_cache_type: KvCacheType,
    /// The default context from `AIRLOCK_CONTEXT_LENGTH` / `OLLAMA_CONTEXT_LENGTH` and the
    /// variable that set it; `None` sizes it from memory (see [`crate::engine::context`]).
    pub context_length: Option<(u32, &'static str)>,
    /// Where text runners keep the KV state of prompts' fixed prefixes across restarts
    /// (`AIRLOCK_PROMPT_CACHE`; `off` turns it off); `None`: not kept.
    pub prompt_cache: Option<PathBuf>,
    /// Sliding-window checkpoints per slot (`AIRLOCK_CONTEXT_CHECKPOINTS`).
    pub checkpoints: u32,
    /// Test builds only: a fault for each of the next runners, in order (see `RunnerArgs`).
    #[cfg(any(test, feature = "test-hooks"))]
    pub runner_faults: std::sync::Arc<Mutex<std::collections::VecDeque<String>>>,
}

impl EngineConfig {
    /// Flash attention and the KV cache type when neither a request nor a model sets them.
    pub fn attention(&self) -> (FlashAttention, KvCacheType) {
        (self.flash_attention, self.kv_cache_type)
    }

    pub fn from_env() -> Self {
        EngineConfig {
            runner_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("airlock")),
            threads: std::env::var("AIRLOCK_THREADS").ok().and_then(|v| v.parse().ok()),
            max_loaded: std::env::var("AIRLOCK_MAX_LOADED_MODELS").ok().and_then(|v| v.parse().ok()).unwrap_or(3),
            default_keep_alive: DEFAULT_KEEP_ALIVE,
            max_queue: std::env::var("AIRLOCK_MAX_QUEUE").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
            load_timeout: std::env::var("AIRLOCK_LOAD_TIMEOUT").ok().and_then(|v| v.trim().parse().ok()).filter(|&s: &u64| s > 0).map_or(DEFAULT_LOAD_TIMEOUT, Duration::from_secs),
            load_timeout_per_gib: DEFAULT_LOAD_TIMEOUT_PER_GIB,
            avoid_amx: false,
            rpc: crate::hardware::remote::endpoints_from_env(),
            flash_attention: FlashAttention::from_env(),
            kv_cache_type: KvCacheType::from_env(),
            context_length: crate::engine::context::from_env(),
            prompt_cache: prompt_cache_from_env(),
            checkpoints: crate::engine::attention::checkpoints_from_env(),
            #[cfg(any(test, feature = "test-hooks"))]
            runner_faults: Default::default(),
        }
    }

    /// How long a runner loading `weights_bytes` of weights may take to say `ready`.
    pub fn load_timeout_for(&self, weights_bytes: u64) -> Duration {
        let gib = weights_bytes as f64 / (1u64 << 30) as f64;
        self.load_timeout + self.load_timeout_per_gib.mul_f64(gib)
    }
}

/// `AIRLOCK_PROMPT_CACHE`: a folder, or `off`; unset, the user's cache folder.
fn prompt_cache_from_env() -> Option<PathBuf> {
    match std::env::var("AIRLOCK_PROMPT_CACHE") {
        Ok(v) if matches!(v.trim().to_ascii_lowercase().as_str(), "off" | "0" | "false" | "no" | "none") => None,
        Ok(v) if !v.trim().is_empty() => Some(PathBuf::from(v.trim())),
        _ => dirs::cache_dir().map(|d| d.join("airlock").join("prompt-cache")),
    }
}

/// What to load: a model's weights and the context to give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadSpec {
    /// The name the request used (for `ps` and messages; not part of the runner's key).
    pub name: String,
    pub model_path: PathBuf,
    /// Context per sequence.
    pub num_ctx: u32,
    /// Sequences decoded together in one context (continuous batching), used when a runner
    /// starts; a loaded runner keeps the slots it started with (not part of its key).
    pub parallel: u32,
    /// Layers on GPUs: Ollama's `num_gpu` when a request sets it; `None` decides from the fit
    /// estimate (free VRAM) when the runner starts.
    pub num_gpu: Option<u32>,
    /// A LoRA adapter (the model's `adapter` layer) the runner applies to the weights.
    pub adapter: Option<PathBuf>,
    /// A vision projector (the model's `projector` layer, an mmproj GGUF) the runner loads.
    pub projector: Option<PathBuf>,
    /// What the fit estimate needs to know about the model.
    pub size: ModelSize,
    /// An embedding runner (`runner --embedding`): a runner of its own, beside the model's text
    /// runner if one is loaded.
    pub embedding: bool,
    pub flash_attention: FlashAttention,
    pub kv_cache: KvCacheType,
    /// A draft model's weights for speculative decoding (a text runner loads it beside the model).
    pub draft: Option<PathBuf>,
}

impl LoadSpec {
    pub fn key(&self) -> RunnerKey {
        RunnerKey {
            weights: self.model_path.clone(),
            adapter: self.adapter.clone(),
            projector: self.projector.clone(),
            embedding: self.embedding,
            num_ctx: self.num_ctx,
            num_gpu: self.num_gpu,
            flash_attention: self.flash_attention,
            kv_cache: self.kv_cache,
            draft: if self.embedding { None } else { self.draft.clone() },
        }
    }
}

/// What makes two runners interchangeable: the weights file (a store blob, named by its digest),
/// its LoRA adapter, the context, and the GPU layers a request asked for. Names and slot counts
/// are not part of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunnerKey {
    pub weights: PathBuf,
    pub adapter: Option<PathBuf>,
    pub projector: Option<PathBuf>,
    /// An embedding runner is separate from the same weights' text runner.
    pub embedding: bool,
    pub num_ctx: u32,
    pub num_gpu: Option<u32>,
    pub flash_attention: FlashAttention,
    pub kv_cache: KvCacheType,
    pub draft: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelSize {
    pub weights_bytes: u64,
    /// KV-cache bytes per token of context, at the context and cache type it is loaded with.
    pub kv_bytes_per_token: u64,
    /// Host memory each slot keeps for its sliding-window checkpoints (`runner/window.rs`).
    pub checkpoint_bytes: u64,
    /// Transformer blocks (0 when unknown: then no partial offload).
    pub layers: u32,
}

impl ModelSize {
    /// What one slot of `num_ctx` tokens holds: its KV cache and its checkpoints.
    pub fn slot_bytes(&self, num_ctx: u32) -> u64 {
        self.kv_bytes_per_token.saturating_mul(num_ctx as u64).saturating_add(self.checkpoint_bytes)
    }
}

/// What the runner said about itself when it came up.
#[derive(Clone, Debug, Serialize)]
pub struct RunnerInfo {
    pub n_ctx: u32,
    pub n_ctx_train: u32,
    pub n_parallel: u32,
    pub threads: u32,
    pub bos_token: String,
    pub eos_token: String,
    /// The texts the model's tokenizer makes special tokens of.
    #[serde(skip)]
    pub special_tokens: SpecialTokens,
    pub load_ms: u64,
    /// Where llama.cpp put the model.
    pub placement: Placement,
    /// Why it went there (the fit estimate, a setting, a failed GPU load and its retry).
    pub placement_reason: String,
}

/// One event of a generation, as the caller sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    Piece(String),
    Done(GenerationStats),
    Error(EngineError),
}

pub struct Supervisor {
    cfg: EngineConfig,
    table: Mutex<Table>,
    /// Set once a runner died of an illegal instruction in the CPU's AMX kernels: every later
    /// runner leaves them out.
    avoid_amx: AtomicBool,
    next_id: AtomicU64,
    runner_starts: AtomicU64,
    /// Runners that exited on their own while loaded (shared with each runner's event router).
    runner_crashes: std::sync::Arc<AtomicU64>,
    /// Runner processes alive per key, and how often one started beside another of its key.
    live_runners: std::sync::Arc<process::LiveRunners>,
}
