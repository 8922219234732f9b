//! `airlock serve`'s security rules and failure handling, over raw HTTP to the real server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::*;

struct Server {
    child: Child,
    port: u16,
    _store: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(env: &[(&str, &str)], with_model: bool) -> Server {
    let store = TempDir::new().unwrap();
    if with_model {
        let out = airlock(store.path(), &["import", real_model().to_str().unwrap(), "--name", "gemma3:270m", "--link"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.arg("serve").env("AIRLOCK_MODELS", store.path()).env("AIRLOCK_HOST", format!("127.0.0.1:{port}")).env("AIRLOCK_THREADS", "2");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, port, _store: store }
}

/// Sends a raw request; returns (status, body).
fn request(port: u16, raw: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The server may answer (413) and close before a huge body is fully sent.
    let _ = s.write_all(raw.as_bytes());
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn get(port: u16, path: &str, extra: &str) -> (u16, String) {
    request(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n"))
}

fn post(port: u16, path: &str, body: &str, extra: &str) -> (u16, String) {
    request(port, &format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}", body.len()))
}

#[test]
fn refuses_foreign_host_headers_dns_rebinding() {
    let s = serve(&[], false);
    assert_eq!(get(s.port, "/api/tags", "").0, 200);
    for host in ["evil.com", "evil.com:11434", "localhost.evil.com", "10.0.0.1"] {
        let (status, body) = request(s.port, &format!("GET /api/tags HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
        assert_eq!(status, 403, "{host}: {body}");
        assert!(body.contains("Host"), "{body}");
    }
    let (status, _) = request(s.port, "GET /api/tags HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
}

#[test]
fn refuses_browser_origins_not_on_the_allowlist() {
    let s = serve(&[("AIRLOCK_ORIGINS", "http://allowed.example")], false);
    assert_eq!(get(s.port, "/api/tags", "Origin: http://evil.example\r\n").0, 403);
    assert_eq!(get(s.port, "/api/tags", "Origin: http://allowed.example\r\n").0, 200);
    assert_eq!(get(s.port, "/api/tags", "Origin: tauri://localhost\r\n").0, 200, "the app's own origin");
}

#[test]
fn refuses_post_bodies_that_are_not_json() {
    let s = serve(&[], false);
    let form = "model=x";
    let (status, body) = request(s.port, &format!("POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}", form.len()));
    assert_eq!(status, 415, "{body}");
    let (status, _) = request(s.port, &format!("POST /api/show HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}", form.len()));
    assert_eq!(status, 415);
}

#[test]
fn requires_the_bearer_token_when_one_is_set() {
    let s = serve(&[("AIRLOCK_API_KEY", "s3cret")], false);
    assert_eq!(get(s.port, "/api/tags", "").0, 401);
    assert_eq!(get(s.port, "/api/tags", "Authorization: Bearer wrong\r\n").0, 401);
    assert_eq!(get(s.port, "/api/tags", "Authorization: Bearer s3cret\r\n").0, 200);
}

#[test]
fn refuses_to_listen_beyond_loopback_without_a_token_and_names_a_taken_port() {
    let store = TempDir::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_airlock")).arg("serve").env("AIRLOCK_MODELS", store.path()).env("AIRLOCK_HOST", "0.0.0.0:0").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("AIRLOCK_API_KEY"), "{}", stderr(&out));
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(env!("CARGO_BIN_EXE_airlock")).arg("serve").env("AIRLOCK_MODELS", store.path()).env("AIRLOCK_HOST", format!("127.0.0.1:{port}")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
}

#[test]
fn limits_request_bodies_and_reports_errors_as_json() {
    let s = serve(&[], false);
    let huge = format!("{{\"model\":\"x\",\"prompt\":\"{}\"}}", "a".repeat(40 << 20));
    let (status, _) = post(s.port, "/api/generate", &huge, "");
    assert_eq!(status, 413);
    let (status, body) = post(s.port, "/api/show", r#"{"model":"nope"}"#, "");
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].as_str().unwrap().contains("not found"));
    let (status, body) = post(s.port, "/v1/chat/completions", r#"{"model":"nope","messages":[]}"#, "");
    assert_eq!(status, 404);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"], "model_not_found");
}

#[test]
fn responses_carry_no_filesystem_paths() {
    let s = serve(&[], true);
    let store_marker = "/tmp/";
    for (status, body) in [get(s.port, "/api/tags", ""), post(s.port, "/api/show", r#"{"model":"gemma3:270m"}"#, ""), get(s.port, "/v1/models", "")] {
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains(store_marker) && !body.contains(".cache"), "a path leaked: {body}");
    }
}

#[test]
fn a_runner_crash_ends_the_stream_with_an_error_and_the_server_keeps_serving() {
    let s = serve(&[], true);
    let body = r#"{"model":"gemma3:270m","prompt":"Tell a long story.","options":{"num_predict":400,"temperature":0}}"#;
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(conn, "POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    // Skip the headers, then wait for the first streamed piece.
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.contains("\"done\":false") {
            break;
        }
    }
    let runner = runner_pid(s.child.id()).expect("a runner child process");
    Command::new("kill").args(["-9", &runner.to_string()]).status().unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("model process exited"), "the stream must end with the error: {rest}");
    let (status, body) = post(s.port, "/api/generate", r#"{"model":"gemma3:270m","prompt":"Hi","stream":false,"options":{"num_predict":3}}"#, "");
    assert_eq!(status, 200, "{body}");
}

/// The pid of `airlock runner` started by the server `parent`.
fn runner_pid(parent: u32) -> Option<u32> {
    // Children are listed per thread of the parent; the runner was started from a worker thread.
    let mut children = String::new();
    for task in std::fs::read_dir(format!("/proc/{parent}/task")).ok()?.flatten() {
        children.push_str(&std::fs::read_to_string(task.path().join("children")).unwrap_or_default());
        children.push(' ');
    }
    children.split_whitespace().filter_map(|p| p.parse().ok()).find(|p: &u32| {
        std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("runner"))
    })
}

