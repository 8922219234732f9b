//! `airlock create -f Modelfile`, `show --modelfile`/`--parameters`/`--system`/`--template`,
//! `cp`, and the engine honouring the layers, on the real test model.

use std::fs;
use std::path::Path;

use airlock::store::Store;
use tempfile::TempDir;

use crate::common::*;
use crate::engine::store_with_real_model;

const TEMPLATE: &str = "{{ if .System }}{{ .System }}\n\n{{ end }}{{ range .Messages }}{{ if eq .Role \"user\" }}Question: {{ .Content }}\n{{ else if eq .Role \"assistant\" }}Answer: {{ .Content }}\n{{ end }}{{ end }}Answer:";

pub(crate) fn ok(o: std::process::Output) -> std::process::Output {
    assert!(o.status.success(), "failed: {}\n{}", stdout(&o), stderr(&o));
    o
}

fn model_id(store: &Path, name: &str) -> String {
    Store::at(store).resolve(name).unwrap().id.hex()
}

fn write_modelfile(dir: &Path, text: &str) -> String {
    let path = dir.join("Modelfile");
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn created_model_round_trips_through_show_modelfile_and_runs_with_its_layers() {
    let store = store_with_real_model();
    let work = TempDir::new().unwrap();
    let modelfile = format!(
        "# a model made the Ollama way\nFROM {}\nTEMPLATE \"\"\"{TEMPLATE}\"\"\"\nSYSTEM You answer in one short sentence.\nMESSAGE user What is the capital of France?\nMESSAGE assistant Paris.\nPARAMETER temperature 0\nPARAMETER num_predict 24\nLICENSE \"\"\"Test licence\nline two\"\"\"\n",
        real_model().display()
    );
    let file = write_modelfile(work.path(), &modelfile);
    let before = Store::at(store.path()).blobs_dir().read_dir().unwrap().count();
    let out = ok(airlock(store.path(), &["create", "tuned", "-f", &file]));
    assert!(stderr(&out).contains("using existing layer"), "the weights were already in the store: {}", stderr(&out));
    // Weights shared: only the new text layers and the config were added.
    let after = Store::at(store.path()).blobs_dir().read_dir().unwrap().count();
    assert_eq!(after - before, 6, "template, system, license, params, messages, config");

    // The layers as `show` prints them.
    assert_eq!(stdout(&ok(airlock(store.path(), &["show", "tuned", "--system"]))), "You answer in one short sentence.\n");
    assert_eq!(stdout(&ok(airlock(store.path(), &["show", "tuned", "--template"]))), format!("{TEMPLATE}\n"));
    let params = stdout(&ok(airlock(store.path(), &["show", "tuned", "--parameters"])));
    assert!(params.contains("num_predict                    24") && params.contains("temperature                    0"), "{params}");
    assert_eq!(stdout(&ok(airlock(store.path(), &["show", "tuned", "--license"]))), "Test licence\nline two\n");

    // show --modelfile makes the same model again: identical model ID.
    let shown = stdout(&ok(airlock(store.path(), &["show", "tuned", "--modelfile"])));
    assert!(shown.contains("MESSAGE user What is the capital of France?") && shown.contains("PARAMETER num_predict 24"), "{shown}");
    let again = TempDir::new().unwrap();
    let file2 = write_modelfile(again.path(), &shown);
    ok(airlock(store.path(), &["create", "tuned-again", "-f", &file2]));
    assert_eq!(model_id(store.path(), "tuned-again"), model_id(store.path(), "tuned"));

    // `run` renders the system prompt and the MESSAGE turns before the question.
    let run = ok(airlock(store.path(), &["run", "tuned", "--verbose", "What is two plus two?"]));
    let expected = "You answer in one short sentence.\n\nQuestion: What is the capital of France?\nAnswer: Paris.\nQuestion: What is two plus two?\nAnswer:";
    let line = format!("rendered prompt:      {}", serde_json::to_string(expected).unwrap());
    assert!(stderr(&run).contains(&line), "expected {line}\nin {}", stderr(&run));
    let reply = stdout(&run).trim().to_string();

    // A stop word from that reply ends the next one right before it (greedy is deterministic).
    let word = reply.split_whitespace().skip(1).find(|w| !w.contains('"')).unwrap_or_else(|| panic!("reply too short to pick a stop word: {reply:?}")).to_string();
    let cut = reply.find(&word).unwrap();
    let stop_file = write_modelfile(work.path(), &format!("FROM tuned\nPARAMETER stop \"{word}\"\n"));
    ok(airlock(store.path(), &["create", "tuned-stop", "-f", &stop_file]));
    let stopped = ok(airlock(store.path(), &["run", "tuned-stop", "What is two plus two?"]));
    assert_eq!(stdout(&stopped).trim(), reply[..cut].trim(), "full reply {reply:?}, stop {word:?}");
    let params = stdout(&ok(airlock(store.path(), &["show", "tuned-stop", "--parameters"])));
    assert!(params.contains("temperature") && params.contains(&format!("stop                           {}", serde_json::to_string(&word).unwrap())), "inherited and new: {params}");
    assert_store_consistent(store.path());
}

#[test]
fn bad_modelfiles_are_refused_naming_the_line_and_write_nothing() {
    let store = store_with_real_model();
    let work = TempDir::new().unwrap();
    let before = store_files(store.path());
    let cases = [
        ("FROM gemma3:270m\nSYSTEM fine\nTEMPLATE {{ if .System }}unclosed\n", "line 3", "TEMPLATE does not parse"),
        ("FROM gemma3:270m\nPARAMETER temprature 0.5\n", "line 2", "unknown parameter \"temprature\""),
        ("FROM gemma3:270m\n\nPARAMETER top_k many\n", "line 3", "whole number"),
        ("FROM gemma3:270m\nMESSAGE robot beep\n", "line 2", "must be one of"),
        ("FROM no-such-model\n", "", "no such file, and no model"),
        ("SYSTEM no base\n", "", "no FROM"),
    ];
    for (text, line, needle) in cases {
        let file = write_modelfile(work.path(), text);
        let out = airlock(store.path(), &["create", "broken", "-f", &file]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(line) && err.contains(needle), "{text:?}: {err}");
        assert_eq!(store_files(store.path()), before, "{text:?} wrote to the store");
    }
    assert!(!store.path().join(".airlock-staging").exists());
    // The default Modelfile is ./Modelfile; a missing one is a clear error.
    let out = airlock(store.path(), &["create", "broken"]);
    assert!(stderr(&out).contains("cannot read the Modelfile"), "{}", stderr(&out));
}

#[test]
fn cp_writes_a_new_manifest_and_copies_no_blob() {
    let store = store_with_real_model();
    let blobs = Store::at(store.path()).blobs_dir().read_dir().unwrap().count();
    let out = ok(airlock(store.path(), &["cp", "gemma3:270m", "mine:v1"]));
    assert_eq!(stdout(&out), "copied 'gemma3:270m' to 'mine:v1'\n");
    assert_eq!(model_id(store.path(), "mine:v1"), model_id(store.path(), "gemma3:270m"));
    assert_eq!(Store::at(store.path()).blobs_dir().read_dir().unwrap().count(), blobs);
    let out = airlock(store.path(), &["cp", "nothing-here", "x"]);
    assert!(!out.status.success() && stderr(&out).contains("not found"), "{}", stderr(&out));
}

/// `airlock serve` on a free port over `store`; killed when dropped.
pub(crate) struct Serve(std::process::Child, pub(crate) u16);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn serve_store(store: &Path) -> Serve {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("serve")
        .env("AIRLOCK_MODELS", store)
        .env("AIRLOCK_HOST", format!("127.0.0.1:{port}"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Serve(child, port)
}

/// One raw HTTP/1.1 request (`headers` end with CRLF each); returns (status, body).
pub(crate) fn http(port: u16, method: &str, path: &str, headers: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n", body.len());
    let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn blob_upload_with_a_wrong_digest_is_refused_and_leaves_nothing() {
    let store = TempDir::new().unwrap();
    let server = serve_store(store.path());
    let data = b"some bytes that are not what the digest says".repeat(1000);
    let right = airlock::store::Digest::of_bytes(&data);
    let wrong = airlock::store::Digest::of_bytes(b"other");
    assert_eq!(http(server.1, "HEAD", &format!("/api/blobs/{right}"), "", b"").0, 404);
    assert_eq!(http(server.1, "HEAD", "/api/blobs/sha256:not-hex", "", b"").0, 400);
    let (status, body) = http(server.1, "POST", &format!("/api/blobs/{wrong}"), "Content-Type: application/octet-stream\r\n", &data);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("digest mismatch") && body.contains(&right.to_string()), "{body}");
    assert!(store_files(store.path()).is_empty(), "a refused upload left files: {:?}", store_files(store.path()));
    assert!(!store.path().join(".airlock-staging").exists());
    // The right digest is kept; a second upload of it is a no-op.
    assert_eq!(http(server.1, "POST", &format!("/api/blobs/{right}"), "", &data).0, 201);
    assert_eq!(http(server.1, "HEAD", &format!("/api/blobs/{right}"), "", b"").0, 200);
    assert_eq!(http(server.1, "POST", &format!("/api/blobs/{right}"), "", &data).0, 200);
    assert_eq!(fs::read(Store::at(store.path()).blob_path(&right)).unwrap(), data);
    // Bigger than the free disk: refused before a byte is written (not by the JSON body limit).
    let huge = airlock::store::Digest::of_bytes(b"huge");
    let (status, body) = http_declaring(server.1, &format!("/api/blobs/{huge}"), 1 << 60);
    assert_eq!(status, 507, "{body}");
    assert!(body.contains("free"), "{body}");
    assert_eq!(http(server.1, "HEAD", &format!("/api/blobs/{huge}"), "", b"").0, 404);
}

/// A POST that declares `len` bytes and sends a few: the answer must not wait for the rest.
fn http_declaring(port: u16, path: &str, len: u64) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = write!(s, "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\nGGUF");
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, resp.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn api_create_streams_ollamas_status_lines_and_refuses_quantize() {
    let store = store_with_real_model();
    let server = serve_store(store.path());
    let json = "Content-Type: application/json\r\n";
    let req = r#"{"model":"api-made","from":"gemma3:short","system":"Be brief.","parameters":{"temperature":0.5,"stop":["<end>"]},"messages":[{"role":"user","content":"Hi"}]}"#;
    let (status, body) = http(server.1, "POST", "/api/create", json, req.as_bytes());
    assert_eq!(status, 200, "{body}");
    let lines: Vec<serde_json::Value> = body.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.last().unwrap()["status"], "success", "{body}");
    assert!(lines.iter().any(|l| l["status"] == "writing manifest"), "{body}");
    let shown = stdout(&ok(airlock(store.path(), &["show", "api-made", "--modelfile"])));
    assert!(shown.contains("SYSTEM Be brief.") && shown.contains("PARAMETER stop <end>") && shown.contains("MESSAGE user Hi"), "{shown}");
    let params = fs::read_to_string(Store::at(store.path()).blob_path(&Store::at(store.path()).resolve("api-made").unwrap().manifest.layer(airlock::store::manifest::MEDIA_PARAMS).unwrap().digest)).unwrap();
    // Ollama's bytes: sorted keys, Go's HTML escaping, inherited num_predict kept, trailing newline.
    assert_eq!(params, "{\"num_predict\":24,\"stop\":[\"\\u003cend\\u003e\"],\"temperature\":0.5}\n");

    let before = store_files(store.path());
    for (req, needle) in [
        (r#"{"model":"q","from":"gemma3:270m","quantize":"q4_K_M"}"#, "not supported"),
        (r#"{"model":"t","from":"gemma3:270m","template":"{{ range .Messages }}"}"#, "TEMPLATE does not parse"),
        (r#"{"model":"p","from":"gemma3:270m","parameters":{"top_k":"many"}}"#, "whole number"),
        (r#"{"model":"f","files":{"../x.gguf":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}}"#, "relative"),
        (r#"{"model":"n"}"#, "neither 'from' or 'files'"),
    ] {
        let (status, body) = http(server.1, "POST", "/api/create", json, req.as_bytes());
        assert!(status == 400 && body.contains(needle), "{req}: {status} {body}");
    }
    assert_eq!(store_files(store.path()), before, "a refused create wrote to the store");
}

/// A LoRA adapter for the test model, made here: rank-4 `lora_a`/`lora_b` pairs on every
/// attention query projection, filled with a fixed pattern scaled by `scale` (0: no effect).
pub(crate) fn lora_adapter(scale: f32) -> Vec<u8> {
    use airlock::gguf::writer::GgufBuilder;
    use airlock::gguf::GGML_TYPE_F32;
    let model = airlock::gguf::read_file(&real_model()).unwrap();
    let rank = 4u64;
    let mut b = GgufBuilder::new()
        .kv_str("general.architecture", model.architecture().unwrap())
        .kv_str("general.type", "adapter")
        .kv_str("adapter.type", "lora")
        .kv_f32("adapter.lora.alpha", rank as f32);
    for t in model.tensors.iter().filter(|t| t.name.ends_with(".attn_q.weight")) {
        let (n_in, n_out) = (t.dims[0], t.dims[1]);
        b = b.tensor(&format!("{}.lora_a", t.name), &[n_in, rank], GGML_TYPE_F32).tensor(&format!("{}.lora_b", t.name), &[rank, n_out], GGML_TYPE_F32);
    }
    let mut bytes = b.build();
    let info = airlock::gguf::read(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap();
    for t in &info.tensors {
        let start = (info.data_offset + t.offset) as usize;
        for i in 0..t.element_count() as usize {
            let v = (((i * 7919) % 13) as f32 / 13.0 - 0.5) * scale;
            bytes[start + 4 * i..start + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
    bytes
}

#[test]
fn an_adapter_layer_is_stored_and_applied_by_the_runner() {
    let store = store_with_real_model();
    let work = TempDir::new().unwrap();
    fs::write(work.path().join("lora.gguf"), lora_adapter(0.5)).unwrap();
    fs::write(work.path().join("zero.gguf"), lora_adapter(0.0)).unwrap();
    let params = "PARAMETER temperature 0\nPARAMETER num_predict 12\n";
    for (name, extra) in [("plain", ""), ("tuned", "ADAPTER lora.gguf\n"), ("zero", "ADAPTER ./zero.gguf\n")] {
        let file = write_modelfile(work.path(), &format!("FROM gemma3:270m\n{params}{extra}"));
        ok(airlock(store.path(), &["create", name, "-f", &file]));
    }
    let shown = stdout(&ok(airlock(store.path(), &["show", "tuned", "--modelfile"])));
    assert!(shown.contains("\nADAPTER /") && shown.contains("/blobs/sha256-"), "{shown}");
    let reply = |name: &str| stdout(&ok(airlock(store.path(), &["run", name, "The capital of France is"])));
    let plain = reply("plain");
    assert!(!plain.trim().is_empty());
    // A zero adapter changes nothing; a real one changes the greedy continuation.
    assert_eq!(reply("zero"), plain);
    assert_ne!(reply("tuned"), plain, "the adapter had no effect");
    // A model file is not an adapter.
    let file = write_modelfile(work.path(), &format!("FROM gemma3:270m\nADAPTER {}\n", real_model().display()));
    let out = airlock(store.path(), &["create", "wrong", "-f", &file]);
    assert!(!out.status.success() && stderr(&out).contains("not a LoRA adapter"), "{}", stderr(&out));
}
