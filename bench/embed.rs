//! Embedding benchmark (not a test): inputs per second for a batch of 64 short inputs, through
//! Airlock's embedding runner (its JSON-lines protocol) and through `airlock serve`'s
//! `/api/embed`, against a thin loop over the same llama.cpp build in this process: one context
//! with embeddings on, mean pooling, the 64 inputs as 64 sequences of one batch, decode, read
//! each pooled vector, normalise (its context holds exactly that batch). Airlock runs with its
//! defaults for the context (`--ctx`, 4096) and batch; same threads on every side; ratios from
//! one run. The thin loop stays independent of airlock's engine code.
//!
//! Usage (see bench/embed.sh): embed_bench --airlock PATH --model GGUF [--threads N] [--reps N]
//!        [--ctx N] [--gpu-layers N] [--avoid-amx]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::engine::protocol::{encode, EmbedInput, Event, Request};
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

const INPUTS: usize = 64;

/// 64 short, different sentences (5–12 words), as a retrieval index's chunks or queries are.
fn inputs() -> Vec<String> {
    let subjects = ["The pump", "Valve 7", "The night shift", "Our auditor", "The backup generator", "Section 4.2", "The new procedure", "Each operator"];
    let verbs = ["must be checked", "was replaced", "reports to the supervisor", "needs a signature"];
    let tails = ["before every start-up.", "after the March inspection."];
    let mut out = Vec::new();
    for s in subjects {
        for v in verbs {
            for t in tails {
                out.push(format!("{s} {v} {t}"));
            }
        }
    }
    out.truncate(INPUTS);
    out
}

/// The thin loop: inputs per second over `reps` batches (best), and the first input's vector.
fn thin(model_path: &Path, threads: i32, gpu_layers: u32, avoid_amx: bool, texts: &[String], reps: usize) -> (f64, Vec<f32>) {
    let dir = std::env::var("AIRLOCK_LIB_DIR").ok().or(llama_cpp_sys_2::BACKENDS_DIR.map(String::from)).expect("set AIRLOCK_LIB_DIR to the directory of libggml-cpu-*.so");
    if gpu_layers == 0 {
        for var in ["GGML_VK_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"] {
            std::env::set_var(var, "");
        }
    }
    airlock::backends::load_backends(Path::new(&dir), avoid_amx, false).expect("load ggml modules");
    let backend = LlamaBackend::init().expect("backend");
    let model = LlamaModel::load_from_file(&backend, model_path, &LlamaModelParams::default().with_n_gpu_layers(gpu_layers)).expect("load model");
    // The batch's tokens: one decode for all inputs (a multiple of the sequences, which
    // llama.cpp's mean-pooling graph needs).
    let n_ctx: u32 = texts.iter().map(|s| model.vocab().tokenize(s.as_bytes(), true, true).len() as u32).sum::<u32>().div_ceil(INPUTS as u32) * INPUTS as u32;
    let params = LlamaContextParams::default()
        .with_embeddings(true)
        .with_pooling_type(LlamaPoolingType::Mean)
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_seq_max(INPUTS as u32)
        .with_kv_unified(true)
        .with_swa_full(true)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = model.new_context(&backend, params).expect("context");
    let mut batch = LlamaBatch::new(n_ctx as usize, 1);
    let mut best = 0f64;
    let mut first = Vec::new();
    // One warm-up batch, then the measured ones.
    for _ in 0..reps + 1 {
        let t = Instant::now();
        let tokens: Vec<_> = texts.iter().map(|s| model.vocab().tokenize(s.as_bytes(), true, true)).collect();
        ctx.clear_kv_cache();
        batch.clear();
        for (seq, toks) in tokens.iter().enumerate() {
            for (pos, &tok) in toks.iter().enumerate() {
                batch.add(tok, pos as i32, &[seq as i32], true).unwrap();
            }
        }
        ctx.decode(&mut batch).expect("decode");
        let mut vectors = Vec::with_capacity(texts.len());
        for seq in 0..texts.len() {
            let mut v = ctx.embeddings_seq_ith(seq as i32).expect("pooled embedding").to_vec();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= n);
            vectors.push(v);
        }
        best = best.max(texts.len() as f64 / t.elapsed().as_secs_f64());
        first = vectors.swap_remove(0);
    }
    (best, first)
}

/// The runner through its protocol: inputs per second (best of `reps`), and the first vector.
fn runner(airlock: &Path, model: &Path, threads: u32, n_ctx: u32, device: &[String], texts: &[String], reps: usize) -> (f64, Vec<f32>) {
    let mut child = Command::new(airlock)
        .args(["runner", "--embedding", "--model"])
        .arg(model)
        .args(["--threads", &threads.to_string(), "--ctx", &n_ctx.to_string()])
        .args(device)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn airlock runner");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut event = || {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read runner");
        serde_json::from_str::<Event>(&line).unwrap_or_else(|e| panic!("bad event {line:?}: {e}"))
    };
    assert!(matches!(event(), Event::Ready { .. }), "runner did not start");
    let mut best = 0f64;
    let mut first = Vec::new();
    for id in 0..reps as u64 + 1 {
        let t = Instant::now();
        let inputs = texts.iter().cloned().map(EmbedInput::Text).collect();
        stdin.write_all(encode(&Request::Embed { id, inputs, truncate: true }).as_bytes()).unwrap();
        stdin.flush().unwrap();
        match event() {
            Event::Embeddings { mut embeddings, .. } => {
                best = best.max(texts.len() as f64 / t.elapsed().as_secs_f64());
                first = embeddings.swap_remove(0);
            }
            other => panic!("runner answered {other:?}"),
        }
    }
    drop(stdin);
    let _ = child.wait();
    let n = first.iter().map(|x| x * x).sum::<f32>().sqrt();
    (best, first.iter().map(|x| x / n).collect())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_post(port: u16, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    body.to_string()
}

/// `airlock serve`'s `/api/embed` with a store holding the model: inputs per second (best).
fn api(airlock: &Path, model: &Path, threads: u32, n_ctx: u32, texts: &[String], reps: usize) -> (f64, Vec<f32>) {
    let store = std::env::temp_dir().join(format!("airlock-embed-bench-{}", std::process::id()));
    let ok = Command::new(airlock).args(["import"]).arg(model).args(["--name", "bench:latest", "--link"]).env("AIRLOCK_MODELS", &store).stderr(Stdio::null()).stdout(Stdio::null()).status().unwrap();
    assert!(ok.success(), "import failed");
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _server = Server(
        Command::new(airlock)
            .arg("serve")
            .env("AIRLOCK_MODELS", &store)
            .env("AIRLOCK_HOST", format!("127.0.0.1:{port}"))
            .env("AIRLOCK_THREADS", threads.to_string())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = serde_json::json!({ "model": "bench", "input": texts, "options": { "num_ctx": n_ctx } }).to_string();
    let mut best = 0f64;
    let mut first = Vec::new();
    for _ in 0..reps + 1 {
        let t = Instant::now();
        let resp: serde_json::Value = serde_json::from_str(&http_post(port, "/api/embed", &body)).unwrap();
        best = best.max(texts.len() as f64 / t.elapsed().as_secs_f64());
        first = resp["embeddings"][0].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    }
    let _ = std::fs::remove_dir_all(&store);
    (best, first)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn main() {
    let (mut airlock, mut model) = (None, None);
    let (mut threads, mut reps, mut n_ctx, mut gpu_layers) = (2u32, 5usize, 4096u32, 0u32);
    let mut avoid_amx = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--avoid-amx" {
            avoid_amx = true;
            continue;
        }
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--airlock" => airlock = Some(PathBuf::from(v)),
            "--model" => model = Some(PathBuf::from(v)),
            "--threads" => threads = v.parse().unwrap(),
            "--reps" => reps = v.parse().unwrap(),
            "--ctx" => n_ctx = v.parse().unwrap(),
            "--gpu-layers" => gpu_layers = v.parse().unwrap(),
            other => panic!("unknown argument {other}"),
        }
    }
    let (airlock, model) = (airlock.expect("--airlock PATH"), model.expect("--model GGUF"));
    let texts = inputs();
    let mut device = vec!["--gpu-layers".to_string(), gpu_layers.to_string()];
    if avoid_amx {
        device.push("--avoid-amx".into());
    }
    let (runner_ips, runner_v) = runner(&airlock, &model, threads, n_ctx, &device, &texts, reps);
    let (api_ips, api_v) = api(&airlock, &model, threads, n_ctx, &texts, reps);
    let (thin_ips, thin_v) = thin(&model, threads as i32, gpu_layers, avoid_amx, &texts, reps);
    println!("embedding benchmark: {INPUTS} short inputs in one request, {threads} threads, airlock's context {n_ctx}, best of {reps}");
    println!("thin loop (llama.cpp directly): {thin_ips:.1} inputs/s");
    println!("runner (protocol):              {runner_ips:.1} inputs/s, ratio {:.3}", runner_ips / thin_ips);
    println!("airlock serve /api/embed:       {api_ips:.1} inputs/s, ratio {:.3}", api_ips / thin_ips);
    println!("first vector's cosine to the thin loop's: runner {:.6}, api {:.6}", cosine(&runner_v, &thin_v), cosine(&api_v, &thin_v));
}
