//! Ollama's model-making routes: `HEAD`/`POST /api/blobs/:digest` (a blob streamed into the
//! store's staging area, hashed while written, kept only when it hashes to the digest in the
//! URL) and `POST /api/create` (Ollama's current request shape: `model`, `from`, `files`,
//! `adapters`, `template`, `system`, `parameters`, `messages`, `license`), answered with
//! Ollama's status lines.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use super::body::OllamaJson;
use super::stream::{scrub, ApiError};
use crate::core::Core;
use crate::modelfile::params::Applied;
use crate::modelfile::{self, CreateError, Recipe, Source};
use crate::store::fault::FaultPlan;
use crate::store::layers::LayerMessage;
use crate::store::{Digest, StoreError};

type CoreState = State<Arc<Core>>;

fn parse_digest(s: &str) -> Result<Digest, ApiError> {
    Digest::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `HEAD /api/blobs/:digest`: 200 when the store holds the blob, else 404.
pub async fn blob_exists(State(core): CoreState, UrlPath(digest): UrlPath<String>) -> Result<StatusCode, ApiError> {
    let digest = parse_digest(&digest)?;
    Ok(if core.store.blob_size(&digest).is_some() { StatusCode::OK } else { StatusCode::NOT_FOUND })
}

/// `POST /api/blobs/:digest`: streams the body into staging while hashing it; the blob joins the
/// store only when it hashes to `digest`. Limited by the free disk, not the JSON body limit.
pub async fn upload_blob(State(core): CoreState, UrlPath(digest): UrlPath<String>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let digest = parse_digest(&digest)?;
    let digest_text = digest.to_string();
    if core.store.blob_size(&digest).is_some() {
        // Already here: read the upload to its end (clients break on an early answer) and keep nothing.
        let mut stream = body.into_data_stream();
        while let Some(Ok(_)) = stream.next().await {}
        return Ok(StatusCode::OK.into_response());
    }
    let root = core.store.root().to_path_buf();
    std::fs::create_dir_all(&root).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot create the model store: {e}")))?;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    // Held until the upload ends, so concurrent uploads (and pulls) each see what the others left.
    let reservation = core.store.reserve_space(declared.unwrap_or(0)).map_err(|e| ApiError(StatusCode::INSUFFICIENT_STORAGE, format!("the blob does not fit: {e}")))?;
    let room = reservation.room();
    // A blocking writer hashes and writes while the body streams in.
    let (tx, mut rx) = mpsc::channel::<Chunk>(8);
    let writer_core = core.clone();
    let writer = tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        let store = &writer_core.store;
        let mut staging = store.begin_staging()?;
        let (mut file, path) = staging.create_blob(&digest)?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        let write_err = |e: std::io::Error| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write the blob to the store: {e}"));
        while let Some(chunk) = rx.blocking_recv() {
            let data = chunk.map_err(|e| ApiError::bad_request(format!("the upload broke off: {e}")))?;
            len += data.len() as u64;
            if len > room {
                return Err(ApiError(StatusCode::INSUFFICIENT_STORAGE, "the blob does not fit in the free disk space of the model store; nothing was kept".into()));
            }
            hasher.update(&data);
            file.write_all(&data).map_err(write_err)?;
        }
        file.sync_all().map_err(write_err)?;
        let got = Digest::from_hasher(hasher);
        if got != digest {
            return Err(ApiError::bad_request(format!("digest mismatch: the {len} bytes uploaded hash to {got}, not {digest}; nothing was kept")));
        }
        staging.add_verified(digest, path);
        staging.publish(&[], &FaultPlan::none())?;
        // The space stays reserved until the blob is in the store (and is freed on any error).
        drop(reservation);
        Ok(())
    });
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let failed = chunk.is_err();
        if tx.send(chunk.map_err(|e| e.to_string())).await.is_err() || failed {
            break; // the writer stopped (its error is below) or the client went away
        }
    }
    drop(tx);
    writer.await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    super::audit::update(&super::audit::current(), |r| r.digests.push(digest_text));
    Ok(StatusCode::CREATED.into_response())
}

/// A piece of an upload, or why the upload broke off.
type Chunk = Result<axum::body::Bytes, String>;

#[derive(Deserialize)]
pub struct CreateBody {
    model: Option<String>,
    name: Option<String>,
    from: Option<String>,
    files: Option<BTreeMap<String, String>>,
    adapters: Option<BTreeMap<String, String>>,
    template: Option<String>,
    system: Option<String>,
    parameters: Option<serde_json::Map<String, Value>>,
    messages: Option<Vec<MessageBody>>,
    license: Option<Value>,
    quantize: Option<String>,
    renderer: Option<String>,
    parser: Option<String>,
    requires: Option<String>,
    modelfile: Option<String>,
    stream: Option<bool>,
}

#[derive(Deserialize)]
pub struct MessageBody {
    role: String,
    #[serde(default)]
    content: String,
}

/// `{name: digest}` → the one GGUF blob it names.
fn single_blob(files: &BTreeMap<String, String>, what: &str) -> Result<Source, ApiError> {
    for (name, _) in files {
        let p = Path::new(name);
        if p.is_absolute() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(ApiError::bad_request("file path must be relative"));
        }
    }
    match files.len() {
        0 => Err(ApiError::bad_request(format!("{what} is empty: name the uploaded GGUF file and its digest"))),
        1 => {
            let digest = files.values().next().expect("one entry");
            Ok(Source::Blob(parse_digest(digest)?))
        }
        n => Err(ApiError::bad_request(format!("{what} names {n} files; Airlock makes models from one GGUF file (safetensors must be converted to GGUF first)"))),
    }
}

fn recipe(req: &CreateBody) -> Result<Recipe, ApiError> {
    if let Some(q) = req.quantize.as_ref().filter(|q| !q.is_empty()) {
        return Err(ApiError::bad_request(format!("quantize {q:?} is not supported: Airlock does not re-quantize models; quantize the GGUF with llama.cpp's llama-quantize and upload the result")));
    }
    if req.modelfile.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::bad_request("the modelfile field is Ollama's old create API; send from or files, with template, system, parameters and messages (the current ollama clients do)"));
    }
    let mut r = Recipe::default();
    r.from = match (&req.files, &req.from) {
        // A model and its vision projector (which is which, the files themselves say).
        (Some(files), _) if files.len() == 2 => {
            let mut each = files.iter().map(|(name, digest)| single_blob(&BTreeMap::from([(name.clone(), digest.clone())]), "files"));
            let (first, second) = (each.next().expect("two files")?, each.next().expect("two files")?);
            r.projector = Some(second);
            Some(first)
        }
        (Some(files), _) => Some(single_blob(files, "files")?),
        (None, Some(from)) if !from.is_empty() => Some(Source::Model(from.clone())),
        _ => return Err(ApiError::bad_request("neither 'from' or 'files' was specified")),
    };
    if let Some(adapters) = &req.adapters {
        r.adapter = Some(single_blob(adapters, "adapters")?);
    }
    r.template = req.template.clone().filter(|t| !t.is_empty());
    r.system = req.system.clone();
    for (k, v) in req.parameters.iter().flatten() {
        match r.parameters.set_json(k, v).map_err(ApiError::bad_request)? {
            Applied::Set => {}
            Applied::Ignored(w) => r.warnings.push(w),
        }
    }
    for m in req.messages.iter().flatten() {
        let role = m.role.to_lowercase();
        if !matches!(role.as_str(), "system" | "user" | "assistant") {
            return Err(ApiError::bad_request(format!("message role {:?} must be one of \"system\", \"user\" or \"assistant\"", m.role)));
        }
        r.messages.push(LayerMessage::new(role, m.content.clone()));
    }
    r.licenses = match &req.license {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<_>>().ok_or_else(|| ApiError::bad_request("license must be a string or a list of strings"))?,
        Some(_) => return Err(ApiError::bad_request("license must be a string or a list of strings")),
    };
    r.renderer = req.renderer.clone().filter(|s| !s.is_empty());
    r.parser = req.parser.clone().filter(|s| !s.is_empty());
    r.requires = req.requires.clone().filter(|s| !s.is_empty());
    Ok(r)
}

fn create_error(e: CreateError) -> ApiError {
    let status = match &e {
        CreateError::Invalid(_) | CreateError::Store(StoreError::InvalidName(_)) => StatusCode::BAD_REQUEST,
        CreateError::Store(StoreError::NotFound(_)) => StatusCode::NOT_FOUND,
        CreateError::Store(StoreError::ReadOnly { .. }) => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.to_string())
}

/// Status lines, then the outcome.
enum Progress {
    Status(String),
    Done(Result<(), ApiError>),
}

/// `POST /api/create`: checks the request, then makes the model, streaming Ollama's status
/// lines (`{"status":"using existing layer sha256:…"}` … `{"status":"success"}`); an error before
/// the first line is an HTTP error, one after it a final `{"error": …}` line, as in Ollama.
pub async fn create(State(core): CoreState, OllamaJson(req): OllamaJson<CreateBody>) -> Result<Response, ApiError> {
    let name = req.model.clone().or_else(|| req.name.clone()).filter(|m| !m.is_empty()).ok_or_else(|| ApiError::bad_request("model is required"))?;
    let recipe = recipe(&req)?;
    core.store.check_writable()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Progress>();
    let note = super::audit::current();
    tokio::task::spawn_blocking(move || {
        let status_tx = tx.clone();
        let result = modelfile::create(&core.store, &name, &recipe, &mut |s| {
            let _ = status_tx.send(Progress::Status(s));
        });
        match &result {
            Ok(_) => super::audit::note_model_digests(&note, &core.store, &name),
            Err(e) => super::audit::update(&note, |r| r.error = Some(e.to_string())),
        }
        let _ = tx.send(Progress::Done(result.map(|_| ()).map_err(create_error)));
    });
    let first = rx.recv().await.unwrap_or(Progress::Done(Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "create stopped unexpectedly".into()))));
    if let Progress::Done(Err(e)) = first {
        return Err(e);
    }
    let stream_it = req.stream != Some(false);
    if !stream_it {
        let mut outcome = first;
        while let Some(p) = rx.recv().await {
            outcome = p;
        }
        return match outcome {
            Progress::Done(Err(e)) => Err(e),
            _ => Ok(Json(json!({ "status": "success" })).into_response()),
        };
    }
    let line = |p: Progress| -> String {
        let v = match p {
            Progress::Status(s) => json!({ "status": s }),
            Progress::Done(Ok(())) => json!({ "status": "success" }),
            Progress::Done(Err(e)) => json!({ "error": scrub(&e.1) }),
        };
        format!("{v}\n")
    };
    let first_line = line(first);
    let lines = tokio_stream::once(first_line).chain(UnboundedReceiverStream::new(rx).map(line)).map(Ok::<_, std::convert::Infallible>);
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response())
}
