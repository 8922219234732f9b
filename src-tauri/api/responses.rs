//! OpenAI's Responses API (`/v1/responses`) as the official `openai` client and the agent tools
//! built on it use it: `input` as text or items (messages, `function_call`,
//! `function_call_output`), `instructions`, function `tools`, `reasoning.effort` (the `think` of
//! the other APIs), `max_output_tokens`, `text.format` with a JSON schema, the stream's typed
//! events, and `previous_response_id` over responses this server keeps in memory (bounded, for
//! an hour, never with `store: false`, and only for the token that made them).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::OpenAiJson;
use super::images;
use super::reply::{self, ReplyEvent};
use super::stream::{self, ApiError, OpenAiError};
use crate::access::tokens::Caller;
use crate::core::Core;
use crate::engine::chat::{RequestSettings, JSON_GRAMMAR};
use crate::engine::protocol::GenerationStats;
use crate::engine::template::ChatMessage;
use crate::engine::tools::{ReplyPart, Think, ToolCall, ToolCallFunction, ToolRequest};

/// Responses kept for `previous_response_id`: the newest this many, each for [`KEPT_FOR`].
const KEPT: usize = 256;
const KEPT_FOR: Duration = Duration::from_secs(3600);

/// The conversations behind recent responses, by response id.
#[derive(Default)]
pub struct KeptResponses {
    inner: Mutex<(HashMap<String, Kept>, VecDeque<String>)>,
}

struct Kept {
    /// The token that made it (`None` on a server without tokens).
    owner: Option<String>,
    /// Every turn up to and including the response's own, without the request's instructions.
    turns: Vec<ChatMessage>,
    at: Instant,
}

impl KeptResponses {
    fn keep(&self, id: &str, owner: Option<String>, turns: Vec<ChatMessage>) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (map, order) = &mut *guard;
        map.insert(id.to_string(), Kept { owner, turns, at: Instant::now() });
        order.push_back(id.to_string());
        while order.len() > KEPT {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }

    fn turns(&self, id: &str, caller: Option<&str>) -> Option<Vec<ChatMessage>> {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.get(id).filter(|k| k.at.elapsed() < KEPT_FOR && k.owner.as_deref() == caller).map(|k| k.turns.clone())
    }
}

#[derive(Deserialize)]
pub struct ResponsesRequest {
    model: String,
    #[serde(default)]
    input: Value,
    instructions: Option<String>,
    #[serde(default)]
    tools: Vec<Value>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    stream: bool,
    max_output_tokens: Option<i32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    reasoning: Option<Value>,
    text: Option<Value>,
    previous_response_id: Option<String>,
    store: Option<bool>,
    #[serde(default)]
    metadata: Value,
}

pub async fn responses(
    State(core): State<Arc<Core>>,
    Extension(kept): Extension<Arc<KeptResponses>>,
    Extension(caller): Extension<Caller>,
    OpenAiJson(req): OpenAiJson<ResponsesRequest>,
) -> Result<Response, OpenAiError> {
    let owner = caller.name().map(str::to_string);
    let mut turns = match &req.previous_response_id {
        Some(id) => kept.turns(id, owner.as_deref()).ok_or_else(|| ApiError::bad_request(format!("previous_response_id {id:?} is not a response this server still holds (responses are kept in memory for an hour, not with store: false, and only for the token that made them)")))?,
        None => Vec::new(),
    };
    turns.extend(input_turns(&req.input, &turns)?);
    let mut messages = Vec::with_capacity(turns.len() + 1);
    if let Some(instructions) = req.instructions.as_ref().filter(|i| !i.is_empty()) {
        messages.push(ChatMessage::new("system", instructions.clone()));
    }
    messages.extend(turns.iter().cloned());
    if messages.iter().any(|m| !m.images.is_empty()) {
        images::check_images(&core, &req.model, messages.iter().flat_map(|m| &m.images))?;
    }
    let settings = settings(&req)?;
    let (c, name) = (core.clone(), req.model.clone());
    let (started, _) = stream::start(move || c.engine().chat(&c.prepare(&name)?, &messages, settings)).await?;
    let id = format!("resp_{}", random_hex());
    let shell = Shell { id: id.clone(), created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0), req: &req };
    let store = req.store.unwrap_or(true);
    if !req.stream {
        let reply = reply::collect(started).await?;
        let output = output_items(&reply.thinking, &reply.content, &reply.tool_calls);
        if store {
            turns.push(assistant_turn(&reply.thinking, &reply.content, &reply.tool_calls));
            kept.keep(&id, owner, turns);
        }
        return Ok(Json(shell.response(output, Some(&reply.stats))).into_response());
    }
    let mut events = Events { seq: 0, response: shell.response(Vec::new(), None), items: Vec::new(), open: None, text: String::new(), thinking: String::new(), calls: Vec::new() };
    let mut first = Some(());
    let line = move |ev| {
        let mut out = String::new();
        if first.take().is_some() {
            let r = events.response.clone();
            out += &events.send("response.created", json!({ "response": r }));
            out += &events.send("response.in_progress", json!({ "response": r }));
        }
        match ev {
            ReplyEvent::Part(part) => out += &events.part(part),
            ReplyEvent::Done(stats) => {
                out += &events.close();
                let mut done = events.response.clone();
                finish(&mut done, std::mem::take(&mut events.items), &stats);
                if store {
                    turns.push(assistant_turn(&events.thinking, &events.text, &events.calls));
                    kept.keep(events.response["id"].as_str().unwrap_or_default(), owner.clone(), std::mem::take(&mut turns));
                }
                let kind = if done["status"] == "completed" { "response.completed" } else { "response.incomplete" };
                out += &events.send(kind, json!({ "response": done }));
            }
            ReplyEvent::Error(e) => {
                let message = stream::scrub(&e.to_string());
                out += &events.send("error", json!({ "code": "server_error", "message": message, "param": Value::Null }));
            }
        }
        out
    };
    Ok(stream::body(reply::replies(started), "text/event-stream", line, None))
}

/// 128 random bits in hex, for ids nobody can guess (they unlock a kept conversation).
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source");
    hex::encode(bytes)
}

/// The request's fields every response object repeats.
struct Shell<'a> {
    id: String,
    created: u64,
    req: &'a ResponsesRequest,
}

impl Shell<'_> {
    fn response(&self, output: Vec<Value>, stats: Option<&GenerationStats>) -> Value {
        let r = self.req;
        let mut v = json!({
            "id": self.id, "object": "response", "created_at": self.created, "status": "in_progress", "model": r.model,
            "output": [], "error": Value::Null, "incomplete_details": Value::Null, "instructions": r.instructions,
            "max_output_tokens": r.max_output_tokens, "previous_response_id": r.previous_response_id,
            "parallel_tool_calls": r.parallel_tool_calls.unwrap_or(true), "tool_choice": r.tool_choice.clone().unwrap_or(json!("auto")),
            "tools": r.tools, "temperature": r.temperature.unwrap_or(1.0), "top_p": r.top_p.unwrap_or(1.0),
            "text": r.text.clone().unwrap_or(json!({ "format": { "type": "text" } })), "reasoning": r.reasoning.clone().unwrap_or(json!({})),
            "store": r.store.unwrap_or(true), "metadata": if r.metadata.is_object() { r.metadata.clone() } else { json!({}) }, "usage": Value::Null,
        });
        if let Some(stats) = stats {
            finish(&mut v, output, stats);
        }
        v
    }
}

/// Marks a response done: its output, status and usage.
fn finish(response: &mut Value, output: Vec<Value>, stats: &GenerationStats) {
    let cut = stats.done_reason == "length";
    response["status"] = json!(if cut { "incomplete" } else { "completed" });
    if cut {
        response["incomplete_details"] = json!({ "reason": "max_output_tokens" });
    }
    response["output"] = Value::Array(output);
    response["usage"] = json!({
        "input_tokens": stats.prompt_tokens, "input_tokens_details": { "cached_tokens": stats.prompt_cached_tokens },
        "output_tokens": stats.eval_tokens, "output_tokens_details": { "reasoning_tokens": 0 },
        "total_tokens": stats.prompt_tokens + stats.eval_tokens,
    });
}

fn reasoning_item(id: &str, thinking: &str) -> Value {
    json!({ "type": "reasoning", "id": id, "summary": [{ "type": "summary_text", "text": thinking }] })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({ "type": "message", "id": id, "status": status, "role": "assistant", "content": if text.is_empty() && status != "completed" { json!([]) } else { json!([output_text(text)]) } })
}

fn output_text(text: &str) -> Value {
    json!({ "type": "output_text", "text": text, "annotations": [], "logprobs": [] })
}

fn call_item(call: &ToolCall) -> Value {
    let call_id = call.id.clone().unwrap_or_else(crate::engine::tools::new_call_id);
    json!({ "type": "function_call", "id": format!("fc_{}", random_hex()), "call_id": call_id, "name": call.function.name, "arguments": call.function.arguments.to_string(), "status": "completed" })
}

fn output_items(thinking: &str, text: &str, calls: &[ToolCall]) -> Vec<Value> {
    let mut out = Vec::new();
    if !thinking.is_empty() {
        out.push(reasoning_item(&format!("rs_{}", random_hex()), thinking));
    }
    if !text.is_empty() || calls.is_empty() {
        out.push(message_item(&format!("msg_{}", random_hex()), text, "completed"));
    }
    out.extend(calls.iter().map(call_item));
    out
}

/// The reply as the turn a follow-up sees.
fn assistant_turn(thinking: &str, text: &str, calls: &[ToolCall]) -> ChatMessage {
    ChatMessage { thinking: (!thinking.is_empty()).then(|| thinking.to_string()), tool_calls: calls.to_vec(), ..ChatMessage::new("assistant", text) }
}

/// The typed events of a streamed response.
struct Events {
    seq: u64,
    response: Value,
    /// The finished output items, in order.
    items: Vec<Value>,
    /// The item being written: its output index, id and kind (`"message"` or `"reasoning"`).
    open: Option<(usize, String, &'static str)>,
    text: String,
    thinking: String,
    calls: Vec<ToolCall>,
}

impl Events {
    fn send(&mut self, kind: &str, mut data: Value) -> String {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        format!("event: {kind}\ndata: {data}\n\n")
    }

    fn part(&mut self, part: ReplyPart) -> String {
        let mut out = String::new();
        match part {
            ReplyPart::ToolCall(call) => {
                out += &self.close();
                let index = self.items.len();
                let item = call_item(&call);
                let item_id = item["id"].clone();
                let arguments = item["arguments"].clone();
                let mut added = item.clone();
                added["arguments"] = json!("");
                added["status"] = json!("in_progress");
                out += &self.send("response.output_item.added", json!({ "output_index": index, "item": added }));
                out += &self.send("response.function_call_arguments.delta", json!({ "item_id": item_id, "output_index": index, "delta": arguments }));
                out += &self.send("response.function_call_arguments.done", json!({ "item_id": item_id, "output_index": index, "arguments": arguments, "name": call.function.name }));
                out += &self.send("response.output_item.done", json!({ "output_index": index, "item": item }));
                self.items.push(item);
                self.calls.push(call);
            }
            ReplyPart::Content(text) | ReplyPart::Thinking(text) if text.is_empty() => {}
            ReplyPart::Content(text) => {
                let (index, id) = self.open_item("message", &mut out);
                self.text.push_str(&text);
                out += &self.send("response.output_text.delta", json!({ "item_id": id, "output_index": index, "content_index": 0, "delta": text, "logprobs": [] }));
            }
            ReplyPart::Thinking(text) => {
                let (index, id) = self.open_item("reasoning", &mut out);
                self.thinking.push_str(&text);
                out += &self.send("response.reasoning_summary_text.delta", json!({ "item_id": id, "output_index": index, "summary_index": 0, "delta": text }));
            }
        }
        out
    }

    /// The open item of `kind` (its index and id), opening it (and closing another) if needed.
    fn open_item(&mut self, kind: &'static str, out: &mut String) -> (usize, String) {
        if let Some((index, id, open)) = &self.open {
            if *open == kind {
                return (*index, id.clone());
            }
        }
        *out += &self.close();
        let index = self.items.len();
        if kind == "message" {
            let id = format!("msg_{}", random_hex());
            *out += &self.send("response.output_item.added", json!({ "output_index": index, "item": message_item(&id, "", "in_progress") }));
            *out += &self.send("response.content_part.added", json!({ "item_id": id, "output_index": index, "content_index": 0, "part": output_text("") }));
            self.text.clear();
            self.open = Some((index, id.clone(), kind));
            (index, id)
        } else {
            let id = format!("rs_{}", random_hex());
            *out += &self.send("response.output_item.added", json!({ "output_index": index, "item": { "type": "reasoning", "id": id, "summary": [] } }));
            *out += &self.send("response.reasoning_summary_part.added", json!({ "item_id": id, "output_index": index, "summary_index": 0, "part": { "type": "summary_text", "text": "" } }));
            self.thinking.clear();
            self.open = Some((index, id.clone(), kind));
            (index, id)
        }
    }

    /// Finishes the open item with its `.done` events.
    fn close(&mut self) -> String {
        let Some((index, id, kind)) = self.open.take() else { return String::new() };
        let mut out = String::new();
        if kind == "message" {
            let text = self.text.clone();
            out += &self.send("response.output_text.done", json!({ "item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": [] }));
            out += &self.send("response.content_part.done", json!({ "item_id": id, "output_index": index, "content_index": 0, "part": output_text(&text) }));
            let item = message_item(&id, &text, "completed");
            out += &self.send("response.output_item.done", json!({ "output_index": index, "item": item }));
            self.items.push(item);
        } else {
            let thinking = self.thinking.clone();
            out += &self.send("response.reasoning_summary_text.done", json!({ "item_id": id, "output_index": index, "summary_index": 0, "text": thinking }));
            out += &self.send("response.reasoning_summary_part.done", json!({ "item_id": id, "output_index": index, "summary_index": 0, "part": { "type": "summary_text", "text": thinking } }));
            let item = reasoning_item(&id, &thinking);
            out += &self.send("response.output_item.done", json!({ "output_index": index, "item": item }));
            self.items.push(item);
        }
        out
    }
}

/// `input` (a string, or a list of items) as turns; `before` are the turns it follows (for the
/// names of the calls that results answer).
fn input_turns(input: &Value, before: &[ChatMessage]) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match input {
        Value::String(s) => return Ok(vec![ChatMessage::new("user", s.clone())]),
        Value::Array(items) => items,
        Value::Null => return Err(ApiError::bad_request("input is required: a string or a list of items")),
        _ => return Err(ApiError::bad_request("input must be a string or a list of items")),
    };
    let mut out: Vec<ChatMessage> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| item.get(name).and_then(Value::as_str).ok_or_else(|| ApiError::bad_request(format!("input[{i}].{name} is missing")));
        match item.get("type").and_then(Value::as_str).unwrap_or("message") {
            "message" => {
                let role = match field("role")? {
                    "developer" | "system" => "system",
                    role @ ("user" | "assistant") => role,
                    other => return Err(ApiError::bad_request(format!("input[{i}].role must be user, assistant, system or developer, not {other:?}"))),
                };
                let (text, images) = images::openai_content(item.get("content").unwrap_or(&Value::Null))?;
                out.push(ChatMessage { images, ..ChatMessage::new(role, text) });
            }
            "function_call" => {
                let arguments = match item.get("arguments") {
                    Some(Value::String(s)) if !s.trim().is_empty() => serde_json::from_str(s).map_err(|e| ApiError::bad_request(format!("input[{i}].arguments is not valid JSON ({e})")))?,
                    Some(v @ Value::Object(_)) => v.clone(),
                    _ => json!({}),
                };
                let call = ToolCall { id: Some(field("call_id")?.to_string()), function: ToolCallFunction { index: None, name: field("name")?.to_string(), arguments } };
                // Calls of one reply share its assistant turn.
                match out.last_mut().filter(|m| m.role == "assistant" && m.content.is_empty()) {
                    Some(turn) => turn.tool_calls.push(call),
                    None => out.push(ChatMessage { tool_calls: vec![call], ..ChatMessage::new("assistant", "") }),
                }
            }
            "function_call_output" => {
                let call_id = field("call_id")?.to_string();
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => images::openai_content(v)?.0,
                    None => String::new(),
                };
                let name = before.iter().chain(out.iter()).rev().flat_map(|m| &m.tool_calls).find(|c| c.id.as_deref() == Some(call_id.as_str())).map(|c| c.function.name.clone());
                out.push(ChatMessage { tool_call_id: Some(call_id), tool_name: name, ..ChatMessage::new("tool", output) });
            }
            // Reasoning the client sends back is the model's own; the template decides what it sees.
            "reasoning" => {}
            other => return Err(ApiError::bad_request(format!("input[{i}].type {other:?} is not supported here (message, function_call, function_call_output)"))),
        }
    }
    Ok(out)
}

/// Sampling, tools, reasoning and the output format.
fn settings(req: &ResponsesRequest) -> Result<RequestSettings, ApiError> {
    let mut s = RequestSettings::default();
    s.options.num_predict = req.max_output_tokens;
    s.options.temperature = Some(req.temperature.unwrap_or(1.0));
    s.options.top_p = Some(req.top_p.unwrap_or(1.0));
    s.think = match req.reasoning.as_ref().and_then(|r| r.get("effort")).and_then(Value::as_str) {
        None => None,
        Some("none" | "minimal") => Some(Think::Off),
        Some(level) => Some(Think::from_level(level).map_err(ApiError::bad_request)?),
    };
    let mut tools = Vec::with_capacity(req.tools.len());
    for (i, t) in req.tools.iter().enumerate() {
        match t.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = t.get("name").and_then(Value::as_str).ok_or_else(|| ApiError::bad_request(format!("tools[{i}].name is missing")))?;
                let parameters = t.get("parameters").cloned().unwrap_or_else(|| json!({ "type": "object" }));
                tools.push(json!({ "type": "function", "function": { "name": name, "description": t.get("description").cloned().unwrap_or(json!("")), "parameters": parameters } }));
            }
            other => return Err(ApiError::bad_request(format!("tools[{i}]: only function tools run here, not {other:?} (this server reaches no network)"))),
        }
    }
    let choice = super::openai::tool_choice(req.tool_choice.as_ref(), "/name", "{\"type\": \"function\", \"name\": …}")?;
    s.tools = ToolRequest { tools, choice, parallel: req.parallel_tool_calls.unwrap_or(true) };
    s.tools.validate().map_err(ApiError::bad_request)?;
    let format = req.text.as_ref().and_then(|t| t.get("format"));
    match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        None | Some("text") => {}
        Some("json_object") => s.grammar = Some(JSON_GRAMMAR.to_string()),
        Some("json_schema") => {
            let schema = format.and_then(|f| f.get("schema")).ok_or_else(|| ApiError::bad_request("text.format json_schema needs a schema"))?;
            s.grammar = Some(super::options::schema_grammar(schema).map_err(ApiError::bad_request)?);
        }
        Some(other) => return Err(ApiError::bad_request(format!("unsupported text.format type {other:?}"))),
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_turns_with_calls_and_their_results_named() {
        let input = json!([
            { "role": "developer", "content": "Be brief." },
            { "role": "user", "content": [{ "type": "input_text", "text": "Weather in Paris?" }] },
            { "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}" },
            { "type": "function_call_output", "call_id": "call_1", "output": "22 C" },
        ]);
        let turns = input_turns(&input, &[]).unwrap();
        let roles: Vec<&str> = turns.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user", "assistant", "tool"]);
        assert_eq!(turns[2].tool_calls[0].function.arguments, json!({ "city": "Paris" }));
        assert_eq!((turns[3].content.as_str(), turns[3].tool_name.as_deref()), ("22 C", Some("get_weather")));
        assert!(input_turns(&json!([{ "type": "web_search_call" }]), &[]).unwrap_err().1.contains("not supported"));
    }

    #[test]
    fn kept_responses_expire_by_count_and_belong_to_their_token() {
        let kept = KeptResponses::default();
        kept.keep("a", Some("alice".into()), vec![ChatMessage::new("user", "hi")]);
        assert!(kept.turns("a", Some("alice")).is_some());
        assert!(kept.turns("a", Some("bob")).is_none() && kept.turns("a", None).is_none());
        for i in 0..KEPT {
            kept.keep(&i.to_string(), None, Vec::new());
        }
        assert!(kept.turns("a", Some("alice")).is_none(), "the oldest goes first");
    }

    #[test]
    fn a_streamed_reply_sends_each_item_added_delta_done_in_sequence() {
        let mut e = Events { seq: 0, response: json!({}), items: Vec::new(), open: None, text: String::new(), thinking: String::new(), calls: Vec::new() };
        let mut out = e.part(ReplyPart::Content("Hel".into()));
        out += &e.part(ReplyPart::Content("lo".into()));
        out += &e.part(ReplyPart::ToolCall(ToolCall { id: Some("call_9".into()), function: ToolCallFunction { index: Some(0), name: "f".into(), arguments: json!({ "a": 1 }) } }));
        let kinds: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
        assert_eq!(
            kinds,
            [
                "response.output_item.added", "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
                "response.output_text.done", "response.content_part.done", "response.output_item.done",
                "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
            ]
        );
        assert_eq!(e.items.len(), 2);
        assert_eq!((e.items[0]["content"][0]["text"].as_str(), e.items[1]["call_id"].as_str()), (Some("Hello"), Some("call_9")));
        assert!(out.contains("\"sequence_number\":10"), "{out}");
    }
}
