//! The window's documents: attaching files to a conversation, libraries (folders), indexing in
//! the background with progress and Cancel, and the context for a question. Thin: the work is
//! [`crate::documents`]'s. Every path read comes from a handle the person granted by choosing
//! or dropping it (`Purpose::Attach`), never from the web view.
//!
//! One writer at a time: indexing jobs queue on `writer`; searches read beside them (SQLite WAL).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tauri::ipc::Channel;
use tauri::{AppHandle, State};

use super::access::{blocking, check_name};
use super::error::{CommandError, CommandResult};
use super::grants::{Chosen, Purpose};
use super::pick;
use super::AppState;
use crate::core::Core;
use crate::documents::{self, Attachment, Catalog, IndexError, Library, ModelEmbedder, Retrieved, SyncReport};

/// The documents index and the indexing jobs.
pub struct DocumentsState {
    path: PathBuf,
    /// Held by the job writing the index.
    writer: Mutex<()>,
    /// Cancel flags of the jobs running or waiting.
    jobs: Mutex<Vec<Arc<AtomicBool>>>,
    running: AtomicUsize,
}

impl DocumentsState {
    /// The index lives in the app's data folder, beside the conversations.
    pub fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(DocumentsState { path, writer: Mutex::new(()), jobs: Mutex::new(Vec::new()), running: AtomicUsize::new(0) })
    }

    fn open(&self) -> CommandResult<Catalog> {
        Catalog::open(&self.path).map_err(db)
    }

    fn view(&self, conversation: &str) -> CommandResult<ConversationDocuments> {
        let catalog = self.open()?;
        let used = catalog.libraries_of(conversation).map_err(db)?;
        Ok(ConversationDocuments {
            attachments: catalog.attachments(conversation).map_err(db)?,
            libraries: catalog.libraries().map_err(db)?.into_iter().map(|l| LibraryView { used: used.contains(&l.id), library: l }).collect(),
            embedding_model: catalog.chosen_model().map_err(db)?,
            indexing: self.running.load(Ordering::SeqCst) > 0,
        })
    }

    fn cancel_all(&self) {
        for flag in self.jobs.lock().unwrap().iter() {
            flag.store(true, Ordering::SeqCst);
        }
    }

    /// The conversation was deleted: its attachments go (and the chunks nothing else uses).
    pub fn forget_conversation(&self, conversation: &str) -> CommandResult<()> {
        let _writer = self.stop_writer();
        self.open()?.forget_conversation(conversation).map_err(db)
    }

    /// Takes the writer for a removal: running jobs are cancelled first (they stop after the
    /// file in hand, and the rest is read again when next needed), so a removal waits at most
    /// one file and no job writes back what was just removed.
    fn stop_writer(&self) -> std::sync::MutexGuard<'_, ()> {
        self.cancel_all();
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `target`'s sync on this thread (holding the writer), reporting on `send`.
    fn run(&self, core: &Core, target: Target, chat_model: &str, send: &dyn Fn(IndexEvent)) {
        let cancel = Arc::new(AtomicBool::new(false));
        self.jobs.lock().unwrap().push(cancel.clone());
        self.running.fetch_add(1, Ordering::SeqCst);
        let result = {
            let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            sync(self, core, target, chat_model, &cancel, send)
        };
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.jobs.lock().unwrap().retain(|f| !Arc::ptr_eq(f, &cancel));
        send(match result {
            Ok(report) => IndexEvent::finished(&report, false),
            Err(IndexError::Cancelled) => IndexEvent::finished(&SyncReport::default(), true),
            Err(e) => IndexEvent::Error { message: e.to_string() },
        });
    }

    /// [`Self::run`] on its own thread: the command returns at once.
    fn spawn(self: &Arc<Self>, core: Arc<Core>, target: Target, chat_model: String, channel: Channel<IndexEvent>) {
        let docs = self.clone();
        std::thread::spawn(move || docs.run(&core, target, &chat_model, &|e| drop(channel.send(e))));
    }
}

enum Target {
    Conversation(String),
    Library(i64),
}

fn sync(docs: &DocumentsState, core: &Core, target: Target, chat_model: &str, cancel: &AtomicBool, send: &dyn Fn(IndexEvent)) -> Result<SyncReport, IndexError> {
    let mut catalog = Catalog::open(&docs.path)?;
    let model = catalog.embedding_model(chat_model)?;
    let embedder = ModelEmbedder::new(core, &model).map_err(|e| IndexError::Embedding(format!("the embedding model {model} cannot be used: {e}")))?;
    let progress = |p: &documents::SyncProgress| send(IndexEvent::Progress { done: p.done, total: p.total, file: documents::catalog::file_name(&p.current.display().to_string()) });
    match target {
        Target::Conversation(id) => catalog.sync(&id, &embedder, &mut |p| progress(&p), cancel),
        Target::Library(id) => catalog.sync_library(id, &embedder, &mut |p| progress(&p), cancel),
    }
}

fn db(e: IndexError) -> CommandError {
    CommandError::new("documents", e.to_string())
}

/// What the window shows for a conversation.
#[derive(Serialize)]
pub struct ConversationDocuments {
    attachments: Vec<Attachment>,
    /// Every library, each saying whether this conversation uses it.
    libraries: Vec<LibraryView>,
    /// The embedding model chosen in Settings (none: the chat model embeds).
    embedding_model: Option<String>,
    /// An indexing job is running.
    indexing: bool,
}

#[derive(Serialize)]
struct LibraryView {
    #[serde(flatten)]
    library: Library,
    used: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IndexEvent {
    /// Reading `file`, the `done`-th of `total` (of one attachment list or one library).
    Progress { done: usize, total: usize, file: String },
    Finished { indexed: usize, unchanged: usize, chunks: usize, failed: Vec<Failed>, cancelled: bool },
    Error { message: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct Failed {
    file: String,
    path: String,
    reason: String,
}

impl IndexEvent {
    fn finished(r: &SyncReport, cancelled: bool) -> Self {
        let failed = r.failed.iter().map(|(p, why)| Failed { file: documents::catalog::file_name(&p.display().to_string()), path: p.display().to_string(), reason: why.clone() }).collect();
        IndexEvent::Finished { indexed: r.indexed.len(), unchanged: r.unchanged, chunks: r.chunks, failed, cancelled }
    }
}

type AppStateRef<'a> = State<'a, AppState>;

/// Conversation IDs name rows, never paths; the same rule as the conversations' files.
fn check_conversation(id: &str) -> CommandResult<()> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(CommandError::invalid(format!("invalid conversation id {id:?}")));
    }
    Ok(())
}

#[tauri::command]
pub async fn documents_of(state: AppStateRef<'_>, conversation: String) -> CommandResult<ConversationDocuments> {
    check_conversation(&conversation)?;
    let docs = state.documents.clone();
    blocking(move || docs.view(&conversation)).await
}

/// The multi-select document dialog; each chosen file comes back as a handle for attaching.
#[tauri::command]
pub async fn pick_documents(app: AppHandle, state: AppStateRef<'_>) -> CommandResult<Vec<Chosen>> {
    let paths = match pick::pick_many(&app, &state.picker).await {
        Err(e) if e.code == "busy" => return Ok(Vec::new()),
        other => other?,
    };
    Ok(paths.into_iter().map(|p| state.grants.grant(p, Purpose::Attach)).collect())
}

/// Attaches the chosen (or dropped) files to `conversation` and indexes them in the background;
/// progress and the outcome arrive on `on_event`.
#[tauri::command]
pub async fn attach_documents(state: AppStateRef<'_>, conversation: String, handles: Vec<String>, model: String, on_event: Channel<IndexEvent>) -> CommandResult<ConversationDocuments> {
    check_conversation(&conversation)?;
    check_name(&model)?;
    let paths = handles.iter().map(|h| state.grants.path(h, Purpose::Attach)).collect::<CommandResult<Vec<_>>>()?;
    if let Some(dir) = paths.iter().find(|p| p.is_dir()) {
        return Err(CommandError::invalid(format!("{} is a folder: add it as a library instead", dir.display())));
    }
    let docs = state.documents.clone();
    let conv = conversation.clone();
    let view = blocking(move || {
        let catalog = docs.open()?;
        for p in &paths {
            catalog.attach(&conv, p).map_err(db)?;
        }
        docs.view(&conv)
    })
    .await?;
    state.documents.spawn(state.core.clone(), Target::Conversation(conversation), model, on_event);
    Ok(view)
}

#[tauri::command]
pub async fn detach_document(state: AppStateRef<'_>, conversation: String, id: i64) -> CommandResult<ConversationDocuments> {
    check_conversation(&conversation)?;
    let docs = state.documents.clone();
    blocking(move || {
        {
            let _writer = docs.stop_writer();
            docs.open()?.detach(&conversation, id).map_err(db)?;
        }
        docs.view(&conversation)
    })
    .await
}

/// Adds the chosen folder as a library, used by `conversation`, and indexes it in the background.
#[tauri::command]
pub async fn add_library(state: AppStateRef<'_>, conversation: String, handle: String, model: String, on_event: Channel<IndexEvent>) -> CommandResult<ConversationDocuments> {
    check_conversation(&conversation)?;
    check_name(&model)?;
    let dir = state.grants.path(&handle, Purpose::Attach)?;
    if !dir.is_dir() {
        return Err(CommandError::invalid(format!("{} is not a folder: attach a file with the paperclip instead", dir.display())));
    }
    let docs = state.documents.clone();
    let conv = conversation.clone();
    let (library, view) = blocking(move || {
        let mut catalog = docs.open()?;
        let library = catalog.add_library(&dir).map_err(db)?;
        let mut used = catalog.libraries_of(&conv).map_err(db)?;
        used.push(library.id);
        catalog.use_libraries(&conv, &used).map_err(db)?;
        Ok((library.id, docs.view(&conv)?))
    })
    .await?;
    state.documents.spawn(state.core.clone(), Target::Library(library), model, on_event);
    Ok(view)
}

/// Removes a library everywhere (its files' chunks go unless attached somewhere).
#[tauri::command]
pub async fn remove_library(state: AppStateRef<'_>, conversation: String, id: i64) -> CommandResult<ConversationDocuments> {
    check_conversation(&conversation)?;
    let docs = state.documents.clone();
    blocking(move || {
        {
            let _writer = docs.stop_writer();
            docs.open()?.remove_library(id).map_err(db)?;
        }
        docs.view(&conversation)
    })
    .await
}

/// `conversation` uses exactly the libraries `ids`; the new ones are brought up to date in
/// the background.
#[tauri::command]
pub async fn use_libraries(state: AppStateRef<'_>, conversation: String, ids: Vec<i64>, model: String, on_event: Channel<IndexEvent>) -> CommandResult<ConversationDocuments> {
    check_conversation(&conversation)?;
    check_name(&model)?;
    let docs = state.documents.clone();
    let conv = conversation.clone();
    let view = blocking(move || {
        docs.open()?.use_libraries(&conv, &ids).map_err(db)?;
        docs.view(&conv)
    })
    .await?;
    state.documents.spawn(state.core.clone(), Target::Conversation(conversation), model, on_event);
    Ok(view)
}

/// Brings `conversation`'s documents up to date in the background when a file changed on disk
/// or another embedding model was chosen; returns whether a job started (none: all current).
#[tauri::command]
pub async fn sync_documents(state: AppStateRef<'_>, conversation: String, model: String, on_event: Channel<IndexEvent>) -> CommandResult<bool> {
    check_conversation(&conversation)?;
    check_name(&model)?;
    let docs = state.documents.clone();
    let (conv, chat_model) = (conversation.clone(), model.clone());
    let needed = blocking(move || {
        let catalog = docs.open()?;
        let embedding_model = catalog.embedding_model(&chat_model).map_err(db)?;
        catalog.needs_sync(&conv, &embedding_model).map_err(db)
    })
    .await?;
    if needed {
        state.documents.spawn(state.core.clone(), Target::Conversation(conversation), model, on_event);
    }
    Ok(needed)
}

/// Stops every indexing job between two files; what was indexed stays.
#[tauri::command]
pub fn cancel_indexing(state: AppStateRef<'_>) {
    state.documents.cancel_all();
}

#[derive(Serialize)]
pub struct EmbeddingSettings {
    /// The model chosen for embedding; none: each conversation's chat model.
    model: Option<String>,
}

#[tauri::command]
pub async fn embedding_settings(state: AppStateRef<'_>) -> CommandResult<EmbeddingSettings> {
    let docs = state.documents.clone();
    blocking(move || Ok(EmbeddingSettings { model: docs.open()?.chosen_model().map_err(db)? })).await
}

/// Chooses the embedding model (null: the chat model). Documents are indexed again with it
/// when next used: vectors of two models are never compared.
#[tauri::command]
pub async fn set_embedding_model(state: AppStateRef<'_>, model: Option<String>) -> CommandResult<()> {
    let model = model.map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
    if let Some(m) = &model {
        check_name(m)?;
        state.core.prepare(m).map_err(|e| CommandError::invalid(format!("{m} cannot embed: {e}")))?;
    }
    let docs = state.documents.clone();
    blocking(move || docs.open()?.set_chosen_model(model.as_deref()).map_err(db)).await
}

/// The context for `question` in `conversation` before a reply: changed files are indexed
/// first (progress on `on_event`, Cancel skips the rest) unless a background job is writing,
/// then the best chunks within a third of the context come back with their sources.
#[tauri::command]
pub async fn retrieve_documents(state: AppStateRef<'_>, conversation: String, model: String, question: String, num_ctx: Option<u32>, on_event: Channel<IndexEvent>) -> CommandResult<Retrieved> {
    check_conversation(&conversation)?;
    check_name(&model)?;
    if question.len() > 1 << 20 {
        return Err(CommandError::invalid("the question is longer than 1 MiB"));
    }
    let (docs, core) = (state.documents.clone(), state.core.clone());
    blocking(move || {
        let catalog = docs.open()?;
        if !catalog.has_documents(&conversation).map_err(db)? {
            return Ok(Retrieved::default());
        }
        let embedding_model = catalog.embedding_model(&model).map_err(db)?;
        // Re-sync by size and modification time: cheap when nothing changed.
        if docs.running.load(Ordering::SeqCst) == 0 && catalog.needs_sync(&conversation, &embedding_model).map_err(db)? {
            docs.run(&core, Target::Conversation(conversation.clone()), &model, &|e| drop(on_event.send(e)));
        }
        documents::retrieve_for(&core, &catalog, &conversation, &model, &question, num_ctx).map_err(|e| CommandError::new("documents", e))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_ids_never_name_paths() {
        assert!(check_conversation("c-12_ab").is_ok());
        for bad in ["", "../x", "a/b", &"x".repeat(65)] {
            assert!(check_conversation(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_finished_event_names_each_unreadable_file_and_why() {
        let report = SyncReport { indexed: vec!["/d/a.txt".into()], failed: vec![("/d/bad.pdf".into(), "the PDF is damaged".into())], chunks: 3, ..Default::default() };
        let v = serde_json::to_value(IndexEvent::finished(&report, false)).unwrap();
        assert_eq!(v["kind"], "finished");
        assert_eq!(v["indexed"], 1);
        assert_eq!(v["failed"][0]["file"], "bad.pdf");
        assert_eq!(v["failed"][0]["reason"], "the PDF is damaged");
    }
}
