//! "Pull from site registry" on the Models page: the registry configured in Settings, the same
//! pull as `airlock pull` (verified, resumable, published last), progress through the import's
//! Channel shape and the one transfer slot (so Cancel works as for an import).

use std::collections::BTreeMap;
use std::sync::Mutex;

use tauri::ipc::Channel;
use tauri::{AppHandle, State};

use super::access::{self, blocking, TransferSlot};
use super::confirm::confirmer;
use super::error::{CommandError, CommandResult};
use super::transfer::ChannelProgress;
use super::AppState;
use crate::progress::{Progress, ProgressSink};
use crate::registry::{self, ClientOptions, PullOptions, PullReport, Reference, Registry, RegistryError, Status};
use crate::store::Digest;

#[tauri::command]
pub async fn pull_from_registry(state: State<'_, AppState>, name: String, on_progress: Channel<Progress>) -> CommandResult<PullReport> {
    let name = name.trim().to_string();
    if name.is_empty() || name.len() > 512 {
        return Err(CommandError::invalid("a model name must be 1 to 512 characters"));
    }
    let configured = state.settings.registry().ok_or_else(|| CommandError::invalid("no site registry is configured; set one in Settings"))?;
    let site = Registry::parse(&configured).map_err(|e| CommandError::invalid(e.to_string()))?;
    let reference = Reference::resolve_on_site(&name, &site).map_err(|e| CommandError::invalid(e.to_string()))?;
    let (_slot, cancel) = TransferSlot::take(&state.transfer)?;
    let core = state.core.clone();
    let opts = PullOptions { client: ClientOptions::from_env(), signature: state.settings.signature_policy(), trust_dir: None, cancel: Some(cancel) };
    let sink = ChannelProgress { channel: on_progress, last: Mutex::new(None) };
    blocking(move || {
        let blobs: Mutex<BTreeMap<Digest, (u64, u64)>> = Mutex::new(BTreeMap::new());
        let progress = |s: &Status| {
            let (Some(d), Some(total), Some(done)) = (s.digest, s.total, s.completed) else { return };
            let mut b = blobs.lock().unwrap_or_else(|e| e.into_inner());
            b.insert(d, (total, done));
            let (total_bytes, done_bytes) = b.values().fold((0, 0), |(t, c), (bt, bc)| (t + bt, c + bc));
            sink.report(&Progress { phase: "pulling", item: format!("{} {}", reference.display(), s.status), done_bytes, total_bytes });
        };
        registry::pull(&core.store, &reference, &opts, &progress).map_err(to_command_error)
    })
    .await
}

/// A new host, or plain HTTP, only after a native confirmation (`access` decides).
#[tauri::command]
pub async fn set_registry(app: AppHandle, state: State<'_, AppState>, registry: Option<String>) -> CommandResult<()> {
    let registry = registry.filter(|r| !r.trim().is_empty());
    let current = state.settings.registry();
    access::set_registry(&confirmer(&app, &state), current.as_deref(), registry.as_deref(), |r| state.settings.set_registry(r)).await
}

fn to_command_error(e: RegistryError) -> CommandError {
    let code = match &e {
        RegistryError::Cancelled => "cancelled",
        RegistryError::NotFound(_) => "not_found",
        RegistryError::Config(_) => "invalid_argument",
        _ => "pull",
    };
    CommandError::new(code, e.to_string())
}
