//! The app's settings, kept with tauri-plugin-store in `settings.json` in the app's data folder
//! (the store location itself is not a setting: it comes from the environment, like the CLI's).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tauri::{AppHandle, Wry};
use tauri_plugin_store::{Store, StoreExt};

use super::error::{CommandError, CommandResult};
use crate::api::DEFAULT_PORT;
use crate::bundle::SignaturePolicy;

/// The local API server: off unless the user turns it on (nothing listens by default).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiSettings {
    pub enabled: bool,
    pub port: u16,
    pub token: Option<String>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings { enabled: false, port: DEFAULT_PORT, token: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Theme {
    Light,
    Dark,
    System,
}

#[derive(Clone)]
pub struct Settings {
    store: Arc<Store<Wry>>,
}

impl Settings {
    pub fn open(app: &AppHandle) -> tauri_plugin_store::Result<Self> {
        // Saved explicitly after each change: settings change rarely and must not be lost.
        Ok(Settings { store: app.store_builder("settings.json").disable_auto_save().build()? })
    }

    /// A value, or `None` when missing or unreadable (a hand-edited file falls back to defaults).
    fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.store.get(key).and_then(|v| serde_json::from_value(v).ok())
    }

    fn set(&self, key: &str, value: impl Serialize) -> CommandResult<()> {
        let value = serde_json::to_value(value).map_err(|e| CommandError::invalid(e.to_string()))?;
        self.store.set(key, value);
        self.store.save().map_err(|e| CommandError::new("io", format!("cannot save the settings: {e}")))
    }

    pub fn api(&self) -> ApiSettings {
        self.get("api").unwrap_or_default()
    }
    pub fn set_api(&self, api: &ApiSettings) -> CommandResult<()> {
        self.set("api", api)
    }

    pub fn signature_policy(&self) -> SignaturePolicy {
        self.get("signature_policy").unwrap_or_default()
    }
    pub fn set_signature_policy(&self, policy: SignaturePolicy) -> CommandResult<()> {
        self.set("signature_policy", policy)
    }

    /// The site's OCI registry (`host:port`, or `http://host:port` for plain HTTP), if configured.
    pub fn registry(&self) -> Option<String> {
        self.get::<String>("registry").filter(|r| !r.trim().is_empty())
    }
    pub fn set_registry(&self, registry: Option<&str>) -> CommandResult<()> {
        self.set("registry", registry.map(str::trim).filter(|r| !r.is_empty()))
    }

    pub fn theme(&self) -> Theme {
        self.get("theme").unwrap_or(Theme::System)
    }
    pub fn set_theme(&self, theme: Theme) -> CommandResult<()> {
        self.set("theme", theme)
    }

    /// The MCP servers of Settings → Tools (unreadable entries are dropped, never half-used).
    pub fn mcp_servers(&self) -> Vec<crate::mcp::McpServer> {
        self.get::<Vec<crate::mcp::McpServer>>("mcp_servers").unwrap_or_default().into_iter().filter(|s| s.validate().is_ok()).collect()
    }
    pub fn set_mcp_servers(&self, servers: &[crate::mcp::McpServer]) -> CommandResult<()> {
        self.set("mcp_servers", servers)
    }

    /// Free-form UI state (last page, last model); capped so a bug cannot bloat the file.
    pub fn ui(&self) -> Map<String, Value> {
        self.get("ui").unwrap_or_default()
    }
    pub fn set_ui(&self, ui: Map<String, Value>) -> CommandResult<()> {
        if serde_json::to_vec(&ui).map_or(0, |v| v.len()) > 64 << 10 {
            return Err(CommandError::invalid("UI state is larger than 64 KiB"));
        }
        self.set("ui", ui)
    }
}
