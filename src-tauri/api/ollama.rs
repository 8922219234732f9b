//! Ollama's native routes, field for field as Ollama documents them.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::OllamaJson;
use super::images;
use super::options::settings;
use super::reply::{collect, replies, Collected, ReplyEvent};
use super::stream::{self, ApiError};
use crate::access::tokens::Caller;
use crate::core::{rfc3339, Core, ModelDetails};
use crate::engine::chat::RequestSettings;
use crate::engine::protocol::{processor, GenerationStats};
use crate::engine::template::ChatMessage;
use crate::engine::tools::{ReplyPart, Think, ToolCall, ToolRequest};

type CoreState = State<Arc<Core>>;

pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

fn details_json(d: &ModelDetails) -> Value {
    let family = d.architecture.clone().unwrap_or_default();
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": d.parameters.clone().unwrap_or_default(),
        "quantization_level": d.quantization.clone().unwrap_or_default(),
    })
}

/// The models the caller may use (all, unless its token names some).
pub async fn tags(State(core): CoreState, Extension(caller): Extension<Caller>) -> Result<Json<Value>, ApiError> {
    let models = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, ApiError> {
        let (entries, _) = core.store.list()?;
        Ok(entries
            .iter()
            .filter(|e| caller.may_use(&e.name.display_shortest()))
            .map(|e| {
                let d = core.details(e);
                let name = e.name.display_shortest();
                json!({ "name": name, "model": name, "modified_at": rfc3339(e.modified), "size": e.size(), "digest": e.id.hex(), "details": details_json(&d) })
            })
            .collect())
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(json!({ "models": models })))
}

/// Reads manifests and GGUF metadata: on a blocking thread, never on the async workers.
pub async fn ps(State(core): CoreState, Extension(caller): Extension<Caller>) -> Result<Json<Value>, ApiError> {
    tokio::task::spawn_blocking(move || ps_blocking(&core, &caller)).await.map(Json).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn ps_blocking(core: &Core, caller: &Caller) -> Value {
    let now = Instant::now();
    let models: Vec<Value> = core
        .engine()
        .supervisor
        .loaded()
        .iter()
        .filter(|m| caller.may_use(&m.spec.name))
        .map(|m| {
            let entry = core.store.resolve(&m.spec.name).ok();
            let d = entry.as_ref().map(|e| core.details(e));
            let expires = SystemTime::now() + m.expires_at().saturating_duration_since(now);
            // What llama.cpp allocated; the stored size for a runner that reported nothing.
            let placement = &m.info.placement;
            let (size, size_vram) = match placement.ps_sizes() {
                (0, _) => (entry.as_ref().map_or(0, |e| e.size()), 0),
                sizes => sizes,
            };
            json!({
                "name": m.spec.name, "model": m.spec.name,
                "size": size,
                "digest": entry.as_ref().map(|e| e.id.hex()).unwrap_or_default(),
                "details": d.as_ref().map(details_json).unwrap_or(json!({})),
                "expires_at": rfc3339(expires),
                "size_vram": size_vram,
                "context_length": m.info.n_ctx,
                // Beyond Ollama's fields: the layers and devices behind size_vram, and why.
                "placement": {
                    "processor": processor(size, size_vram),
                    "gpu_layers": placement.gpu_layers,
                    "layers": placement.layers,
                    "devices": placement.devices,
                    "ram_bytes": placement.ram_bytes,
                    "reason": m.info.placement_reason,
                },
            })
        })
        .collect();
    json!({ "models": models })
}

#[derive(Deserialize)]
pub struct ModelRef {
    model: Option<String>,
    name: Option<String>,
}

impl ModelRef {
    fn get(&self) -> Result<String, ApiError> {
        self.model.clone().or_else(|| self.name.clone()).filter(|m| !m.is_empty()).ok_or_else(|| ApiError::bad_request("model is required"))
    }
}

pub async fn show(State(core): CoreState, OllamaJson(req): OllamaJson<ModelRef>) -> Result<Json<Value>, ApiError> {
    let name = req.get()?;
    tokio::task::spawn_blocking(move || -> Result<Json<Value>, ApiError> {
        let entry = core.store.resolve(&name)?;
        let d = core.details(&entry);
        let model = core.prepare(&name)?;
        let model_info = core.model_info(&entry);
        let template = model.template().unwrap_or_default().to_string();
        let layers = crate::modelfile::ModelLayers::read(&core.store, &entry);
        let (modelfile, parameters) = (layers.modelfile_without_paths(), layers.parameters.table());
        let mut capabilities = model.capabilities();
        if d.not_runnable_reason.is_some() {
            capabilities.clear();
        }
        Ok(Json(json!({
            "license": d.license.clone().unwrap_or_default(),
            "modelfile": modelfile,
            "parameters": parameters,
            "messages": layers.messages,
            "template": template,
            "system": model.system.unwrap_or_default(),
            "details": details_json(&d),
            "model_info": Value::Object(model_info),
            "capabilities": capabilities,
            "modified_at": rfc3339(entry.modified),
        })))
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

#[derive(Deserialize)]
pub struct ChatBody {
    model: String,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    stream: Option<bool>,
    options: Option<Value>,
    keep_alive: Option<Value>,
    format: Option<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    think: Option<Value>,
}

#[derive(Deserialize)]
pub struct GenerateBody {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    stream: Option<bool>,
    options: Option<Value>,
    keep_alive: Option<Value>,
    format: Option<Value>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    images: Option<Vec<String>>,
}

/// Ollama's final statistics, nanoseconds, plus how many of the oldest messages were left out to
/// fit the context (only when some were).
fn final_stats(stats: &GenerationStats, total: Duration, load: Duration, dropped: usize) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if dropped > 0 {
        m.insert("truncated_messages".into(), json!(dropped));
    }
    m.insert("done_reason".into(), json!(if stats.done_reason == "cancel" { "stop" } else { stats.done_reason.as_str() }));
    m.insert("done".into(), json!(true));
    m.insert("total_duration".into(), json!(total.as_nanos() as u64));
    m.insert("load_duration".into(), json!(load.as_nanos() as u64));
    m.insert("prompt_eval_count".into(), json!(stats.prompt_tokens));
    m.insert("prompt_eval_duration".into(), json!(stats.prompt_eval_ns));
    m.insert("eval_count".into(), json!(stats.eval_tokens));
    m.insert("eval_duration".into(), json!(stats.eval_ns));
    // Airlock's own, with a draft model: what it proposed and what the model kept.
    if let Some(rate) = stats.draft_acceptance() {
        m.insert("draft_count".into(), json!(stats.draft_tokens));
        m.insert("draft_accepted_count".into(), json!(stats.draft_accepted));
        m.insert("draft_acceptance_rate".into(), json!(rate));
    }
    m
}

/// An empty request loads (or with keep_alive 0 unloads) the model, as in Ollama.
fn preload(core: &Arc<Core>, name: &str, settings: &RequestSettings) -> Result<Duration, ApiError> {
    let model = core.prepare(name)?;
    if settings.keep_alive == Some(Duration::ZERO) {
        core.engine().supervisor.unload(&model.model_path);
        return Ok(Duration::ZERO);
    }
    Ok(core.engine().preload(&model, &settings)?)
}

/// How a route's reply looks: chat replies carry a `message`, generate replies a `response`.
#[derive(Clone, Copy)]
enum Shape {
    Chat,
    Generate,
}

impl Shape {
    fn field(self) -> &'static str {
        match self {
            Shape::Chat => "message",
            Shape::Generate => "response",
        }
    }
    fn content(self, text: &str) -> Value {
        match self {
            Shape::Chat => json!({ "role": "assistant", "content": text }),
            Shape::Generate => json!(text),
        }
    }
    /// The reply fields of one object: chat messages carry `thinking` and `tool_calls` inside
    /// the message, generate replies a top-level `thinking`.
    fn fill(self, out: &mut serde_json::Map<String, Value>, content: &str, thinking: &str, calls: &[ToolCall]) {
        let mut body = self.content(content);
        match self {
            Shape::Chat => {
                if !thinking.is_empty() {
                    body["thinking"] = json!(thinking);
                }
                if !calls.is_empty() {
                    body["tool_calls"] = json!(calls);
                }
                out.insert("message".into(), body);
            }
            Shape::Generate => {
                out.insert("response".into(), body);
                if !thinking.is_empty() {
                    out.insert("thinking".into(), json!(thinking));
                }
            }
        }
    }
}

fn head(model: &str) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("model".into(), json!(model));
    out.insert("created_at".into(), json!(crate::units::now_rfc3339()));
    out
}

/// The final object (for `stream: false`, or the stream's last line).
fn final_object(shape: Shape, model: &str, reply: &Collected, began: Instant, load: Duration, dropped: usize) -> Value {
    let mut out = head(model);
    shape.fill(&mut out, &reply.content, &reply.thinking, &reply.tool_calls);
    out.extend(final_stats(&reply.stats, began.elapsed(), load, dropped));
    Value::Object(out)
}

/// An empty request loads (or, with `keep_alive: 0`, unloads) the model and says so.
async fn load_only(core: Arc<Core>, shape: Shape, model: String, settings: RequestSettings) -> Result<Response, ApiError> {
    let unload = settings.keep_alive == Some(Duration::ZERO);
    let name = model.clone();
    let load = tokio::task::spawn_blocking(move || preload(&core, &name, &settings)).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    let reason = if unload { "unload" } else { "load" };
    let mut out = json!({ "model": model, "created_at": crate::units::now_rfc3339(), "done_reason": reason, "done": true, "load_duration": load.as_nanos() as u64 });
    out[shape.field()] = shape.content("");
    Ok(Json(out).into_response())
}

/// Streams the reply as NDJSON (thinking and content as they come, each tool call whole), or
/// collects it for `stream: false`.
async fn reply(shape: Shape, model: String, started: crate::engine::chat::ChatStream, began: Instant, stream_it: bool) -> Result<Response, ApiError> {
    let (load, dropped) = (started.load_duration, started.dropped_messages);
    if !stream_it {
        let reply = collect(started).await?;
        return Ok(Json(final_object(shape, &model, &reply, began, load, dropped)).into_response());
    }
    let rx = replies(started);
    let line = move |ev| {
        let v = match ev {
            ReplyEvent::Part(part) => {
                let mut out = head(&model);
                match part {
                    ReplyPart::Content(text) => shape.fill(&mut out, &text, "", &[]),
                    ReplyPart::Thinking(text) => shape.fill(&mut out, "", &text, &[]),
                    ReplyPart::ToolCall(call) => shape.fill(&mut out, "", "", &[call]),
                }
                out.insert("done".into(), json!(false));
                Value::Object(out)
            }
            ReplyEvent::Done(stats) => final_object(shape, &model, &Collected { stats, ..Default::default() }, began, load, dropped),
            ReplyEvent::Error(e) => json!({ "error": stream::scrub(&e.to_string()) }),
        };
        format!("{v}\n")
    };
    Ok(stream::body(rx, "application/x-ndjson", line, None))
}

pub async fn chat(State(core): CoreState, OllamaJson(req): OllamaJson<ChatBody>) -> Result<Response, ApiError> {
    let mut settings = settings(req.options.as_ref(), req.keep_alive.as_ref(), req.format.as_ref()).map_err(ApiError::bad_request)?;
    settings.think = req.think.as_ref().map(Think::from_json).transpose().map_err(ApiError::bad_request)?.flatten();
    settings.tools = ToolRequest { tools: req.tools.unwrap_or_default(), ..Default::default() };
    settings.tools.validate().map_err(ApiError::bad_request)?;
    let messages = req.messages.unwrap_or_default();
    if messages.iter().any(|m| !m.images.is_empty()) {
        images::check_images(&core, &req.model, messages.iter().flat_map(|m| &m.images))?;
    }
    if messages.is_empty() {
        return load_only(core, Shape::Chat, req.model, settings).await;
    }
    let (c, name) = (core.clone(), req.model.clone());
    let (started, began) = stream::start(move || c.engine().chat(&c.prepare(&name)?, &messages, settings)).await?;
    reply(Shape::Chat, req.model, started, began, req.stream != Some(false)).await
}

pub async fn generate(State(core): CoreState, OllamaJson(req): OllamaJson<GenerateBody>) -> Result<Response, ApiError> {
    let mut settings = settings(req.options.as_ref(), req.keep_alive.as_ref(), req.format.as_ref()).map_err(ApiError::bad_request)?;
    settings.think = req.think.as_ref().map(Think::from_json).transpose().map_err(ApiError::bad_request)?.flatten();
    if let Some(list) = req.images.as_ref().filter(|i| !i.is_empty()) {
        images::check_images(&core, &req.model, list)?;
        settings.images = list.clone();
    }
    let prompt = req.prompt.unwrap_or_default();
    if prompt.is_empty() {
        return load_only(core, Shape::Generate, req.model, settings).await;
    }
    let (c, name, system, raw) = (core.clone(), req.model.clone(), req.system, req.raw);
    let (started, began) = stream::start(move || c.engine().generate(&c.prepare(&name)?, &prompt, system.as_deref(), raw, settings)).await?;
    reply(Shape::Generate, req.model, started, began, req.stream != Some(false)).await
}

pub async fn delete(State(core): CoreState, OllamaJson(req): OllamaJson<ModelRef>) -> Result<Response, ApiError> {
    let name = req.get()?;
    let note = super::audit::current();
    tokio::task::spawn_blocking(move || {
        super::audit::note_model_digests(&note, &core.store, &name);
        core.remove_model(&name)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
pub struct CopyBody {
    source: String,
    destination: String,
}

pub async fn copy(State(core): CoreState, OllamaJson(req): OllamaJson<CopyBody>) -> Result<Response, ApiError> {
    let note = super::audit::current();
    tokio::task::spawn_blocking(move || {
        core.store.copy(&req.source, &req.destination)?;
        super::audit::note_model_digests(&note, &core.store, &req.destination);
        Ok::<_, crate::store::StoreError>(())
    })
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(StatusCode::OK.into_response())
}
