//! The audit log's HTTP side: [`record`] (the outermost layer) opens one [`Note`] per request and
//! keeps it in a task-local while the guards and the route run, so they fill in who called, the
//! model, a refusal's reason, token counts and digests without passing it along; the note is
//! written once the response body has ended and the generation has let go of it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::access::audit::{AuditLog, Note, Record};
use crate::engine::supervisor::StreamEvent;
use crate::store::Store;

tokio::task_local! {
    static NOTE: Arc<Note>;
}

/// The running request's note, if the server keeps an audit log. Take it before moving work to
/// another thread: task-locals stay with the request's task.
pub fn current() -> Option<Arc<Note>> {
    NOTE.try_with(|n| n.clone()).ok()
}

pub fn note(note: &Option<Arc<Note>>, f: impl FnOnce(&mut Record)) {
    if let Some(n) = note {
        n.update(f);
    }
}

/// Records why the running request failed or was refused.
pub fn note_error(message: &str) {
    note(&current(), |r| r.error = Some(message.to_string()));
}

/// Records what a generation's event says: reply text (when the operator keeps text), the token
/// counts of a finished reply, the error of a failed one.
pub fn note_event(note_: &Option<Arc<Note>>, event: &StreamEvent) {
    let Some(n) = note_ else { return };
    match event {
        StreamEvent::Piece(text) if n.keep_text() => n.update(|r| r.reply.get_or_insert_with(String::new).push_str(text)),
        StreamEvent::Piece(_) => {}
        StreamEvent::Done(stats) => n.update(|r| {
            r.prompt_tokens = Some(stats.prompt_tokens.into());
            r.reply_tokens = Some(stats.eval_tokens.into());
        }),
        StreamEvent::Error(e) => n.update(|r| r.error = Some(e.to_string())),
    }
}

/// Records the blobs of model `name` (its config and layers) as touched by a store change.
pub fn note_model_digests(note_: &Option<Arc<Note>>, store: &Store, name: &str) {
    if note_.is_none() {
        return;
    }
    if let Ok(entry) = store.resolve(name) {
        let digests: Vec<String> = entry.manifest.blobs().map(|l| l.digest.to_string()).collect();
        note(note_, |r| r.digests.extend(digests));
    }
}

/// The outermost layer: one record per request, written when its response is done.
pub async fn record(State(log): State<Option<Arc<AuditLog>>>, mut req: Request, next: Next) -> Response {
    let Some(log) = log else { return next.run(req).await };
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string());
    let note = Note::new(log, Record { time: crate::units::now_rfc3339(), peer, method: req.method().to_string(), route: req.uri().path().to_string(), ..Record::default() });
    req.extensions_mut().insert(note.clone());
    let response = NOTE.scope(note.clone(), next.run(req)).await;
    note.update(|r| r.status = response.status().as_u16());
    response.map(|body| Body::new(Held { body, _note: note }))
}

/// A response body that holds the request's note until it is dropped (sent or abandoned).
struct Held {
    body: Body,
    _note: Arc<Note>,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
