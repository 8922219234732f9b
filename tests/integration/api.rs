//! `airlock serve`'s security rules and failure handling, over raw HTTP to the real server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::store::Store;
use tempfile::TempDir;

use crate::common::*;

pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    _store: TempDir,
    /// Its config folder (`AIRLOCK_CONFIG`: the token file) and audit log.
    state: TempDir,
}

impl Server {
    pub(crate) fn config_dir(&self) -> std::path::PathBuf {
        self.state.path().join("config")
    }

    pub(crate) fn audit_log(&self) -> std::path::PathBuf {
        self.state.path().join("audit.jsonl")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's exit status, once it has exited.
    pub(crate) fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub(crate) fn store(&self) -> &std::path::Path {
        self._store.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `airlock serve` on a free port with its own store (holding the test model as `gemma3:270m`
/// when `with_model`), with `env` added.
pub(crate) fn serve(env: &[(&str, &str)], with_model: bool) -> Server {
    serve_with_stderr(env, with_model, Stdio::null())
}

/// [`serve`], with the server's stderr going to `server_stderr`.
pub(crate) fn serve_with_stderr(env: &[(&str, &str)], with_model: bool, server_stderr: Stdio) -> Server {
    serve_with_args(&[], env, with_model, server_stderr)
}

/// [`serve_with_stderr`], with `args` after `airlock serve`.
pub(crate) fn serve_with_args(args: &[&str], env: &[(&str, &str)], with_model: bool, server_stderr: Stdio) -> Server {
    let store = TempDir::new().unwrap();
    if with_model {
        let out = airlock(store.path(), &["import", real_model().to_str().unwrap(), "--name", "gemma3:270m", "--link"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let port = free_port();
    let state = TempDir::new().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.arg("serve").args(args).env("AIRLOCK_MODELS", store.path()).env("AIRLOCK_HOST", format!("127.0.0.1:{port}")).env("AIRLOCK_THREADS", "2");
    cmd.env("AIRLOCK_CONFIG", state.path().join("config")).env("AIRLOCK_AUDIT_LOG", state.path().join("audit.jsonl"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.stderr(server_stderr).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, port, _store: store, state }
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

pub(crate) fn get(port: u16, path: &str, extra: &str) -> (u16, String) {
    request(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}Connection: close\r\n\r\n"))
}

/// Any method, with a JSON body when `body` is not empty.
pub(crate) fn request_with(port: u16, method: &str, path: &str, body: &str, extra: &str) -> (u16, String) {
    request(port, &format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}", body.len()))
}

pub(crate) fn post(port: u16, path: &str, body: &str, extra: &str) -> (u16, String) {
    request_with(port, "POST", path, body, extra)
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
    let (_, metrics) = get(s.port, "/metrics", "");
    assert!(metrics.contains("airlock_runner_crashes_total 1\n") && metrics.contains("airlock_runner_starts_total 2\n"), "{metrics}");
}

#[test]
fn runners_get_no_credential_or_key_from_the_server() {
    let secrets = [("AIRLOCK_REGISTRY_AUTH", "site-user:site-password"), ("AIRLOCK_API_KEY", "api-token-1"), ("AIRLOCK_KEY_PASSWORD", "key-password-2")];
    let s = serve(&secrets, true);
    let (status, body) = post(s.port, "/api/generate", r#"{"model":"gemma3:270m","prompt":"Hi","stream":false,"options":{"num_predict":2}}"#, "Authorization: Bearer api-token-1\r\n");
    assert_eq!(status, 200, "{body}");
    let runner = runner_pid(s.pid()).expect("a runner child process");
    let environ = std::fs::read(format!("/proc/{runner}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    let names: Vec<&str> = environ.split('\0').filter_map(|kv| kv.split_once('=').map(|(k, _)| k)).collect();
    println!("runner {runner} sees: {}", names.join(" "));
    for (name, value) in secrets {
        assert!(!environ.contains(value), "the runner sees {name}'s value");
        assert!(!names.contains(&name), "the runner sees {name}");
    }
    assert!(names.contains(&"AIRLOCK_THREADS") && names.contains(&"PATH"), "what the runner needs is kept: {names:?}");
}

#[test]
fn pull_and_push_refuse_a_scheme_or_another_registry_in_the_name_and_connect_nowhere() {
    // Stand-ins for the site registry and another one: they only count connections.
    let site = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    for l in [&site, &other] {
        l.set_nonblocking(true).unwrap();
    }
    let site_addr = site.local_addr().unwrap().to_string();
    let s = serve(&[("AIRLOCK_REGISTRY", site_addr.as_str()), ("AIRLOCK_REGISTRY_AUTH", "site-user:site-password")], false);
    let foreign = format!("{}/library/x:1", other.local_addr().unwrap());
    for name in ["http://gemma3:270m", "https://gemma3:270m", "HTTP://gemma3:270m", "//127.0.0.1/library/x", foreign.as_str()] {
        for route in ["/api/pull", "/api/push"] {
            let (status, body) = post(s.port, route, &format!(r#"{{"model":"{name}","stream":false}}"#), "");
            assert!((400..500).contains(&status), "{route} {name}: {status} {body}");
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(site.accept().is_err() && other.accept().is_err(), "no registry was contacted");
}

#[test]
fn concurrent_blob_uploads_each_reserve_their_space() {
    let s = serve(&[], false);
    let free = airlock::store::space::free_space(s.store()).expect("free space is known on Linux");
    let most = free / 10 * 6;
    let upload = |declared: u64| format!("POST /api/blobs/sha256:{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n", "cd".repeat(32), s.port);
    // The first upload declares most of the free disk, sends a little and stays open.
    let mut first = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    first.write_all(upload(most).as_bytes()).unwrap();
    first.write_all(&[0u8; 4096]).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // A second one that would fit in the free disk, but not beside the first, is refused at once.
    let (status, body) = request(s.port, &format!("{}x", upload(most)));
    assert!(status == 507 && body.contains("held by transfers in progress"), "{status} {body}");
    // The first one ends (its client went away): its space is free again.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut third = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        third.write_all(format!("{}x", upload(most)).as_bytes()).unwrap();
        third.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        let _ = third.read_to_string(&mut answer);
        if !answer.starts_with("HTTP/1.1 507") {
            assert!(answer.contains("the upload broke off"), "accepted, then cut short by the test: {answer}");
            break;
        }
        assert!(Instant::now() < deadline, "the first upload's space was never given back: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
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


#[test]
fn ps_and_stop_talk_to_the_running_server_and_schemas_constrain_output() {
    let s = serve(&[], true);
    // A boolean keeps the reply short enough for a tiny base model to finish it.
    let schema = r#"{"type":"object","properties":{"sunny":{"type":"boolean"}},"required":["sunny"]}"#;
    let body = format!(r#"{{"model":"gemma3:270m","prompt":"Is the sky blue? Reply in JSON.","stream":false,"format":{schema},"options":{{"temperature":0,"num_predict":40}}}}"#);
    let (status, resp) = post(s.port, "/api/generate", &body, "");
    assert_eq!(status, 200, "{resp}");
    let text = serde_json::from_str::<serde_json::Value>(&resp).unwrap()["response"].as_str().unwrap().to_string();
    let parsed: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    assert!(parsed["sunny"].is_boolean() && parsed.as_object().unwrap().len() == 1, "{parsed}");

    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).env("AIRLOCK_HOST", format!("127.0.0.1:{}", s.port)).output().unwrap()
    };
    let ps = cli(&["ps"]);
    assert!(ps.status.success(), "{}", stderr(&ps));
    let listing = stdout(&ps);
    assert!(listing.starts_with("NAME") && listing.contains("gemma3:270m") && listing.contains("100% CPU"), "{listing}");
    assert!(cli(&["stop", "gemma3:270m"]).status.success());
    assert!(!stdout(&cli(&["ps"])).contains("gemma3:270m"), "still loaded after stop");
    let none = Command::new(env!("CARGO_BIN_EXE_airlock")).arg("ps").env("AIRLOCK_HOST", format!("127.0.0.1:{}", free_port())).output().unwrap();
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("no Airlock server is running"), "{}", stderr(&none));
}

#[test]
fn a_chat_that_outgrows_the_context_reports_the_messages_left_out() {
    let s = serve(&[], true);
    let filler = "The quick brown fox jumps over the lazy dog. ".repeat(12);
    let mut messages = vec![serde_json::json!({"role": "system", "content": "Be terse."})];
    for i in 0..6 {
        messages.push(serde_json::json!({"role": "user", "content": format!("{i}: {filler}")}));
        messages.push(serde_json::json!({"role": "assistant", "content": format!("{i}: {filler}")}));
    }
    messages.push(serde_json::json!({"role": "user", "content": "Say yes."}));
    let body = serde_json::json!({"model": "gemma3:270m", "messages": messages, "stream": false, "options": {"num_ctx": 512, "num_predict": 4, "temperature": 0}});
    let (status, resp) = post(s.port, "/api/chat", &body.to_string(), "");
    assert_eq!(status, 200, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert!(v["truncated_messages"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert!(v["prompt_eval_count"].as_u64().unwrap() <= 512, "{v}");
}

#[test]
fn a_client_that_disconnects_frees_its_slot_and_a_full_queue_answers_503() {
    // One slot, no queue: a second request is busy for as long as the first one runs.
    let s = serve(&[("AIRLOCK_NUM_PARALLEL", "1"), ("AIRLOCK_MAX_QUEUE", "0")], true);
    let long = r#"{"model":"gemma3:270m","prompt":"1, 2, 3, 4, 5,","raw":true,"options":{"temperature":0,"num_predict":3000}}"#;
    let short = r#"{"model":"gemma3:270m","prompt":"Hi","stream":false,"options":{"num_predict":2}}"#;
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    write!(conn, "POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{long}", long.len()).unwrap();
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    while !line.contains("\"done\":false") {
        line.clear();
        reader.read_line(&mut line).unwrap();
    }
    let (status, body) = post(s.port, "/api/generate", short, "");
    assert_eq!(status, 503, "the only slot is taken: {body}");
    assert!(body.contains("busy"), "{body}");
    drop(reader); // the client goes away mid-stream
    // Cancelled within a token or two, the slot is free long before 3000 tokens could finish.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = post(s.port, "/api/generate", short, "");
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "the disconnected client's generation kept its slot");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn error_messages_carry_no_filesystem_paths() {
    let s = serve(&[], false);
    // A model whose weights are gone: the error names the problem, not where the store is.
    let store = Store::at(s._store.path());
    let m = FixtureModel::new("registry.ollama.ai/library/broken/latest", 1);
    write_folder(store.root(), std::slice::from_ref(&m));
    std::fs::remove_file(model_blob_path(store.root(), &m, 1)).unwrap();
    for path in ["/api/chat", "/v1/chat/completions"] {
        let (status, body) = post(s.port, path, r#"{"model":"broken","messages":[{"role":"user","content":"hi"}]}"#, "");
        assert_eq!(status, 400, "{body}");
        let root = store.root().display().to_string();
        assert!(!body.contains(&root) && !body.contains("/tmp/"), "a path leaked: {body}");
    }
}

/// Sends a raw request; returns (status, headers with lower-case names, body).
fn exchange(port: u16, raw: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn cors_headers(headers: &[(String, String)]) -> Vec<&(String, String)> {
    headers.iter().filter(|(k, _)| k.starts_with("access-control-")).collect()
}

#[test]
fn allowed_browser_origins_get_cors_preflights_and_headers_and_no_other_origin_does() {
    let s = serve(&[("AIRLOCK_ORIGINS", "http://allowed.example, http://other.example"), ("AIRLOCK_API_KEY", "s3cret")], false);
    let preflight = |origin: &str| {
        exchange(
            s.port,
            &format!("OPTIONS /api/chat HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n", s.port),
        )
    };
    // A browser's preflight carries no token: it is answered, for the allowed origin only.
    let (status, headers, _) = preflight("http://allowed.example");
    assert!(status == 200 || status == 204, "preflight: {status} {headers:?}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("http://allowed.example"), "{headers:?}");
    let methods = header(&headers, "access-control-allow-methods").unwrap_or("").to_ascii_uppercase();
    assert!(methods.contains("POST") && methods.contains("GET") && methods.contains("DELETE"), "{headers:?}");
    let allowed_headers = header(&headers, "access-control-allow-headers").unwrap_or("").to_ascii_lowercase();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("content-type"), "{headers:?}");
    assert!(header(&headers, "access-control-max-age").is_some_and(|v| v.parse::<u64>().is_ok()), "{headers:?}");
    assert!(headers.iter().any(|(k, v)| k == "vary" && v.to_ascii_lowercase().contains("origin")), "{headers:?}");
    let (_, headers, _) = preflight("http://other.example");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("http://other.example"), "each allowed origin is echoed: {headers:?}");

    // The actual request: answered with the origin echoed, and so is a refusal (the page can read it).
    let (status, headers, body) = exchange(s.port, &format!("GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: http://allowed.example\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n", s.port));
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("http://allowed.example"), "{headers:?}");
    let (status, headers, _) = exchange(s.port, &format!("GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: http://allowed.example\r\nConnection: close\r\n\r\n", s.port));
    assert_eq!(status, 401);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("http://allowed.example"), "{headers:?}");

    // Any other origin: refused, preflight included, with no CORS header at all.
    let (status, headers, body) = preflight("http://evil.example");
    assert_eq!(status, 403, "{body}");
    assert!(cors_headers(&headers).is_empty(), "{headers:?}");
    let (status, headers, _) = exchange(s.port, &format!("GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: http://evil.example\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n", s.port));
    assert_eq!(status, 403);
    assert!(cors_headers(&headers).is_empty(), "{headers:?}");
    // No Origin (curl, the CLI): no CORS headers either.
    let (status, headers, _) = exchange(s.port, &format!("GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n", s.port));
    assert_eq!(status, 200);
    assert!(cors_headers(&headers).is_empty(), "{headers:?}");
}

#[test]
fn malformed_json_bodies_get_ollama_and_openai_shaped_errors() {
    let s = serve(&[], false);
    for (path, body) in [("/api/chat", r#"{"model": "#), ("/api/show", "[1, 2]"), ("/api/generate", r#"{"prompt": "hi"}"#), ("/api/copy", "not json")] {
        let (status, text) = post(s.port, path, body, "");
        assert_eq!(status, 400, "{path} {body}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        assert!(v["error"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {v}");
    }
    for (path, body) in [("/v1/chat/completions", "{bad"), ("/v1/chat/completions", r#"{"model": "x"}"#), ("/v1/completions", r#"{"model": 5, "prompt": "x"}"#), ("/v1/embeddings", "")] {
        let (status, text) = post(s.port, path, body, "");
        assert_eq!(status, 400, "{path} {body}: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{path}: {v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{path}: {v}");
    }
}

/// The API in this process over `store`, so the test can read the store's parse counter.
fn serve_in_process(store: Store) -> (std::sync::Arc<airlock::core::Core>, u16) {
    let core = std::sync::Arc::new(airlock::core::Core::new(store, airlock::engine::supervisor::EngineConfig::from_env()));
    let listener = airlock::api::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let served = core.clone();
    std::thread::spawn(move || {
        let cfg = airlock::api::ServerConfig { addr, api_key: None, tokens_file: None, audit: None, drain: Default::default(), origins: vec![], site_registry: airlock::api::SiteRegistry::Environment, pull_signature: airlock::api::PullSignature::RequireWhenTrusted, allow_push: false };
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(airlock::api::serve_on(listener, served, &cfg, std::future::pending())).unwrap();
    });
    (core, addr.port())
}

#[test]
fn gguf_metadata_is_parsed_once_per_weights_blob_across_tags_show_and_ps() {
    let dir = TempDir::new().unwrap();
    write_folder(dir.path(), &[FixtureModel::new("registry.ollama.ai/library/alpha/latest", 1), FixtureModel::new("registry.ollama.ai/library/beta/latest", 2)]);
    let store = Store::at(dir.path());
    // A second name for alpha's weights: one blob, one parse.
    store.copy("alpha", "alias").unwrap();
    let (core, port) = serve_in_process(store);
    for _ in 0..3 {
        let (status, body) = get(port, "/api/tags", "");
        assert_eq!(status, 200, "{body}");
        let tags: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(tags["models"].as_array().unwrap().len(), 3, "{tags}");
        assert!(tags["models"].as_array().unwrap().iter().all(|m| m["details"]["family"] == "llama"), "{tags}");
        for name in ["alpha", "alias", "beta"] {
            let (status, body) = post(port, "/api/show", &format!(r#"{{"model": "{name}"}}"#), "");
            assert_eq!(status, 200, "{body}");
            let show: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(show["model_info"]["general.architecture"], "llama", "{show}");
        }
        assert_eq!(get(port, "/api/ps", "").0, 200);
        assert_eq!(get(port, "/v1/models", "").0, 200);
    }
    assert_eq!(core.store.gguf_parses(), 2, "two weights blobs, each parsed once, for 3 rounds of tags, show (3 names) and ps");
}

#[test]
fn show_says_a_model_whose_gguf_names_a_pooling_embeds() {
    let store = TempDir::new().unwrap();
    let mut embedder = FixtureModel::new("registry.ollama.ai/library/embedder/latest", 1);
    embedder.blobs[1].1 = airlock::gguf::writer::GgufBuilder::new()
        .kv_str("general.architecture", "bert")
        .kv_u32("bert.pooling_type", 1)
        .kv_u32("bert.block_count", 1)
        .tensor("token_embd.weight", &[8, 4], airlock::gguf::GGML_TYPE_F32)
        .build();
    write_folder(store.path(), &[embedder, FixtureModel::new("registry.ollama.ai/library/chatter/latest", 2)]);
    let s = serve(&[("AIRLOCK_MODELS", store.path().to_str().unwrap())], false);
    let caps = |model: &str| {
        let (status, body) = post(s.port, "/api/show", &format!(r#"{{"model":"{model}"}}"#), "");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["capabilities"].clone()
    };
    assert_eq!(caps("embedder"), serde_json::json!(["embedding"]));
    assert_eq!(caps("chatter")[0], "completion");
}
