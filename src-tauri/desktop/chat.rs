//! The chat: a reply streamed into the window on its own thread (pieces in batches, then exactly
//! one done or error event, even when the reply fails or panics), Stop, and the accepted range of
//! every chat parameter. It checks what the web view sends (request ID, model, roles, sizes,
//! ranges) before anything runs, and must never leave the window waiting for a reply that died.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tauri::ipc::Channel;
use tauri::State;

use super::access::check_name;
use super::error::{CommandError, CommandResult};
use super::reply_stream::ReplyBatch;
use super::AppState;
use crate::core::Core;
use crate::engine::chat::{ChatStream, RequestSettings};
use crate::engine::limits::{self, ParamLimit};
use crate::engine::protocol::{GenerationStats, SamplingOptions};
use crate::engine::supervisor::StreamEvent;
use crate::engine::template::ChatMessage;
use crate::engine::tools::{Think, ToolCall, ToolRequest};

type AppStateRef<'a> = State<'a, AppState>;

#[derive(Deserialize)]
pub(super) struct ChatParameters {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<i32>,
    num_predict: Option<i32>,
    num_ctx: Option<u32>,
    #[serde(default)]
    min_p: Option<f32>,
    #[serde(default)]
    repeat_penalty: Option<f32>,
    /// −1: a random seed each reply (as unset).
    #[serde(default)]
    seed: Option<i64>,
    /// Think before answering; `None`: the model's default (docs/tools-and-thinking.md).
    #[serde(default)]
    think: Option<bool>,
}

impl ChatParameters {
    /// The same ranges as the API's options ([`limits::PARAM_LIMITS`]).
    fn check(&self) -> CommandResult<()> {
        let set = [("temperature", self.temperature.map(f64::from)), ("top_p", self.top_p.map(f64::from)), ("top_k", self.top_k.map(f64::from)), ("num_predict", self.num_predict.map(f64::from)), ("num_ctx", self.num_ctx.map(f64::from)), ("min_p", self.min_p.map(f64::from)), ("repeat_penalty", self.repeat_penalty.map(f64::from)), ("seed", self.seed.map(|s| s as f64))];
        for (key, value) in set {
            if let Some(v) = value {
                limits::check(key, v).map_err(CommandError::invalid)?;
            }
        }
        Ok(())
    }
}

/// The accepted range of every parameter, for the chat settings' fields.
#[tauri::command]
pub fn parameter_limits() -> &'static [ParamLimit] {
    limits::PARAM_LIMITS
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum ChatEvent {
    /// One or more tokens' text (see [`PIECE_BATCH`]): answer and, apart, thinking.
    Piece {
        text: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        thinking: String,
        tokens: u32,
    },
    /// The end of the reply, with the tools it called (their text is never sent as pieces).
    Done { stats: ChatStats, tool_calls: Vec<ToolCall> },
    Error { message: String },
}

#[derive(Clone, Debug, Serialize)]
pub(super) struct ChatStats {
    done_reason: String,
    prompt_tokens: u32,
    eval_tokens: u32,
    prompt_eval_ms: f64,
    eval_ms: f64,
    load_ms: f64,
    tokens_per_second: f64,
    /// Where the model ran, e.g. "100% GPU (Vulkan0, 19/19 layers)".
    runs_on: String,
    /// The model's context length, how much of it the prompt may fill before the oldest
    /// messages are left out, and how many were left out for this reply (the context bar).
    num_ctx: u32,
    prompt_budget: u32,
    dropped_messages: usize,
}

impl ChatStats {
    fn new(s: &GenerationStats, load: Duration, stream: &ChatStream) -> Self {
        let runs_on = stream.runs_on.as_str();
        let eval_s = s.eval_ns as f64 / 1e9;
        ChatStats {
            done_reason: s.done_reason.clone(),
            prompt_tokens: s.prompt_tokens,
            eval_tokens: s.eval_tokens,
            prompt_eval_ms: s.prompt_eval_ns as f64 / 1e6,
            eval_ms: s.eval_ns as f64 / 1e6,
            load_ms: load.as_secs_f64() * 1e3,
            tokens_per_second: if eval_s > 0.0 { s.eval_tokens as f64 / eval_s } else { 0.0 },
            runs_on: runs_on.to_owned(),
            num_ctx: stream.num_ctx,
            prompt_budget: stream.prompt_budget,
            dropped_messages: stream.dropped_messages,
        }
    }
}

pub(super) fn check_request_id(id: &str) -> CommandResult<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(CommandError::invalid(format!("invalid request id {id:?}")));
    }
    Ok(())
}

/// Starts a reply on its own thread; every outcome (pieces, then done or error) arrives on
/// `on_event`, so a reply that fails while the model loads still ends with an event.
#[tauri::command]
pub fn start_chat(state: AppStateRef<'_>, request_id: String, model: String, messages: Vec<ChatMessage>, parameters: ChatParameters, tools: Option<Vec<serde_json::Value>>, on_event: Channel<ChatEvent>) -> CommandResult<()> {
    check_request_id(&request_id)?;
    check_name(&model)?;
    parameters.check()?;
    if messages.is_empty() || messages.len() > 100_000 {
        return Err(CommandError::invalid("a chat needs at least one message"));
    }
    if let Some(m) = messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant" | "tool")) {
        return Err(CommandError::invalid(format!("unknown message role {:?}", m.role)));
    }
    // The MCP tools of the conversation (desktop `tools`), offered to the model as functions.
    let tools = ToolRequest { tools: tools.unwrap_or_default(), ..Default::default() };
    if tools.tools.len() > 512 {
        return Err(CommandError::invalid("512 tools at most"));
    }
    tools.validate().map_err(CommandError::invalid)?;
    if messages.iter().map(|m| m.content.len()).sum::<usize>() > 32 << 20 {
        return Err(CommandError::invalid("the conversation is larger than 32 MiB; start a new one"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let mut replies = state.replies.lock().unwrap();
        if replies.contains_key(&request_id) {
            return Err(CommandError::invalid(format!("request {request_id} is already running")));
        }
        replies.insert(request_id.clone(), stop.clone());
    }
    let core = state.core.clone();
    let replies = state.replies.clone();
    std::thread::spawn(move || {
        let send = |e: ChatEvent| on_event.send(e).is_ok();
        let forget = || {
            replies.lock().unwrap_or_else(|e| e.into_inner()).remove(&request_id);
        };
        run_reply(&send, |send| stream_reply(&core, &model, &messages, &parameters, tools, &stop, send), forget);
    });
    Ok(())
}

/// Runs one reply to its end on this thread: whatever `reply` does (finishes, fails, or panics),
/// the web view gets exactly one terminal event (done or error) and `cleanup` runs, so the UI
/// never waits for a reply that died.
fn run_reply(send: &dyn Fn(ChatEvent) -> bool, reply: impl FnOnce(&dyn Fn(ChatEvent) -> bool) -> Result<(), String>, cleanup: impl FnOnce()) {
    /// Runs the cleanup however this function is left.
    struct Finally<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Finally<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    let _cleanup = Finally(Some(cleanup));
    let ended = AtomicBool::new(false);
    let once = |e: ChatEvent| {
        let terminal = matches!(e, ChatEvent::Done { .. } | ChatEvent::Error { .. });
        if ended.load(Ordering::SeqCst) || (terminal && ended.swap(true, Ordering::SeqCst)) {
            return false;
        }
        send(e)
    };
    let message = match catch_unwind(AssertUnwindSafe(|| reply(&once))) {
        Ok(Ok(())) => "the reply ended without a result; try again".to_string(),
        Ok(Err(message)) => message,
        Err(panic) => {
            let what = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            format!("the reply stopped on an internal error ({what}); try again, and report it if it happens again")
        }
    };
    if !ended.swap(true, Ordering::SeqCst) {
        send(ChatEvent::Error { message });
    }
}

/// Pieces are sent to the web view in batches at most this far apart: fewer IPC messages (each
/// is a script the web view evaluates) for the same text. On a 2-core machine this raised the
/// decode speed of a chat streamed into the window from ≈25 to ≈33–41 tokens/s.
const PIECE_BATCH: Duration = Duration::from_millis(40);

fn stream_reply(core: &Core, model: &str, messages: &[ChatMessage], p: &ChatParameters, tools: ToolRequest, stop: &AtomicBool, send: &dyn Fn(ChatEvent) -> bool) -> Result<(), String> {
    let prepared = core.prepare(model).map_err(|e| e.to_string())?;
    let seed = p.seed.filter(|s| *s >= 0).map(|s| s as u32);
    let options = SamplingOptions { temperature: p.temperature, top_p: p.top_p, top_k: p.top_k, num_predict: p.num_predict, min_p: p.min_p, repeat_penalty: p.repeat_penalty, seed, ..Default::default() };
    let think = p.think.map(|on| if on { Think::On } else { Think::Off });
    let req = RequestSettings { options, num_ctx: p.num_ctx, think, tools, ..Default::default() };
    let mut stream = core.engine().chat(&prepared, messages, req).map_err(|e| e.to_string())?;
    let mut cancelled = false;
    // Text not sent yet (answer and thinking, split by the model's reply parser), and when its
    // first token arrived.
    let mut batch = ReplyBatch::new(stream.parser.clone());
    let mut since = None::<Instant>;
    let send_batch = |batch: &mut ReplyBatch| {
        let (text, thinking, tokens) = batch.take();
        send(ChatEvent::Piece { text, thinking, tokens })
    };
    loop {
        if !cancelled && stop.load(Ordering::SeqCst) {
            stream.generation.cancel();
            cancelled = true;
        }
        let wait = since.map_or(Duration::from_millis(50), |t| PIECE_BATCH.saturating_sub(t.elapsed()));
        match stream.generation.next_event_timeout(wait.max(Duration::from_millis(1))) {
            None => {}
            Some(StreamEvent::Piece(piece)) => {
                batch.push(&piece);
                since.get_or_insert_with(Instant::now);
            }
            Some(StreamEvent::Done(stats)) => {
                batch.finish();
                if batch.pending() {
                    send_batch(&mut batch);
                }
                // Each call gets an ID: its result goes back to the model under it.
                let tool_calls = batch.take_calls().into_iter().map(|c| ToolCall { id: c.id.or_else(|| Some(crate::engine::tools::new_call_id())), ..c }).collect();
                send(ChatEvent::Done { stats: ChatStats::new(&stats, stream.load_duration, &stream), tool_calls });
                return Ok(());
            }
            Some(StreamEvent::Error(e)) => {
                batch.finish();
                if batch.pending() {
                    send_batch(&mut batch);
                }
                return Err(e.to_string());
            }
        }
        if since.is_some_and(|t| t.elapsed() >= PIECE_BATCH) {
            since = None;
            if !send_batch(&mut batch) && !cancelled {
                // The window is gone: stop generating for nobody.
                stream.generation.cancel();
                cancelled = true;
            }
        }
    }
}

#[tauri::command]
pub fn stop_chat(state: AppStateRef<'_>, request_id: String) -> CommandResult<()> {
    check_request_id(&request_id)?;
    if let Some(flag) = state.replies.lock().unwrap().get(&request_id) {
        flag.store(true, Ordering::SeqCst);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn chat_parameters_outside_their_ranges_are_refused() {
        let p = |temperature, top_p, top_k, num_predict, num_ctx| ChatParameters { temperature, top_p, top_k, num_predict, num_ctx, min_p: None, repeat_penalty: None, seed: None, think: None };
        assert!(p(None, None, None, None, None).check().is_ok());
        assert!(p(Some(0.7), Some(0.9), Some(40), Some(128), Some(4096)).check().is_ok());
        for bad in [p(Some(-1.0), None, None, None, None), p(Some(f32::NAN), None, None, None, None), p(None, Some(1.5), None, None, None), p(None, None, Some(-3), None, None), p(None, None, None, Some(-3), None), p(None, None, None, None, Some(16))] {
            assert_eq!(bad.check().unwrap_err().code, "invalid_argument");
        }
    }

    #[test]
    fn the_window_gets_the_limits_the_api_parser_checks() {
        assert_eq!(parameter_limits(), crate::engine::limits::PARAM_LIMITS);
        let keys: Vec<&str> = parameter_limits().iter().map(|l| l.key).collect();
        for key in ["temperature", "top_k", "top_p", "min_p", "repeat_penalty", "num_ctx", "num_predict", "seed"] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        // Each limit's edges: the API parser accepts exactly what the window is told is accepted.
        for l in parameter_limits() {
            let at = |v: f64| crate::api::options::settings(Some(&serde_json::Value::Object([(l.key.to_string(), serde_json::json!(v))].into_iter().collect())), None, None);
            assert!(at(l.min).is_ok() && at(l.max).is_ok(), "{} edges refused", l.key);
            assert!(at(l.max + 1.0).is_err() && at(l.min - 1.0).is_err(), "{} outside accepted", l.key);
        }
        let with = |f: &dyn Fn(&mut ChatParameters)| {
            let mut p = ChatParameters { temperature: None, top_p: None, top_k: None, num_predict: None, num_ctx: None, min_p: None, repeat_penalty: None, seed: None, think: None };
            f(&mut p);
            p.check()
        };
        assert!(with(&|p| (p.temperature, p.num_predict, p.num_ctx) = (Some(5.0), Some(-1), Some(256))).is_ok());
        assert!(with(&|p| p.num_ctx = Some(0)).is_err());
        assert!(with(&|p| (p.min_p, p.repeat_penalty, p.seed, p.think) = (Some(0.05), Some(1.1), Some(-1), Some(true))).is_ok());
        for bad in [with(&|p| p.min_p = Some(1.5)), with(&|p| p.repeat_penalty = Some(6.0)), with(&|p| p.seed = Some(-2)), with(&|p| p.seed = Some(1 << 33))] {
            assert_eq!(bad.unwrap_err().code, "invalid_argument");
        }
    }

    /// Runs `reply` through [`run_reply`]; returns the events sent and whether cleanup ran.
    fn events_of(reply: impl FnOnce(&dyn Fn(ChatEvent) -> bool) -> Result<(), String>) -> (Vec<ChatEvent>, bool) {
        let events = Mutex::new(Vec::new());
        let cleaned = AtomicBool::new(false);
        run_reply(&|e| {
            events.lock().unwrap().push(e);
            true
        }, reply, || cleaned.store(true, Ordering::SeqCst));
        (events.into_inner().unwrap(), cleaned.load(Ordering::SeqCst))
    }

    fn terminal(events: &[ChatEvent]) -> Vec<&ChatEvent> {
        events.iter().filter(|e| !matches!(e, ChatEvent::Piece { .. })).collect()
    }

    fn stats() -> ChatStats {
        ChatStats { done_reason: "stop".into(), prompt_tokens: 1, eval_tokens: 1, prompt_eval_ms: 1.0, eval_ms: 1.0, load_ms: 0.0, tokens_per_second: 1.0, runs_on: "100% CPU".into(), num_ctx: 2048, prompt_budget: 1792, dropped_messages: 0 }
    }

    #[test]
    fn a_reply_that_panics_ends_with_one_error_event_and_cleans_up() {
        let (events, cleaned) = events_of(|send| {
            send(ChatEvent::Piece { text: "Hello".into(), thinking: String::new(), tokens: 1 });
            panic!("index out of bounds in the test reply");
        });
        assert!(cleaned, "the reply is forgotten, so its ID can be stopped and reused");
        assert!(matches!(&events[0], ChatEvent::Piece { text, .. } if text == "Hello"));
        let ends = terminal(&events);
        assert_eq!(ends.len(), 1, "{events:?}");
        assert!(matches!(ends[0], ChatEvent::Error { message } if message.contains("internal error") && message.contains("index out of bounds")), "{events:?}");
        assert_eq!(events.len(), 2, "nothing after the terminal event");
    }

    #[test]
    fn every_reply_ends_with_exactly_one_terminal_event() {
        let (events, cleaned) = events_of(|send| {
            send(ChatEvent::Done { stats: stats(), tool_calls: Vec::new() });
            Ok(())
        });
        assert!(cleaned && matches!(terminal(&events)[..], [ChatEvent::Done { .. }]), "{events:?}");
        let (events, _) = events_of(|_| Err("the model process exited".into()));
        assert!(matches!(terminal(&events)[..], [ChatEvent::Error { message }] if message == "the model process exited"), "{events:?}");
        // Done, then a panic or an error: still only the Done.
        let (events, cleaned) = events_of(|send| {
            send(ChatEvent::Done { stats: stats(), tool_calls: Vec::new() });
            panic!("after done")
        });
        assert!(cleaned && matches!(terminal(&events)[..], [ChatEvent::Done { .. }]), "{events:?}");
        // Returning without a result is an error too, and later events are dropped.
        let (events, _) = events_of(|_| Ok(()));
        assert!(matches!(terminal(&events)[..], [ChatEvent::Error { .. }]), "{events:?}");
        let (events, _) = events_of(|send| {
            send(ChatEvent::Error { message: "first".into() });
            send(ChatEvent::Piece { text: "late".into(), thinking: String::new(), tokens: 1 });
            send(ChatEvent::Done { stats: stats(), tool_calls: Vec::new() });
            Ok(())
        });
        assert_eq!(events.len(), 1, "{events:?}");
    }

    #[test]
    fn request_ids_are_short_and_plain() {
        assert!(check_request_id("r-12_ab").is_ok());
        for bad in ["", "a b", "../x", &"x".repeat(65)] {
            assert!(check_request_id(bad).is_err(), "{bad:?}");
        }
    }
}
