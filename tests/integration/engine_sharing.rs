//! The supervisor under concurrency, on the real test model: one loader per runner key, loads of
//! other models never in the way, a bounded handshake, runners shared by names that share
//! weights, and runners held by their requests from `load` to the end of the reply.
//!
//! A slow or stuck load is made with a gate in front of the real runner: a tiny shell script,
//! set as the engine's runner executable, that waits on a named pipe before it `exec`s
//! `airlock runner` when the context size names a gate (as a slow disk or a hung driver
//! would hold the real load); the test opens the gate, or never does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use airlock::core::Core;
use airlock::engine::chat::RequestSettings;
use airlock::engine::protocol::SamplingOptions;
use airlock::engine::supervisor::{EngineConfig, EngineError, LoadSpec, RunnerGuard, StreamEvent, Supervisor};
use airlock::engine::template::ChatMessage;
use airlock::store::Store;
use tempfile::TempDir;

use crate::engine::{config, store_with_real_model};

/// How long a step that must happen may take before the test calls it stuck (a liveness bound,
/// far above what any step needs).
const STUCK: Duration = Duration::from_secs(120);

/// A runner executable that holds loads of context `N` until `gate-N` in its folder is opened.
struct Gates {
    dir: TempDir,
}

impl Gates {
    fn new() -> Self {
        let dir = TempDir::new().unwrap();
        let script = format!(
            "#!/bin/sh\nctx=\nprev=\nfor a in \"$@\"; do [ \"$prev\" = --ctx ] && ctx=$a; prev=$a; done\nif [ -p \"{dir}/gate-$ctx\" ]; then read _ < \"{dir}/gate-$ctx\"; fi\nexec \"{exe}\" \"$@\"\n",
            dir = dir.path().display(),
            exe = env!("CARGO_BIN_EXE_airlock")
        );
        let exe = dir.path().join("gated-runner");
        std::fs::write(&exe, script).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        Gates { dir }
    }

    fn exe(&self) -> PathBuf {
        self.dir.path().join("gated-runner")
    }

    /// Closes the gate for loads of context `ctx`.
    fn close(&self, ctx: u32) -> PathBuf {
        let path = self.dir.path().join(format!("gate-{ctx}"));
        assert!(std::process::Command::new("mkfifo").arg(&path).status().unwrap().success());
        path
    }
}

/// The writing end of a gate, once a runner waits at it (`None` while none does).
fn waiting_at(gate: &Path) -> Option<File> {
    OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(gate).ok()
}

/// Waits until a runner waits at `gate`; returns the open gate (write a line to let it through).
fn wait_for_runner_at(gate: &Path) -> Option<File> {
    let deadline = Instant::now() + STUCK;
    loop {
        if let Some(f) = waiting_at(gate) {
            return Some(f);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn let_through(mut gate: File) {
    let _ = gate.write_all(b"go\n");
}

fn core_with(cfg: EngineConfig) -> (TempDir, Arc<Core>) {
    let dir = store_with_real_model();
    let core = Arc::new(Core::new(Store::at(dir.path()), cfg));
    (dir, core)
}

fn spec(core: &Core, name: &str, num_ctx: u32, parallel: u32) -> LoadSpec {
    let m = core.prepare(name).unwrap();
    LoadSpec {
        name: m.name.clone(),
        model_path: m.model_path.clone(),
        num_ctx,
        parallel,
        num_gpu: None,
        adapter: None,
        projector: None,
        embedding: false,
        size: m.size(num_ctx, Default::default(), 0),
        flash_attention: Default::default(),
        kv_cache: Default::default(),
        draft: None,
    }
}

fn supervisor(core: &Core) -> &Arc<Supervisor> {
    &core.engine().supervisor
}

/// Generates two greedy tokens on a held runner; the stream's last event.
fn two_tokens(sup: &Arc<Supervisor>, runner: RunnerGuard) -> Result<StreamEvent, EngineError> {
    let options = SamplingOptions { temperature: Some(0.0), num_predict: Some(2), ..Default::default() };
    let generation = sup.generate(runner, "The sky is".into(), options, None)?;
    Ok(generation.last().expect("a generation ends with an event"))
}

/// Runs `f` on its own thread; its result, or `None` if it is still running after [`STUCK`].
fn within_bound<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(STUCK).ok()
}

#[test]
fn a_loaded_model_answers_while_another_model_is_still_loading() {
    let gates = Gates::new();
    let (_dir, core) = core_with(EngineConfig { runner_exe: gates.exe(), ..config() });
    let sup = supervisor(&core).clone();
    // A request on the loaded model is under way while the other model loads.
    let busy = sup.load(&spec(&core, "gemma3:270m", 512, 2), None).unwrap();
    let gate = gates.close(640);
    let (s2, other) = (sup.clone(), spec(&core, "gemma3:270m", 640, 1));
    let slow_load = thread::spawn(move || s2.load(&other, None).map(|g| g.pid()));
    let gate = wait_for_runner_at(&gate).expect("the second load's runner never started");

    let (s3, loaded) = (sup.clone(), spec(&core, "gemma3:270m", 512, 2));
    let answered = within_bound(move || two_tokens(&s3, s3.load(&loaded, None)?));
    let_through(gate);
    let answered = answered.expect("a request for a loaded model waited for another model's load");
    assert!(matches!(answered, Ok(StreamEvent::Done(_))), "{answered:?}");
    assert!(slow_load.join().unwrap().is_ok());
    drop(busy);
}

#[test]
fn loads_of_different_models_run_at_the_same_time() {
    let gates = Gates::new();
    let (_dir, core) = core_with(EngineConfig { runner_exe: gates.exe(), ..config() });
    let sup = supervisor(&core).clone();
    let (gate_a, gate_b) = (gates.close(512), gates.close(640));
    let loads: Vec<_> = [512, 640]
        .into_iter()
        .map(|ctx| {
            let (s, spec) = (sup.clone(), spec(&core, "gemma3:270m", ctx, 1));
            thread::spawn(move || s.load(&spec, None).map(|g| g.pid()))
        })
        .collect();
    // Both runners wait at their gates at once: neither load waits for the other.
    let a = wait_for_runner_at(&gate_a);
    let b = wait_for_runner_at(&gate_b);
    let both = a.is_some() && b.is_some();
    a.into_iter().chain(b).for_each(let_through);
    if !both {
        // Let a serialised second load through too, so the threads end.
        if let Some(g) = wait_for_runner_at(&gate_a).or_else(|| wait_for_runner_at(&gate_b)) {
            let_through(g);
        }
    }
    assert!(both, "the second model's load did not start while the first was loading");
    let pids: Vec<u32> = loads.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
    assert_ne!(pids[0], pids[1]);
    assert_eq!(sup.runner_starts(), 2);
}

#[test]
fn requests_for_a_loading_model_share_its_load_and_count_toward_the_busy_limit() {
    let gates = Gates::new();
    // One slot and one queued request: the loader and one waiter; a third is refused.
    let (_dir, core) = core_with(EngineConfig { runner_exe: gates.exe(), max_queue: 1, ..config() });
    let sup = supervisor(&core).clone();
    let gate = gates.close(512);
    let one = spec(&core, "gemma3:270m", 512, 1);
    let first = {
        let (s, spec) = (sup.clone(), one.clone());
        thread::spawn(move || s.load(&spec, None).map(|g| g.pid()))
    };
    let gate = wait_for_runner_at(&gate).expect("the load never started");
    let second = {
        let (s, spec) = (sup.clone(), one.clone());
        thread::spawn(move || s.load(&spec, None).map(|g| g.pid()))
    };
    let deadline = Instant::now() + STUCK;
    while sup.loading().iter().map(|(_, requests)| requests).sum::<usize>() < 2 {
        assert!(Instant::now() < deadline, "the second request never joined the load");
        thread::sleep(Duration::from_millis(20));
    }
    let third = {
        let (s, spec) = (sup.clone(), one.clone());
        within_bound(move || s.load(&spec, None).map(|g| g.pid()))
    };
    let_through(gate);
    assert!(matches!(third, Some(Err(EngineError::Busy { .. }))), "a third request while loading: {third:?}");
    let (a, b) = (first.join().unwrap().unwrap(), second.join().unwrap().unwrap());
    assert_eq!(a, b, "both requests got the one runner");
    assert_eq!(sup.runner_starts(), 1);
    assert!(sup.loading().is_empty());
}

#[test]
fn a_runner_that_never_says_ready_is_stopped_and_its_requests_fail() {
    let gates = Gates::new();
    let cfg = EngineConfig { runner_exe: gates.exe(), load_timeout: Duration::from_secs(5), load_timeout_per_gib: Duration::ZERO, ..config() };
    let (_dir, core) = core_with(cfg);
    let sup = supervisor(&core).clone();
    let gate = gates.close(512);
    let stuck = spec(&core, "gemma3:270m", 512, 1);
    let loader = {
        let (s, spec) = (sup.clone(), stuck.clone());
        thread::spawn(move || s.load(&spec, None).map(|g| g.pid()))
    };
    // Holding the gate open without a word keeps the runner waiting at it.
    let mut gate_open = wait_for_runner_at(&gate).expect("the load never started");
    let waiter = {
        let (s, spec) = (sup.clone(), stuck.clone());
        within_bound(move || s.load(&spec, None).map(|g| g.pid()))
    };
    let loader = within_bound(move || loader.join().unwrap());
    for outcome in [waiter, loader] {
        match outcome {
            Some(Err(e @ EngineError::LoadTimeout { .. })) => assert!(e.to_string().contains("did not finish loading within 5 s"), "{e}"),
            other => panic!("expected a load timeout, got {other:?}"),
        }
    }
    assert_eq!(sup.runner_starts(), 1, "one runner for both requests");
    assert!(gate_open.write_all(b"go\n").is_err(), "the stuck runner is still there");
    assert!(sup.loaded().is_empty() && sup.loading().is_empty(), "nothing is left of the failed load");
}

#[test]
fn names_that_share_weights_share_one_runner() {
    let (_dir, core) = core_with(config());
    core.store.copy("gemma3:270m", "my-alias").unwrap();
    let settings = || RequestSettings { options: SamplingOptions { temperature: Some(0.0), num_predict: Some(2), ..Default::default() }, num_ctx: Some(512), ..Default::default() };
    let mut pids = Vec::new();
    for name in ["gemma3:270m", "my-alias"].iter().cycle().take(8) {
        let model = core.prepare(name).unwrap();
        let stream = core.engine().chat(&model, &[ChatMessage::new("user", "hi")], settings()).unwrap();
        pids.push(stream.generation.model().pid());
        let end = stream.generation.last();
        assert!(matches!(end, Some(StreamEvent::Done(_))), "{name}: {end:?}");
    }
    pids.dedup();
    assert_eq!(pids.len(), 1, "runners: {pids:?}");
    assert_eq!(supervisor(&core).runner_starts(), 1);
}

#[test]
fn a_loaded_runner_keeps_its_slots_whatever_memory_says_later() {
    let (_dir, core) = core_with(config());
    let sup = supervisor(&core);
    let first = sup.load(&spec(&core, "gemma3:270m", 512, 1), None).unwrap();
    let pid = first.pid();
    drop(first);
    // Free memory changed, so the slot count chosen now differs: the runner stays.
    let again = sup.load(&spec(&core, "gemma3:270m", 512, 3), None).unwrap();
    assert_eq!((again.pid(), again.info.n_parallel), (pid, 1));
    assert_eq!(sup.runner_starts(), 1);
}

#[test]
fn a_request_holds_its_runner_from_load_to_the_end_of_its_reply() {
    // Keep-alive 0: an idle runner goes at the reaper's next look (every 200 ms).
    let (_dir, core) = core_with(EngineConfig { default_keep_alive: Duration::ZERO, ..config() });
    let sup = supervisor(&core).clone();
    let held = sup.load(&spec(&core, "gemma3:270m", 512, 1), Some(Duration::ZERO)).unwrap();
    let pid = held.pid();
    // Between load and generate (where a request renders and counts its prompt) the reaper
    // looks several times.
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(sup.count_tokens(&held, "The sky is").map(|n| n > 0), Ok(true));
    let end = two_tokens(&sup, held);
    assert!(matches!(end, Ok(StreamEvent::Done(_))), "{end:?}");
    assert_eq!(sup.runner_starts(), 1, "runner {pid} was stopped under its request");
    // Released, it goes.
    let deadline = Instant::now() + STUCK;
    while !sup.loaded().is_empty() {
        assert!(Instant::now() < deadline, "keep_alive 0 runner never unloaded after its reply");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn eviction_never_stops_a_runner_a_request_holds() {
    let (_dir, core) = core_with(EngineConfig { max_loaded: 1, ..config() });
    let sup = supervisor(&core).clone();
    let held = sup.load(&spec(&core, "gemma3:270m", 512, 1), None).unwrap();
    // Another context of the same weights, with room for one model only: the held runner stays.
    let other = sup.load(&spec(&core, "gemma3:270m", 640, 1), None).unwrap();
    assert_ne!(other.pid(), held.pid());
    let end = two_tokens(&sup, held);
    assert!(matches!(end, Ok(StreamEvent::Done(_))), "{end:?}");
    drop(other);
    // Now idle, the older runner makes room for the next load.
    let third = sup.load(&spec(&core, "gemma3:270m", 768, 1), None).unwrap();
    assert_eq!(sup.loaded().len(), 1, "only the new runner is left");
    drop(third);
}

#[test]
fn too_many_different_loads_at_once_are_refused_not_piled_up() {
    let gates = Gates::new();
    let (_dir, core) = core_with(EngineConfig { runner_exe: gates.exe(), max_loaded: 1, ..config() });
    let sup = supervisor(&core).clone();
    let gate = gates.close(512);
    let first = {
        let (s, spec) = (sup.clone(), spec(&core, "gemma3:270m", 512, 1));
        thread::spawn(move || s.load(&spec, None).map(|g| g.pid()))
    };
    let gate = wait_for_runner_at(&gate).expect("the load never started");
    let refused = {
        let (s, spec) = (sup.clone(), spec(&core, "gemma3:270m", 640, 1));
        within_bound(move || s.load(&spec, None).map(|g| g.pid()))
    };
    let_through(gate);
    match refused {
        Some(Err(e @ EngineError::TooManyLoads { .. })) => assert!(e.to_string().contains("try again"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(first.join().unwrap().is_ok());
}
