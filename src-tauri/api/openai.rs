//! OpenAI-compatible routes (`/v1/*`): models, chat completions and completions, streamed as SSE
//! chunks ending with `data: [DONE]`, with OpenAI-shaped errors.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::OpenAiJson;
use super::images;
use super::reply::{self, ReplyEvent};
use super::stream::{self, ApiError, OpenAiError};
use crate::access::tokens::Caller;
use crate::core::Core;
use crate::engine::chat::{ChatStream, RequestSettings, JSON_GRAMMAR};
use crate::engine::protocol::GenerationStats;
use crate::engine::supervisor::StreamEvent;
use crate::engine::template::ChatMessage;
use crate::engine::tools::{ReplyPart, Think, ToolCall, ToolCallFunction, ToolChoice, ToolRequest};

type CoreState = State<Arc<Core>>;

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub async fn models(State(core): CoreState, Extension(caller): Extension<Caller>) -> Result<Json<Value>, OpenAiError> {
    let listed = tokio::task::spawn_blocking(move || core.store.list()).await.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (entries, _) = listed.map_err(ApiError::from)?;
    let data: Vec<Value> = entries
        .iter()
        .filter(|e| caller.may_use(&e.name.display_shortest()))
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
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    /// `"low"`, `"medium"`, `"high"` (or `"none"`): the `think` of Ollama's API.
    #[serde(default)]
    reasoning_effort: Option<String>,
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
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
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

fn usage(stats: &GenerationStats) -> Value {
    json!({ "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.eval_tokens, "total_tokens": stats.prompt_tokens + stats.eval_tokens })
}

fn finish_reason(stats: &GenerationStats) -> &'static str {
    if stats.done_reason == "length" { "length" } else { "stop" }
}

/// A text completion's choice, whole or streamed.
fn text_choice(text: &str, finish: Option<&str>) -> Value {
    json!({ "index": 0, "text": text, "logprobs": Value::Null, "finish_reason": finish })
}

/// A text completion: one object, or SSE chunks (with a usage chunk when asked) then `[DONE]`.
/// Formats one streamed SSE event: the choices, and the usage when `stream_options.include_usage` asks.
fn sse_chunk(id: String, object: &'static str, created: u64, model: String, common: &Common) -> impl Fn(Value, Value) -> String + Send + 'static {
    let include_usage = common.stream_options.as_ref().is_some_and(|o| o.include_usage);
    move |choices: Value, usage: Value| {
        let mut c = json!({ "id": id, "object": object, "created": created, "model": model, "system_fingerprint": "fp_airlock", "choices": choices });
        if include_usage {
            c["usage"] = usage;
        }
        format!("data: {c}\n\n")
    }
}

async fn respond_text(model: String, common: &Common, started: ChatStream) -> Result<Response, OpenAiError> {
    let id = format!("cmpl-{}", unix_now_nanos());
    let created = unix_now();
    if !common.stream {
        let (text, stats) = stream::collect(started).await?;
        return Ok(Json(json!({
            "id": id, "object": "text_completion", "created": created, "model": model, "system_fingerprint": "fp_airlock",
            "choices": [text_choice(&text, Some(finish_reason(&stats)))],
            "usage": usage(&stats),
        }))
        .into_response());
    }
    let include_usage = common.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let chunk = sse_chunk(id, "text_completion", created, model, common);
    let line = move |ev| match ev {
        StreamEvent::Piece(text) => chunk(json!([text_choice(&text, None)]), Value::Null),
        StreamEvent::Done(stats) => {
            let mut out = chunk(json!([text_choice("", Some(finish_reason(&stats)))]), Value::Null);
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
    let mut settings = req.common.settings()?;
    settings.tools = tool_request(&req)?;
    settings.think = req.reasoning_effort.as_deref().map(Think::from_level).transpose().map_err(ApiError::bad_request)?;
    let messages = chat_messages(&req.messages)?;
    if req.messages.iter().any(|m| images::has_openai_image(&m.content)) {
        images::check_images(&core, &req.model, messages.iter().flat_map(|m| &m.images))?;
    }
    let (c, name) = (core.clone(), req.model.clone());
    let (started, _) = stream::start(move || c.engine().chat(&c.prepare(&name)?, &messages, settings)).await?;
    respond_chat(req.model, &req.common, started).await
}

/// `tools`, `tool_choice` (`"auto"`, `"none"`, `"required"`, `{"type": "function", "function": {"name"}}`)
/// and `parallel_tool_calls`.
fn tool_request(req: &ChatRequest) -> Result<ToolRequest, ApiError> {
    let choice = tool_choice(req.tool_choice.as_ref(), "/function/name", "{\"type\": \"function\", \"function\": {\"name\": …}}")?;
    let tools = ToolRequest { tools: req.tools.clone().unwrap_or_default(), choice, parallel: req.parallel_tool_calls.unwrap_or(true) };
    tools.validate().map_err(ApiError::bad_request)?;
    Ok(tools)
}

/// OpenAI's `tool_choice`: `"auto"`, `"none"`, `"required"`, or an object naming the function at
/// `name_at` (a JSON pointer: chat completions and the Responses API nest it differently, as
/// `shape` shows in the error).
pub(super) fn tool_choice(choice: Option<&Value>, name_at: &str, shape: &str) -> Result<ToolChoice, ApiError> {
    let bad = || ApiError::bad_request(format!("tool_choice must be \"auto\", \"none\", \"required\" or {shape}"));
    Ok(match choice {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad()),
        },
        Some(v) => ToolChoice::Function(v.pointer(name_at).and_then(Value::as_str).ok_or_else(bad)?.to_string()),
    })
}

/// OpenAI messages as the engine's: tool calls with their JSON-string arguments parsed, tool
/// results named after the call they answer.
fn chat_messages(messages: &[OpenAiMessage]) -> Result<Vec<ChatMessage>, ApiError> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let (text, message_images) = images::openai_content(&m.content)?;
        let mut msg = ChatMessage { images: message_images, ..ChatMessage::new(m.role.clone(), text) };
        for (j, call) in m.tool_calls.iter().flatten().enumerate() {
            let bad = |what: &str| ApiError::bad_request(format!("messages[{i}].tool_calls[{j}]: {what}"));
            let name = call.pointer("/function/name").and_then(Value::as_str).ok_or_else(|| bad("function.name is missing"))?;
            let arguments = match call.pointer("/function/arguments") {
                Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| bad(&format!("function.arguments is not valid JSON ({e})")))?,
                Some(v @ Value::Object(_)) => v.clone(),
                None | Some(Value::Null) => json!({}),
                Some(_) => return Err(bad("function.arguments must be a JSON string")),
            };
            let id = call.get("id").and_then(Value::as_str).map(str::to_string);
            msg.tool_calls.push(ToolCall { id, function: ToolCallFunction { index: None, name: name.to_string(), arguments } });
        }
        msg.tool_call_id = m.tool_call_id.clone();
        msg.tool_name = m.name.clone().filter(|_| m.role == "tool").or_else(|| {
            let id = m.tool_call_id.as_deref()?;
            out.iter().rev().flat_map(|p| &p.tool_calls).find(|c| c.id.as_deref() == Some(id)).map(|c| c.function.name.clone())
        });
        msg.thinking = m.reasoning_content.clone();
        out.push(msg);
    }
    Ok(out)
}

/// OpenAI's tool call object: `arguments` as a JSON string.
fn openai_call(call: &ToolCall, with_index: bool) -> Value {
    let mut v = json!({
        "id": call.id.clone().unwrap_or_default(),
        "type": "function",
        "function": { "name": call.function.name, "arguments": call.function.arguments.to_string() },
    });
    if with_index {
        v["index"] = json!(call.function.index.unwrap_or(0));
    }
    v
}

/// A chat completion: content, `reasoning_content` and `tool_calls` (finish reason
/// `"tool_calls"` when there are calls), whole or as SSE deltas.
async fn respond_chat(model: String, common: &Common, started: ChatStream) -> Result<Response, OpenAiError> {
    let id = format!("chatcmpl-{}", unix_now_nanos());
    let created = unix_now();
    if !common.stream {
        let reply = reply::collect(started).await?;
        let mut message = json!({ "role": "assistant", "content": reply.content });
        if !reply.thinking.is_empty() {
            message["reasoning_content"] = json!(reply.thinking);
        }
        let finish = if reply.tool_calls.is_empty() {
            finish_reason(&reply.stats)
        } else {
            if reply.content.is_empty() {
                message["content"] = Value::Null;
            }
            message["tool_calls"] = reply.tool_calls.iter().map(|c| openai_call(c, false)).collect();
            "tool_calls"
        };
        return Ok(Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": model, "system_fingerprint": "fp_airlock",
            "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
            "usage": usage(&reply.stats),
        }))
        .into_response());
    }
    let include_usage = common.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let chunk = sse_chunk(id, "chat.completion.chunk", created, model, common);
    let (mut first, mut called) = (true, false);
    let line = move |ev| match ev {
        ReplyEvent::Part(part) => {
            let mut delta = match part {
                ReplyPart::Content(text) => json!({ "content": text }),
                ReplyPart::Thinking(text) => json!({ "reasoning_content": text }),
                ReplyPart::ToolCall(call) => {
                    called = true;
                    json!({ "tool_calls": [openai_call(&call, true)] })
                }
            };
            if std::mem::take(&mut first) {
                delta["role"] = json!("assistant");
            }
            chunk(json!([{ "index": 0, "delta": delta, "finish_reason": Value::Null }]), Value::Null)
        }
        ReplyEvent::Done(stats) => {
            let finish = if called { "tool_calls" } else { finish_reason(&stats) };
            let mut out = chunk(json!([{ "index": 0, "delta": {}, "finish_reason": finish }]), Value::Null);
            if include_usage {
                out.push_str(&chunk(json!([]), usage(&stats)));
            }
            out
        }
        ReplyEvent::Error(e) => format!("data: {}\n\n", json!({ "error": { "message": stream::scrub(&e.to_string()), "type": "api_error" } })),
    };
    Ok(stream::body(reply::replies(started), "text/event-stream", line, Some("data: [DONE]\n\n".into())))
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
    respond_text(req.model, &req.common, started).await
}

