//! Which models are loaded, where and with how much memory (what `/api/ps` and `airlock ps`
//! show), the machine they run on (the Hardware page), unloading one (what `keep_alive: 0`
//! does), and what a model's template can do.

use serde::Serialize;
use tauri::State;

use super::access::{blocking, check_name};
use super::error::CommandResult;
use super::AppState;
use crate::core::{Core, LoadedModelUse, MachineOverview};

/// A loaded model as the Models page and the chat show it.
#[derive(Debug, Serialize)]
pub struct LoadedModelView {
    #[serde(flatten)]
    pub usage: LoadedModelUse,
    /// The context it was loaded with.
    pub context_length: u32,
    /// Seconds until it unloads itself when idle (its keep-alive).
    pub expires_in_s: u64,
}

pub fn loaded(core: &Core) -> Vec<LoadedModelView> {
    let uses = core.loaded_models();
    if uses.is_empty() {
        return Vec::new();
    }
    let runners = core.engine().supervisor.loaded();
    let now = std::time::Instant::now();
    uses.into_iter()
        .map(|usage| {
            let runner = runners.iter().find(|r| r.spec.name == usage.name);
            LoadedModelView {
                context_length: runner.map_or(0, |r| r.info.n_ctx),
                expires_in_s: runner.map_or(0, |r| r.expires_at().saturating_duration_since(now).as_secs()),
                usage,
            }
        })
        .collect()
}

/// Unloads `name` (and every name sharing its weights); a reply in progress finishes first.
/// Returns whether it was loaded.
pub fn unload(core: &Core, name: &str) -> CommandResult<bool> {
    if core.loaded_models().is_empty() {
        return Ok(false);
    }
    let model = core.prepare(name).map_err(|e| super::error::CommandError::new("not_found", e.to_string()))?;
    Ok(core.engine().supervisor.unload(&model.model_path))
}

#[tauri::command]
pub async fn hardware(state: State<'_, AppState>) -> CommandResult<MachineOverview> {
    let core = state.core.clone();
    blocking(move || Ok(core.machine_overview()?)).await
}

#[tauri::command]
pub async fn loaded_models(state: State<'_, AppState>) -> CommandResult<Vec<LoadedModelView>> {
    let core = state.core.clone();
    blocking(move || Ok(loaded(&core))).await
}

#[tauri::command]
pub async fn unload_model(state: State<'_, AppState>, name: String) -> CommandResult<bool> {
    check_name(&name)?;
    let core = state.core.clone();
    blocking(move || unload(&core, &name)).await
}

/// Ollama's capabilities of a model: `completion`, and `tools` / `thinking` when its template
/// has them (the chat settings offer the thinking toggle only then).
#[tauri::command]
pub async fn model_capabilities(state: State<'_, AppState>, name: String) -> CommandResult<Vec<&'static str>> {
    check_name(&name)?;
    let core = state.core.clone();
    blocking(move || Ok(core.prepare(&name).map(|m| m.capabilities()).unwrap_or_default())).await
}
