//! OpenAI-compatible routes (`/v1/*`): models, chat completions and completions, streamed as SSE
//! chunks ending with `data: [DONE]`, with OpenAI-shaped errors.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::OpenAiJson;
use super::stream::{self, ApiError};
use crate::core::Core;
use crate::engine::chat::{ChatStream, RequestSettings, JSON_GRAMMAR};
use crate::engine::protocol::GenerationStats;
use crate::engine::supervisor::StreamEvent;
use crate::engine::template::ChatMessage;

type CoreState = State<Arc<Core>>;

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
        let (kind, code) = match status {
            StatusCode::NOT_FOUND => ("invalid_request_error", json!("model_not_found")),
            s if s.is_client_error() => ("invalid_request_error", Value::Null),
            _ => ("api_error", Value::Null),
        };
        (status, Json(json!({ "error": { "message": stream::scrub(&message), "type": kind, "param": Value::Null, "code": code } }))).into_response()
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub async fn models(State(core): CoreState) -> Result<Json<Value>, OpenAiError> {
    let listed = tokio::task::spawn_blocking(move || core.store.list()).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (entries, _) = listed.map_err(ApiError::from)?;
    let data: Vec<Value> = entries
        .iter()
        .map(|e| {
            let created = e.modified.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            json!({ "id": e.name.display_shortest(), "object": "model", "created": created, "owned_by": e.name.namespace })
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

#[derive(Deserialize)]
pub struct ChatRequest {
    model: String,
    messages: Vec<OpenAiMessage>,
    #[serde(flatten)]
    common: Common,
}

#[derive(Deserialize)]
pub struct CompletionRequest {
    model: String,
    prompt: Value,
    #[serde(flatten)]
    common: Common,
}

#[derive(Deserialize)]
pub struct OpenAiMessage {
    role: String,
    #[serde(default)]
    content: Value,
}

/// The sampling fields both routes share. OpenAI's defaults: temperature and top_p 1.0.
#[derive(Deserialize, Default)]
pub struct Common {
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<i32>,
    max_completion_tokens: Option<i32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: Option<Value>,
    seed: Option<u32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    response_format: Option<Value>,
}

#[derive(Deserialize, Default)]
pub struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

impl Common {
    fn settings(&self) -> Result<RequestSettings, ApiError> {
        let mut s = RequestSettings::default();
        let o = &mut s.options;
        o.temperature = Some(self.temperature.unwrap_or(1.0));
        o.top_p = Some(self.top_p.unwrap_or(1.0));
        o.num_predict = self.max_completion_tokens.or(self.max_tokens);
        o.seed = self.seed;
        o.frequency_penalty = self.frequency_penalty;
        o.presence_penalty = self.presence_penalty;
        o.stop = match &self.stop {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().map(|v| v.as_str().map(str::to_string).ok_or_else(|| ApiError::bad_request("stop must be a string or a list of strings"))).collect::<Result<_, _>>()?,
            Some(_) => return Err(ApiError::bad_request("stop must be a string or a list of strings")),
        };
        if let Some(fmt) = &self.response_format {
            match fmt.get("type").and_then(Value::as_str) {
                Some("json_object") => s.grammar = Some(JSON_GRAMMAR.to_string()),
                Some("json_schema") => {
                    let schema = fmt.pointer("/json_schema/schema").ok_or_else(|| ApiError::bad_request("response_format json_schema needs json_schema.schema"))?;
                    s.grammar = Some(super::options::schema_grammar(schema).map_err(ApiError::bad_request)?);
                }
                Some("text") | None => {}
                Some(other) => return Err(ApiError::bad_request(format!("unsupported response_format type {other:?}"))),
            }
        }
        Ok(s)
    }
}

/// Text of a message's content: a string, or the text parts of a list.
fn content_text(v: &Value) -> Result<String, ApiError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => Ok(parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("")),
        _ => Err(ApiError::bad_request("message content must be a string or a list of parts")),
    }
}

fn usage(stats: &GenerationStats) -> Value {
    json!({ "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.eval_tokens, "total_tokens": stats.prompt_tokens + stats.eval_tokens })
}

fn finish_reason(stats: &GenerationStats) -> &'static str {
    if stats.done_reason == "length" { "length" } else { "stop" }
}

/// Chat completions and text completions differ only in how a choice carries text.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Text,
}

impl Kind {
    fn id_prefix(self) -> &'static str {
        match self {
            Kind::Chat => "chatcmpl",
            Kind::Text => "cmpl",
        }
    }
    fn object(self, streaming: bool) -> &'static str {
        match (self, streaming) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Text, _) => "text_completion",
        }
    }
    /// A whole choice (`stream: false`).
    fn choice(self, text: &str, finish: &str) -> Value {
        match self {
            Kind::Chat => json!({ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": finish }),
            Kind::Text => json!({ "index": 0, "text": text, "logprobs": Value::Null, "finish_reason": finish }),
        }
    }
    /// A streamed choice; the first chat delta names the role.
    fn delta(self, text: &str, first: bool, finish: Option<&str>) -> Value {
        match self {
            Kind::Chat if finish.is_some() => json!({ "index": 0, "delta": {}, "finish_reason": finish }),
            Kind::Chat if first => json!({ "index": 0, "delta": { "role": "assistant", "content": text }, "finish_reason": Value::Null }),
            Kind::Chat => json!({ "index": 0, "delta": { "content": text }, "finish_reason": Value::Null }),
            Kind::Text => json!({ "index": 0, "text": text, "logprobs": Value::Null, "finish_reason": finish }),
        }
    }
}

/// The response: one object, or SSE chunks (with a usage chunk when asked) then `[DONE]`.
async fn respond(kind: Kind, model: String, common: &Common, started: ChatStream) -> Result<Response, OpenAiError> {
    let id = format!("{}-{}", kind.id_prefix(), unix_now_nanos());
    let created = unix_now();
    if !common.stream {
        let (text, stats) = stream::collect(started).await?;
        return Ok(Json(json!({
            "id": id, "object": kind.object(false), "created": created, "model": model, "system_fingerprint": "fp_airlock",
            "choices": [kind.choice(&text, finish_reason(&stats))],
            "usage": usage(&stats),
        }))
        .into_response());
    }
    let include_usage = common.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let chunk = move |choices: Value, usage: Value| {
        let mut c = json!({ "id": id, "object": kind.object(true), "created": created, "model": model, "system_fingerprint": "fp_airlock", "choices": choices });
        if include_usage {
            c["usage"] = usage;
        }
        format!("data: {c}\n\n")
    };
    let mut first = true;
    let line = move |ev| match ev {
        StreamEvent::Piece(text) => chunk(json!([kind.delta(&text, std::mem::take(&mut first), None)]), Value::Null),
        StreamEvent::Done(stats) => {
            let mut out = chunk(json!([kind.delta("", false, Some(finish_reason(&stats)))]), Value::Null);
            if include_usage {
                out.push_str(&chunk(json!([]), usage(&stats)));
            }
            out
        }
        StreamEvent::Error(e) => format!("data: {}\n\n", json!({ "error": { "message": stream::scrub(&e.to_string()), "type": "api_error" } })),
    };
    Ok(stream::body(stream::events(started), "text/event-stream", line, Some("data: [DONE]\n\n".into())))
}

pub async fn chat(State(core): CoreState, OpenAiJson(req): OpenAiJson<ChatRequest>) -> Result<Response, OpenAiError> {
    let settings = req.common.settings()?;
    let messages: Vec<ChatMessage> = req.messages.iter().map(|m| Ok(ChatMessage::new(m.role.clone(), content_text(&m.content)?))).collect::<Result<_, ApiError>>()?;
    let (c, name) = (core.clone(), req.model.clone());
    let (started, _) = stream::start(move || c.engine().chat(&c.prepare(&name)?, &messages, settings)).await?;
    respond(Kind::Chat, req.model, &req.common, started).await
}

fn unix_now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

pub async fn completions(State(core): CoreState, OpenAiJson(req): OpenAiJson<CompletionRequest>) -> Result<Response, OpenAiError> {
    let settings = req.common.settings()?;
    let prompt = match &req.prompt {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 && a[0].is_string() => a[0].as_str().unwrap_or_default().to_string(),
        _ => return Err(ApiError::bad_request("prompt must be a string (one prompt per request)").into()),
    };
    let (c, name) = (core.clone(), req.model.clone());
    let (started, _) = stream::start(move || c.engine().generate(&c.prepare(&name)?, &prompt, None, true, settings)).await?;
    respond(Kind::Text, req.model, &req.common, started).await
}

