//! The commands the web view may call (ui/src/lib/api.ts is their other half). Each one checks
//! its arguments, then calls the same modules as the CLI; long work runs off the main thread and
//! reports through a Channel.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tauri::ipc::{Channel, Invoke};
use tauri::{AppHandle, State};
use tauri_plugin_opener::OpenerExt;

use super::access::{self, blocking, check_name, Access, ExportChoices, ExportOutcome};
use super::confirm::NativeConfirmer;
use super::error::{CommandError, CommandResult};
use super::grants::{Chosen, PathArg, Purpose};
use super::pick::{self, PickKind};
use super::server::ApiServerStatus;
use super::settings::{ApiSettings, Theme};
use super::AppState;
use crate::bundle::sign::{self, TrustedKey};
use crate::bundle::{ImportReport, SignaturePolicy};
use crate::core::{Core, MachineOverview, ModelDetails};
use crate::engine::chat::{ChatStream, RequestSettings};
use crate::engine::limits::{self, ParamLimit};
use crate::engine::protocol::{GenerationStats, SamplingOptions};
use crate::engine::supervisor::StreamEvent;
use crate::engine::template::ChatMessage;
use crate::engine::tools::Think;

use super::reply_stream::ReplyBatch;
use crate::progress::{Progress, ProgressSink};
use crate::store::RootSource;

type AppStateRef<'a> = State<'a, AppState>;

pub fn handler() -> impl Fn(Invoke) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        list_models,
        model_details,
        delete_model,
        open_store_folder,
        pick_path,
        import_path,
        cancel_transfer,
        export_models,
        subscribe_drops,
        hardware,
        start_chat,
        stop_chat,
        parameter_limits,
        list_conversations,
        save_conversation,
        delete_conversation,
        get_settings,
        set_api_server,
        set_signature_policy,
        set_theme,
        set_ui_state,
        trust_add,
        trust_remove,
        super::duplicate::modelfile_parts,
        super::duplicate::preview_duplicate,
        super::duplicate::duplicate_model,
        super::registry_pull::pull_from_registry,
        super::registry_pull::set_registry,
        super::documents::documents_of,
        super::documents::pick_documents,
        super::documents::attach_documents,
        super::documents::detach_document,
        super::documents::add_library,
        super::documents::remove_library,
        super::documents::use_libraries,
        super::documents::sync_documents,
        super::documents::cancel_indexing,
        super::documents::embedding_settings,
        super::documents::set_embedding_model,
        super::documents::retrieve_documents,
        super::model_state::loaded_models,
        super::model_state::unload_model,
        super::model_state::model_capabilities,
        super::conversation_file::export_conversation,
        super::conversation_file::import_conversation,
        subscribe_drag,
        super::images::read_image,
    ]
}

/// The real native dialog, for the commands in [`access`].
fn confirmer<'a>(app: &'a AppHandle, state: &'a AppState) -> NativeConfirmer<'a> {
    NativeConfirmer { app, slot: &state.confirming }
}

fn access_of<'a>(state: &'a AppState, confirm: &'a NativeConfirmer<'a>) -> Access<'a, NativeConfirmer<'a>> {
    Access { core: &state.core, grants: &state.grants, confirm, transfer: &state.transfer }
}

// ---- Models --------------------------------------------------------------------------------

#[tauri::command]
async fn list_models(state: AppStateRef<'_>) -> CommandResult<Vec<ModelDetails>> {
    let core = state.core.clone();
    blocking(move || {
        let (models, problems) = core.store.list()?;
        for p in problems {
            eprintln!("warning: skipped an unreadable manifest: {p}");
        }
        Ok(models.iter().map(|e| core.details(e)).collect())
    })
    .await
}

#[derive(Serialize)]
struct FullDetails {
    #[serde(flatten)]
    details: ModelDetails,
    template: Option<String>,
    metadata: Vec<(String, String)>,
}

#[tauri::command]
async fn model_details(state: AppStateRef<'_>, name: String) -> CommandResult<FullDetails> {
    check_name(&name)?;
    let core = state.core.clone();
    blocking(move || {
        let entry = core.store.resolve(&name)?;
        let template = core.prepare(&name).ok().and_then(|m| m.template().map(str::to_string));
        let metadata = core.model_info(&entry).into_iter().map(|(k, v)| (k, metadata_text(&v))).collect();
        Ok(FullDetails { details: core.details(&entry), template, metadata })
    })
    .await
}

/// A metadata value as one line of text for the details table.
fn metadata_text(v: &Value) -> String {
    const MAX: usize = 300;
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => "(large array, not shown)".into(),
        other => other.to_string(),
    };
    if text.len() <= MAX {
        return text;
    }
    let cut = (0..=MAX).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}…", &text[..cut])
}

#[tauri::command]
async fn delete_model(state: AppStateRef<'_>, name: String) -> CommandResult<()> {
    check_name(&name)?;
    let core = state.core.clone();
    blocking(move || Ok(core.remove_model(&name)?)).await
}

#[tauri::command]
fn open_store_folder(app: AppHandle, state: AppStateRef<'_>) -> CommandResult<()> {
    let root = state.core.store.root();
    std::fs::create_dir_all(root).map_err(|e| CommandError::new("io", format!("cannot create the store folder {}: {e}", root.display())))?;
    app.opener().open_path(root.display().to_string(), None::<&str>).map_err(|e| CommandError::new("app", format!("cannot open {}: {e}", root.display())))
}

/// A native file dialog; the answer comes back as a handle (and the path, to show).
#[tauri::command]
async fn pick_path(app: AppHandle, state: AppStateRef<'_>, kind: PickKind, name: Option<String>) -> CommandResult<Option<Chosen>> {
    let Some(mut path) = pick::pick(&app, &state.picker, kind, name).await? else { return Ok(None) };
    let ext = match kind {
        PickKind::ExportFile => Some("zip"),
        PickKind::ConversationMarkdown => Some("md"),
        PickKind::ConversationJson => Some("json"),
        _ => None,
    };
    if let Some(ext) = ext.filter(|ext| !path.extension().is_some_and(|e| e.eq_ignore_ascii_case(ext))) {
        path.as_mut_os_string().push(format!(".{ext}"));
    }
    Ok(Some(state.grants.grant(path, Purpose::of(kind))))
}

// ---- Import and export -----------------------------------------------------------------------

/// Sends progress to the web view at most every 50 ms (and always the last report), so a fast
/// copy does not flood the IPC.
pub(super) struct ChannelProgress {
    pub(super) channel: Channel<Progress>,
    pub(super) last: Mutex<Option<Instant>>,
}

impl ProgressSink for ChannelProgress {
    fn report(&self, p: &Progress) {
        let mut last = self.last.lock().unwrap();
        let due = last.is_none_or(|t| t.elapsed() >= Duration::from_millis(50));
        if due || p.done_bytes >= p.total_bytes {
            *last = Some(Instant::now());
            let _ = self.channel.send(p.clone());
        }
    }
}

/// Imports a chosen or typed (then confirmed) bundle folder, zip or GGUF.
#[tauri::command]
async fn import_path(app: AppHandle, state: AppStateRef<'_>, source: PathArg, name: Option<String>, on_progress: Channel<Progress>) -> CommandResult<ImportReport> {
    let confirm = confirmer(&app, &state);
    let sink = ChannelProgress { channel: on_progress, last: Mutex::new(None) };
    access::import(&access_of(&state, &confirm), source, name, state.settings.signature_policy(), sink).await
}

#[tauri::command]
fn cancel_transfer(state: AppStateRef<'_>) {
    if let Some(flag) = state.transfer.lock().unwrap().as_ref() {
        flag.store(true, Ordering::SeqCst);
    }
}

#[tauri::command]
async fn export_models(app: AppHandle, state: AppStateRef<'_>, models: Vec<String>, out: PathArg, options: ExportChoices, on_progress: Channel<Progress>) -> CommandResult<ExportOutcome> {
    let confirm = confirmer(&app, &state);
    let sink = ChannelProgress { channel: on_progress, last: Mutex::new(None) };
    access::export(&access_of(&state, &confirm), models, out, options, sink).await
}

/// Paths dropped on the window arrive as [`Chosen`] handles: a drop is the person's choice.
#[tauri::command]
fn subscribe_drops(state: AppStateRef<'_>, on_drop: Channel<Vec<super::dropped::Dropped>>) {
    *state.drops.lock().unwrap() = Some(on_drop);
}

/// Files being dragged over the window (entered, left): the UI shows where they will go.
#[tauri::command]
fn subscribe_drag(state: AppStateRef<'_>, on_drag: Channel<super::dropped::Dragging>) {
    *state.dragging.lock().unwrap() = Some(on_drag);
}

// ---- Hardware --------------------------------------------------------------------------------

#[tauri::command]
async fn hardware(state: AppStateRef<'_>) -> CommandResult<MachineOverview> {
    let core = state.core.clone();
    blocking(move || Ok(core.machine_overview()?)).await
}

// ---- Chat ------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct ChatParameters {
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
fn parameter_limits() -> &'static [ParamLimit] {
    limits::PARAM_LIMITS
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum ChatEvent {
    /// One or more tokens' text (see [`PIECE_BATCH`]): answer and, apart, thinking.
    Piece {
        text: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        thinking: String,
        tokens: u32,
    },
    Done { stats: ChatStats },
    Error { message: String },
}

#[derive(Clone, Debug, Serialize)]
struct ChatStats {
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

fn check_request_id(id: &str) -> CommandResult<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(CommandError::invalid(format!("invalid request id {id:?}")));
    }
    Ok(())
}

/// Starts a reply on its own thread; every outcome (pieces, then done or error) arrives on
/// `on_event`, so a reply that fails while the model loads still ends with an event.
#[tauri::command]
fn start_chat(state: AppStateRef<'_>, request_id: String, model: String, messages: Vec<ChatMessage>, parameters: ChatParameters, on_event: Channel<ChatEvent>) -> CommandResult<()> {
    check_request_id(&request_id)?;
    check_name(&model)?;
    parameters.check()?;
    if messages.is_empty() || messages.len() > 100_000 {
        return Err(CommandError::invalid("a chat needs at least one message"));
    }
    if let Some(m) = messages.iter().find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant")) {
        return Err(CommandError::invalid(format!("unknown message role {:?}", m.role)));
    }
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
        run_reply(&send, |send| stream_reply(&core, &model, &messages, &parameters, &stop, send), forget);
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

fn stream_reply(core: &Core, model: &str, messages: &[ChatMessage], p: &ChatParameters, stop: &AtomicBool, send: &dyn Fn(ChatEvent) -> bool) -> Result<(), String> {
    let prepared = core.prepare(model).map_err(|e| e.to_string())?;
    let seed = p.seed.filter(|s| *s >= 0).map(|s| s as u32);
    let options = SamplingOptions { temperature: p.temperature, top_p: p.top_p, top_k: p.top_k, num_predict: p.num_predict, min_p: p.min_p, repeat_penalty: p.repeat_penalty, seed, ..Default::default() };
    let think = p.think.map(|on| if on { Think::On } else { Think::Off });
    let req = RequestSettings { options, num_ctx: p.num_ctx, think, ..Default::default() };
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
                send(ChatEvent::Done { stats: ChatStats::new(&stats, stream.load_duration, &stream) });
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
fn stop_chat(state: AppStateRef<'_>, request_id: String) -> CommandResult<()> {
    check_request_id(&request_id)?;
    if let Some(flag) = state.replies.lock().unwrap().get(&request_id) {
        flag.store(true, Ordering::SeqCst);
    }
    Ok(())
}

// ---- Conversations -----------------------------------------------------------------------------

// Disk work with fsyncs: off the async runtime's threads.

#[tauri::command]
async fn list_conversations(state: AppStateRef<'_>) -> CommandResult<Vec<Value>> {
    let conversations = state.conversations.clone();
    blocking(move || conversations.list()).await
}

#[tauri::command]
async fn save_conversation(state: AppStateRef<'_>, conversation: Value) -> CommandResult<()> {
    let conversations = state.conversations.clone();
    blocking(move || conversations.save(&conversation)).await
}

#[tauri::command]
async fn delete_conversation(state: AppStateRef<'_>, id: String) -> CommandResult<()> {
    let conversations = state.conversations.clone();
    let documents = state.documents.clone();
    // Its attached documents go with it (libraries stay).
    blocking(move || conversations.delete(&id).and_then(|_| documents.forget_conversation(&id))).await
}

// ---- Settings ----------------------------------------------------------------------------------

#[derive(Serialize)]
struct SettingsView {
    store_path: String,
    store_source: RootSource,
    api: ApiServerStatus,
    signature_policy: SignaturePolicy,
    trusted_keys: Vec<TrustedKey>,
    theme: Theme,
    ui: Map<String, Value>,
    /// The site registry for "Pull from site registry", if configured.
    registry: Option<String>,
    /// What `airlock --version` prints: version, commit, llama.cpp, backend modules.
    version: String,
}

fn trust_dir() -> CommandResult<PathBuf> {
    Ok(sign::trust_dir(&sign::config_dir()?))
}

#[tauri::command]
fn get_settings(state: AppStateRef<'_>) -> CommandResult<SettingsView> {
    let s = &state.settings;
    Ok(SettingsView {
        store_path: state.core.store.root().display().to_string(),
        store_source: state.core.store.root_source(),
        api: state.server.status(),
        signature_policy: s.signature_policy(),
        trusted_keys: sign::trust_list(&trust_dir()?)?,
        theme: s.theme(),
        ui: s.ui(),
        registry: s.registry(),
        version: format!("Airlock {}", crate::hardware::BuildInfo::detect().long()),
    })
}

#[tauri::command]
async fn set_api_server(state: AppStateRef<'_>, enabled: bool, port: u16, token: Option<String>) -> CommandResult<ApiServerStatus> {
    if port == 0 {
        return Err(CommandError::invalid("choose a port between 1 and 65535"));
    }
    let token = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if token.as_ref().is_some_and(|t| t.len() > 256 || t.chars().any(char::is_control)) {
        return Err(CommandError::invalid("the token must be at most 256 printable characters"));
    }
    let api = ApiSettings { enabled, port, token };
    state.settings.set_api(&api)?;
    let (core, server) = (state.core.clone(), state.server.clone());
    // Off the async runtime: restarting on the same port may wait for the old server to let go.
    blocking(move || Ok(server.apply(core, api))).await
}

/// A weaker policy than the current one only after a native confirmation.
#[tauri::command]
async fn set_signature_policy(app: AppHandle, state: AppStateRef<'_>, policy: SignaturePolicy) -> CommandResult<()> {
    let current = state.settings.signature_policy();
    access::set_signature_policy(&confirmer(&app, &state), current, policy, |p| state.settings.set_signature_policy(p)).await
}

#[tauri::command]
fn set_theme(state: AppStateRef<'_>, theme: Theme) -> CommandResult<()> {
    state.settings.set_theme(theme)
}

#[tauri::command]
fn set_ui_state(state: AppStateRef<'_>, ui: Map<String, Value>) -> CommandResult<()> {
    state.settings.set_ui(ui)
}

/// Trusts the key chosen in the key dialog (`handle`) after a native confirmation naming it.
#[tauri::command]
async fn trust_add(app: AppHandle, state: AppStateRef<'_>, handle: String) -> CommandResult<String> {
    access::trust_add(&state.grants, &confirmer(&app, &state), &handle, &trust_dir()?).await
}

#[tauri::command]
fn trust_remove(key_id: String) -> CommandResult<()> {
    if key_id.len() > 64 {
        return Err(CommandError::invalid("invalid key ID"));
    }
    Ok(sign::trust_remove(&trust_dir()?, &key_id)?)
}

#[cfg(test)]
mod tests {
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
            send(ChatEvent::Done { stats: stats() });
            Ok(())
        });
        assert!(cleaned && matches!(terminal(&events)[..], [ChatEvent::Done { .. }]), "{events:?}");
        let (events, _) = events_of(|_| Err("the model process exited".into()));
        assert!(matches!(terminal(&events)[..], [ChatEvent::Error { message }] if message == "the model process exited"), "{events:?}");
        // Done, then a panic or an error: still only the Done.
        let (events, cleaned) = events_of(|send| {
            send(ChatEvent::Done { stats: stats() });
            panic!("after done")
        });
        assert!(cleaned && matches!(terminal(&events)[..], [ChatEvent::Done { .. }]), "{events:?}");
        // Returning without a result is an error too, and later events are dropped.
        let (events, _) = events_of(|_| Ok(()));
        assert!(matches!(terminal(&events)[..], [ChatEvent::Error { .. }]), "{events:?}");
        let (events, _) = events_of(|send| {
            send(ChatEvent::Error { message: "first".into() });
            send(ChatEvent::Piece { text: "late".into(), thinking: String::new(), tokens: 1 });
            send(ChatEvent::Done { stats: stats() });
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

    #[test]
    fn metadata_values_become_one_bounded_line() {
        assert_eq!(metadata_text(&Value::from("gemma3")), "gemma3");
        assert_eq!(metadata_text(&Value::from(32768)), "32768");
        assert_eq!(metadata_text(&Value::Null), "(large array, not shown)");
        let long = metadata_text(&Value::from("é".repeat(400)));
        assert!(long.ends_with('…') && long.len() <= 304, "cut on a character boundary: {}", long.len());
    }
}
