//! The supervisor: which models are loaded, each in its own runner child process (`airlock
//! runner`, the same executable), so that a llama.cpp abort costs that model only — never the app
//! or the server. It routes requests to runners, streams their events back, fails in-flight
//! requests with "model process exited: …" when a runner dies (the next request loads it again),
//! and unloads models when their keep-alive runs out.
//!
//! It never links llama.cpp itself and never blocks on a runner while holding its model table.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Lines, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::protocol::{encode, EmbedInput, Event, GenerationStats, Placement, Request, SamplingOptions};
use crate::hardware::{self, FitVerdict};

/// Ollama's default keep-alive.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5 * 60);
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
    /// Requests allowed to wait per model beyond its parallel slots; more are refused as busy.
    pub max_queue: usize,
}

impl EngineConfig {
    pub fn from_env() -> Self {
        EngineConfig {
            runner_exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("airlock")),
            threads: std::env::var("AIRLOCK_THREADS").ok().and_then(|v| v.parse().ok()),
            max_loaded: std::env::var("AIRLOCK_MAX_LOADED_MODELS").ok().and_then(|v| v.parse().ok()).unwrap_or(3),
            default_keep_alive: DEFAULT_KEEP_ALIVE,
            max_queue: std::env::var("AIRLOCK_MAX_QUEUE").ok().and_then(|v| v.parse().ok()).unwrap_or(16),
        }
    }
}

/// What to load: a model's weights and the context to give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadSpec {
    /// The name users know it by (for `ps` and messages).
    pub name: String,
    pub model_path: PathBuf,
    /// Context per sequence.
    pub num_ctx: u32,
    /// Sequences decoded together in one context (continuous batching).
    pub parallel: u32,
    /// Layers on GPUs: Ollama's `num_gpu` when a request sets it; `None` decides from the fit
    /// estimate (free VRAM) when the runner starts.
    pub num_gpu: Option<u32>,
    /// What the fit estimate needs to know about the model.
    pub size: ModelSize,
    /// An embedding runner (`runner --embedding`): a runner of its own, beside the model's text
    /// runner if one is loaded.
    pub embedding: bool,
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
    pub spec: LoadSpec,
    pub info: RunnerInfo,
    pub loaded_at: SystemTime,
    stdin: Mutex<Option<ChildStdin>>,
    /// The runner's events after its handshake, until the router thread takes them.
    events: Mutex<Option<Lines<BufReader<ChildStdout>>>>,
    child: Mutex<Child>,
    pending: Mutex<HashMap<u64, Reply>>,
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
        *self.expires.lock().unwrap() = Instant::now() + *ka;
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
    models: Mutex<Vec<Arc<LoadedModel>>>,
    /// Serialises loads so two requests for one model start one runner.
    loading: Mutex<()>,
    /// Set once a runner died of an illegal instruction in the CPU's AMX kernels: every later
    /// runner leaves them out.
    avoid_amx: AtomicBool,
    next_id: AtomicU64,
}

impl Supervisor {
    pub fn new(cfg: EngineConfig) -> Arc<Self> {
        let sup = Arc::new(Supervisor { cfg, models: Mutex::new(Vec::new()), loading: Mutex::new(()), avoid_amx: AtomicBool::new(false), next_id: AtomicU64::new(1) });
        let weak = Arc::downgrade(&sup);
        thread::Builder::new().name("keep-alive".into()).spawn(move || reap_expired(weak)).expect("spawn keep-alive thread");
        sup
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The models loaded now (for `ps`).
    pub fn loaded(&self) -> Vec<Arc<LoadedModel>> {
        self.models.lock().unwrap().iter().filter(|m| m.is_alive()).cloned().collect()
    }

    /// Returns the loaded runner for `spec`, starting one if needed (a different context size
    /// means a different runner, as in Ollama).
    pub fn load(&self, spec: &LoadSpec) -> Result<Arc<LoadedModel>, EngineError> {
        let _one_at_a_time = self.loading.lock().unwrap();
        {
            let mut models = self.models.lock().unwrap();
            models.retain(|m| m.is_alive());
            if let Some(m) = models.iter().find(|m| m.spec == *spec) {
                return Ok(m.clone());
            }
        }
        // Same model with other settings, or too many models: make room first.
        let to_stop: Vec<Arc<LoadedModel>> = {
            let mut models = self.models.lock().unwrap();
            let mut out: Vec<_> = models.iter().filter(|m| m.spec.model_path == spec.model_path && m.spec.embedding == spec.embedding && m.in_flight.load(Ordering::SeqCst) == 0).cloned().collect();
            models.retain(|m| !out.iter().any(|o| Arc::ptr_eq(o, m)));
            while models.len() >= self.cfg.max_loaded.max(1) {
                let idle = models.iter().enumerate().filter(|(_, m)| m.in_flight.load(Ordering::SeqCst) == 0).min_by_key(|(_, m)| m.expires_at()).map(|(i, _)| i);
                match idle {
                    Some(i) => out.push(models.remove(i)),
                    None => break,
                }
            }
            out
        };
        for m in to_stop {
            m.shut_down();
        }
        let model = Arc::new(self.start(spec)?);
        start_router(&model);
        self.models.lock().unwrap().push(model.clone());
        Ok(model)
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
        let mut lines = stdout.lines();
        let load_error = |message: String| EngineError::Load { model: spec.name.clone(), message };
        let info = loop {
            match lines.next() {
                Some(Ok(line)) => match serde_json::from_str::<Event>(&line) {
                    Ok(Event::Ready { n_ctx, n_ctx_train, n_parallel, threads, bos_token, eos_token, load_ms, placement }) => {
                        break RunnerInfo { n_ctx, n_ctx_train, n_parallel, threads, bos_token, eos_token, load_ms, placement, placement_reason: String::new() }
                    }
                    Ok(Event::Error { message, .. }) => {
                        let _ = child.wait();
                        return Err(load_error(message));
                    }
                    _ => continue,
                },
                _ => {
                    let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    thread::sleep(Duration::from_millis(50)); // let the stderr reader catch the last words
                    return Err(load_error(describe_exit(&status, &stderr_tail)));
                }
            }
        };
        let model = LoadedModel {
            spec: spec.clone(),
            info,
            loaded_at: SystemTime::now(),
            stdin: Mutex::new(stdin),
            events: Mutex::new(Some(lines)),
            child: Mutex::new(child),
            pending: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            expires: Mutex::new(Instant::now() + self.cfg.default_keep_alive),
            keep_alive: Mutex::new(self.cfg.default_keep_alive),
            exited: Mutex::new(None),
            stderr_tail,
        };
        Ok(model)
    }

    /// Starts generating on `model`. Dropping the returned [`Generation`] before it is done
    /// cancels it (a client that went away frees the runner within one token).
    pub fn generate(
        self: &Arc<Self>,
        model: &Arc<LoadedModel>,
        prompt: String,
        options: SamplingOptions,
        grammar: Option<String>,
        keep_alive: Option<Duration>,
    ) -> Result<Generation, EngineError> {
        let waiting = model.in_flight.fetch_add(1, Ordering::SeqCst);
        if waiting >= model.info.n_parallel.max(1) as usize + self.cfg.max_queue {
            model.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::Busy { model: model.spec.name.clone(), waiting });
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        model.pending.lock().unwrap().insert(id, Reply::Stream(tx));
        model.touch(keep_alive);
        if let Err(e) = model.send(&Request::Generate { id, prompt, options, grammar }) {
            model.pending.lock().unwrap().remove(&id);
            model.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
        Ok(Generation { id, model: model.clone(), rx, finished: false, keep_alive })
    }

    /// How many tokens `text` takes as a prompt for `model`.
    pub fn count_tokens(&self, model: &Arc<LoadedModel>, text: &str) -> Result<u32, EngineError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        model.pending.lock().unwrap().insert(id, Reply::Tokens(tx));
        model.send(&Request::Tokenize { id, text: text.to_string() })?;
        rx.recv().unwrap_or_else(|_| Err(model.exit_error()))
    }

    /// Embeds `inputs` on an embedding runner: pooled vectors in input order and the tokens they
    /// took. The request counts as in flight, so keep-alive never unloads the model under it.
    pub fn embed(&self, model: &Arc<LoadedModel>, inputs: Vec<EmbedInput>, truncate: bool, keep_alive: Option<Duration>) -> Result<(Vec<Vec<f32>>, u32), EngineError> {
        let waiting = model.in_flight.fetch_add(1, Ordering::SeqCst);
        if waiting >= 1 + self.cfg.max_queue {
            model.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(EngineError::Busy { model: model.spec.name.clone(), waiting });
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::channel();
        model.pending.lock().unwrap().insert(id, Reply::Embeddings(tx));
        model.touch(keep_alive);
        let result = model.send(&Request::Embed { id, inputs, truncate }).and_then(|_| rx.recv().unwrap_or_else(|_| Err(model.exit_error())));
        model.pending.lock().unwrap().remove(&id);
        model.in_flight.fetch_sub(1, Ordering::SeqCst);
        model.touch(keep_alive);
        result
    }

    /// Unloads every loaded model named `name`; returns whether one was loaded.
    pub fn unload(&self, name: &str) -> bool {
        let stopped: Vec<_> = {
            let mut models = self.models.lock().unwrap();
            let (gone, keep): (Vec<_>, Vec<_>) = models.drain(..).partition(|m| m.spec.name == name);
            *models = keep;
            gone
        };
        for m in &stopped {
            m.shut_down();
        }
        !stopped.is_empty()
    }

    pub fn unload_all(&self) {
        let all: Vec<_> = self.models.lock().unwrap().drain(..).collect();
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

/// A generation in progress.
pub struct Generation {
    id: u64,
    model: Arc<LoadedModel>,
    rx: Receiver<StreamEvent>,
    finished: bool,
    keep_alive: Option<Duration>,
}

impl Generation {
    /// The next event; `None` after `Done` or `Error`.
    pub fn next_event(&mut self) -> Option<StreamEvent> {
        if self.finished {
            return None;
        }
        let ev = self.rx.recv().unwrap_or_else(|_| StreamEvent::Error(self.model.exit_error()));
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
                Some(StreamEvent::Error(self.model.exit_error()))
            }
        }
    }

    /// Asks the runner to stop; the stream then ends with `Done` (reason "cancel").
    pub fn cancel(&self) {
        let _ = self.model.send(&Request::Cancel { id: self.id });
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    fn finish(&mut self) {
        self.finished = true;
        self.model.pending.lock().unwrap().remove(&self.id);
        self.model.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.model.touch(self.keep_alive);
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
            let mut models = sup.models.lock().unwrap();
            let (gone, keep): (Vec<_>, Vec<_>) = models
                .drain(..)
                .partition(|m| !m.is_alive() || (m.in_flight.load(Ordering::SeqCst) == 0 && m.expires_at() <= now));
            *models = keep;
            gone
        };
        for m in expired {
            m.shut_down();
        }
    }
}
