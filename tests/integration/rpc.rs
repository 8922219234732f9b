//! One model across machines through llama.cpp's RPC backend: two `airlock rpc-worker`s on
//! loopback hold every layer for a head (`airlock serve --rpc` with `AIRLOCK_GPU=off`, so it keeps
//! none on its own devices). Greedy output must match the local run token for token; losing a
//! worker mid-reply must fail that reply in words and the next request must load without it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::api::{free_port, get, post, serve, serve_with_args};
use crate::common::*;

struct Worker {
    child: Child,
    endpoint: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An RPC worker offering this machine's CPU on a free loopback port, once it listens.
fn worker() -> Worker {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args([
            "rpc-worker",
            "--port",
            &port.to_string(),
            "--threads",
            "1",
            "--avoid-amx",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the RPC worker did not start listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Worker {
        child,
        endpoint: format!("127.0.0.1:{port}"),
    }
}

const PROMPT: &str = r#"{"model":"gemma3:270m","prompt":"Why is the sky blue?","stream":false,"options":{"temperature":0,"top_k":1,"seed":7,"num_predict":32}}"#;

fn answer(port: u16) -> String {
    let (status, body) = post(port, "/api/generate", PROMPT, "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["eval_count"], 32, "{v}");
    v["response"].as_str().unwrap().to_string()
}

fn placement(port: u16) -> Value {
    let (status, body) = get(port, "/api/ps", "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["models"][0]["placement"].clone()
}

#[test]
fn a_model_split_over_two_workers_answers_as_locally_and_outlives_losing_them() {
    let local = answer(serve(&[("AIRLOCK_GPU", "off")], true).port);

    let (first, mut second) = (worker(), worker());
    let workers = format!("{},{}", first.endpoint, second.endpoint);
    let head = serve_with_args(
        &["--rpc", &workers],
        &[("AIRLOCK_GPU", "off")],
        true,
        Stdio::null(),
    );
    assert_eq!(
        answer(head.port),
        local,
        "greedy output over two RPC workers differs from the local run"
    );
    let p = placement(head.port);
    let devices = p["devices"].as_array().unwrap();
    let names: Vec<&str> = devices
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            format!("RPC0[{}]", first.endpoint),
            format!("RPC0[{}]", second.endpoint)
        ],
        "{p}"
    );
    assert!(
        devices
            .iter()
            .all(|d| d["bytes"].as_u64().unwrap() > 0 && d["layers"].as_u64().unwrap() > 0),
        "{p}"
    );
    let layers: u64 = devices.iter().map(|d| d["layers"].as_u64().unwrap()).sum();
    assert_eq!(
        (layers, p["gpu_layers"].as_u64().unwrap()),
        (p["layers"].as_u64().unwrap(), layers),
        "every layer on a worker: {p}"
    );

    // The second worker dies while a long reply streams.
    let body = r#"{"model":"gemma3:270m","prompt":"Write a very long story about a dragon.","options":{"temperature":0,"num_predict":4000}}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", head.port)).unwrap();
    write!(stream, "POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !line.contains("\"response\"") {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended before its first piece"
        );
    }
    let _ = second.child.kill();
    let _ = second.child.wait();
    let mut rest = String::new();
    while reader.read_line(&mut rest).unwrap() > 0 {}
    let last = rest
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    assert!(
        last.contains("\"error\"")
            && last.contains("RPC worker")
            && last.contains("stopped answering"),
        "{last}"
    );

    // The next request loads on the worker that is left, and says which one it left out.
    let (status, body) = post(head.port, "/api/generate", PROMPT, "");
    assert_eq!(status, 200, "{body}");
    let p = placement(head.port);
    assert_eq!(p["devices"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(
        p["devices"][0]["name"],
        format!("RPC0[{}]", first.endpoint),
        "{p}"
    );
    assert!(
        p["reason"].as_str().unwrap().contains(&format!(
            "RPC worker {} left out: nothing listens",
            second.endpoint
        )),
        "{p}"
    );

    // With no worker left, the model runs on this machine's CPU, and says why.
    drop(first);
    let (status, body) = post(
        head.port,
        "/api/generate",
        r#"{"model":"gemma3:270m","keep_alive":0}"#,
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(head.port), local);
    let p = placement(head.port);
    assert_eq!(
        (
            p["gpu_layers"].as_u64(),
            p["devices"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0)),
        "{p}"
    );
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("no RPC worker answered"),
        "{p}"
    );
}

#[test]
fn hardware_lists_remote_devices_and_the_workers_left_out() {
    let live = worker();
    let dead = format!("127.0.0.1:{}", free_port());
    let store = TempDir::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["hardware", "--json"])
        .env("AIRLOCK_MODELS", store.path())
        .env("AIRLOCK_RPC", format!("{},{dead}", live.endpoint))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let remote: Vec<&Value> = v["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["backend"] == "RPC")
        .collect();
    assert_eq!(remote.len(), 1, "{v}");
    assert_eq!(remote[0]["device"], format!("RPC0[{}]", live.endpoint));
    assert!(remote[0]["memory_total_bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["rpc_workers"][0]["error"], Value::Null, "{v}");
    assert!(
        v["rpc_workers"][1]["error"]
            .as_str()
            .unwrap()
            .contains("nothing listens"),
        "{v}"
    );
}

#[test]
fn workers_stay_on_loopback_and_bad_worker_lists_stop_the_server() {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["rpc-worker", "--host", "10.0.0.5"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no authentication or encryption")
            && stderr(&out).contains("--allow-network"),
        "{}",
        stderr(&out)
    );

    let store = TempDir::new().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["serve"])
        .env("AIRLOCK_MODELS", store.path())
        .env("AIRLOCK_HOST", format!("127.0.0.1:{}", free_port()))
        .env("AIRLOCK_RPC", "gpu-box")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("\"gpu-box\" is not HOST:PORT"),
        "{}",
        stderr(&out)
    );
}
