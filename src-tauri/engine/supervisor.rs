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

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Lines, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::protocol::{encode, EmbedInput, Event, GenerationStats, Placement, Request, SamplingOptions};
use crate::hardware::{self, FitVerdict};

/// Ollama's default keep-alive.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5 * 60);
/// A runner gets at least this long to load and say `ready` (`AIRLOCK_LOAD_TIMEOUT` in seconds)…
pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// …plus this long per GiB of weights (a slow disk, a GPU upload).
pub const DEFAULT_LOAD_TIMEOUT_PER_GIB: Duration = Duration::from_secs(30);
const STDERR_LINES_KEPT: usize = 30;

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
}

impl EngineConfig {
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
        }
    }

    /// How long a runner loading `weights_bytes` of weights may take to say `ready`.
    pub fn load_timeout_for(&self, weights_bytes: u64) -> Duration {
        let gib = weights_bytes as f64 / (1u64 << 30) as f64;
        self.load_timeout + self.load_timeout_per_gib.mul_f64(gib)
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
}

impl LoadSpec {
    pub fn key(&self) -> RunnerKey {
        RunnerKey { weights: self.model_path.clone(), adapter: self.adapter.clone(), projector: self.projector.clone(), embedding: self.embedding, num_ctx: self.num_ctx, num_gpu: self.num_gpu }
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
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelSize {
    pub weights_bytes: u64,
    pub kv_bytes_per_token: u64,
    /// Transformer blocks (0 when unknown: then no partial offload).
    pub layers: u32,
}

/// How many layers a runner gets on GPUs, and why, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GpuPlan {
    layers: u32,
    why: String,
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

enum Reply {
    Stream(Sender<StreamEvent>),
    Tokens(Sender<Result<u32, EngineError>>),
    Embeddings(Sender<Result<(Vec<Vec<f32>>, u32), EngineError>>),
}

/// A loaded model: its runner process and the requests in flight on it.
pub struct LoadedModel {
    /// What it was started with (`spec.name` is the name of the request that started it).
    pub spec: LoadSpec,
    pub key: RunnerKey,
    pub info: RunnerInfo,
    pub loaded_at: SystemTime,
    stdin: Mutex<Option<ChildStdin>>,
    /// The runner's events after its handshake, until the router thread takes them.
    events: Mutex<Option<Lines<BufReader<ChildStdout>>>>,
    child: Mutex<Child>,
    pending: Mutex<HashMap<u64, Reply>>,
    /// Requests holding it ([`RunnerGuard`]s): from `load` until their reply ends. Taken only
    /// under the supervisor's table lock, where the reaper and eviction read it.
    in_flight: AtomicUsize,
    expires: Mutex<Instant>,
    keep_alive: Mutex<Duration>,
    exited: Mutex<Option<String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl LoadedModel {
    fn send(&self, req: &Request) -> Result<(), EngineError> {
        let mut stdin = self.stdin.lock().unwrap();
        let Some(pipe) = stdin.as_mut() else { return Err(self.exit_error()) };
        pipe.write_all(encode(req).as_bytes()).and_then(|_| pipe.flush()).map_err(|_| self.exit_error())
    }

    fn exit_error(&self) -> EngineError {
        EngineError::RunnerExited(self.exited.lock().unwrap().clone().unwrap_or_else(|| "the pipe to it is closed".into()))
    }

    pub fn is_alive(&self) -> bool {
        self.exited.lock().unwrap().is_none()
    }

    pub fn expires_at(&self) -> Instant {
        *self.expires.lock().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Where the model runs, in Ollama's PROCESSOR words plus the devices and layers, e.g.
    /// "100% GPU (Vulkan0, 19/19 layers)" or "100% CPU (no usable GPU: …)".
    pub fn runs_on(&self) -> String {
        let p = &self.info.placement;
        let (size, vram) = p.ps_sizes();
        let processor = super::protocol::processor(size, vram);
        if p.devices.is_empty() {
            return format!("{processor} ({})", self.info.placement_reason);
        }
        let devices: Vec<&str> = p.devices.iter().map(|d| d.name.as_str()).collect();
        format!("{processor} ({}, {}/{} layers)", devices.join(", "), p.gpu_layers, p.layers)
    }

    fn touch(&self, keep_alive: Option<Duration>) {
        let mut ka = self.keep_alive.lock().unwrap();
        if let Some(k) = keep_alive {
            *ka = k;
        }
        *self.expires.lock().unwrap() = Instant::now().checked_add(*ka).unwrap_or_else(far_future);
    }

    /// Ends the runner: closing stdin asks it to exit; a kill makes sure.
    fn shut_down(&self) {
        self.stdin.lock().unwrap().take();
        let mut child = self.child.lock().unwrap();
        for _ in 0..20 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

pub struct Supervisor {
    cfg: EngineConfig,
    table: Mutex<Table>,
    /// Set once a runner died of an illegal instruction in the CPU's AMX kernels: every later
    /// runner leaves them out.
    avoid_amx: AtomicBool,
    next_id: AtomicU64,
    runner_starts: AtomicU64,
}

/// The runners up and the loads under way. Never held while waiting on a runner.
#[derive(Default)]
struct Table {
    models: Vec<Arc<LoadedModel>>,
    loading: HashMap<RunnerKey, Arc<PendingLoad>>,
}

/// A load in progress: the requests waiting for it, and its outcome once there.
#[derive(Default)]
struct PendingLoad {
    /// Requests waiting besides the loader (changed under the table lock only).
    waiters: AtomicUsize,
    outcome: Mutex<Option<Result<Arc<LoadedModel>, EngineError>>>,
    done: Condvar,
}

impl PendingLoad {
    fn finish(&self, outcome: Result<Arc<LoadedModel>, EngineError>) {
        *self.outcome.lock().unwrap() = Some(outcome);
        self.done.notify_all();
    }

    fn wait(&self) -> Result<Arc<LoadedModel>, EngineError> {
        let mut outcome = self.outcome.lock().unwrap();
        loop {
            if let Some(o) = outcome.as_ref() {
                return o.clone();
            }
            outcome = self.done.wait(outcome).unwrap();
        }
    }
}

/// The loader's claim on a key: whatever happens to the loader (an error, a panic), the key is
/// freed and its waiters get an outcome.
struct LoadClaim<'a> {
    sup: &'a Supervisor,
    key: RunnerKey,
    name: String,
    pending: Arc<PendingLoad>,
    settled: bool,
}

impl LoadClaim<'_> {
    /// Publishes the outcome: a started runner joins the table already held by the loader and
    /// by every waiter, so nothing can stop it before they get it.
    fn settle(mut self, started: Result<LoadedModel, EngineError>) -> Result<Arc<LoadedModel>, EngineError> {
        self.settled = true;
        let mut table = self.sup.table.lock().unwrap();
        table.loading.remove(&self.key);
        let holders = 1 + self.pending.waiters.load(Ordering::SeqCst);
        let outcome = started.map(|model| {
            let model = Arc::new(model);
            model.in_flight.store(holders, Ordering::SeqCst);
            start_router(&model);
            table.models.push(model.clone());
            model
        });
        drop(table);
        self.pending.finish(outcome.clone());
        outcome
    }
}

impl Drop for LoadClaim<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.sup.table.lock().unwrap_or_else(|e| e.into_inner()).loading.remove(&self.key);
            self.pending.finish(Err(EngineError::Load { model: self.name.clone(), message: "the load was abandoned (an internal error); try again".into() }));
        }
    }
}

/// A request's hold on a runner, from `load` until its reply ends (dropping it lets the
/// keep-alive clock run again). Derefs to the runner.
pub struct RunnerGuard {
    model: Arc<LoadedModel>,
    keep_alive: Option<Duration>,
    released: bool,
}

impl RunnerGuard {
    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    /// Ends the hold: the keep-alive starts from now (the request's, else the runner's).
    fn release(&mut self) {
        if !self.released {
            self.released = true;
            // Expiry first, so the reaper never sees an unheld runner with a stale deadline.
            self.model.touch(self.keep_alive);
            self.model.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Deref for RunnerGuard {
    type Target = Arc<LoadedModel>;
    fn deref(&self) -> &Arc<LoadedModel> {
        &self.model
    }
}

impl Drop for RunnerGuard {
    fn drop(&mut self) {
        self.release();
    }
}

impl Supervisor {
    pub fn new(cfg: EngineConfig) -> Arc<Self> {
        let avoid_amx = AtomicBool::new(cfg.avoid_amx);
        let sup = Arc::new(Supervisor {
            cfg,
            table: Mutex::new(Table::default()),
            avoid_amx,
            next_id: AtomicU64::new(1),
            runner_starts: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&sup);
        thread::Builder::new().name("keep-alive".into()).spawn(move || reap_expired(weak)).expect("spawn keep-alive thread");
        sup
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The models loaded now (for `ps`).
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        self.table.lock().unwrap().models.iter().filter(|m| m.is_alive()).cloned().collect()
    }

    /// The loads under way, each with the requests waiting for it (its loader included).
    pub fn loading(&self) -> Vec<(RunnerKey, usize)> {
        self.table.lock().unwrap().loading.iter().map(|(k, p)| (k.clone(), 1 + p.waiters.load(Ordering::SeqCst))).collect()
    }

    /// Runner processes this supervisor has started (retries of one load count each, except the
    /// restart without the CPU's AMX kernels after they crashed).
    pub fn runner_starts(&self) -> u64 {
        self.runner_starts.load(Ordering::SeqCst)
    }

    /// Returns the runner for `spec` held for the caller, starting one if none has its key (a
    /// different context size means a different runner, as in Ollama). `keep_alive` is how long
    /// the runner stays after this request (`None`: what it had).
    ///
    /// Never waits for another key's load; waits for a load of the same key (the wait counts
    /// toward the busy limit, like a queued request).
    pub fn load(&self, spec: &LoadSpec, keep_alive: Option<Duration>) -> Result<RunnerGuard, EngineError> {
        let key = spec.key();
        let busy_limit = |parallel: u32| parallel.max(1) as usize + self.cfg.max_queue;
        let (claim, to_stop) = {
            let mut table = self.table.lock().unwrap();
            table.models.retain(|m| m.is_alive());
            if let Some(m) = table.models.iter().find(|m| m.key == key) {
                let holders = m.in_flight.load(Ordering::SeqCst);
                if holders >= busy_limit(m.info.n_parallel) {
                    return Err(EngineError::Busy { model: spec.name.clone(), waiting: holders });
                }
                m.in_flight.fetch_add(1, Ordering::SeqCst);
                return Ok(RunnerGuard { model: m.clone(), keep_alive, released: false });
            }
            if let Some(pending) = table.loading.get(&key).cloned() {
                let waiting = 1 + pending.waiters.load(Ordering::SeqCst);
                if waiting >= busy_limit(spec.parallel) {
                    return Err(EngineError::Busy { model: spec.name.clone(), waiting });
                }
                pending.waiters.fetch_add(1, Ordering::SeqCst);
                drop(table);
                // The loader counted this request as a holder when it published the runner.
                return pending.wait().map(|model| RunnerGuard { model, keep_alive, released: false });
            }
            let max_loaded = self.cfg.max_loaded.max(1);
            if table.loading.len() >= max_loaded {
                return Err(EngineError::TooManyLoads { model: spec.name.clone(), loading: table.loading.len() });
            }
            let pending = Arc::new(PendingLoad::default());
            table.loading.insert(key.clone(), pending.clone());
            let claim = LoadClaim { sup: self, key: key.clone(), name: spec.name.clone(), pending, settled: false };
            // Make room: the same weights with other settings, then the least recently used,
            // counting loads under way; only runners nobody holds.
            let idle = |m: &Arc<LoadedModel>| m.in_flight.load(Ordering::SeqCst) == 0;
            let mut out: Vec<_> = table.models.iter().filter(|m| m.key.weights == key.weights && m.key.embedding == key.embedding && idle(m)).cloned().collect();
            table.models.retain(|m| !out.iter().any(|o| Arc::ptr_eq(o, m)));
            while table.models.len() + table.loading.len() > max_loaded {
                let lru = table.models.iter().enumerate().filter(|(_, m)| idle(m)).min_by_key(|(_, m)| m.expires_at()).map(|(i, _)| i);
                match lru {
                    Some(i) => out.push(table.models.remove(i)),
                    None => break,
                }
            }
            (claim, out)
        };
        for m in to_stop {
            m.shut_down();
        }
        let started = self.start(spec);
        let model = claim.settle(started)?;
        Ok(RunnerGuard { model, keep_alive, released: false })
    }

    /// Starts a runner with the planned GPU layers. A load that fails with layers on a GPU (out
    /// of VRAM, a driver error) is retried with half of them, then on the CPU, and the reason is
    /// kept with the runner: never a silent CPU fallback. A runner killed by an illegal
    /// instruction in the CPU's AMX kernels (its warm-up decode runs them) is retried without them.
    fn start(&self, spec: &LoadSpec) -> Result<LoadedModel, EngineError> {
        let plan = self.plan_gpu(spec);
        let (mut layers, mut reason) = (plan.layers, plan.why);
        let mut halved = false;
        loop {
            let avoid_amx = self.avoid_amx.load(Ordering::SeqCst);
            match self.spawn(spec, layers, avoid_amx) {
                Ok(mut model) => {
                    if avoid_amx {
                        reason.push_str("; the CPU kernels using Intel AMX crash on this machine (illegal instruction), so the next best ones run");
                    }
                    model.info.placement_reason = reason;
                    return Ok(model);
                }
                Err(EngineError::Load { message, .. }) if !avoid_amx && message.contains("SIGILL") => {
                    // The same runner again without AMX, not a second one: it does not count.
                    self.runner_starts.fetch_sub(1, Ordering::SeqCst);
                    self.avoid_amx.store(true, Ordering::SeqCst);
                }
                Err(EngineError::Load { message, .. }) if layers > 0 => {
                    let next = if halved || layers < 2 { 0 } else { layers / 2 };
                    halved = true;
                    let then = if next > 0 { format!("retried with {next} layers") } else { "it runs on the CPU".to_string() };
                    reason = format!("{reason}; loading {layers} layers on the GPU failed ({message}), so {then}");
                    layers = next;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// All layers when the model fits in free VRAM, the most that fit otherwise, none without a
    /// usable GPU; `AIRLOCK_GPU=off` and a request's `num_gpu` override the estimate.
    fn plan_gpu(&self, spec: &LoadSpec) -> GpuPlan {
        if hardware::gpu_disabled() {
            return GpuPlan { layers: 0, why: format!("GPU use is off ({}=off)", hardware::GPU_ENV) };
        }
        if let Some(n) = spec.num_gpu {
            // More than the model has means all of them (the blocks and the output layer).
            let layers = if spec.size.layers > 0 { n.min(spec.size.layers + 1) } else { n };
            return GpuPlan { layers, why: format!("num_gpu {n} was requested") };
        }
        let hw = hardware::probe_with(&self.cfg.runner_exe);
        if hw.gpus.is_empty() {
            return GpuPlan { layers: 0, why: hw.no_gpu_reason.unwrap_or_else(|| "no usable GPU".into()) };
        }
        let size = spec.size;
        let fit = hardware::estimate_fit(&hw, size.weights_bytes, size.kv_bytes_per_token, size.layers, spec.num_ctx, spec.parallel.max(1));
        let layers = match fit.verdict {
            // The repeating layers and the output layer.
            FitVerdict::FullGpu => size.layers.max(1) + 1,
            FitVerdict::PartialOffload { layers, .. } => layers,
            FitVerdict::CpuOnly | FitVerdict::DoesNotFit => 0,
        };
        GpuPlan { layers, why: fit.explanation }
    }

    fn spawn(&self, spec: &LoadSpec, gpu_layers: u32, avoid_amx: bool) -> Result<LoadedModel, EngineError> {
        let mut cmd = Command::new(&self.cfg.runner_exe);
        cmd.arg("runner").arg("--model").arg(&spec.model_path).arg("--ctx").arg(spec.num_ctx.to_string()).arg("--parallel").arg(spec.parallel.max(1).to_string());
        cmd.arg("--gpu-layers").arg(gpu_layers.to_string());
        if let Some(adapter) = &spec.adapter {
            cmd.arg("--lora").arg(adapter);
        }
        if let (Some(projector), false) = (&spec.projector, spec.embedding) {
            cmd.arg("--projector").arg(projector);
        }
        if spec.embedding {
            cmd.arg("--embedding");
        }
        if avoid_amx {
            cmd.arg("--avoid-amx");
        }
        if let Some(t) = self.cfg.threads {
            cmd.arg("--threads").arg(t.to_string());
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| EngineError::Spawn { exe: self.cfg.runner_exe.display().to_string(), message: e.to_string() })?;
        self.runner_starts.fetch_add(1, Ordering::SeqCst);
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = tail.lock().unwrap();
                if t.len() == STDERR_LINES_KEPT {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });
        // The handshake is read on its own thread so that a runner that never answers can be
        // given up on.
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("runner-handshake".into())
            .spawn(move || {
                let mut lines = stdout.lines();
                let said = read_handshake(&mut lines);
                let _ = tx.send((said, lines));
            })
            .map_err(|e| EngineError::Spawn { exe: self.cfg.runner_exe.display().to_string(), message: e.to_string() })?;
        let load_error = |message: String| EngineError::Load { model: spec.name.clone(), message };
        let timeout = self.cfg.load_timeout_for(spec.size.weights_bytes);
        let (info, lines) = match rx.recv_timeout(timeout) {
            Ok((Handshake::Ready(info), lines)) => (info, lines),
            Ok((Handshake::Failed(message), _)) => {
                let _ = child.wait();
                return Err(load_error(message));
            }
            Ok((Handshake::Ended, _)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                thread::sleep(Duration::from_millis(50)); // let the stderr reader catch the last words
                return Err(load_error(describe_exit(&status, &stderr_tail)));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(EngineError::LoadTimeout { model: spec.name.clone(), secs: timeout.as_secs() });
            }
        };
        let model = LoadedModel {
            spec: spec.clone(),
            key: spec.key(),
            info,
            loaded_at: SystemTime::now(),
            stdin: Mutex::new(stdin),
            events: Mutex::new(Some(lines)),
            child: Mutex::new(child),
            pending: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            expires: Mutex::new(Instant::now().checked_add(self.cfg.default_keep_alive).unwrap_or_else(far_future)),
            keep_alive: Mutex::new(self.cfg.default_keep_alive),
            exited: Mutex::new(None),
            stderr_tail,
        };
        Ok(model)
    }

    /// Starts generating on the held runner; the generation keeps the hold until it ends.
    /// Dropping the returned [`Generation`] before it is done cancels it (a client that went
    /// away frees the runner within one token).
    pub fn generate(self: &Arc<Self>, runner: RunnerGuard, prompt: String, options: SamplingOptions, grammar: Option<String>) -> Result<Generation, EngineError> {
        self.generate_with_images(runner, prompt, options, grammar, Vec::new())
    }

    /// [`generate`](Self::generate) with images (base64) at the prompt's image markers.
    pub fn generate_with_images(self: &Arc<Self>, runner: RunnerGuard, prompt: String, options: SamplingOptions, grammar: Option<String>, images: Vec<String>) -> Result<Generation, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        runner.pending.lock().unwrap().insert(id, Reply::Stream(tx));
        let request = Request::Generate { id, prompt, options, grammar, images };
        if let Err(e) = runner.send(&request) {
            runner.pending.lock().unwrap().remove(&id);
            return Err(e);
        }
        Ok(Generation { id, runner, rx, finished: false })
    }

    /// How many tokens `text` takes as a prompt for `model`.
    pub fn count_tokens(&self, model: &LoadedModel, text: &str) -> Result<u32, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        model.pending.lock().unwrap().insert(id, Reply::Tokens(tx));
        if let Err(e) = model.send(&Request::Tokenize { id, text: text.to_string() }) {
            model.pending.lock().unwrap().remove(&id);
            return Err(e);
        }
        let count = rx.recv().unwrap_or_else(|_| Err(model.exit_error()));
        model.pending.lock().unwrap().remove(&id);
        count
    }

    /// Embeds `inputs` on the held embedding runner: pooled vectors in input order and the
    /// tokens they took. The guard keeps the runner from keep-alive and eviction meanwhile.
    pub fn embed(&self, runner: &RunnerGuard, inputs: Vec<EmbedInput>, truncate: bool) -> Result<(Vec<Vec<f32>>, u32), EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        runner.pending.lock().unwrap().insert(id, Reply::Embeddings(tx));
        let result = runner.send(&Request::Embed { id, inputs, truncate }).and_then(|_| rx.recv().unwrap_or_else(|_| Err(runner.exit_error())));
        runner.pending.lock().unwrap().remove(&id);
        result
    }

    /// Unloads the runners of the weights at `weights` (every name that shares them): those
    /// nobody holds stop now, the others as soon as their last request ends. Returns whether
    /// one was loaded.
    pub fn unload(&self, weights: &Path) -> bool {
        let (stopped, found) = {
            let mut table = self.table.lock().unwrap();
            let mut found = false;
            for m in table.models.iter().filter(|m| m.key.weights == weights) {
                found = true;
                *m.keep_alive.lock().unwrap() = Duration::ZERO;
                *m.expires.lock().unwrap() = Instant::now();
            }
            let (gone, keep): (Vec<_>, Vec<_>) = table.models.drain(..).partition(|m| m.key.weights == weights && m.in_flight.load(Ordering::SeqCst) == 0);
            table.models = keep;
            (gone, found)
        };
        for m in &stopped {
            m.shut_down();
        }
        found
    }

    pub fn unload_all(&self) {
        let all: Vec<_> = self.table.lock().unwrap_or_else(|e| e.into_inner()).models.drain(..).collect();
        for m in all {
            m.shut_down();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.unload_all();
    }
}

/// What a runner said before it started serving.
enum Handshake {
    Ready(RunnerInfo),
    /// It could not load the model and said why.
    Failed(String),
    /// It exited (or closed its stdout) without a word.
    Ended,
}

fn read_handshake(lines: &mut Lines<BufReader<ChildStdout>>) -> Handshake {
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<Event>(&line) {
            Ok(Event::Ready { n_ctx, n_ctx_train, n_parallel, threads, bos_token, eos_token, load_ms, placement }) => {
                return Handshake::Ready(RunnerInfo { n_ctx, n_ctx_train, n_parallel, threads, bos_token, eos_token, load_ms, placement, placement_reason: String::new() })
            }
            Ok(Event::Error { message, .. }) => return Handshake::Failed(message),
            _ => continue,
        }
    }
    Handshake::Ended
}

/// A deadline that never comes (a keep-alive of "forever").
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

/// A generation in progress. It holds its runner until it ends.
pub struct Generation {
    id: u64,
    runner: RunnerGuard,
    rx: Receiver<StreamEvent>,
    finished: bool,
}

impl Generation {
    /// The next event; `None` after `Done` or `Error`.
    pub fn next_event(&mut self) -> Option<StreamEvent> {
        if self.finished {
            return None;
        }
        let ev = self.rx.recv().unwrap_or_else(|_| StreamEvent::Error(self.runner.model.exit_error()));
        if !matches!(ev, StreamEvent::Piece(_)) {
            self.finish();
        }
        Some(ev)
    }

    /// Like [`Self::next_event`] but gives up after `timeout` (returns `None` then too).
    pub fn next_event_timeout(&mut self, timeout: Duration) -> Option<StreamEvent> {
        if self.finished {
            return None;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(ev) => {
                if !matches!(ev, StreamEvent::Piece(_)) {
                    self.finish();
                }
                Some(ev)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.finish();
                Some(StreamEvent::Error(self.runner.model.exit_error()))
            }
        }
    }

    /// Asks the runner to stop; the stream then ends with `Done` (reason "cancel").
    pub fn cancel(&self) {
        let _ = self.runner.model.send(&Request::Cancel { id: self.id });
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.runner.model
    }

    fn finish(&mut self) {
        self.finished = true;
        self.runner.model.pending.lock().unwrap().remove(&self.id);
        self.runner.release();
    }
}

impl Iterator for Generation {
    type Item = StreamEvent;
    fn next(&mut self) -> Option<StreamEvent> {
        self.next_event()
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel();
            self.finish();
        }
    }
}

/// Starts the thread that reads a runner's events and routes them to their requests.
fn start_router(model: &Arc<LoadedModel>) {
    let Some(lines) = model.events.lock().unwrap().take() else { return };
    let weak = Arc::downgrade(model);
    thread::Builder::new().name("runner-events".into()).spawn(move || route_events(lines, weak)).expect("spawn event router");
}

fn route_events(lines: impl Iterator<Item = io::Result<String>>, model: Weak<LoadedModel>) {
    for line in lines {
        let Ok(line) = line else { break };
        let Ok(ev) = serde_json::from_str::<Event>(&line) else { continue };
        let Some(m) = model.upgrade() else { return };
        let pending = m.pending.lock().unwrap();
        match ev {
            Event::Piece { id, text } => {
                if let Some(Reply::Stream(tx)) = pending.get(&id) {
                    let _ = tx.send(StreamEvent::Piece(text));
                }
            }
            Event::Done { id, stats } => {
                if let Some(Reply::Stream(tx)) = pending.get(&id) {
                    let _ = tx.send(StreamEvent::Done(stats));
                }
            }
            Event::Tokens { id, count } => {
                if let Some(Reply::Tokens(tx)) = pending.get(&id) {
                    let _ = tx.send(Ok(count));
                }
            }
            Event::Embeddings { id, embeddings, prompt_tokens } => {
                if let Some(Reply::Embeddings(tx)) = pending.get(&id) {
                    let _ = tx.send(Ok((embeddings, prompt_tokens)));
                }
            }
            Event::Error { id: Some(id), code, message } => {
                let err = EngineError::Request { code, message };
                match pending.get(&id) {
                    Some(Reply::Stream(tx)) => drop(tx.send(StreamEvent::Error(err))),
                    Some(Reply::Tokens(tx)) => drop(tx.send(Err(err))),
                    Some(Reply::Embeddings(tx)) => drop(tx.send(Err(err))),
                    None => {}
                }
            }
            Event::Error { id: None, .. } | Event::Ready { .. } => {}
        }
    }
    // The runner is gone: say why to everyone waiting on it.
    let Some(m) = model.upgrade() else { return };
    let status = m.child.lock().unwrap().wait().map(|s| s.to_string()).unwrap_or_default();
    thread::sleep(Duration::from_millis(50)); // let the stderr reader catch the last words
    let why = describe_exit(&status, &m.stderr_tail);
    *m.exited.lock().unwrap() = Some(why.clone());
    for (_, reply) in m.pending.lock().unwrap().drain() {
        match reply {
            Reply::Stream(tx) => drop(tx.send(StreamEvent::Error(EngineError::RunnerExited(why.clone())))),
            Reply::Tokens(tx) => drop(tx.send(Err(EngineError::RunnerExited(why.clone())))),
            Reply::Embeddings(tx) => drop(tx.send(Err(EngineError::RunnerExited(why.clone())))),
        }
    }
}

/// "signal: 6 (SIGABRT) (core dumped): GGML_ASSERT(…) failed" — the status and the last
/// meaningful line llama.cpp wrote.
fn describe_exit(status: &str, tail: &Mutex<VecDeque<String>>) -> String {
    let tail = tail.lock().unwrap();
    let last = tail.iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().chars().take(300).collect::<String>());
    match last {
        Some(l) => format!("{status}: {l}"),
        None => status.to_string(),
    }
}

/// Unloads models whose keep-alive ran out; stops when the supervisor is gone.
fn reap_expired(sup: Weak<Supervisor>) {
    loop {
        thread::sleep(Duration::from_millis(200));
        let Some(sup) = sup.upgrade() else { return };
        let now = Instant::now();
        let expired: Vec<_> = {
            let mut table = sup.table.lock().unwrap();
            // A runner a request holds is never stopped here, however late its deadline.
            let (gone, keep): (Vec<_>, Vec<_>) = table
                .models
                .drain(..)
                .partition(|m| !m.is_alive() || (m.in_flight.load(Ordering::SeqCst) == 0 && m.expires_at() <= now));
            table.models = keep;
            gone
        };
        for m in expired {
            m.shut_down();
        }
    }
}
