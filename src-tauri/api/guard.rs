//! Request checks every route shares, in two layers around CORS: [`check_caller`] (Host against
//! DNS rebinding, browser Origin against the allowlist) runs first, so an origin that is not
//! allowed gets a refusal and no CORS headers at all; then [`Guard::cors`] answers the preflights
//! of allowed origins and adds their CORS headers (also to refusals, so the page can read them);
//! then [`check_request`] (the API token and what its scope and models allow, JSON bodies). Each
//! refusal says what to change.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::{audit, ServerConfig, BODY_LIMIT};
use crate::access::tokens::{Refusal, Scope, Tokens};

/// Origins of the desktop app's own web view.
const APP_ORIGINS: [&str; 3] = ["tauri://localhost", "http://tauri.localhost", "https://tauri.localhost"];

#[derive(Clone)]
pub struct Guard {
    tokens: Arc<Tokens>,
    origins: Vec<String>,
    /// On a non-loopback address clients use the machine's name; the token protects it instead.
    check_host: bool,
}

impl Guard {
    pub fn new(cfg: &ServerConfig) -> Self {
        let mut origins: Vec<String> = APP_ORIGINS.iter().map(|s| s.to_string()).collect();
        origins.extend(cfg.origins.iter().cloned());
        Guard { tokens: Arc::new(Tokens::new(cfg.tokens_file.clone(), cfg.api_key.clone())), origins, check_host: cfg.addr.ip().is_loopback() }
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

fn refuse(status: StatusCode, message: &str) -> Response {
    audit::note_error(message);
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

/// What a route needs: `None` for the health check `/`, which says only that the server runs
/// (load balancers ask it without a token).
fn needed_scope(path: &str) -> Option<Scope> {
    match path {
        "/" => None,
        "/api/push" | "/api/pull" | "/api/create" | "/api/copy" | "/api/delete" | "/metrics" => Some(Scope::Admin),
        p if p.starts_with("/api/blobs/") => Some(Scope::Admin),
        _ => Some(Scope::Chat),
    }
}

/// The model names a request body may carry, in any route's spelling.
#[derive(Deserialize, Default)]
#[serde(default)]
struct NamedModels {
    model: Option<String>,
    name: Option<String>,
    from: Option<String>,
    source: Option<String>,
    destination: Option<String>,
}

/// The request's text, for an audit log that keeps it.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestText {
    messages: Option<serde_json::Value>,
    prompt: Option<serde_json::Value>,
    input: Option<serde_json::Value>,
}

fn shortest(name: &str) -> String {
    crate::store::ModelName::parse(name).map_or_else(|_| name.to_string(), |n| n.display_shortest())
}

/// Token, scope, body type and the models the body names: what the caller sends. Runs inside
/// the CORS layer (a preflight carries no token and never gets here). The caller (a
/// [`Caller`](crate::access::tokens::Caller)) goes on to
/// the routes, which list only the models it may use.
pub async fn check_request(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let Some(needed) = needed_scope(req.uri().path()) else { return next.run(req).await };
    let headers = req.headers();
    // Anthropic's clients send the key as `x-api-key`; every other client as a bearer token.
    let bearer = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "));
    let given = bearer.or_else(|| headers.get("x-api-key").and_then(|h| h.to_str().ok()));
    let caller = match guard.tokens.authenticate(given) {
        Ok(caller) => caller,
        Err(Refusal::Missing) => return refuse(StatusCode::UNAUTHORIZED, "this server needs an API token: send Authorization: Bearer <token> (the operator makes one with `airlock token add NAME`, or sets AIRLOCK_API_KEY)"),
        Err(Refusal::Unknown) => return refuse(StatusCode::UNAUTHORIZED, "unknown or revoked API token: check the Authorization: Bearer header; `airlock token list` on the server shows the tokens that exist"),
        Err(Refusal::Expired { name, at }) => return refuse(StatusCode::UNAUTHORIZED, &format!("the API token {name:?} expired at {at}; ask the operator for a new one")),
        Err(Refusal::Unreadable(why)) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &why),
    };
    let note = audit::current();
    audit::update(&note, |r| r.token = caller.name().map(str::to_string));
    if !caller.may(needed) {
        let name = caller.name().unwrap_or_default();
        return refuse(StatusCode::FORBIDDEN, &format!("the API token {name:?} may chat and list models only: {} changes the store and needs a token made with --scope admin", req.uri().path()));
    }
    let mut req = req;
    if matches!(*req.method(), Method::POST | Method::DELETE | Method::PUT) {
        let headers = req.headers();
        let ct = headers.get(header::CONTENT_TYPE).and_then(|h| h.to_str().ok()).unwrap_or("");
        let is_json = ct.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        let has_body = headers.get(header::CONTENT_LENGTH).is_none_or(|l| l != "0");
        // Blob uploads are raw bytes; they are kept only if they hash to the digest in the URL.
        let is_upload = req.uri().path().starts_with("/api/blobs/");
        if has_body && !is_json && !is_upload {
            return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "request bodies must be JSON (Content-Type: application/json)");
        }
        if !is_upload {
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE, &format!("the request body is over {} MB or broke off", BODY_LIMIT >> 20));
            };
            // A body that is not this shape is the route's to refuse, with its own message.
            let named = serde_json::from_slice::<NamedModels>(&bytes).unwrap_or_default();
            let names: Vec<String> = [named.model, named.name, named.from, named.source, named.destination].into_iter().flatten().filter(|n| !n.is_empty()).map(|n| shortest(&n)).collect();
            if let Some(denied) = names.iter().find(|n| !caller.may_use(n)) {
                let name = caller.name().unwrap_or_default();
                return refuse(StatusCode::FORBIDDEN, &format!("the API token {name:?} may not use the model {denied:?}; ask the operator for a token whose --models include it"));
            }
            audit::update(&note, |r| r.model = names.first().cloned());
            if note.as_ref().is_some_and(|n| n.keep_text()) {
                let text = serde_json::from_slice::<RequestText>(&bytes).unwrap_or_default();
                audit::update(&note, |r| r.prompt = text.messages.or(text.prompt).or(text.input));
            }
            req = Request::from_parts(parts, Body::from(bytes));
        }
    }
    req.extensions_mut().insert(caller);
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
