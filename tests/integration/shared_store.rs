//! Several servers on one shared store: a read-only mount (NFS exported read-only, a store
//! another user owns) serves its models and refuses every change, saying why.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::api::{get, post, request_with};
use crate::common::*;

/// `airlock serve` in its own mount namespace where `store` is remounted read-only (`unshare`:
/// the mount ends with the server, whatever happens to the test).
struct ReadOnlyServer {
    child: std::process::Child,
    port: u16,
    _state: TempDir,
    stderr: std::path::PathBuf,
}

impl Drop for ReadOnlyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_read_only(store: &std::path::Path) -> ReadOnlyServer {
    let state = TempDir::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let stderr = state.path().join("stderr");
    let script = r#"mount --bind "$STORE" "$STORE" && mount -o remount,bind,ro "$STORE" && exec "$AIRLOCK" serve"#;
    let child = Command::new("unshare")
        .args(["-rm", "sh", "-c", script])
        .env("STORE", store)
        .env("AIRLOCK", env!("CARGO_BIN_EXE_airlock"))
        .env("AIRLOCK_MODELS", store)
        .env("AIRLOCK_HOST", format!("127.0.0.1:{port}"))
        .env("AIRLOCK_THREADS", "2")
        .env("AIRLOCK_CONFIG", state.path().join("config"))
        .env("AIRLOCK_AUDIT_LOG", state.path().join("audit.jsonl"))
        .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
        .spawn()
        .expect("unshare (util-linux) runs the server in its own mount namespace");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the server did not start: {}", std::fs::read_to_string(&stderr).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    ReadOnlyServer { child, port, _state: state, stderr }
}

fn listing(store: &std::path::Path) -> Vec<String> {
    let mut all: Vec<String> = walk(store).into_iter().map(|p| p.strip_prefix(store).unwrap().display().to_string()).collect();
    all.sort();
    all
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn a_read_only_store_serves_its_models_and_refuses_every_change_saying_why() {
    let store = TempDir::new().unwrap();
    let out = airlock(store.path(), &["import", real_model().to_str().unwrap(), "--name", "gemma3:270m", "--link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = listing(store.path());
    let s = serve_read_only(store.path());

    let (status, tags) = get(s.port, "/api/tags", "");
    assert!(status == 200 && tags.contains("gemma3:270m"), "{status} {tags}");
    let (status, reply) = post(s.port, "/api/generate", r#"{"model":"gemma3:270m","prompt":"Hi","stream":false,"options":{"num_predict":3}}"#, "");
    assert_eq!(status, 200, "{reply}");
    assert_eq!(post(s.port, "/api/show", r#"{"model":"gemma3:270m"}"#, "").0, 200);

    let digest = "sha256:".to_string() + &"ab".repeat(32);
    let changes = [
        ("POST", "/api/copy", r#"{"source":"gemma3:270m","destination":"copy:1"}"#.to_string()),
        ("DELETE", "/api/delete", r#"{"model":"gemma3:270m"}"#.to_string()),
        ("POST", "/api/create", r#"{"model":"made:1","from":"gemma3:270m","system":"Be brief."}"#.to_string()),
        ("POST", &format!("/api/blobs/{digest}"), "some bytes".to_string()),
    ];
    for (method, path, body) in &changes {
        let (status, answer) = request_with(s.port, method, path, body, "");
        println!("{method} {path}: {status} {answer}");
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(answer.contains("read-only"), "{method} {path} says why: {answer}");
        assert!(!answer.contains(store.path().to_str().unwrap()), "no path in the answer: {answer}");
    }
    let (status, tags) = get(s.port, "/api/tags", "");
    assert!(status == 200 && tags.contains("gemma3:270m") && !tags.contains("copy:1"), "{tags}");
    let log = std::fs::read_to_string(&s.stderr).unwrap();
    assert!(log.contains("read-only here"), "the operator is told at start: {log}");
    drop(s);
    assert_eq!(listing(store.path()), before, "the store is as it was");
}
