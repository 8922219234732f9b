//! `airlock serve` under load, on the real test model, over loopback: streaming clients across
//! two models and an alias, a model removed and imported again in a loop, and a runner killed
//! mid-stream — all at once. Every request must be answered, and each answer explained (a reply;
//! 404 only for the removed model; "model process exited" only on the killed runner's weights),
//! nothing may deadlock, no runner may start while another of its weights key is alive (the
//! supervisor counts them from start to reaping), and the
//! store must verify clean afterwards. Bounded in requests and time; prints its figures.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::api::{post, serve_with_stderr};
use crate::common::*;

const CLIENTS: usize = 8;
const REQUESTS_PER_CLIENT: usize = 2;
/// Rounds of import + remove of the churned model (fewer if the clients finish first).
const CHURN_ROUNDS: usize = 4;
/// Past this the run is called deadlocked (far above what it needs).
const DEADLOCK: Duration = Duration::from_secs(420);
/// One request's bound: a reply that takes longer counts as unanswered.
const REPLY_BOUND: Duration = Duration::from_secs(240);

/// The test model with one metadata letter changed: the same network, a distinct weights file
/// (its own digest, so its own runner key).
fn distinct_copy_of_real_model(to: &Path) {
    let mut bytes = std::fs::read(real_model()).unwrap();
    let key = b"general.name";
    let at = bytes.windows(key.len()).position(|w| w == key).expect("the test model names itself");
    // key, then the value's type (u32) and length (u64), then the value.
    let len = u64::from_le_bytes(bytes[at + key.len() + 4..at + key.len() + 12].try_into().unwrap()) as usize;
    let value = at + key.len() + 12;
    assert!(len > 0 && bytes[value..value + len].is_ascii());
    let last = &mut bytes[value + len - 1];
    *last = if *last == b'X' { b'Y' } else { b'X' };
    std::fs::write(to, bytes).unwrap();
}

/// Live runner processes of the server: (pid, runner key = weights file @ context).
fn runners(server: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid …": comm may hold spaces, so read after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        if fields.len() < 2 || fields[0] == "Z" || fields[1].parse::<u32>().ok() != Some(server) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmdline.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if args.get(1).map(String::as_str) != Some("runner") {
            continue;
        }
        let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned().unwrap_or_default();
        out.push((pid, format!("{}@{}", arg("--model"), arg("--ctx"))));
    }
    out
}

/// The body of an HTTP/1.1 response, chunked or not.
fn body_of(head_and_body: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(head_and_body).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return (0, text, String::new()) };
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    if !head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return (status, head.to_string(), body.to_string());
    }
    let (mut rest, mut out) = (body, String::new());
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").unwrap_or(&after[n..]);
    }
    (status, head.to_string(), out)
}

/// `DELETE /api/delete` (Ollama's method for it); (status, body).
fn delete_model(port: u16, name: &str) -> (u16, String) {
    let body = format!(r#"{{"model":"{name}"}}"#);
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return (0, "cannot connect".into()) };
    let req = format!("DELETE /api/delete HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = s.write_all(req.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let (status, _, body) = body_of(&raw);
    (status, body)
}

/// One streaming `/api/generate`; how it ended, as a kind for the figures.
fn streamed_reply(port: u16, model: &str, prompt: &str) -> String {
    streamed_reply_with(port, model, prompt, 8, |_| None::<()>)
}

/// [`streamed_reply`] of up to `tokens` tokens, calling `on_first_piece` once the reply streams.
fn streamed_reply_with<T>(port: u16, model: &str, prompt: &str, tokens: u32, mut on_first_piece: impl FnMut(&str) -> Option<T>) -> String {
    let body = serde_json::json!({ "model": model, "prompt": prompt, "stream": true, "options": { "temperature": 0, "num_predict": tokens, "num_ctx": 1024 } }).to_string();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return "unanswered: cannot connect".into() };
    s.set_read_timeout(Some(REPLY_BOUND)).unwrap();
    let req = format!("POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    if s.write_all(req.as_bytes()).is_err() {
        return "unanswered: cannot send".into();
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut first_piece_seen = false;
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return format!("unanswered: {e}"),
        }
        if !first_piece_seen && String::from_utf8_lossy(&raw).contains("\"done\":false") {
            first_piece_seen = true;
            on_first_piece(&String::from_utf8_lossy(&raw));
        }
    }
    let (status, _, body) = body_of(&raw);
    let last = body.lines().filter(|l| !l.trim().is_empty()).last().unwrap_or_default().to_string();
    let error = serde_json::from_str::<serde_json::Value>(&last).ok().and_then(|v| v["error"].as_str().map(str::to_string));
    match (status, error) {
        (200, None) if last.contains("\"done\":true") => "reply".into(),
        (200, Some(e)) if e.starts_with("model process exited") => "error in stream: model process exited".into(),
        (200, Some(e)) => format!("error in stream: {e}"),
        (503, Some(_)) => "503 busy".into(),
        (404, Some(e)) if e.contains("not found") => "404 model not found".into(),
        (status, Some(e)) if !e.is_empty() => format!("{status} error: {e}"),
        (status, _) => format!("unanswered: status {status}, last line {last:?}"),
    }
}

#[test]
fn serve_under_load_answers_every_request_and_keeps_one_runner_per_weights() {
    let began = Instant::now();
    let logs = TempDir::new().unwrap();
    let log = logs.path().join("serve.log");
    let server = serve_with_stderr(&[("AIRLOCK_GPU", "off")], true, std::fs::File::create(&log).unwrap().into());
    let (port, pid, store) = (server.port, server.pid(), server.store().to_path_buf());
    // The second model: other weights, imported by copy; the alias shares the first's weights.
    let tmp = TempDir::new().unwrap();
    let second = tmp.path().join("second.gguf");
    distinct_copy_of_real_model(&second);
    let out = airlock(&store, &["import", second.to_str().unwrap(), "--name", "second"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::remove_file(&second).unwrap();
    assert_eq!(post(port, "/api/copy", r#"{"source":"gemma3:270m","destination":"alias"}"#, "").0, 200);

    let finished = Arc::new(AtomicBool::new(false));
    let replies = Arc::new(AtomicUsize::new(0));
    // The runners seen, for the figures (the supervisor itself counts two alive for one key).
    let seen: Arc<Mutex<BTreeMap<u32, String>>> = Arc::default();
    let sampler = {
        let (finished, seen) = (finished.clone(), seen.clone());
        thread::spawn(move || {
            while !finished.load(Ordering::SeqCst) {
                for (p, key) in runners(pid) {
                    seen.lock().unwrap().entry(p).or_insert(key);
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    // A long reply on the alias; once it streams, the runner it shares with gemma3:270m (and churn)
    // is SIGKILLed under it.
    let shared_weights = airlock::store::Store::at(&store).resolve("gemma3:270m").unwrap().manifest.layer(airlock::store::manifest::MEDIA_MODEL).unwrap().digest.file_name();
    let killer = {
        let replies = replies.clone();
        thread::spawn(move || -> (Option<u32>, String) {
            while replies.load(Ordering::SeqCst) < 1 {
                thread::sleep(Duration::from_millis(20));
            }
            let mut victim = None;
            let kind = streamed_reply_with(port, "alias", "Tell a long story about a lighthouse.", 400, |_| {
                let (runner, _) = runners(pid).into_iter().find(|(_, key)| key.contains(&shared_weights))?;
                let killed = std::process::Command::new("kill").args(["-KILL", &runner.to_string()]).status().ok()?.success();
                victim = killed.then_some(runner);
                victim
            });
            (victim, kind)
        })
    };
    let churn = {
        let (finished, store) = (finished.clone(), store.clone());
        thread::spawn(move || -> Result<usize, String> {
            let mut rounds = 0;
            while rounds < CHURN_ROUNDS && !finished.load(Ordering::SeqCst) {
                let out = airlock(&store, &["import", real_model().to_str().unwrap(), "--name", "churn"]);
                if !out.status.success() {
                    return Err(format!("import: {}", stderr(&out)));
                }
                let (status, body) = delete_model(port, "churn");
                if status != 200 {
                    return Err(format!("delete: {status} {body}"));
                }
                rounds += 1;
            }
            Ok(rounds)
        })
    };
    let (tx, rx) = mpsc::channel();
    for c in 0..CLIENTS {
        let (tx, replies) = (tx.clone(), replies.clone());
        thread::spawn(move || {
            let models = ["gemma3:270m", "alias", "second", "churn"];
            for i in 0..REQUESTS_PER_CLIENT {
                let model = models[(c + i) % models.len()];
                let kind = streamed_reply(port, model, &format!("Client {c} asks question {i}: what is the sky?"));
                if kind == "reply" {
                    replies.fetch_add(1, Ordering::SeqCst);
                }
                if tx.send((model, kind)).is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut outcomes: Vec<(&str, String)> = Vec::new();
    let deadline = Instant::now() + DEADLOCK;
    while outcomes.len() < CLIENTS * REQUESTS_PER_CLIENT {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((model, kind)) => {
                *kinds.entry(kind.clone()).or_default() += 1;
                outcomes.push((model, kind));
            }
            Err(_) => break,
        }
    }
    finished.store(true, Ordering::SeqCst);
    let (killed, victim_kind) = killer.join().unwrap();
    *kinds.entry(victim_kind.clone()).or_default() += 1;
    let churned = churn.join().unwrap();
    sampler.join().unwrap();
    let verify = airlock(&store, &["verify"]);
    let starts = seen.lock().unwrap().clone();
    let per_key: BTreeMap<&str, usize> = starts.values().fold(BTreeMap::new(), |mut m, k| {
        *m.entry(k.rsplit('/').next().unwrap_or(k)).or_default() += 1;
        m
    });

    let answered: usize = kinds.values().sum();
    let asked = CLIENTS * REQUESTS_PER_CLIENT + 1;
    eprintln!("load test: {answered} of {asked} requests answered in {:.0?}", began.elapsed());
    for (kind, n) in &kinds {
        eprintln!("  {n:3}  {kind}");
    }
    eprintln!("runner starts: {} ({per_key:?}); runner killed mid-stream: {killed:?}; churn rounds (import + rm): {churned:?}", starts.len());

    let server_log = || std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(answered, asked, "requests left unanswered after {DEADLOCK:?}: a deadlock; server log:\n{}", server_log());
    let unanswered: Vec<_> = kinds.keys().filter(|k| k.starts_with("unanswered")).collect();
    assert!(unanswered.is_empty(), "{unanswered:?}; server log:\n{}", server_log());
    // Every outcome has its cause: a reply; 404 only for the model removed in a loop; "model
    // process exited" only on the weights whose runner was killed (gemma3:270m, its alias, and
    // churn, imported from the same file). Busy (503) or any other error is a failure.
    for (model, kind) in &outcomes {
        let explained = match kind.as_str() {
            "reply" => true,
            "404 model not found" => *model == "churn",
            "error in stream: model process exited" => *model != "second",
            _ => false,
        };
        assert!(explained, "{model}: {kind}; server log:\n{}", server_log());
    }
    let second: Vec<&String> = outcomes.iter().filter(|(m, _)| *m == "second").map(|(_, k)| k).collect();
    assert!(!second.is_empty() && second.iter().all(|k| *k == "reply"), "the model nothing disturbed answers every request: {second:?}");
    assert!(killed.is_some(), "no runner to kill");
    assert_eq!(victim_kind, "error in stream: model process exited", "the reply whose runner was killed");
    assert!(churned.is_ok(), "{churned:?}");
    // Counted by the supervisor from each runner's start to its reaping: no sampling gap.
    let (_, metrics) = crate::api::get(port, "/metrics", "");
    let overlaps = metrics.lines().find(|l| l.starts_with("airlock_runner_overlaps_total ")).unwrap_or_else(|| panic!("{metrics}"));
    eprintln!("{overlaps}");
    assert_eq!(overlaps, "airlock_runner_overlaps_total 0", "a runner started while another of its key still ran");
    assert!(verify.status.success(), "airlock verify: {}{}", stdout(&verify), stderr(&verify));
    drop(server);
}
