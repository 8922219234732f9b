//! Models in and out of the app: the file dialog whose answer comes back as a handle, importing a
//! bundle folder, zip or GGUF, exporting models, Cancel, and [`ChannelProgress`], the progress
//! shape an import, an export and a registry pull send to the web view. The checks and the work
//! are `access`'s: these commands only pass the app's state and the real dialog in, and must
//! never take a bare path from the web view.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tauri::ipc::Channel;
use tauri::{AppHandle, State};

use super::access::{self, Access, ExportChoices, ExportOutcome, FolderScan, Pick};
use super::confirm::{confirmer, NativeConfirmer};
use super::error::CommandResult;
use super::grants::{Chosen, PathArg, Purpose};
use super::pick::{self, PickKind};
use super::AppState;
use crate::bundle::ImportReport;
use crate::progress::{Progress, ProgressSink};

type AppStateRef<'a> = State<'a, AppState>;

fn access_of<'a>(state: &'a AppState, confirm: &'a NativeConfirmer<'a>) -> Access<'a, NativeConfirmer<'a>> {
    Access { core: &state.core, grants: &state.grants, confirm, transfer: &state.transfer }
}

/// A native file dialog; the answer comes back as a handle (and the path, to show).
#[tauri::command]
pub async fn pick_path(app: AppHandle, state: AppStateRef<'_>, kind: PickKind, name: Option<String>) -> CommandResult<Option<Chosen>> {
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
pub async fn import_path(app: AppHandle, state: AppStateRef<'_>, source: PathArg, name: Option<String>, on_progress: Channel<Progress>) -> CommandResult<ImportReport> {
    let confirm = confirmer(&app, &state);
    let sink = ChannelProgress { channel: on_progress, last: Mutex::new(None) };
    access::import(&access_of(&state, &confirm), source, name, state.settings.signature_policy(), sink).await
}

/// Reads a chosen folder for Import folder…: a bundle, or the list of models found in it.
#[tauri::command]
pub async fn scan_import_folder(app: AppHandle, state: AppStateRef<'_>, source: PathArg) -> CommandResult<FolderScan> {
    let confirm = confirmer(&app, &state);
    access::scan_folder(&access_of(&state, &confirm), source).await
}

/// Imports the models picked from a scanned folder, under the names given.
#[tauri::command]
pub async fn import_found(app: AppHandle, state: AppStateRef<'_>, source: PathArg, picks: Vec<Pick>, on_progress: Channel<Progress>) -> CommandResult<ImportReport> {
    let confirm = confirmer(&app, &state);
    let sink = ChannelProgress { channel: on_progress, last: Mutex::new(None) };
    access::import_found(&access_of(&state, &confirm), source, picks, state.settings.signature_policy(), sink).await
}

#[tauri::command]
pub fn cancel_transfer(state: AppStateRef<'_>) {
    if let Some(flag) = state.transfer.lock().unwrap().as_ref() {
        flag.store(true, Ordering::SeqCst);
    }
}

#[tauri::command]
pub async fn export_models(app: AppHandle, state: AppStateRef<'_>, models: Vec<String>, out: PathArg, options: ExportChoices, on_progress: Channel<Progress>) -> CommandResult<ExportOutcome> {
    let confirm = confirmer(&app, &state);
    let sink = ChannelProgress { channel: on_progress, last: Mutex::new(None) };
    access::export(&access_of(&state, &confirm), models, out, options, sink).await
}
