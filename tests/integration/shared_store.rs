//! Several servers on one shared store: a read-only mount (NFS exported read-only, a store
//! another user owns) serves its models and refuses every change, saying why.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use serde_json::{json, Value};

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
    serve_read_only_with(store, &[])
}

fn serve_read_only_with(store: &std::path::Path, env: &[(&str, &str)]) -> ReadOnlyServer {
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
        .envs(env.iter().copied())
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

impl ReadOnlyServer {
    fn audit(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self._state.path().join("audit.jsonl")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
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

/// Debian's HAProxy with the shipped `packaging/haproxy.cfg`, its frontend and two servers moved
/// to the given loopback ports.
struct HaProxy(std::process::Child, u16);

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(backends: [u16; 2], dir: &std::path::Path) -> HaProxy {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/haproxy.cfg")).unwrap();
    let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = shipped
        .replace("bind :11434", &format!("bind 127.0.0.1:{front}"))
        .replace("10.0.0.11:11434", &format!("127.0.0.1:{}", backends[0]))
        .replace("10.0.0.12:11434", &format!("127.0.0.1:{}", backends[1]))
        .replace("inter 1s", "inter 200ms");
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let check = Command::new("haproxy").arg("-c").arg("-f").arg(&path).output().expect("Debian's haproxy is installed (scripts/deps.sh)");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let lb = HaProxy(Command::new("haproxy").arg("-db").arg("-f").arg(&path).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(), front);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", front)).is_err() || get(front, "/", "").0 != 200 {
        assert!(Instant::now() < deadline, "haproxy did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    lb
}

/// One conversation, sent through the balancer the three ways clients name one.
struct Conversation {
    id: usize,
    messages: Vec<Value>,
}

impl Conversation {
    fn first_message(&self) -> String {
        format!("Conversation {}: tell me about the number {}.", self.id, self.id * 7)
    }

    /// Sends the next turn; returns the reply's text, or the status and body of a failure.
    fn turn(&mut self, port: u16, text: String, num_predict: u32) -> Result<String, String> {
        self.messages.push(json!({ "role": "user", "content": text }));
        let (status, body, reply) = match self.id % 3 {
            // OpenAI's `user` field names the conversation.
            1 => {
                let req = json!({ "model": "gemma3:270m", "messages": self.messages, "user": format!("conversation-{}", self.id), "max_tokens": num_predict, "temperature": 0 });
                let (status, body) = post(port, "/v1/chat/completions", &req.to_string(), "");
                let reply = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["choices"][0]["message"]["content"].as_str().map(String::from));
                (status, body, reply)
            }
            // An X-Airlock-Session header, or (2) nothing: the first message.
            kind => {
                let req = json!({ "model": "gemma3:270m", "messages": self.messages, "stream": false, "options": { "num_predict": num_predict, "temperature": 0 } });
                let header = if kind == 0 { format!("X-Airlock-Session: s-{}\r\n", self.id) } else { String::new() };
                let (status, body) = post(port, "/api/chat", &req.to_string(), &header);
                let reply = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["message"]["content"].as_str().map(String::from));
                (status, body, reply)
            }
        };
        match (status, reply) {
            (200, Some(reply)) => {
                self.messages.push(json!({ "role": "assistant", "content": reply }));
                Ok(reply)
            }
            _ => Err(format!("conversation {} turn {}: {status} {body}", self.id, self.messages.len() / 2 + 1)),
        }
    }
}

/// Which conversation and turn an audit record belongs to (from its messages: text is on).
fn conversation_turn(record: &Value) -> Option<(usize, usize)> {
    let messages = record["prompt"].as_array()?;
    let first = messages.first()?["content"].as_str()?;
    let id = first.strip_prefix("Conversation ")?.split(':').next()?.parse().ok()?;
    Some((id, messages.len() / 2 + 1))
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

#[test]
fn haproxy_keeps_each_conversation_on_one_machine_and_a_stopping_machine_loses_no_reply() {
    let store = TempDir::new().unwrap();
    let out = airlock(store.path(), &["import", real_model().to_str().unwrap(), "--name", "gemma3:270m", "--link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let env = [("AIRLOCK_AUDIT_TEXT", "1"), ("AIRLOCK_NUM_PARALLEL", "2"), ("AIRLOCK_DRAIN_TIMEOUT", "600")];
    let mut backends = [serve_read_only_with(store.path(), &env), serve_read_only_with(store.path(), &env)];
    let work = TempDir::new().unwrap();
    let lb = haproxy([backends[0].port, backends[1].port], work.path());

    // 20 conversations of 3 turns, two clients at a time.
    let mut conversations: Vec<Conversation> = (0..20).map(|id| Conversation { id, messages: Vec::new() }).collect();
    std::thread::scope(|scope| {
        for half in conversations.chunks_mut(10) {
            scope.spawn(|| {
                for c in half {
                    let first = c.first_message();
                    c.turn(lb.1, first, 6).unwrap();
                    c.turn(lb.1, "And why is that?".into(), 6).unwrap();
                    c.turn(lb.1, "Say it in one word.".into(), 6).unwrap();
                }
            });
        }
    });
    // The audit writer flushes within a second: wait for all 60 turns' records.
    let deadline = Instant::now() + Duration::from_secs(10);
    let audits = loop {
        let audits = [backends[0].audit(), backends[1].audit()];
        let turns = audits.iter().flatten().filter(|r| conversation_turn(r).is_some()).count();
        if turns >= 60 || Instant::now() > deadline {
            break audits;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut home = std::collections::BTreeMap::<usize, std::collections::BTreeSet<usize>>::new();
    let mut first_token = [Vec::new(), Vec::new(), Vec::new()];
    let (mut prompt, mut cached) = (0, 0);
    for (b, records) in audits.iter().enumerate() {
        for r in records {
            let Some((id, turn)) = conversation_turn(r) else { continue };
            home.entry(id).or_default().insert(b);
            first_token[turn - 1].push(r["first_token_ms"].as_u64().unwrap());
            if turn > 1 {
                prompt += r["prompt_tokens"].as_u64().unwrap();
                cached += r["cached_tokens"].as_u64().unwrap();
                assert!(r["cached_tokens"].as_u64().unwrap() > 0, "turn {turn} of conversation {id} reused no prefix: {r}");
            }
        }
    }
    assert_eq!(home.len(), 20, "every conversation was served");
    assert!(home.values().all(|b| b.len() == 1), "a conversation's turns landed on both machines: {home:?}");
    let on_first = home.values().filter(|b| b.contains(&0)).count();
    println!("conversations per machine: {on_first} / {}", 20 - on_first);
    assert!(on_first > 0 && on_first < 20, "leastconn spreads conversations over both machines");
    let [t1, t2, t3] = first_token.map(median);
    println!("turns 2 and 3: {cached} of {prompt} prompt tokens ({:.0} %) came from the conversation's cache on its machine", 100.0 * cached as f64 / prompt as f64);
    println!("median time to first token: turn 1 {t1} ms, turn 2 {t2} ms, turn 3 {t3} ms");

    // Stop the first machine while one of its conversations streams a long reply.
    // One that spoke Ollama's /api/chat, whose key the long reply below carries too.
    let mine = home.iter().find(|(id, b)| b.contains(&0) && *id % 3 != 1).map(|(id, _)| *id).expect("an /api/chat conversation on the first machine");
    let c = &conversations[mine];
    let mut long = c.messages.clone();
    long.push(json!({ "role": "user", "content": "Now tell the whole story again, at length." }));
    let body = json!({ "model": "gemma3:270m", "messages": long, "options": { "num_predict": 60, "temperature": 0 } }).to_string();
    let key = if mine % 3 == 0 { format!("X-Airlock-Session: s-{mine}\r\n") } else { String::new() };
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", lb.1)).unwrap();
    use std::io::{BufRead, Read, Write};
    write!(stream, "POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{key}Connection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut reader = std::io::BufReader::new(stream);
    let mut line = String::new();
    while !line.contains("\"content\"") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the long reply ended before its first piece");
    }
    assert!(Command::new("kill").args(["-TERM", &backends[0].child.id().to_string()]).status().unwrap().success());
    // Every conversation's next turn arrives: the stopping machine's go to the other one.
    for c in conversations.iter_mut().filter(|c| c.id != mine) {
        c.turn(lb.1, "One more time, please.".into(), 4).unwrap_or_else(|e| panic!("a client saw an error while a machine stopped: {e}"));
    }
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("\"done\":true") && !rest.contains("\"error\""), "the reply under way finished: {rest}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = backends[0].child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the stopped machine did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let first = backends[0].audit();
    // Records are matched by turn, not by position: earlier turns may reach the file late.
    let later: Vec<&Value> = first.iter().filter(|r| r["status"] == 200 && conversation_turn(r).is_some_and(|(_, turn)| turn == 4)).collect();
    assert!(later.len() == 1 && later[0]["route"] == "/api/chat" && conversation_turn(later[0]) == Some((mine, 4)), "after SIGTERM the stopping machine only finished its reply: {later:?}");
    // A record is written once its response has gone: the last one may land a moment later.
    let moved_now = || backends[1].audit().iter().filter(|r| conversation_turn(r).is_some_and(|(id, turn)| turn == 4 && home[&id].contains(&0))).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut moved = moved_now();
    while moved != on_first - 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        moved = moved_now();
    }
    println!("after SIGTERM: {moved} conversation(s) moved to the other machine; {} request(s) were refused with 503 by the stopping one and retried", first.iter().filter(|r| r["status"] == 503).count());
    assert_eq!(moved, on_first - 1, "the stopping machine's other conversations continued on the other one");
    backends[1].child.kill().unwrap();
}
