//! `airlock ps` and `airlock stop`: they ask the running server (`airlock serve` or the desktop
//! app) over its loopback API, as `ollama ps` / `ollama stop` do, since models live there.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::format::{human_bytes, table};
use crate::api::ServerConfig;
use crate::engine::protocol::processor;

/// One request to the local server; returns the JSON body.
fn call(method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    let cfg = ServerConfig::from_env().map_err(anyhow::Error::msg)?;
    let addr = if cfg.addr.ip().is_unspecified() { std::net::SocketAddr::from(([127, 0, 0, 1], cfg.addr.port())) } else { cfg.addr };
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|_| anyhow!("no Airlock server is running at {addr}; start one with `airlock serve` (or open the app)"))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = cfg.api_key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let host = if addr.is_ipv6() { format!("[::1]:{}", addr.port()) } else { format!("127.0.0.1:{}", addr.port()) };
    write!(conn, "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}", payload.len())?;
    let mut resp = String::new();
    conn.read_to_string(&mut resp).context("reading the server's answer")?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or_else(|| anyhow!("malformed answer from the server"))?;
    let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json: Value = serde_json::from_str(body.trim()).unwrap_or(Value::Null);
    if status != 200 {
        bail!("{}", json["error"].as_str().unwrap_or("the server refused the request"));
    }
    Ok(json)
}

pub fn ps(json: bool) -> Result<()> {
    let answer = call("GET", "/api/ps", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let mut rows = vec![vec!["NAME".into(), "ID".into(), "SIZE".into(), "PROCESSOR".into(), "CONTEXT".into(), "UNTIL".into()]];
    for m in answer["models"].as_array().into_iter().flatten() {
        let id = m["digest"].as_str().unwrap_or("").chars().take(12).collect();
        rows.push(vec![
            m["name"].as_str().unwrap_or("").into(),
            id,
            human_bytes(m["size"].as_u64().unwrap_or(0)),
            processor(m["size"].as_u64().unwrap_or(0), m["size_vram"].as_u64().unwrap_or(0)),
            m["context_length"].to_string(),
            m["expires_at"].as_str().unwrap_or("").into(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

pub fn stop(model: &str) -> Result<()> {
    call("POST", "/api/generate", Some(&serde_json::json!({ "model": model, "keep_alive": 0 })))?;
    Ok(())
}
