//! Anthropic's Messages API (`/v1/messages`, `/v1/messages/count_tokens`) as the official
//! `anthropic` SDK and the agent tools built on it speak it: `system`, text / base64 `image` /
//! `tool_use` / `tool_result` / `thinking` blocks, `tools` with `tool_choice`, `thinking`, and the
//! stream's event sequence. It translates to the engine's chat and back; the tokens, the audit
//! log and the model limits are the rest of the API's (the key may come as `x-api-key`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::AnthropicJson;
use super::images;
use super::reply::{self, ReplyEvent};
use super::stream::{self, AnthropicError, ApiError};
use crate::core::Core;
use crate::engine::chat::RequestSettings;
use crate::engine::protocol::GenerationStats;
use crate::engine::template::ChatMessage;
use crate::engine::tools::{ReplyPart, Think, ToolCall, ToolCallFunction, ToolChoice, ToolRequest};

#[derive(Deserialize)]
pub struct MessagesRequest {
    model: String,
    /// Required by `/v1/messages`, as in Anthropic's API.
    #[serde(default)]
    max_tokens: Option<i32>,
    messages: Vec<Message>,
    #[serde(default)]
    system: Value,
    #[serde(default)]
    stop_sequences: Vec<String>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    tools: Vec<Value>,
    tool_choice: Option<Value>,
    /// `{"type": "enabled", "budget_tokens": N}` or `{"type": "disabled"}`.
    thinking: Option<Value>,
}

#[derive(Deserialize)]
pub struct Message {
    role: String,
    content: Value,
}

type CoreState = State<Arc<Core>>;

pub async fn messages(State(core): CoreState, AnthropicJson(req): AnthropicJson<MessagesRequest>) -> Result<Response, AnthropicError> {
    let max_tokens = req.max_tokens.ok_or_else(|| ApiError::bad_request("max_tokens: field required"))?;
    if max_tokens < 1 {
        return Err(ApiError::bad_request("max_tokens must be at least 1").into());
    }
    let (messages, settings) = translate(&req, Some(max_tokens))?;
    if messages.iter().any(|m| !m.images.is_empty()) {
        images::check_images(&core, &req.model, messages.iter().flat_map(|m| &m.images))?;
    }
    let (c, name) = (core.clone(), req.model.clone());
    let (started, _) = stream::start(move || c.engine().chat(&c.prepare(&name)?, &messages, settings)).await?;
    let id = format!("msg_{:024x}", SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    if !req.stream {
        let reply = reply::collect(started).await?;
        let mut content = Vec::new();
        if !reply.thinking.is_empty() {
            content.push(json!({ "type": "thinking", "thinking": reply.thinking, "signature": "" }));
        }
        if !reply.content.is_empty() || reply.tool_calls.is_empty() {
            content.push(json!({ "type": "text", "text": reply.content }));
        }
        content.extend(reply.tool_calls.iter().map(tool_use));
        let stop = stop_reason(&reply.stats, !reply.tool_calls.is_empty());
        return Ok(Json(json!({
            "id": id, "type": "message", "role": "assistant", "model": req.model, "content": content,
            "stop_reason": stop, "stop_sequence": Value::Null, "usage": usage(&reply.stats),
        }))
        .into_response());
    }
    let start = event("message_start", json!({ "type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": req.model, "content": [],
        "stop_reason": Value::Null, "stop_sequence": Value::Null, "usage": { "input_tokens": 0, "output_tokens": 0 },
    }}));
    let mut blocks = Blocks::default();
    let mut first = Some(start);
    let line = move |ev| {
        let mut out = first.take().unwrap_or_default();
        match ev {
            ReplyEvent::Part(part) => out.push_str(&blocks.part(part)),
            ReplyEvent::Done(stats) => {
                out.push_str(&blocks.close());
                let stop = stop_reason(&stats, blocks.called);
                out.push_str(&event("message_delta", json!({ "type": "message_delta", "delta": { "stop_reason": stop, "stop_sequence": Value::Null }, "usage": usage(&stats) })));
                out.push_str(&event("message_stop", json!({ "type": "message_stop" })));
            }
            ReplyEvent::Error(e) => {
                let message = stream::scrub(&e.to_string());
                out.push_str(&event("error", json!({ "type": "error", "error": { "type": "api_error", "message": message } })));
            }
        }
        out
    };
    Ok(stream::body(reply::replies(started), "text/event-stream", line, None))
}

pub async fn count_tokens(State(core): CoreState, AnthropicJson(req): AnthropicJson<MessagesRequest>) -> Result<Json<Value>, AnthropicError> {
    let (messages, settings) = translate(&req, None)?;
    let (c, name) = (core.clone(), req.model.clone());
    let counted = tokio::task::spawn_blocking(move || c.engine().count_chat_tokens(&c.prepare(&name)?, &messages, &settings))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({ "input_tokens": counted.map_err(ApiError::from)? })))
}

/// One server-sent event.
fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn usage(stats: &GenerationStats) -> Value {
    json!({ "input_tokens": stats.prompt_tokens, "output_tokens": stats.eval_tokens, "cache_read_input_tokens": stats.prompt_cached_tokens })
}

fn stop_reason(stats: &GenerationStats, called: bool) -> &'static str {
    match (called, stats.done_reason.as_str()) {
        (true, _) => "tool_use",
        (false, "length") => "max_tokens",
        _ => "end_turn",
    }
}

fn tool_use(call: &ToolCall) -> Value {
    json!({ "type": "tool_use", "id": call.id.clone().unwrap_or_else(crate::engine::tools::new_call_id), "name": call.function.name, "input": call.function.arguments })
}

/// The content blocks of a streamed reply: a block opens when a part of a new kind arrives and
/// closes before the next one opens; tool calls arrive whole, as one block each.
#[derive(Default)]
struct Blocks {
    /// The open block's index and kind (`"text"` or `"thinking"`).
    open: Option<(usize, &'static str)>,
    next: usize,
    called: bool,
}

impl Blocks {
    fn part(&mut self, part: ReplyPart) -> String {
        let (kind, delta) = match part {
            ReplyPart::Content(text) => ("text", json!({ "type": "text_delta", "text": text })),
            ReplyPart::Thinking(text) => ("thinking", json!({ "type": "thinking_delta", "thinking": text })),
            ReplyPart::ToolCall(call) => {
                self.called = true;
                let mut out = self.close();
                let index = self.take_index();
                let mut block = tool_use(&call);
                let input = std::mem::replace(&mut block["input"], json!({}));
                out.push_str(&event("content_block_start", json!({ "type": "content_block_start", "index": index, "content_block": block })));
                out.push_str(&event("content_block_delta", json!({ "type": "content_block_delta", "index": index, "delta": { "type": "input_json_delta", "partial_json": input.to_string() } })));
                out.push_str(&event("content_block_stop", json!({ "type": "content_block_stop", "index": index })));
                return out;
            }
        };
        let mut out = String::new();
        let index = match self.open {
            Some((index, open)) if open == kind => index,
            _ => {
                out.push_str(&self.close());
                let index = self.take_index();
                let block = if kind == "text" { json!({ "type": "text", "text": "" }) } else { json!({ "type": "thinking", "thinking": "" }) };
                out.push_str(&event("content_block_start", json!({ "type": "content_block_start", "index": index, "content_block": block })));
                self.open = Some((index, kind));
                index
            }
        };
        out.push_str(&event("content_block_delta", json!({ "type": "content_block_delta", "index": index, "delta": delta })));
        out
    }

    fn take_index(&mut self) -> usize {
        self.next += 1;
        self.next - 1
    }

    /// Closes the open block (a thinking block with its empty signature first).
    fn close(&mut self) -> String {
        let Some((index, kind)) = self.open.take() else { return String::new() };
        let mut out = String::new();
        if kind == "thinking" {
            out.push_str(&event("content_block_delta", json!({ "type": "content_block_delta", "index": index, "delta": { "type": "signature_delta", "signature": "" } })));
        }
        out.push_str(&event("content_block_stop", json!({ "type": "content_block_stop", "index": index })));
        out
    }
}

/// The request as the engine's messages and settings.
fn translate(req: &MessagesRequest, max_tokens: Option<i32>) -> Result<(Vec<ChatMessage>, RequestSettings), ApiError> {
    let mut settings = RequestSettings::default();
    let o = &mut settings.options;
    o.num_predict = max_tokens;
    o.temperature = Some(req.temperature.unwrap_or(1.0));
    o.top_p = req.top_p;
    o.top_k = req.top_k;
    o.stop = req.stop_sequences.clone();
    settings.think = match req.thinking.as_ref().and_then(|t| t.get("type")).and_then(Value::as_str) {
        None => None,
        Some("enabled" | "adaptive") => Some(Think::On),
        Some("disabled") => Some(Think::Off),
        Some(other) => return Err(ApiError::bad_request(format!("thinking.type must be \"enabled\" or \"disabled\", not {other:?}"))),
    };
    settings.tools = tool_request(req)?;

    let mut messages = Vec::new();
    let system = text_of(&req.system, "system")?;
    if !system.is_empty() {
        messages.push(ChatMessage::new("system", system));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if m.role != "user" && m.role != "assistant" {
            return Err(ApiError::bad_request(format!("messages[{i}].role must be \"user\" or \"assistant\", not {:?}", m.role)));
        }
        let blocks = match &m.content {
            Value::String(s) => vec![json!({ "type": "text", "text": s })],
            Value::Array(blocks) => blocks.clone(),
            _ => return Err(ApiError::bad_request(format!("messages[{i}].content must be a string or a list of content blocks"))),
        };
        let mut msg = ChatMessage::new(m.role.clone(), String::new());
        for (j, block) in blocks.iter().enumerate() {
            let at = format!("messages[{i}].content[{j}]");
            let field = |name: &str| block.get(name).ok_or_else(|| ApiError::bad_request(format!("{at}: {name} is missing")));
            match block.get("type").and_then(Value::as_str) {
                Some("text") => msg.content.push_str(field("text")?.as_str().unwrap_or_default()),
                Some("image") => {
                    let source = field("source")?;
                    if source.get("type").and_then(Value::as_str) != Some("base64") {
                        return Err(ApiError::bad_request(format!("{at}: only base64 image sources work here (this server fetches nothing)")));
                    }
                    msg.images.push(source.get("data").and_then(Value::as_str).unwrap_or_default().to_string());
                }
                Some("thinking") => msg.thinking = Some(field("thinking")?.as_str().unwrap_or_default().to_string()),
                Some("redacted_thinking") => {}
                Some("tool_use") => {
                    let name = field("name")?.as_str().ok_or_else(|| ApiError::bad_request(format!("{at}: name must be a string")))?;
                    let id = block.get("id").and_then(Value::as_str).map(str::to_string);
                    msg.tool_calls.push(ToolCall { id, function: ToolCallFunction { index: None, name: name.to_string(), arguments: block.get("input").cloned().unwrap_or_else(|| json!({})) } });
                }
                Some("tool_result") => {
                    // A result is a `tool` turn of its own, named after the call it answers.
                    let id = field("tool_use_id")?.as_str().unwrap_or_default().to_string();
                    let mut text = text_of(block.get("content").unwrap_or(&Value::Null), &at)?;
                    if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                        text = format!("Error: {text}");
                    }
                    let name = messages.iter().rev().flat_map(|p: &ChatMessage| &p.tool_calls).find(|c| c.id.as_deref() == Some(id.as_str())).map(|c| c.function.name.clone());
                    messages.push(ChatMessage { tool_call_id: Some(id), tool_name: name, ..ChatMessage::new("tool", text) });
                }
                other => return Err(ApiError::bad_request(format!("{at}: unsupported content block type {other:?}"))),
            }
        }
        if !msg.content.is_empty() || !msg.images.is_empty() || !msg.tool_calls.is_empty() || msg.thinking.is_some() {
            messages.push(msg);
        }
    }
    Ok((messages, settings))
}

/// A string, or the text of a list of `text` blocks (the shape `system` and tool results take).
fn text_of(v: &Value, at: &str) -> Result<String, ApiError> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => Ok(blocks.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join("\n")),
        _ => Err(ApiError::bad_request(format!("{at} must be a string or a list of text blocks"))),
    }
}

/// Anthropic tools (`name`, `description`, `input_schema`) as the engine's function tools, and
/// `tool_choice` (`auto`, `any`, `tool`, `none`; `disable_parallel_tool_use`).
fn tool_request(req: &MessagesRequest) -> Result<ToolRequest, ApiError> {
    let mut tools = Vec::with_capacity(req.tools.len());
    for (i, t) in req.tools.iter().enumerate() {
        if let Some(kind) = t.get("type").and_then(Value::as_str).filter(|k| *k != "custom") {
            return Err(ApiError::bad_request(format!("tools[{i}]: Anthropic's server tool {kind:?} does not run here; declare your own tools with name, description and input_schema")));
        }
        let name = t.get("name").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request(format!("tools[{i}].name is missing")))?;
        let schema = t.get("input_schema").cloned().unwrap_or_else(|| json!({ "type": "object" }));
        tools.push(json!({ "type": "function", "function": { "name": name, "description": t.get("description").cloned().unwrap_or(json!("")), "parameters": schema } }));
    }
    let choice = req.tool_choice.as_ref();
    let kind = choice.and_then(|c| c.get("type")).and_then(Value::as_str).unwrap_or("auto");
    let choice_of = match kind {
        "auto" => ToolChoice::Auto,
        "any" => ToolChoice::Required,
        "none" => ToolChoice::None,
        "tool" => ToolChoice::Function(choice.and_then(|c| c.get("name")).and_then(Value::as_str).ok_or_else(|| ApiError::bad_request("tool_choice {\"type\": \"tool\"} needs a name"))?.to_string()),
        other => return Err(ApiError::bad_request(format!("tool_choice.type must be auto, any, tool or none, not {other:?}"))),
    };
    let parallel = !choice.and_then(|c| c.get("disable_parallel_tool_use")).and_then(Value::as_bool).unwrap_or(false);
    let request = ToolRequest { tools, choice: choice_of, parallel };
    request.validate().map_err(ApiError::bad_request)?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(v: Value) -> MessagesRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn blocks_become_the_engines_turns() {
        let req = request(json!({
            "model": "m", "max_tokens": 10, "system": [{ "type": "text", "text": "Be brief." }],
            "messages": [
                { "role": "user", "content": "Weather in Paris?" },
                { "role": "assistant", "content": [{ "type": "text", "text": "Checking." }, { "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": { "city": "Paris" } }] },
                { "role": "user", "content": [{ "type": "tool_result", "tool_use_id": "toolu_1", "content": [{ "type": "text", "text": "22 C" }] }, { "type": "text", "text": "And tomorrow?" }] },
            ],
            "tools": [{ "name": "get_weather", "description": "d", "input_schema": { "type": "object" } }],
            "tool_choice": { "type": "any" }, "thinking": { "type": "disabled" }, "stop_sequences": ["END"],
        }));
        let (m, s) = translate(&req, Some(10)).unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool", "user"]);
        assert_eq!(m[2].tool_calls[0].function.arguments, json!({ "city": "Paris" }));
        assert_eq!((m[3].content.as_str(), m[3].tool_name.as_deref()), ("22 C", Some("get_weather")));
        assert_eq!(m[4].content, "And tomorrow?");
        assert_eq!((s.tools.choice, s.think, s.options.stop, s.options.num_predict), (ToolChoice::Required, Some(Think::Off), vec!["END".to_string()], Some(10)));
    }

    #[test]
    fn what_cannot_run_here_is_refused_in_words() {
        let bad = |v: Value| translate(&request(v), Some(5)).unwrap_err().1;
        assert!(bad(json!({ "model": "m", "messages": [{ "role": "user", "content": [{ "type": "image", "source": { "type": "url", "url": "https://x/y.png" } }] }] })).contains("only base64"));
        assert!(bad(json!({ "model": "m", "messages": [], "tools": [{ "type": "web_search_20250305", "name": "web_search" }] })).contains("server tool"));
        assert!(bad(json!({ "model": "m", "messages": [{ "role": "system", "content": "x" }] })).contains("role must be"));
    }

    #[test]
    fn a_streamed_reply_opens_and_closes_one_block_per_kind() {
        let mut b = Blocks::default();
        let mut out = b.part(ReplyPart::Thinking("hmm".into()));
        out += &b.part(ReplyPart::Content("Hi".into()));
        out += &b.part(ReplyPart::Content(" there".into()));
        out += &b.part(ReplyPart::ToolCall(ToolCall { id: Some("call_1".into()), function: ToolCallFunction { index: Some(0), name: "f".into(), arguments: json!({ "a": 1 }) } }));
        out += &b.close();
        let events: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(
            events,
            [
                "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
                "content_block_start", "content_block_delta", "content_block_stop",
            ]
        );
        assert!(out.contains(r#""partial_json":"{\"a\":1}""#) && b.called, "{out}");
    }
}
