//! The store as the Models page shows it: the models installed, one model's details (with its
//! template and metadata), deleting one, and opening the store folder. Thin: the work is the
//! store's and `Core`'s. It never imports, exports or pulls a model (`transfer`,
//! `registry_pull`) and never loads or unloads one (`model_state`).

use serde::Serialize;
use serde_json::Value;
use tauri::{AppHandle, State};
use tauri_plugin_opener::OpenerExt;

use super::access::{blocking, check_name};
use super::error::{CommandError, CommandResult};
use super::AppState;
use crate::core::ModelDetails;

type AppStateRef<'a> = State<'a, AppState>;

#[tauri::command]
pub async fn list_models(state: AppStateRef<'_>) -> CommandResult<Vec<ModelDetails>> {
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
pub(super) struct FullDetails {
    #[serde(flatten)]
    details: ModelDetails,
    template: Option<String>,
    metadata: Vec<(String, String)>,
}

#[tauri::command]
pub async fn model_details(state: AppStateRef<'_>, name: String) -> CommandResult<FullDetails> {
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
pub async fn delete_model(state: AppStateRef<'_>, name: String) -> CommandResult<()> {
    check_name(&name)?;
    let core = state.core.clone();
    blocking(move || Ok(core.remove_model(&name)?)).await
}

#[tauri::command]
pub fn open_store_folder(app: AppHandle, state: AppStateRef<'_>) -> CommandResult<()> {
    let root = state.core.store.root();
    std::fs::create_dir_all(root).map_err(|e| CommandError::new("io", format!("cannot create the store folder {}: {e}", root.display())))?;
    app.opener().open_path(root.display().to_string(), None::<&str>).map_err(|e| CommandError::new("app", format!("cannot open {}: {e}", root.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_become_one_bounded_line() {
        assert_eq!(metadata_text(&Value::from("gemma3")), "gemma3");
        assert_eq!(metadata_text(&Value::from(32768)), "32768");
        assert_eq!(metadata_text(&Value::Null), "(large array, not shown)");
        let long = metadata_text(&Value::from("é".repeat(400)));
        assert!(long.ends_with('…') && long.len() <= 304, "cut on a character boundary: {}", long.len());
    }
}
