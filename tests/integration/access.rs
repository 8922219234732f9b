//! Scoped API tokens and the audit log, on the real `airlock serve`: tokens made with
//! `airlock token`, requests over raw HTTP, the log read back with `airlock audit`.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::{get, post, serve, serve_with_args, Server};
use crate::common::*;

/// `airlock ARGS` against the server's config folder and audit log.
fn operator(s: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).env("AIRLOCK_CONFIG", s.config_dir()).env("AIRLOCK_AUDIT_LOG", s.audit_log()).output().unwrap()
}

/// Makes a token with `airlock token add NAME EXTRA…` and returns it.
fn add_token(s: &Server, name: &str, extra: &[&str]) -> String {
    let out = operator(s, &[&["token", "add", name], extra].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// The audit log's records, once it holds at least `n` (lines are written as responses end).
fn audit_records(s: &Server, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(s.audit_log()).unwrap_or_default();
        let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if records.len() >= n || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every route of the API, with a body where it takes one, and whether it changes the store.
const ROUTES: &[(&str, &str, &str, bool)] = &[
    ("GET", "/api/version", "", false),
    ("GET", "/api/tags", "", false),
    ("GET", "/api/ps", "", false),
    ("POST", "/api/show", r#"{"model":"none:1"}"#, false),
    ("POST", "/api/chat", r#"{"model":"none:1","messages":[]}"#, false),
    ("POST", "/api/generate", r#"{"model":"none:1","prompt":"x"}"#, false),
    ("POST", "/api/embed", r#"{"model":"none:1","input":"x"}"#, false),
    ("POST", "/api/embeddings", r#"{"model":"none:1","prompt":"x"}"#, false),
    ("GET", "/v1/models", "", false),
    ("POST", "/v1/chat/completions", r#"{"model":"none:1","messages":[{"role":"user","content":"x"}]}"#, false),
    ("POST", "/v1/completions", r#"{"model":"none:1","prompt":"x"}"#, false),
    ("POST", "/v1/embeddings", r#"{"model":"none:1","input":"x"}"#, false),
    ("POST", "/api/create", r#"{"model":"made:1","from":"none:1"}"#, true),
    ("POST", "/api/copy", r#"{"source":"none:1","destination":"other:1"}"#, true),
    ("DELETE", "/api/delete", r#"{"model":"none:1"}"#, true),
    ("HEAD", "/api/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000", "", true),
    ("POST", "/api/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000", "", true),
    ("POST", "/api/pull", r#"{"model":"none:1"}"#, true),
    ("POST", "/api/push", r#"{"model":"none:1"}"#, true),
    ("GET", "/metrics", "", true),
];

fn call(s: &Server, method: &str, path: &str, body: &str, auth: &str) -> (u16, String) {
    match method {
        "GET" => get(s.port, path, auth),
        "POST" => post(s.port, path, body, auth),
        _ => crate::api::request_with(s.port, method, path, body, auth),
    }
}

#[test]
fn each_scope_meets_each_route_as_the_table_says() {
    let s = serve_with_args(&["--allow-push"], &[], false, Stdio::null());
    // No token file yet: a single-user loopback server, open as before.
    assert_eq!(get(s.port, "/api/tags", "").0, 200);
    let chat = add_token(&s, "analyst", &["--scope", "chat"]);
    let admin = add_token(&s, "ops", &["--scope", "admin"]);
    assert!(chat.starts_with("airlock-") && chat != admin);
    let mut table = Vec::new();
    for &(method, path, body, changes_store) in ROUTES {
        let as_nobody = call(&s, method, path, body, "");
        let as_wrong = call(&s, method, path, body, &bearer("airlock-not-a-token"));
        let as_chat = call(&s, method, path, body, &bearer(&chat));
        let as_admin = call(&s, method, path, body, &bearer(&admin));
        table.push(format!("{method:6} {path:28.28} none {} wrong {} chat {} admin {}", as_nobody.0, as_wrong.0, as_chat.0, as_admin.0));
        assert_eq!(as_nobody.0, 401, "{method} {path} without a token: {}", as_nobody.1);
        assert_eq!(as_wrong.0, 401, "{method} {path} with a wrong token: {}", as_wrong.1);
        if changes_store {
            assert_eq!(as_chat.0, 403, "{method} {path} with a chat token: {}", as_chat.1);
            if method != "HEAD" {
                assert!(as_chat.1.contains("--scope admin"), "{}", as_chat.1);
            }
        } else {
            assert!(![401, 403].contains(&as_chat.0), "{method} {path} with a chat token: {} {}", as_chat.0, as_chat.1);
        }
        assert!(![401, 403].contains(&as_admin.0), "{method} {path} with an admin token: {} {}", as_admin.0, as_admin.1);
    }
    println!("{}", table.join("\n"));
    // The health check says only that the server runs, to anyone (a load balancer has no token).
    assert_eq!(get(s.port, "/", "").0, 200);
    let (status, body) = get(s.port, "/api/tags", "");
    assert!(status == 401 && body.contains("airlock token add"), "{status} {body}");
}

#[test]
fn patterns_limit_a_token_to_its_models_and_revoked_or_expired_tokens_are_refused() {
    let s = serve(&[("AIRLOCK_API_KEY", "env-key")], true);
    let admin = add_token(&s, "ops", &["--scope", "admin"]);
    let (status, body) = post(s.port, "/api/copy", r#"{"source":"gemma3:270m","destination":"team/other:1b"}"#, &bearer(&admin));
    assert_eq!(status, 200, "{body}");
    let gemma = add_token(&s, "gemma-only", &["--models", "gemma3"]);

    let names = |path: &str, token: &str, field: &str, id: &str| -> Vec<String> {
        let (status, body) = get(s.port, path, &bearer(token));
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v[field].as_array().unwrap().iter().map(|m| m[id].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names("/api/tags", &gemma, "models", "name"), ["gemma3:270m"]);
    assert_eq!(names("/v1/models", &gemma, "data", "id"), ["gemma3:270m"]);
    assert_eq!(names("/api/tags", &admin, "models", "name").len(), 2);
    let generate = |model: &str, token: &str| post(s.port, "/api/generate", &format!(r#"{{"model":"{model}","prompt":"Hi","stream":false,"options":{{"num_predict":2}}}}"#), &bearer(token));
    assert_eq!(generate("gemma3:270m", &gemma).0, 200);
    let (status, body) = generate("team/other:1b", &gemma);
    assert!(status == 403 && body.contains("team/other:1b"), "{status} {body}");
    let (status, body) = post(s.port, "/v1/chat/completions", r#"{"model":"team/other:1b","messages":[{"role":"user","content":"Hi"}]}"#, &bearer(&gemma));
    assert_eq!(status, 403, "{body}");
    // AIRLOCK_API_KEY is one chat token: it chats, and changes nothing.
    assert_eq!(generate("team/other:1b", "env-key").0, 200);
    assert_eq!(post(s.port, "/api/copy", r#"{"source":"gemma3:270m","destination":"x:1"}"#, &bearer("env-key")).0, 403);

    let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let brief = add_token(&s, "brief", &["--expires", &expires.format(&time::format_description::well_known::Rfc3339).unwrap()]);
    assert_eq!(generate("gemma3:270m", &brief).0, 200);
    std::thread::sleep((expires - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(200)).unsigned_abs());
    let (status, body) = generate("gemma3:270m", &brief);
    assert!(status == 401 && body.contains("expired"), "{status} {body}");

    let out = operator(&s, &["token", "revoke", "gemma-only"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, body) = generate("gemma3:270m", &gemma);
    assert!(status == 401 && body.contains("revoked"), "{status} {body}");
    let list = stdout(&operator(&s, &["token", "list"]));
    println!("{list}");
    assert!(list.contains("ops") && list.contains("admin") && !list.contains("gemma-only"), "{list}");
    let records = audit_records(&s, 0);
    let copy = records.iter().find(|r| r["route"] == "/api/copy" && r["status"] == 200).expect("the copy is recorded");
    assert_eq!(copy["token"], "ops");
    assert!(copy["digests"].as_array().is_some_and(|d| d.len() >= 2), "the copy's blobs: {copy}");
}

#[test]
fn the_audit_log_has_one_line_per_request_under_eight_concurrent_clients_and_no_token_text() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let s = serve_with_args(&[], &[], true, Stdio::from(log.reopen().unwrap()));
    let alice = add_token(&s, "alice", &["--scope", "chat"]);
    const CLIENTS: usize = 8;
    let sent: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (s, alice) = (&s, &alice);
                scope.spawn(move || {
                    let stream = if i % 2 == 0 { "false" } else { "true" };
                    let (status, body) = post(s.port, "/api/generate", &format!(r#"{{"model":"gemma3:270m","prompt":"Count: {i}","stream":{stream},"options":{{"num_predict":4}}}}"#), &bearer(alice));
                    assert!(status == 200 || status == 503, "{status} {body}");
                    assert_eq!(get(s.port, "/api/tags", &bearer(alice)).0, 200);
                    assert_eq!(get(s.port, "/api/tags", &bearer("airlock-guessed")).0, 401);
                    3
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    let records = audit_records(&s, sent);
    assert_eq!(records.len(), sent, "one line per request");
    let generated: Vec<&Value> = records.iter().filter(|r| r["route"] == "/api/generate" && r["status"] == 200).collect();
    assert!(!generated.is_empty());
    for r in &generated {
        assert_eq!(r["token"], "alice");
        assert_eq!(r["model"], "gemma3:270m");
        assert!(r["prompt_tokens"].as_u64().unwrap() > 0 && r["reply_tokens"].as_u64().unwrap() > 0, "{r}");
        assert!(r["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{r}");
        assert!(r.get("prompt").is_none() && r.get("reply").is_none(), "no text unless the operator asks: {r}");
    }
    assert_eq!(records.iter().filter(|r| r["status"] == 401 && r["token"].is_null()).count(), CLIENTS);
    println!("{}", serde_json::to_string(generated[0]).unwrap());

    let audit = operator(&s, &["audit", "--token", "alice", "--json"]);
    assert_eq!(stdout(&audit).lines().count(), records.iter().filter(|r| r["token"] == "alice").count());
    let table = stdout(&operator(&s, &["audit", "--since", "1h"]));
    println!("{}", table.lines().take(4).collect::<Vec<_>>().join("\n"));
    assert_eq!(table.lines().count(), sent + 1, "a header and one row per request");
    let list: Value = serde_json::from_str(&stdout(&operator(&s, &["token", "list", "--json"]))).unwrap();
    assert!(list[0]["last_used"].is_string(), "alice's last use comes from the log: {list}");

    let audit_text = std::fs::read_to_string(s.audit_log()).unwrap();
    drop(s);
    let mut server_stderr = String::new();
    log.reopen().unwrap().read_to_string(&mut server_stderr).unwrap();
    for text in [&server_stderr, &audit_text] {
        assert!(!text.contains(&alice) && !text.contains(&alice["airlock-".len()..]), "the token's text leaked");
    }
}

#[test]
fn the_audit_log_keeps_prompt_and_reply_text_only_when_the_operator_asks() {
    let s = serve(&[("AIRLOCK_AUDIT_TEXT", "1")], true);
    let (status, body) = post(s.port, "/api/chat", r#"{"model":"gemma3:270m","messages":[{"role":"user","content":"Say hi"}],"stream":false,"options":{"num_predict":3}}"#, "");
    assert_eq!(status, 200, "{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    let records = audit_records(&s, 1);
    let r = &records[0];
    assert_eq!(r["prompt"][0]["content"], "Say hi", "{r}");
    assert_eq!(r["reply"], reply["message"]["content"], "{r}");
    assert!(r["token"].is_null(), "a server without tokens records no name: {r}");
}
