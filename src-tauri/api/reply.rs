//! A generation as the API routes see it: the model's text already split by the reply parser
//! into content, thinking and whole tool calls (`engine::tools`), streamed or collected.

use axum::http::StatusCode;
use tokio::sync::mpsc;

use super::stream::ApiError;
use crate::engine::chat::ChatStream;
use crate::engine::protocol::GenerationStats;
use crate::engine::supervisor::{EngineError, StreamEvent};
use crate::engine::tools::{ReplyPart, ToolCall};

pub enum ReplyEvent {
    Part(ReplyPart),
    Done(GenerationStats),
    Error(EngineError),
}

/// Forwards the parsed reply; dropping the receiver cancels the generation.
pub fn replies(stream: ChatStream) -> mpsc::Receiver<ReplyEvent> {
    let (tx, rx) = mpsc::channel(64);
    let note = super::audit::current();
    tokio::task::spawn_blocking(move || {
        let mut parser = stream.parser;
        for ev in stream.generation {
            super::audit::note_event(&note, &ev);
            let (parts, end) = match ev {
                StreamEvent::Piece(text) => (parser.push(&text), None),
                StreamEvent::Done(stats) => (parser.finish(), Some(ReplyEvent::Done(stats))),
                StreamEvent::Error(e) => (parser.finish(), Some(ReplyEvent::Error(e))),
            };
            for p in parts {
                if tx.blocking_send(ReplyEvent::Part(p)).is_err() {
                    return; // the client went away: dropping the generation cancels it
                }
            }
            if let Some(end) = end {
                let _ = tx.blocking_send(end);
                return;
            }
        }
    });
    rx
}

/// A whole reply (for `stream: false`).
#[derive(Default)]
pub struct Collected {
    pub content: String,
    pub thinking: String,
    pub tool_calls: Vec<ToolCall>,
    pub stats: GenerationStats,
}

pub async fn collect(stream: ChatStream) -> Result<Collected, ApiError> {
    let mut rx = replies(stream);
    let mut out = Collected::default();
    while let Some(ev) = rx.recv().await {
        match ev {
            ReplyEvent::Part(ReplyPart::Content(t)) => out.content.push_str(&t),
            ReplyEvent::Part(ReplyPart::Thinking(t)) => out.thinking.push_str(&t),
            ReplyEvent::Part(ReplyPart::ToolCall(c)) => out.tool_calls.push(c),
            ReplyEvent::Done(stats) => {
                out.stats = stats;
                return Ok(out);
            }
            // A request the runner refused (an unreadable image, a prompt over the context) is the
            // client's to fix: 400, as when it is refused before the reply starts.
            ReplyEvent::Error(e) => return Err(crate::engine::chat::ChatError::Engine(e).into()),
        }
    }
    Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the generation ended without a result".into()))
}
