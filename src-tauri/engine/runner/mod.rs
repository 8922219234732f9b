//! The runner: one model in one child process (`airlock runner --model PATH …`), speaking the
//! JSON-lines protocol of [`crate::engine::protocol`] on stdin/stdout. It is the crash boundary:
//! llama.cpp may abort this process (GGML_ASSERT, out of memory, a bad file) and only this
//! model's requests fail; the supervisor restarts it.
//!
//! Files: `mod.rs` owns the command line, the process's I/O (a reader thread feeding a channel so
//! a `Cancel` is seen between decode steps) and the request loop; [`session`] owns everything
//! that touches llama.cpp (context, KV-cache reuse, sampling, the decode loop); [`text`] owns the
//! pure UTF-8 and stop-sequence plumbing; [`platform`] finds the CPU-variant modules and counts
//! cores. Nothing here may write to stdout except whole protocol lines (stdout *is* the
//! protocol; llama.cpp's log goes to stderr), and nothing here may panic on a client's input:
//! a bad line gets an `Error` event, never an exit.

mod platform;
mod session;
pub mod text;

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, TryRecvError};

use crate::engine::protocol::{encode, Event, GenerationStats, Request};

pub use platform::{backend_dir, physical_cores, LIB_DIR_ENV};

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
    #[arg(long, default_value_t = 512)]
    pub batch: u32,
    /// Parallel sequences the context holds (continuous batching; one is served at a time today).
    #[arg(long, default_value_t = 1)]
    pub parallel: u32,
    /// Layers to offload to a GPU (default: llama.cpp's choice; no effect without a GPU backend).
    #[arg(long)]
    pub gpu_layers: Option<u32>,
}

pub fn main(args: RunnerArgs) -> ExitCode {
    let out = Output::default();
    let started = std::time::Instant::now();
    let loaded = match session::Loaded::load(&args) {
        Ok(l) => l,
        Err(message) => {
            out.send(&Event::Error { id: None, code: "load".into(), message });
            return ExitCode::from(1);
        }
    };
    let mut session = match loaded.session(&args) {
        Ok(s) => s,
        Err(message) => {
            out.send(&Event::Error { id: None, code: "load".into(), message });
            return ExitCode::from(1);
        }
    };
    out.send(&session.ready_event(started.elapsed().as_millis() as u64));

    let mut input = Input::spawn();
    while let Some(request) = input.next() {
        match request {
            Request::Generate { id, prompt, options, grammar } => {
                let event = match session.generate(id, &prompt, &options, grammar.as_deref(), &mut input, &out) {
                    Ok(stats) => Event::Done { id, stats },
                    Err(e) => Event::Error { id: Some(id), code: e.code.into(), message: e.message },
                };
                out.send(&event);
            }
            Request::Tokenize { id, text } => {
                let count = session.count_tokens(&text);
                out.send(&Event::Tokens { id, count });
            }
            // Nothing is running: a cancel that arrives after its request finished is moot.
            Request::Cancel { .. } => {}
        }
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
/// for a `Cancel` without blocking; requests that arrive during a generation wait in `queue`.
pub struct Input {
    rx: Receiver<Line>,
    queue: VecDeque<Request>,
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
        Self { rx, queue: VecDeque::new(), closed: false }
    }

    /// The next request, waiting for one; `None` once stdin has closed and nothing is queued.
    fn next(&mut self) -> Option<Request> {
        loop {
            if let Some(r) = self.queue.pop_front() {
                return Some(r);
            }
            if self.closed {
                return None;
            }
            match self.rx.recv() {
                Ok(Line::Request(r)) => return Some(r),
                Ok(Line::Bad(message)) => {
                    Output.send(&Event::Error { id: None, code: "protocol".into(), message });
                }
                Err(_) => self.closed = true,
            }
        }
    }

    /// Between decode steps: should request `id` stop now? True on its `Cancel` or when stdin
    /// closed (nobody is listening). Other requests are queued; a `Cancel` of a queued
    /// `Generate` removes it and answers its `Done` at once.
    pub fn should_stop(&mut self, id: u64, out: &Output) -> bool {
        let mut stop = self.closed;
        loop {
            match self.rx.try_recv() {
                Ok(Line::Request(Request::Cancel { id: c })) if c == id => stop = true,
                Ok(Line::Request(Request::Cancel { id: c })) => {
                    let before = self.queue.len();
                    self.queue.retain(|r| !matches!(r, Request::Generate { id, .. } if *id == c));
                    if self.queue.len() != before {
                        let stats = GenerationStats { done_reason: "cancel".into(), ..Default::default() };
                        out.send(&Event::Done { id: c, stats });
                    }
                }
                Ok(Line::Request(r)) => self.queue.push_back(r),
                Ok(Line::Bad(m)) => {
                    out.send(&Event::Error { id: None, code: "protocol".into(), message: m });
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    stop = true;
                    break;
                }
            }
        }
        stop
    }
}
