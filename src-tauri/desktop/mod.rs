//! The desktop app: a thin Tauri layer over the same [`Core`] as the CLI and the API. It owns the
//! window, the pickers, the settings and the saved conversations; everything else is a call into
//! the modules the CLI uses. The web view may call only the commands in [`commands`]
//! (capabilities/default.json); it gets no Tauri core or plugin API. The web view shows model
//! output, so it is treated as untrusted: it names files only by handles of paths the person
//! chose, and what widens access asks a native confirmation (docs/desktop-security.md).
//!
//! Uses every module below it (`core`, `engine`, `store`, `bundle`, `kit`, `modelfile`,
//! `registry`, `documents`, `mcp`, `hardware`, `api` for the app's server, `durable`, `progress`,
//! `units`); never `cli`, and nothing in the library uses it. Files: [`commands`] registers every
//! command; each page's commands live in the file of their concern (`models`, `chat`, `tools`,
//! `transfer`, `settings_page`, `conversations`, `documents`, `registry_pull`, …).

mod access;
mod chat;
mod commands;
mod confirm;
mod conversation_file;
mod conversations;
mod documents;
mod dropped;
mod duplicate;
mod error;
mod grants;
mod images;
mod model_state;
mod models;
mod pick;
mod registry_pull;
mod reply_stream;
mod server;
mod settings;
mod settings_page;
mod tools;
mod transfer;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tauri::ipc::Channel;
use tauri::{DragDropEvent, Manager, WindowEvent};

use crate::core::Core;

/// What every command shares.
pub struct AppState {
    core: Arc<Core>,
    /// Cancel flag of the import or export in progress (one at a time).
    transfer: access::Transfer,
    /// Stop flags of the replies streaming now, by the UI's request ID.
    replies: Arc<Mutex<HashMap<String, Arc<AtomicBool>>>>,
    /// Where paths dropped on the window go.
    drops: Mutex<Option<Channel<Vec<dropped::Dropped>>>>,
    /// Where "files are being dragged over the window" goes (the drop overlay).
    dragging: Mutex<Option<Channel<dropped::Dragging>>>,
    /// Set while a file dialog is open (one at a time).
    picker: pick::PickerSlot,
    /// The paths the person chose in a dialog or dropped, by handle.
    grants: grants::PathGrants,
    /// Set while a native confirmation is open (one at a time).
    confirming: confirm::ConfirmSlot,
    server: Arc<server::ApiServer>,
    conversations: conversations::Conversations,
    settings: settings::Settings,
    /// The documents index (attachments, libraries) and its indexing jobs.
    documents: Arc<documents::DocumentsState>,
    /// The MCP servers running for the open conversation.
    mcp: Arc<crate::mcp::McpHub>,
}

/// `airlock-desktop`: the window (the binary's `main` sends the engine's and the hardware
/// probe's child-process subcommands to the command line instead).
pub fn main() -> ExitCode {
    let core = match Core::from_env() {
        Ok(core) => Arc::new(core),
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_store::Builder::new().build())
        .plugin(tauri_plugin_opener::init())
        // Rust side only: capabilities/default.json grants the web view none of its commands.
        .plugin(tauri_plugin_dialog::init())
        .setup(move |app| {
            let data_dir = app.path().app_data_dir()?;
            let settings = settings::Settings::open(app.handle())?;
            let (registry_source, policy_source) = (settings.clone(), settings.clone());
            let state = AppState {
                core: core.clone(),
                transfer: Mutex::new(None),
                replies: Arc::default(),
                drops: Mutex::new(None),
                dragging: Mutex::new(None),
                picker: pick::PickerSlot::default(),
                grants: grants::PathGrants::default(),
                confirming: confirm::ConfirmSlot::default(),
                server: Arc::new(server::ApiServer::new(
                    crate::api::SiteRegistry::Follow(Arc::new(move || registry_source.registry())),
                    crate::api::PullSignature::Follow(Arc::new(move || policy_source.signature_policy())),
                )),
                conversations: conversations::Conversations::new(data_dir.join("conversations")),
                settings,
                documents: documents::DocumentsState::new(data_dir.join("documents.sqlite")),
                mcp: Arc::default(),
            };
            let api = state.settings.api();
            if api.enabled {
                state.server.apply(core.clone(), api);
            }
            app.manage(state);
            Ok(())
        })
        .on_window_event(|window, event| {
            if let WindowEvent::DragDrop(drag) = event {
                let state = window.state::<AppState>();
                let dragging = match drag {
                    DragDropEvent::Enter { paths, .. } => Some(dropped::Dragging::entered(paths)),
                    DragDropEvent::Leave | DragDropEvent::Drop { .. } => Some(dropped::Dragging::left()),
                    _ => None,
                };
                let channel = state.dragging.lock().unwrap();
                if let (Some(d), Some(channel)) = (dragging, channel.as_ref()) {
                    let _ = channel.send(d);
                }
            }
            if let WindowEvent::DragDrop(DragDropEvent::Drop { paths, .. }) = event {
                let state = window.state::<AppState>();
                let drops = state.drops.lock().unwrap();
                if let Some(channel) = drops.as_ref() {
                    let _ = channel.send(paths.iter().map(|p| dropped::grant(&state.grants, p)).collect());
                }
            }
        })
        .invoke_handler(commands::handler())
        .build(tauri::generate_context!());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("Error: cannot start the window: {e}");
            return ExitCode::FAILURE;
        }
    };
    app.run(|handle, event| {
        if let tauri::RunEvent::Exit = event {
            let state = handle.state::<AppState>();
            state.server.stop();
            tauri::async_runtime::block_on(state.mcp.release(&[]));
            state.core.shutdown();
        }
    });
    ExitCode::SUCCESS
}
