//! One runner process: [`LoadedModel`] (its pipes, the requests in flight on it, its keep-alive
//! clock), starting `airlock runner` and reading its handshake within the load timeout, keeping the
//! tail of its stderr, and the router thread that hands its events to the requests waiting for them
//! and, when it exits, fails them all with the exit status and llama.cpp's last words. It starts
//! what it is told with the GPU layers it is given: it must never decide placement, keep-alive or
//! eviction, and never touches the model table.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Lines, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::{EngineError, GpuPlan, LoadSpec, RunnerInfo, RunnerKey, StreamEvent, Supervisor};
use crate::engine::protocol::{encode, Event, Request, STOP_GRACE};
use crate::engine::untrusted::SpecialTokens;

const STDERR_LINES_KEPT: usize = 30;

pub(super) enum Reply {
    Stream(Sender<StreamEvent>),
    Tokens(Sender<Result<u32, EngineError>>),
    Embeddings(Sender<Result<(Vec<Vec<f32>>, u32), EngineError>>),
}

/// The runner processes alive per key, counted from their start to their reaping: a runner
/// started while another of its key still runs is an overlap, which must never happen.
#[derive(Default)]
pub(super) struct LiveRunners {
    per_key: Mutex<HashMap<RunnerKey, usize>>,
    pub(super) overlaps: AtomicU64,
}

impl LiveRunners {
    fn started(self: &Arc<Self>, key: RunnerKey) -> Alive {
        let mut per_key = self.per_key.lock().unwrap();
        let n = per_key.entry(key.clone()).or_default();
        if *n > 0 {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        *n += 1;
        Alive { key, live: self.clone(), reaped: AtomicBool::new(false) }
    }
}

/// One runner process counted in [`LiveRunners`] until it is reaped (or, at the latest, until its
/// handle goes).
struct Alive {
    key: RunnerKey,
    live: Arc<LiveRunners>,
    reaped: AtomicBool,
}

impl Alive {
    fn reaped(&self) {
        if !self.reaped.swap(true, Ordering::SeqCst) {
            let mut per_key = self.live.per_key.lock().unwrap();
            if let Some(n) = per_key.get_mut(&self.key) {
                *n -= 1;
                if *n == 0 {
                    per_key.remove(&self.key);
                }
            }
        }
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.reaped();
    }
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
    pub(super) pending: Mutex<HashMap<u64, Reply>>,
    /// Requests holding it ([`RunnerGuard`](super::RunnerGuard)s): from `load` until their reply
    /// ends. Taken only under the supervisor's table lock, where the reaper and eviction read it.
    pub(super) in_flight: AtomicUsize,
    pub(super) expires: Mutex<Instant>,
    pub(super) keep_alive: Mutex<Duration>,
    exited: Mutex<Option<String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// The RPC workers whose devices it uses.
    rpc_workers: Vec<String>,
    /// The supervisor's count of runners that exited on their own.
    crashes: Arc<AtomicU64>,
    alive: Alive,
}

impl LoadedModel {
    pub(super) fn send(&self, req: &Request) -> Result<(), EngineError> {
        let mut stdin = self.stdin.lock().unwrap();
        let Some(pipe) = stdin.as_mut() else { return Err(self.exit_error()) };
        pipe.write_all(encode(req).as_bytes()).and_then(|_| pipe.flush()).map_err(|_| self.exit_error())
    }

    pub(super) fn exit_error(&self) -> EngineError {
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
        let processor = crate::engine::protocol::processor(size, vram);
        if p.devices.is_empty() {
            return format!("{processor} ({})", self.info.placement_reason);
        }
        let devices: Vec<&str> = p.devices.iter().map(|d| d.name.as_str()).collect();
        format!("{processor} ({}, {}/{} layers)", devices.join(", "), p.gpu_layers, p.layers)
    }

    pub(super) fn touch(&self, keep_alive: Option<Duration>) {
        let mut ka = self.keep_alive.lock().unwrap();
        if let Some(k) = keep_alive {
            *ka = k;
        }
        *self.expires.lock().unwrap() = Instant::now().checked_add(*ka).unwrap_or_else(far_future);
    }

    /// Ends the runner: closing stdin asks it to exit (it may first save its prompt-cache
    /// prefixes, within `STOP_GRACE`); a kill makes sure.
    pub(super) fn shut_down(&self) {
        self.stdin.lock().unwrap().take();
        let mut child = self.child.lock().unwrap();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                self.alive.reaped();
                return;
            }
            thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        self.alive.reaped();
    }
}

impl Supervisor {
    pub(super) fn spawn(&self, spec: &LoadSpec, plan: &GpuPlan, avoid_amx: bool) -> Result<LoadedModel, EngineError> {
        let mut cmd = Command::new(&self.cfg.runner_exe);
        cmd.arg("runner").arg("--model").arg(&spec.model_path).arg("--ctx").arg(spec.num_ctx.to_string()).arg("--parallel").arg(spec.parallel.max(1).to_string());
        cmd.arg("--gpu-layers").arg(plan.layers.to_string());
        cmd.arg("--flash-attention").arg(spec.flash_attention.as_str()).arg("--kv-cache-type").arg(spec.kv_cache.as_str());
        if !plan.rpc.is_empty() {
            cmd.arg("--rpc").arg(plan.rpc.join(","));
        }
        if plan.hide_local_gpus {
            cmd.arg("--hide-local-gpus");
        }
        if let Some(adapter) = &spec.adapter {
            cmd.arg("--lora").arg(adapter);
        }
        if let (Some(draft), false) = (&spec.draft, spec.embedding) {
            cmd.arg("--draft").arg(draft);
        }
        if let (Some(dir), false) = (&self.cfg.prompt_cache, spec.embedding) {
            cmd.arg("--prompt-cache").arg(dir);
        }
        if !spec.embedding {
            cmd.arg("--checkpoints").arg(self.cfg.checkpoints.to_string());
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
        #[cfg(any(test, feature = "test-hooks"))]
        if let Some(fault) = self.cfg.runner_faults.lock().unwrap().pop_front() {
            cmd.arg("--test-fault").arg(fault);
        }
        // The runner parses untrusted model files: it gets no credential or key.
        crate::backends::restrict_child_environment(&mut cmd);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| EngineError::Spawn { exe: self.cfg.runner_exe.display().to_string(), message: e.to_string() })?;
        self.runner_starts.fetch_add(1, Ordering::SeqCst);
        // Counted as alive until reaped: every error below waits for the child before returning.
        let alive = self.live_runners.started(spec.key());
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
                return Err(load_error(describe_exit(&status, &stderr_tail, &plan.rpc)));
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
            rpc_workers: plan.rpc.clone(),
            crashes: self.runner_crashes.clone(),
            alive,
        };
        Ok(model)
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
            Ok(Event::Ready { n_ctx, n_ctx_train, n_parallel, threads, bos_token, eos_token, special_tokens, load_ms, placement }) => {
                let special_tokens = SpecialTokens::new(&special_tokens);
                return Handshake::Ready(RunnerInfo { n_ctx, n_ctx_train, n_parallel, threads, bos_token, eos_token, special_tokens, load_ms, placement, placement_reason: String::new() });
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

/// Starts the thread that reads a runner's events and routes them to their requests.
pub(super) fn start_router(model: &Arc<LoadedModel>) {
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
            Event::Tokens { id, count, .. } => {
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
    m.alive.reaped();
    thread::sleep(Duration::from_millis(50)); // let the stderr reader catch the last words
    let why = describe_exit(&status, &m.stderr_tail, &m.rpc_workers);
    *m.exited.lock().unwrap() = Some(why.clone());
    // `shut_down` takes stdin first: a runner whose stdin is still open was not asked to go.
    if m.stdin.lock().unwrap().is_some() {
        m.crashes.fetch_add(1, Ordering::SeqCst);
    }
    for (_, reply) in m.pending.lock().unwrap().drain() {
        match reply {
            Reply::Stream(tx) => drop(tx.send(StreamEvent::Error(EngineError::RunnerExited(why.clone())))),
            Reply::Tokens(tx) => drop(tx.send(Err(EngineError::RunnerExited(why.clone())))),
            Reply::Embeddings(tx) => drop(tx.send(Err(EngineError::RunnerExited(why.clone())))),
        }
    }
}

/// "signal: 6 (SIGABRT) (core dumped): GGML_ASSERT(…) failed" — the status and the last
/// meaningful line llama.cpp wrote; first, when ggml's RPC client gave up on a worker, that.
fn describe_exit(status: &str, tail: &Mutex<VecDeque<String>>, rpc: &[String]) -> String {
    let tail = tail.lock().unwrap();
    // ggml-rpc aborts with these when a worker goes away or cannot be reached.
    const RPC_FAILURES: [&str; 3] = ["Remote RPC server crashed", "Failed to connect to", "RPC handshake failed"];
    if let Some(line) = tail.iter().find(|l| RPC_FAILURES.iter().any(|f| l.contains(f))) {
        let said = line.rsplit(": ").next().unwrap_or(line).trim();
        return format!(
            "an RPC worker ({}) stopped answering or crashed ({said}); the next request loads the model again on the workers that answer",
            rpc.join(", ")
        );
    }
    let last = tail.iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().chars().take(300).collect::<String>());
    match last {
        Some(l) => format!("{status}: {l}"),
        None => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_started_while_another_of_its_key_is_alive_is_an_overlap() {
        let key = |ctx| RunnerKey { weights: "/store/blobs/sha256-a".into(), adapter: None, projector: None, embedding: false, num_ctx: ctx, num_gpu: None, flash_attention: Default::default(), kv_cache: Default::default(), draft: None };
        let live = Arc::new(LiveRunners::default());
        let first = live.started(key(4096));
        let other_context = live.started(key(2048));
        assert_eq!(live.overlaps.load(Ordering::SeqCst), 0, "another key is no overlap");
        first.reaped();
        drop(first);
        let _after = live.started(key(4096));
        assert_eq!(live.overlaps.load(Ordering::SeqCst), 0, "the first was reaped (once, though dropped too)");
        let _beside = live.started(key(4096));
        assert_eq!(live.overlaps.load(Ordering::SeqCst), 1);
        drop(other_context);
    }
}
