//! File and folder pickers: GTK dialogs through tauri-plugin-dialog, parented to the window.
//!
//! The dialog must never be waited for on the main thread: GTK runs its loop there, so a
//! blocking dialog started from it waits for itself and the app freezes. The plugin builds the
//! dialog from the event loop and hands the answer to a callback on another thread; the command
//! awaits that answer off the main thread. One dialog at a time: a second click while one is open
//! is answered `busy` instead of stacking another.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Deserialize;
use tauri::{AppHandle, Manager};
use tauri_plugin_dialog::{DialogExt, FileDialogBuilder, FilePath};

use super::error::{CommandError, CommandResult};

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PickKind {
    BundleFolder,
    BundleFile,
    PublicKey,
    SecretKey,
    ExportFile,
    ExportFolder,
    /// Documents to attach to a conversation (several at once: [`pick_many`]).
    Documents,
    /// A folder of documents to add as a library.
    LibraryFolder,
    /// Where to save a conversation's export.
    ConversationMarkdown,
    ConversationJson,
    /// A conversation export to import.
    ConversationFile,
}

/// Set while a picker is open.
#[derive(Default)]
pub struct PickerSlot(AtomicBool);

/// Frees the slot when the pick ends, however it ends.
struct OpenPicker<'a>(&'a PickerSlot);

impl Drop for OpenPicker<'_> {
    fn drop(&mut self) {
        self.0 .0.store(false, Ordering::SeqCst);
    }
}

/// Opens the picker for `kind` and waits (asynchronously) for the choice; `None` on cancel.
/// `name`: the file name a save dialog suggests.
pub async fn pick(app: &AppHandle, slot: &PickerSlot, kind: PickKind, name: Option<String>) -> CommandResult<Option<PathBuf>> {
    if slot.0.swap(true, Ordering::SeqCst) {
        return Err(CommandError::new("busy", "a file dialog is already open; choose or cancel there first"));
    }
    let _open = OpenPicker(slot);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let answer = move |choice: Option<FilePath>| {
        let _ = tx.send(choice.map(|p| p.into_path()));
    };
    let mut d = app.dialog().file();
    if let Some(window) = app.get_webview_window("main") {
        d = d.set_parent(&window);
    }
    open(d, kind, name.as_deref().map(file_name).unwrap_or_default(), answer);
    match rx.await.map_err(|_| CommandError::new("app", "the file dialog closed without an answer"))? {
        None => Ok(None),
        Some(Ok(path)) => Ok(Some(path)),
        Some(Err(e)) => Err(CommandError::new("app", format!("the file dialog returned something that is not a local path: {e}"))),
    }
}

/// A suggested file name from free text (a conversation's title): no separators or control
/// characters, at most 80 characters; empty when nothing is left.
pub fn file_name(text: &str) -> String {
    let cleaned: String = text.chars().map(|c| if c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|') { ' ' } else { c }).collect();
    let words: Vec<&str> = cleaned.split_whitespace().filter(|w| !w.chars().all(|c| c == '.')).collect();
    words.join(" ").trim_start_matches('.').chars().take(80).collect::<String>().trim().to_string()
}

fn open<R: tauri::Runtime>(d: FileDialogBuilder<R>, kind: PickKind, name: String, answer: impl FnOnce(Option<FilePath>) + Send + 'static) {
    let named = |ext: &str| if name.is_empty() { format!("conversation.{ext}") } else { format!("{name}.{ext}") };
    // GTK's chooser starts in the home folder, where a person begins looking for a stick's mount.
    let d = match dirs::home_dir() {
        Some(home) => d.set_directory(home),
        None => d,
    };
    match kind {
        PickKind::BundleFolder => d.set_title("Import a folder: a bundle, a kit, an Ollama models folder, or GGUF models").pick_folder(answer),
        PickKind::BundleFile => d
            .set_title("Import a bundle (.zip, first volume .zip.001) or a .gguf model")
            .add_filter("Bundles and models", &["zip", "001", "gguf"])
            .add_filter("All files", &["*"])
            .pick_file(answer),
        PickKind::PublicKey => d.set_title("Trust a signing key (.pub)").add_filter("minisign public keys", &["pub"]).pick_file(answer),
        PickKind::SecretKey => d.set_title("Sign with a secret key (.key)").add_filter("minisign secret keys", &["key"]).pick_file(answer),
        PickKind::ExportFile => d.set_title("Export to a .zip").set_file_name("models.zip").add_filter("Zip bundle", &["zip"]).save_file(answer),
        PickKind::ExportFolder => d.set_title("Export to a new bundle folder").save_file(answer),
        PickKind::LibraryFolder => d.set_title("Add a folder of documents as a library").pick_folder(answer),
        // One answer from a multi-select dialog: `pick_many` opens it.
        PickKind::Documents => pick_documents(d, move |many| answer(many.and_then(|v| v.into_iter().next()))),
        PickKind::ConversationMarkdown => d.set_title("Export the conversation as Markdown").set_file_name(named("md")).add_filter("Markdown", &["md"]).save_file(answer),
        PickKind::ConversationJson => d.set_title("Export the conversation as JSON").set_file_name(named("json")).add_filter("JSON", &["json"]).save_file(answer),
        PickKind::ConversationFile => d.set_title("Import a conversation (.json exported by Airlock)").add_filter("Conversation exports", &["json"]).add_filter("All files", &["*"]).pick_file(answer),
    }
}

fn pick_documents<R: tauri::Runtime>(d: FileDialogBuilder<R>, answer: impl FnOnce(Option<Vec<FilePath>>) + Send + 'static) {
    let documents: Vec<&str> = ["txt", "md", "markdown", "pdf", "docx", "html", "htm"].into_iter().chain(crate::documents::extract::SOURCE_EXTENSIONS.iter().copied()).collect();
    d.set_title("Attach documents to this conversation").add_filter("Documents", &documents).add_filter("All files", &["*"]).pick_files(answer)
}

/// The multi-select document dialog ([`PickKind::Documents`]): the chosen files, empty on cancel.
/// Like [`pick`], it is waited for off the main thread, one dialog at a time.
pub async fn pick_many(app: &AppHandle, slot: &PickerSlot) -> CommandResult<Vec<PathBuf>> {
    if slot.0.swap(true, Ordering::SeqCst) {
        return Err(CommandError::new("busy", "a file dialog is already open; choose or cancel there first"));
    }
    let _open = OpenPicker(slot);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut d = app.dialog().file();
    if let Some(window) = app.get_webview_window("main") {
        d = d.set_parent(&window);
    }
    let d = match dirs::home_dir() {
        Some(home) => d.set_directory(home),
        None => d,
    };
    pick_documents(d, move |choice| {
        let _ = tx.send(choice.unwrap_or_default().into_iter().map(|p| p.into_path()).collect::<Vec<_>>());
    });
    let chosen = rx.await.map_err(|_| CommandError::new("app", "the file dialog closed without an answer"))?;
    chosen.into_iter().map(|p| p.map_err(|e| CommandError::new("app", format!("the file dialog returned something that is not a local path: {e}")))).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn suggested_names_are_plain_file_names() {
        assert_eq!(super::file_name("Why is the sky blue?"), "Why is the sky blue");
        assert_eq!(super::file_name("../../etc/passwd"), "etc passwd");
        assert_eq!(super::file_name("a\nb\tc"), "a b c");
        assert_eq!(super::file_name(""), "");
        assert_eq!(super::file_name(&"x".repeat(200)).len(), 80);
    }
}
