//! The audit log's and the metrics' HTTP side: [`record`] (the outermost layer) opens one [`Note`]
//! per request and keeps it in a task-local while the guards and the route run, so they fill in
//! who called, the model, a refusal's reason, token counts, time to first token and digests
//! without passing it along; the note is written and counted once the response body has ended
//! and the generation has let go of it.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::access::audit::{AuditLog, Note, Record, RecordSink};
use crate::engine::supervisor::StreamEvent;
use crate::store::Store;

tokio::task_local! {
    static NOTE: Arc<Note>;
}

/// The running request's note (`None` outside a request). Take it before moving work to another
/// thread: task-locals stay with the request's task.
pub fn current() -> Option<Arc<Note>> {
    NOTE.try_with(|n| n.clone()).ok()
}

pub fn update(note: &Option<Arc<Note>>, f: impl FnOnce(&mut Record)) {
    if let Some(n) = note {
        n.update(f);
    }
}

/// Records why the running request failed or was refused.
pub fn note_error(message: &str) {
    update(&current(), |r| r.error = Some(message.to_string()));
}

/// Records what a generation's event says: reply text (when the operator keeps text), the token
/// counts of a finished reply, the error of a failed one.
pub fn note_event(note: &Option<Arc<Note>>, event: &StreamEvent) {
    let Some(n) = note else { return };
    match event {
        StreamEvent::Piece(text) => n.update(|r| {
            r.first_token_ms.get_or_insert(n.elapsed().as_millis() as u64);
            if n.keep_text() {
                r.reply.get_or_insert_with(String::new).push_str(text);
            }
        }),
        StreamEvent::Done(stats) => n.update(|r| {
            r.prompt_tokens = Some(stats.prompt_tokens.into());
            r.reply_tokens = Some(stats.eval_tokens.into());
            r.cached_tokens = Some(stats.prompt_cached_tokens.into());
            if stats.eval_ns > 0 {
                r.tokens_per_second = Some(stats.eval_tokens as f64 / (stats.eval_ns as f64 / 1e9));
            }
        }),
        StreamEvent::Error(e) => n.update(|r| r.error = Some(e.to_string())),
    }
}

/// Records the blobs of model `name` (its config and layers) as touched by a store change.
pub fn note_model_digests(note: &Option<Arc<Note>>, store: &Store, name: &str) {
    if note.is_none() {
        return;
    }
    if let Ok(entry) = store.resolve(name) {
        let digests: Vec<String> = entry.manifest.blobs().map(|l| l.digest.to_string()).collect();
        update(note, |r| r.digests.extend(digests));
    }
}

/// Where the records of one server go.
#[derive(Clone)]
pub struct Recorders {
    pub log: Option<Arc<AuditLog>>,
    pub metrics: Arc<super::metrics::Metrics>,
    pub drain: Arc<super::Drain>,
}

/// The outermost layer: one record per request, to the audit log and the metrics once its
/// response is done.
pub async fn record(State(to): State<Recorders>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.to_string());
    let route_template = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let record = Record { time: crate::units::now_rfc3339(), peer, method: req.method().to_string(), route: req.uri().path().to_string(), route_template, ..Record::default() };
    let keep_text = to.log.as_ref().is_some_and(|l| l.keep_text);
    let mut sinks: Vec<Arc<dyn RecordSink>> = vec![to.metrics];
    sinks.extend(to.log.map(|l| l as Arc<dyn RecordSink>));
    let note = Note::new(sinks, keep_text, record);
    if to.drain.is_draining() {
        const STOPPING: &str = "this server is shutting down; send the request to another one or retry shortly";
        note.update(|r| (r.status, r.error) = (StatusCode::SERVICE_UNAVAILABLE.as_u16(), Some(STOPPING.into())));
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "error": STOPPING }))).into_response();
    }
    let in_flight = to.drain.enter();
    req.extensions_mut().insert(note.clone());
    let response = NOTE.scope(note.clone(), next.run(req)).await;
    note.update(|r| r.status = response.status().as_u16());
    response.map(|body| Body::new(Held { body, _note: note, _in_flight: in_flight }))
}

/// A response body that holds the request's note, and counts it as under way, until it is
/// dropped (sent or abandoned).
struct Held {
    body: Body,
    _note: Arc<Note>,
    _in_flight: super::InFlight,
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
