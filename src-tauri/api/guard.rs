//! Request checks every route shares, in two layers around CORS: [`check_caller`] (Host against
//! DNS rebinding, browser Origin against the allowlist) runs first, so an origin that is not
//! allowed gets a refusal and no CORS headers at all; then [`Guard::cors`] answers the preflights
//! of allowed origins and adds their CORS headers (also to refusals, so the page can read them);
//! then [`check_request`] (bearer token, JSON bodies). Each refusal says what to change.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};

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

    /// CORS for the allowed origins only: preflights answered (methods, `Authorization` and
    /// `Content-Type` headers, cached for an hour), `Access-Control-Allow-Origin` echoing the
    /// origin, `Vary: Origin`.
    pub fn cors(&self) -> CorsLayer {
        let origins: Vec<HeaderValue> = self.origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(Duration::from_secs(3600))
    }
}

/// Whether the `Authorization` header carries the token, compared in constant time (over
/// SHA-256 digests, so not even the token's length shows in the timing).
fn token_matches(given: Option<&str>, key: &str) -> bool {
    let given = Sha256::digest(given.unwrap_or("").as_bytes());
    let key = Sha256::digest(key.as_bytes());
    bool::from(given.as_slice().ct_eq(key.as_slice()))
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

/// Host and Origin: who is calling. Runs outside the CORS layer.
pub async fn check_caller(State(guard): State<Guard>, req: Request, next: Next) -> Response {
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
    next.run(req).await
}

/// Token and body type: what the caller sends. Runs inside the CORS layer (a preflight carries
/// no token and never gets here).
pub async fn check_request(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(key) = &guard.api_key {
        let given = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "));
        if !token_matches(given, key) {
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

    #[test]
    fn token_matches_only_the_exact_token() {
        assert!(token_matches(Some("s3cret"), "s3cret"));
        for wrong in [Some("s3cre"), Some("s3cret "), Some("S3CRET"), Some(""), None] {
            assert!(!token_matches(wrong, "s3cret"), "{wrong:?}");
        }
    }
}
