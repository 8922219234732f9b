//! `/api/pull` and `/api/push` against the site's registry, `AIRLOCK_REGISTRY`, streaming
//! Ollama's progress lines exactly (`pulling manifest`, `pulling <digest>` with `digest`, `total`,
//! `completed`, `verifying sha256 digest`, `writing manifest`, `success`; an `{"error": …}` line on
//! failure). The API reaches that one registry only: a request cannot make this machine connect
//! anywhere else. Without `AIRLOCK_REGISTRY` both answer a clear error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::body::OllamaJson;
use super::stream::{scrub, ApiError};
use crate::core::Core;
use crate::registry::{self, ClientOptions, PullOptions, PushOptions, Reference, RegistryError, Status};

/// What this server allows of transfers (from its [`super::ServerConfig`]).
pub struct TransferRules {
    pub site_registry: super::SiteRegistry,
    pub pull_signature: super::PullSignature,
    pub allow_push: bool,
}

#[derive(Deserialize)]
pub struct TransferRequest {
    model: Option<String>,
    name: Option<String>,
    #[serde(default)]
    insecure: bool,
    stream: Option<bool>,
}

fn no_registry(name: &str) -> ApiError {
    ApiError::bad_request(format!(
        "cannot transfer {name:?}: no site registry is configured (set {} to the registry's host:port, or http://host:port for plain HTTP, before starting `airlock serve`; in the app, set it in Settings); without one, models arrive by `airlock import` or the app's Import button",
        registry::reference::REGISTRY_ENV
    ))
}

/// Resolves `name` against the site registry; a name with another registry host is refused.
fn resolve(req: &TransferRequest, rules: &TransferRules) -> Result<(String, Reference), ApiError> {
    let name = req.model.clone().or_else(|| req.name.clone()).filter(|m| !m.is_empty()).ok_or_else(|| ApiError::bad_request("model is required"))?;
    let site = rules.site_registry.current().map_err(|e| ApiError::bad_request(e.to_string()))?.ok_or_else(|| no_registry(&name))?;
    // The scheme is the site's: a request cannot downgrade the configured registry to plain HTTP
    // (credentials would cross the network in the clear), only ask for what is configured.
    if req.insecure && !site.plain_http {
        return Err(ApiError::bad_request(format!("insecure (plain HTTP) was asked for, but the site registry {} is configured for HTTPS; set {}=http://{} to allow plain HTTP", site.host, registry::reference::REGISTRY_ENV, site.host)));
    }
    let reference = Reference::resolve_on_site(&name, &site).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((name, reference))
}

pub async fn pull(State(core): State<Arc<Core>>, Extension(rules): Extension<Arc<TransferRules>>, OllamaJson(req): OllamaJson<TransferRequest>) -> Result<Response, ApiError> {
    let (_, reference) = resolve(&req, &rules)?;
    core.store.check_writable()?;
    let signature = rules.pull_signature.current();
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = PullOptions { client: ClientOptions::from_env(), signature, trust_dir: None, cancel: Some(cancel.clone()) };
    let note = super::audit::current();
    let rx = run_streamed(cancel, move |progress| registry::pull(&core.store, &reference, &opts, progress).map(|pulled| super::audit::note_model_digests(&note, &core.store, &pulled.name)));
    respond(rx, req.stream != Some(false)).await
}

pub async fn push(State(core): State<Arc<Core>>, Extension(rules): Extension<Arc<TransferRules>>, OllamaJson(req): OllamaJson<TransferRequest>) -> Result<Response, ApiError> {
    if !rules.allow_push {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "pushing through the API is off on this server: it would let any caller replace a model that every machine pulls from the site registry; push with `airlock push` in a terminal, or have the operator start `airlock serve --allow-push`".into(),
        ));
    }
    let (name, reference) = resolve(&req, &rules)?;
    let local = {
        let core = core.clone();
        let name = name.clone();
        tokio::task::spawn_blocking(move || core.store.resolve(&name)).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
    };
    let cancel = Arc::new(AtomicBool::new(false));
    let opts = PushOptions { client: ClientOptions::from_env(), sign: None, cancel: Some(cancel.clone()) };
    let model = local.name.display_shortest();
    let note = super::audit::current();
    let rx = run_streamed(cancel, move |progress| registry::push(&core.store, &model, &reference, &opts, progress).map(|_| super::audit::note_model_digests(&note, &core.store, &model)));
    respond(rx, req.stream != Some(false)).await
}

/// Runs a transfer on a blocking thread; each status becomes a JSON line, an error the last one.
/// A closed stream sets `cancel`.
fn run_streamed(cancel: Arc<AtomicBool>, work: impl FnOnce(&dyn Fn(&Status)) -> Result<(), RegistryError> + Send + 'static) -> mpsc::Receiver<Result<Value, ApiError>> {
    let (tx, rx) = mpsc::channel::<Result<Value, ApiError>>(256);
    let note = super::audit::current();
    tokio::task::spawn_blocking(move || {
        let send = |s: &Status| {
            if tx.blocking_send(Ok(json!(s))).is_err() {
                cancel.store(true, Ordering::Relaxed);
            }
        };
        if let Err(e) = work(&send) {
            super::audit::update(&note, |r| r.error = Some(e.to_string()));
            let status = match &e {
                RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
                RegistryError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
                RegistryError::Config(_) | RegistryError::Signature(_) => StatusCode::BAD_REQUEST,
                RegistryError::Store(crate::store::StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
                RegistryError::Store(crate::store::StoreError::ReadOnly { .. }) => StatusCode::FORBIDDEN,
                RegistryError::Auth(_) | RegistryError::Transport { .. } | RegistryError::Status { .. } => StatusCode::BAD_GATEWAY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let _ = tx.blocking_send(Err(ApiError(status, e.to_string())));
        }
    });
    rx
}

async fn respond(mut rx: mpsc::Receiver<Result<Value, ApiError>>, stream: bool) -> Result<Response, ApiError> {
    if stream {
        let lines = ReceiverStream::new(rx).map(|v| {
            let v = v.unwrap_or_else(|e| json!({ "error": scrub(&e.1) }));
            Ok::<_, std::convert::Infallible>(format!("{v}\n"))
        });
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response());
    }
    let mut last = None;
    while let Some(v) = rx.recv().await {
        last = Some(v?);
    }
    match last {
        Some(v) if v["status"] == "success" => Ok(Json(json!({ "status": "success" })).into_response()),
        _ => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the transfer ended without a result".into())),
    }
}
