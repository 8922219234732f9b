//! Engine benchmark (not a test): in one run on one machine, measures the runner through its
//! protocol against the thin greedy loop (`bench/thin_loop.rs`) over the same llama.cpp build,
//! and prints ratios. Goals: decode ≥ 0.97×, prefill ≥ 0.95× of the thin loop; second-turn
//! time-to-first-token of a ~2,000-token conversation ≤ 0.2× its first turn.
//!
//! Usage (see bench/engine.sh, bench/gpu.sh): engine_bench --airlock PATH --thin-loop PATH
//!        --model GGUF [--threads N] [--reps N] [--gpu-layers N] [--avoid-amx]
//! `--gpu-layers` and `--avoid-amx` go to both sides, so both run on the same devices.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use airlock::engine::protocol::{encode, Event, GenerationStats, Request, SamplingOptions};

struct Runner {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Runner {
    fn start(airlock: &PathBuf, model: &PathBuf, threads: u32, device: &[String]) -> Self {
        let mut child = Command::new(airlock)
            .args(["runner", "--model"])
            .arg(model)
            .args(["--threads", &threads.to_string(), "--ctx", "4096", "--batch", "512"])
            .args(device)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn airlock runner");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut r = Runner { child, stdin, stdout, next_id: 0 };
        match r.event() {
            Event::Ready { .. } => r,
            other => panic!("runner did not start: {other:?}"),
        }
    }

    fn event(&mut self) -> Event {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read runner");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad event {line:?}: {e}"))
    }

    fn send(&mut self, r: &Request) {
        self.stdin.write_all(encode(r).as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn count(&mut self, text: &str) -> u32 {
        self.next_id += 1;
        self.send(&Request::Tokenize { id: self.next_id, text: text.into(), plain: Vec::new(), ids: false });
        match self.event() {
            Event::Tokens { count, .. } => count,
            other => panic!("{other:?}"),
        }
    }

    /// Generates greedily; returns the text, the stats and the wall time to the first piece.
    fn generate(&mut self, prompt: &str, n: i32) -> (String, GenerationStats, f64) {
        self.next_id += 1;
        let options = SamplingOptions { temperature: Some(0.0), num_predict: Some(n), ..Default::default() };
        let t0 = Instant::now();
        self.send(&Request::Generate { id: self.next_id, prompt: prompt.into(), plain: Vec::new(), options, grammar: None, images: Vec::new(), fixed_prefix: None });
        let (mut text, mut ttft) = (String::new(), None);
        loop {
            match self.event() {
                Event::Piece { text: t, .. } => {
                    ttft.get_or_insert(t0.elapsed().as_secs_f64());
                    text.push_str(&t);
                }
                Event::Done { stats, .. } => {
                    let ttft = ttft.unwrap_or(t0.elapsed().as_secs_f64());
                    return (text, stats, ttft);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic English-like filler text (no model-specific tokens).
fn filler(seed: u64, words: usize) -> String {
    const W: &[&str] = &[
        "the", "river", "carried", "small", "boats", "past", "old", "mills", "while", "children",
        "watched", "from", "stone", "bridges", "and", "merchants", "counted", "coins", "under",
        "bright", "awnings", "of", "market", "stalls", "selling", "bread", "apples", "wool", "salt",
        "fish", "in", "winter", "evenings", "lamps", "glowed", "across", "quiet", "streets",
    ];
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut out = String::new();
    for i in 0..words {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let w = W[(x >> 33) as usize % W.len()];
        if i % 12 == 0 && i > 0 {
            out.push_str(". ");
        } else if i > 0 {
            out.push(' ');
        }
        out.push_str(w);
    }
    out.push('.');
    out
}

/// Filler of about `tokens` tokens as the runner counts them.
fn prompt_of(r: &mut Runner, seed: u64, tokens: u32) -> String {
    let mut words = tokens as usize * 2 / 3;
    loop {
        let p = filler(seed, words);
        let n = r.count(&p);
        if n >= tokens {
            return p;
        }
        // About 1.3 tokens a word here: step by half the gap so the prompt lands near `tokens`.
        words += ((tokens - n) as usize / 2).max(1);
    }
}

struct Thin {
    prefill_tps: f64,
    decode_tps: f64,
    text: String,
}

fn thin(thin_loop: &PathBuf, model: &PathBuf, threads: u32, device: &[String], prompt: &str, n: u32) -> Thin {
    let file = std::env::temp_dir().join(format!("airlock-bench-prompt-{}.txt", std::process::id()));
    std::fs::write(&file, prompt).unwrap();
    let out = Command::new(thin_loop)
        .arg("--model")
        .arg(model)
        .arg("--prompt-file")
        .arg(&file)
        .args(["-n", &n.to_string(), "--threads", &threads.to_string(), "--batch", "512", "--ctx", "4096"])
        .args(device)
        .output()
        .expect("run thin_loop");
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "thin_loop failed: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().rev().find(|l| l.starts_with("prefill_tokens=")).expect("figures line");
    let field = |k: &str| -> f64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    Thin {
        prefill_tps: field("prefill_tokens") / (field("prefill_ns") / 1e9),
        decode_tps: field("decode_tokens") / (field("decode_ns") / 1e9),
        text: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

fn best(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::MIN, f64::max)
}

fn main() {
    let (mut airlock, mut thin_loop, mut model) = (None, None, None);
    let (mut threads, mut reps) = (2u32, 3usize);
    // Where both sides run: GPU layers, and whether the AMX CPU kernels are left out.
    let mut device: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--avoid-amx" {
            device.push(a);
            continue;
        }
        let v = args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--airlock" => airlock = Some(PathBuf::from(v)),
            "--thin-loop" => thin_loop = Some(PathBuf::from(v)),
            "--model" => model = Some(PathBuf::from(v)),
            "--threads" => threads = v.parse().unwrap(),
            "--reps" => reps = v.parse().unwrap(),
            "--gpu-layers" => device.extend(["--gpu-layers".to_string(), v]),
            other => panic!("unknown argument {other}"),
        }
    }
    let (airlock, thin_loop, model) = (airlock.unwrap(), thin_loop.unwrap(), model.unwrap());
    let mut r = Runner::start(&airlock, &model, threads, &device);

    // Prefill, ~500 tokens: a different text each time so nothing but BOS is reused.
    let (mut run_pf, mut thin_pf) = (Vec::new(), Vec::new());
    let mut n_prompt = 0;
    for i in 0..reps {
        let p = prompt_of(&mut r, 100 + i as u64, 500);
        let (_, s, _) = r.generate(&p, 1);
        n_prompt = s.prompt_tokens;
        run_pf.push((s.prompt_tokens - s.prompt_cached_tokens) as f64 / (s.prompt_eval_ns as f64 / 1e9));
        thin_pf.push(thin(&thin_loop, &model, threads, &device, &p, 1).prefill_tps);
    }

    // Decode, 128 tokens after a short prompt.
    let story = "Once upon a time, in a small village by the sea, there lived an old fisherman who";
    let (mut run_dec, mut thin_dec) = (Vec::new(), Vec::new());
    // Identical text is expected when the runner decodes the whole prompt; a repeat reuses the
    // cached prompt and decodes its last token alone, which may round differently.
    let mut same_text = Vec::new();
    for _ in 0..reps {
        let (text, s, _) = r.generate(story, 128);
        run_dec.push(s.eval_tokens as f64 / (s.eval_ns as f64 / 1e9));
        let t = thin(&thin_loop, &model, threads, &device, story, 128);
        thin_dec.push(t.decode_tps);
        same_text.push(t.text == text);
    }

    // Second-turn TTFT of a ~2,000-token conversation against its first turn.
    let first = format!("User: {}\nAssistant:", prompt_of(&mut r, 7, 2000));
    let (reply, s1, ttft1) = r.generate(&first, 16);
    let second = format!("{first}{reply}\nUser: Tell me more about the river.\nAssistant:");
    let (_, s2, ttft2) = r.generate(&second, 16);

    let (rp, tp, rd, td) = (best(&run_pf), best(&thin_pf), best(&run_dec), best(&thin_dec));
    println!("engine benchmark: {threads} threads, best of {reps}");
    println!("prefill ({n_prompt}-token prompt): runner {rp:.1} tok/s, thin loop {tp:.1} tok/s, ratio {:.3} (goal >= 0.95)", rp / tp);
    println!("decode (128 tokens):            runner {rd:.1} tok/s, thin loop {td:.1} tok/s, ratio {:.3} (goal >= 0.97)", rd / td);
    println!("greedy text identical to the thin loop's, per repeat: {same_text:?}");
    println!(
        "conversation: first turn {} tokens, TTFT {:.1} ms; second turn {} tokens ({} reused), TTFT {:.1} ms; ratio {:.3} (goal <= 0.2)",
        s1.prompt_tokens, ttft1 * 1e3, s2.prompt_tokens, s2.prompt_cached_tokens, ttft2 * 1e3, ttft2 / ttft1
    );
}
