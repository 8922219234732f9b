//! Request checks every route shares: Host (DNS rebinding), Origin (browsers), JSON bodies,
//! bearer token. Each refusal says what to change.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::ServerConfig;

/// Origins of the desktop app's own web view.
const APP_ORIGINS: [&str; 3] = ["tauri://localhost", "http://tauri.localhost", "https://tauri.localhost"];

#[derive(Clone)]
pub struct Guard {
    api_key: Option<String>,
    origins: Vec<String>,
    /// On a non-loopback address clients use the machine's name; the token protects it instead.
    check_host: bool,
}

impl Guard {
    pub fn new(cfg: &ServerConfig) -> Self {
        let mut origins: Vec<String> = APP_ORIGINS.iter().map(|s| s.to_string()).collect();
        origins.extend(cfg.origins.iter().cloned());
        Guard { api_key: cfg.api_key.clone(), origins, check_host: cfg.addr.ip().is_loopback() }
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// `localhost`, `127.x.y.z`, `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| if p.chars().all(|c| c.is_ascii_digit()) { h } else { host })
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub async fn check(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if guard.check_host {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !is_loopback_host(host) {
            return refuse(StatusCode::FORBIDDEN, "the Host header must name this machine's loopback address (localhost, 127.0.0.1 or [::1])");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !guard.origins.iter().any(|o| o == origin) {
            return refuse(StatusCode::FORBIDDEN, "this browser origin is not allowed; add it to AIRLOCK_ORIGINS (comma-separated) to allow it");
        }
    }
    if let Some(key) = &guard.api_key {
        let given = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return refuse(StatusCode::UNAUTHORIZED, "missing or wrong API key: send Authorization: Bearer <AIRLOCK_API_KEY>");
        }
    }
    if matches!(*req.method(), Method::POST | Method::DELETE | Method::PUT) {
        let ct = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
        let is_json = ct.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        let has_body = headers.get(header::CONTENT_LENGTH).is_none_or(|l| l != "0");
        // Blob uploads are raw bytes; they are kept only if they hash to the digest in the URL.
        let is_upload = req.uri().path().starts_with("/api/blobs/");
        if has_body && !is_json && !is_upload {
            return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "request bodies must be JSON (Content-Type: application/json)");
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in ["localhost", "localhost:11434", "127.0.0.1:11434", "127.1.2.3", "[::1]:11434", "[::1]", "LOCALHOST:1"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in ["", "evil.com", "evil.com:11434", "localhost.evil.com", "10.0.0.1:11434", "[::2]:1", "127.0.0.1.evil.com"] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
