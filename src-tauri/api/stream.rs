//! Bridges the engine's blocking generations to async responses: a blocking task forwards each
//! event; when the client goes away its channel closes, the task drops the generation, and the
//! runner stops within one token. Also the error responses of both APIs (Ollama's and OpenAI's
//! shapes), which every route and the body extractors share.

use std::time::Instant;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::engine::chat::{ChatError, ChatStream};
use crate::engine::protocol::GenerationStats;
use crate::engine::supervisor::{EngineError, StreamEvent};
use crate::store::StoreError;

/// An error response: Ollama's `{"error": "…"}` shape unless a route renders its own.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        super::audit::note_error(&self.1);
        (self.0, Json(json!({ "error": scrub(&self.1) }))).into_response()
    }
}

/// OpenAI's error object.
pub struct OpenAiError(ApiError);

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        OpenAiError(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let ApiError(status, message) = self.0;
        super::audit::note_error(&message);
        let (kind, code) = match status {
            StatusCode::NOT_FOUND => ("invalid_request_error", json!("model_not_found")),
            s if s.is_client_error() => ("invalid_request_error", Value::Null),
            _ => ("api_error", Value::Null),
        };
        (status, Json(json!({ "error": { "message": scrub(&message), "type": kind, "param": Value::Null, "code": code } }))).into_response()
    }
}

/// Anthropic's error object: `{"type": "error", "error": {"type": …, "message": …}}`.
pub struct AnthropicError(ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError(e)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let ApiError(status, message) = self.0;
        super::audit::note_error(&message);
        (status, Json(json!({ "type": "error", "error": { "type": error_type(status), "message": scrub(&message) } }))).into_response()
    }
}

fn error_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => "overloaded_error",
        s if s.is_client_error() => "invalid_request_error",
        _ => "api_error",
    }
}

/// Folders whose paths never leave the server (the store, the home folder).
static PRIVATE_PATHS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Registers a folder whose path must not appear in any response.
pub fn hide_path(path: &std::path::Path) {
    let mut paths = PRIVATE_PATHS.lock().unwrap_or_else(|e| e.into_inner());
    for p in [Some(path.to_path_buf()), path.canonicalize().ok()].into_iter().flatten() {
        let s = p.display().to_string();
        if s.len() > 1 && !paths.contains(&s) {
            paths.push(s);
        }
    }
    // Longest first, so a folder inside another is replaced whole.
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
}

/// An error message fit for a client: no filesystem paths of this machine.
pub fn scrub(message: &str) -> String {
    let paths = PRIVATE_PATHS.lock().unwrap_or_else(|e| e.into_inner());
    paths.iter().fold(message.to_string(), |m, p| m.replace(p.as_str(), "…"))
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        let status = match &e {
            ChatError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
            ChatError::Store(StoreError::ReadOnly { .. }) => StatusCode::FORBIDDEN,
            ChatError::Store(StoreError::InvalidName(_)) | ChatError::NotRunnable { .. } | ChatError::TooLong { .. } | ChatError::Template(_) | ChatError::Unsupported { .. } | ChatError::BadTools(_) => StatusCode::BAD_REQUEST,
            ChatError::Engine(EngineError::Request { .. }) => StatusCode::BAD_REQUEST,
            ChatError::Engine(EngineError::Busy { .. } | EngineError::TooManyLoads { .. }) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from(ChatError::Store(e))
    }
}

/// Starts `start` (which loads the model and begins generating) on a blocking thread.
pub async fn start(start: impl FnOnce() -> Result<ChatStream, ChatError> + Send + 'static) -> Result<(ChatStream, Instant), ApiError> {
    let began = Instant::now();
    let stream = tokio::task::spawn_blocking(start).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok((stream, began))
}

/// Forwards the generation's events; dropping the receiver cancels it.
pub fn events(stream: ChatStream) -> mpsc::Receiver<StreamEvent> {
    let (tx, rx) = mpsc::channel(64);
    let note = super::audit::current();
    tokio::task::spawn_blocking(move || {
        for ev in stream.generation {
            super::audit::note_event(&note, &ev);
            if tx.blocking_send(ev).is_err() {
                return; // the client went away: dropping the generation cancels it
            }
        }
    });
    rx
}

/// Collects a whole reply (for `stream: false`).
pub async fn collect(stream: ChatStream) -> Result<(String, GenerationStats), ApiError> {
    let mut rx = events(stream);
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            StreamEvent::Piece(p) => text.push_str(&p),
            StreamEvent::Done(stats) => return Ok((text, stats)),
            StreamEvent::Error(e) => return Err(ChatError::Engine(e).into()),
        }
    }
    Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the generation ended without a result".into()))
}

/// A streaming body made of one line per event, rendered by `render`.
pub fn body<T: Send + 'static>(rx: mpsc::Receiver<T>, content_type: &'static str, mut render: impl FnMut(T) -> String + Send + 'static, trailer: Option<String>) -> Response {
    let lines = ReceiverStream::new(rx).map(move |ev| Ok::<_, std::convert::Infallible>(render(ev)));
    let body = match trailer {
        Some(t) => Body::from_stream(lines.chain(tokio_stream::once(Ok(t)))),
        None => Body::from_stream(lines),
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
