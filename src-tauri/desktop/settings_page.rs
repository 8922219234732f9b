//! The Settings page: what it shows ([`SettingsView`]), the local API server's switch, port and
//! token, the signature policy, the trusted keys, the theme and the UI state. A weaker policy, a
//! new trusted key or opening the API server only after a native confirmation (`access` decides):
//! nothing here may change them without one. The values are kept by `settings`, the server is run by `server`.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Map, Value};
use tauri::{AppHandle, State};

use super::access::{self, blocking};
use super::confirm::confirmer;
use super::error::{CommandError, CommandResult};
use super::server::ApiServerStatus;
use super::settings::{ApiSettings, Theme};
use super::AppState;
use crate::bundle::sign::{self, TrustedKey};
use crate::bundle::SignaturePolicy;
use crate::store::RootSource;

type AppStateRef<'a> = State<'a, AppState>;

#[derive(Serialize)]
pub(super) struct SettingsView {
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
pub fn get_settings(state: AppStateRef<'_>) -> CommandResult<SettingsView> {
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

/// Turning the server on (or dropping its token) only after a native confirmation.
#[tauri::command]
pub async fn set_api_server(app: AppHandle, state: AppStateRef<'_>, enabled: bool, port: u16, token: Option<String>) -> CommandResult<ApiServerStatus> {
    if port == 0 {
        return Err(CommandError::invalid("choose a port between 1 and 65535"));
    }
    let token = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    if token.as_ref().is_some_and(|t| t.len() > 256 || t.chars().any(char::is_control)) {
        return Err(CommandError::invalid("the token must be at most 256 printable characters"));
    }
    let api = ApiSettings { enabled, port, token };
    access::confirm_api_server(&confirmer(&app, &state), &state.settings.api(), &api).await?;
    state.settings.set_api(&api)?;
    let (core, server) = (state.core.clone(), state.server.clone());
    // Off the async runtime: restarting on the same port may wait for the old server to let go.
    blocking(move || Ok(server.apply(core, api))).await
}

/// A weaker policy than the current one only after a native confirmation.
#[tauri::command]
pub async fn set_signature_policy(app: AppHandle, state: AppStateRef<'_>, policy: SignaturePolicy) -> CommandResult<()> {
    let current = state.settings.signature_policy();
    access::set_signature_policy(&confirmer(&app, &state), current, policy, |p| state.settings.set_signature_policy(p)).await
}

#[tauri::command]
pub fn set_theme(state: AppStateRef<'_>, theme: Theme) -> CommandResult<()> {
    state.settings.set_theme(theme)
}

#[tauri::command]
pub fn set_ui_state(state: AppStateRef<'_>, ui: Map<String, Value>) -> CommandResult<()> {
    state.settings.set_ui(ui)
}

/// Trusts the key chosen in the key dialog (`handle`) after a native confirmation naming it.
#[tauri::command]
pub async fn trust_add(app: AppHandle, state: AppStateRef<'_>, handle: String) -> CommandResult<String> {
    access::trust_add(&state.grants, &confirmer(&app, &state), &handle, &trust_dir()?).await
}

#[tauri::command]
pub fn trust_remove(key_id: String) -> CommandResult<()> {
    if key_id.len() > 64 {
        return Err(CommandError::invalid("invalid key ID"));
    }
    Ok(sign::trust_remove(&trust_dir()?, &key_id)?)
}
