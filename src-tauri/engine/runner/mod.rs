//! The runner: one model in one child process (`airlock runner --model PATH …`), speaking the
//! JSON-lines protocol of [`crate::engine::protocol`] on stdin/stdout. It is the crash boundary:
//! llama.cpp may abort this process (GGML_ASSERT, out of memory, a bad file) and only this
//! model's requests fail; the supervisor restarts it.
//!
//! Files: `mod.rs` owns the command line, the process's I/O (a reader thread feeding a channel so
//! requests and `Cancel`s are seen between decode steps) and the request loop; [`session`] owns
//! the model and context (loading, the slots with per-sequence KV-cache reuse, the queue), with
//! `slot.rs` (a slot's and a request's state), `sampler.rs` (sampler chains) and `window.rs`
//! (cutting a sequence back in a sliding-window cache) below it and `admit.rs` (a queued request
//! takes a slot, reusing a cached prefix) and `step.rs` (the batched decode step) adding their
//! methods to the session from above; [`text`] owns the pure UTF-8 and
//! stop-sequence plumbing; [`placement`] reads from llama.cpp's log where the model's buffers
//! went; ggml's modules are found and loaded by [`crate::backends`]. Nothing here may write to
//! stdout except whole protocol lines (stdout *is* the protocol; llama.cpp's log goes to stderr),
//! and nothing here may panic on a client's input: a bad line gets an `Error` event, never an exit.

mod admit;
mod draft;
mod embed;
mod placement;
mod prompt_cache;
mod remote;
mod sampler;
mod session;
mod slot;
mod step;
pub mod text;
mod vision;
mod window;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::Instant;

use crate::engine::protocol::{encode, Event, Request, STOP_SAVE_BUDGET};

/// `airlock runner` (hidden): serve one model over stdin/stdout. Started by the engine's
/// supervisor, not by people.
#[derive(clap::Args, Debug, Clone)]
pub struct RunnerArgs {
    /// The GGUF file to load (memory-mapped).
    #[arg(long)]
    pub model: PathBuf,
    /// Context size per parallel sequence; capped at the model's trained context.
    #[arg(long, default_value_t = 4096)]
    pub ctx: u32,
    /// Threads for decoding and prompt processing (default: physical cores).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Prompt tokens per decode call (and per micro-batch).
    #[arg(long, default_value_t = crate::engine::protocol::DEFAULT_BATCH)]
    pub batch: u32,
    /// Parallel sequences the context holds: up to this many requests decode together in one
    /// batch (continuous batching); more wait in arrival order.
    #[arg(long, default_value_t = 1)]
    pub parallel: u32,
    /// Layers to offload to GPUs (the supervisor decides from the fit estimate). 0 keeps the
    /// runner off every GPU: no device is even opened.
    #[arg(long, default_value_t = 0)]
    pub gpu_layers: u32,
    /// llama.cpp RPC workers (`HOST:PORT,…`) whose devices take layers beside this machine's GPUs.
    #[arg(long, value_delimiter = ',')]
    pub rpc: Vec<String>,
    /// Keep this machine's GPUs closed even with layers to offload: they go to the RPC workers.
    #[arg(long)]
    pub hide_local_gpus: bool,
    /// Leave out the CPU kernels that use Intel AMX (the supervisor sets it after they crashed
    /// with an illegal instruction, as they do under some hypervisors).
    #[arg(long)]
    pub avoid_amx: bool,
    /// A LoRA adapter (GGUF) applied to the model at scale 1, as Ollama's ADAPTER does.
    #[arg(long)]
    pub lora: Option<PathBuf>,
    /// A vision projector (an `mmproj` GGUF) for the model: prompts may then carry images.
    #[arg(long)]
    pub projector: Option<PathBuf>,
    /// Flash attention: auto (where the backend supports it for the model), on or off.
    #[arg(long, default_value = "auto", value_parser = crate::engine::attention::FlashAttention::parse)]
    pub flash_attention: crate::engine::attention::FlashAttention,
    /// The KV cache's element type: f16, q8_0 or q4_0 (a quantized one needs flash attention).
    #[arg(long, default_value = "f16", value_parser = crate::engine::attention::KvCacheType::parse)]
    pub kv_cache_type: crate::engine::attention::KvCacheType,
    /// A draft model (a small GGUF with the same vocabulary) for speculative decoding: it
    /// proposes tokens that the model checks in one batch.
    #[arg(long)]
    pub draft: Option<PathBuf>,
    /// Keep the KV state of prompts' fixed prefixes in this folder across restarts (see
    /// `prompt_cache.rs`).
    #[arg(long)]
    pub prompt_cache: Option<PathBuf>,
    /// The most bytes the prompt cache folder may hold.
    #[arg(long, default_value_t = 1 << 30)]
    pub prompt_cache_bytes: u64,
    /// Checkpoints of a sliding-window cache kept per slot (see `window.rs`); 0 keeps none.
    #[arg(long, default_value_t = crate::engine::attention::DEFAULT_CHECKPOINTS)]
    pub checkpoints: u32,
    /// Compute embeddings instead of generating text (a context with embeddings on; see
    /// [`embed`]): answers `Embed` requests only.
    #[arg(long)]
    pub embedding: bool,
    /// Test builds only: once the model is loaded, fail as a GPU load that runs out of memory
    /// does (`gpu`, with layers on a GPU) or die of an illegal instruction as the AMX kernels do
    /// under some hypervisors (`sigill`), so the supervisor's retries run in tests.
    #[cfg(any(test, feature = "test-hooks"))]
    #[arg(long, hide = true)]
    pub test_fault: Option<String>,
}

pub fn main(args: RunnerArgs) -> ExitCode {
    if args.embedding {
        return embed::main(args);
    }
    let out = Output::default();
    let started = std::time::Instant::now();
    let mut loaded = match session::Loaded::load(&args) {
        Ok(l) => l,
        Err(message) => {
            out.send(&Event::Error { id: None, code: "load".into(), message });
            return ExitCode::from(1);
        }
    };
    #[cfg(any(test, feature = "test-hooks"))]
    match args.test_fault.as_deref() {
        Some("gpu") if args.gpu_layers > 0 => {
            out.send(&Event::Error { id: None, code: "load".into(), message: format!("injected fault: cannot allocate {} layers on the GPU", args.gpu_layers) });
            return ExitCode::from(1);
        }
        // No core file: the test's folder stays clean.
        #[cfg(target_os = "linux")]
        Some("sigill") => unsafe {
            libc::setrlimit(libc::RLIMIT_CORE, &libc::rlimit { rlim_cur: 0, rlim_max: 0 });
            libc::raise(libc::SIGILL);
        },
        _ => {}
    }
    let mut session = match loaded.session(&args) {
        Ok(s) => s,
        Err(message) => {
            out.send(&Event::Error { id: None, code: "load".into(), message });
            return ExitCode::from(1);
        }
    };
    out.send(&session.ready_event(started.elapsed().as_millis() as u64));

    let mut input = Input::spawn();
    loop {
        // Idle: wait for a request. Busy: take whatever arrived since the last decode step, so
        // a `Cancel` lands within one token and new requests join the next batch.
        if !session.busy() {
            session.save_prefixes(&mut || input.has_pending());
        }
        let lines = if session.busy() { input.drain() } else { input.wait() };
        for line in lines {
            match line {
                Line::Request(Request::Generate { id, prompt, plain, options, grammar, images, fixed_prefix }) => {
                    if let Err(e) = session.submit(id, &prompt, &plain, fixed_prefix, &options, grammar.as_deref(), &images) {
                        out.send(&Event::Error { id: Some(id), code: e.code.into(), message: e.message });
                    }
                }
                Line::Request(Request::Tokenize { id, text, plain, ids }) => match session.tokenize(&text, &plain) {
                    Ok(tokens) => out.send(&Event::Tokens { id, count: tokens.len() as u32, ids: if ids { tokens.iter().map(|t| t.0).collect() } else { Vec::new() } }),
                    Err(e) => out.send(&Event::Error { id: Some(id), code: e.code.into(), message: e.message }),
                },
                Line::Request(Request::Embed { id, .. }) => {
                    out.send(&Event::Error { id: Some(id), code: "not_embedding".into(), message: "this model process generates text; embeddings need a runner started with --embedding".into() });
                }
                // A cancel that arrives after its request finished is moot.
                Line::Request(Request::Cancel { id }) => session.cancel(id, &out),
                Line::Bad(message) => out.send(&Event::Error { id: None, code: "protocol".into(), message }),
            }
        }
        if input.closed {
            // Asked to stop: end every request, save the prefixes not saved yet while the
            // supervisor's grace allows (a prefix cut short is not written), and exit.
            session.cancel_all(&out);
            let deadline = Instant::now() + STOP_SAVE_BUDGET;
            session.save_prefixes(&mut || Instant::now() >= deadline);
            break;
        }
        session.step(&out);
    }
    ExitCode::SUCCESS
}

/// A failed request: the protocol's `Error` code and a message for people.
#[derive(Debug)]
pub struct RequestError {
    pub code: &'static str,
    pub message: String,
}

impl RequestError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// stdout, one flushed line per event (the supervisor reads them as they come).
#[derive(Default)]
pub struct Output;

impl Output {
    pub fn send(&self, event: &Event) {
        let line = encode(event);
        let mut out = std::io::stdout().lock();
        // A closed stdout means the supervisor is gone; the next read of stdin ends the loop.
        let _ = out.write_all(line.as_bytes()).and_then(|_| out.flush());
    }
}

enum Line {
    Request(Request),
    Bad(String),
}

/// Requests from stdin. A reader thread parses lines into a channel so the decode loop can poll
/// for new requests and `Cancel`s between decode steps without blocking.
pub struct Input {
    rx: Receiver<Line>,
    /// Lines taken early by `has_pending`, returned first.
    early: Vec<Line>,
    closed: bool,
}

impl Input {
    fn spawn() -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let msg = match serde_json::from_str::<Request>(&line) {
                    Ok(r) => Line::Request(r),
                    Err(e) => Line::Bad(format!("bad request line: {e}")),
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
            // Dropping `tx` tells the loop that stdin closed.
        });
        Self { rx, early: Vec::new(), closed: false }
    }

    /// Whether a line has arrived (kept for the next `wait` or `drain`), or stdin has closed.
    fn has_pending(&mut self) -> bool {
        if self.early.is_empty() {
            match self.rx.try_recv() {
                Ok(line) => self.early.push(line),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => return true,
            }
        }
        !self.early.is_empty()
    }

    /// Waits for at least one line (none once stdin has closed), then takes all that arrived.
    fn wait(&mut self) -> Vec<Line> {
        if !self.early.is_empty() {
            return self.drain();
        }
        match self.rx.recv() {
            Ok(first) => {
                let mut lines = vec![first];
                lines.extend(self.drain());
                lines
            }
            Err(_) => {
                self.closed = true;
                Vec::new()
            }
        }
    }

    /// The lines that arrived since the last call, without waiting.
    fn drain(&mut self) -> Vec<Line> {
        let mut lines = std::mem::take(&mut self.early);
        loop {
            match self.rx.try_recv() {
                Ok(l) => lines.push(l),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
        lines
    }
}
