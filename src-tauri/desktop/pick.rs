//! File and folder pickers (rfd's GTK dialogs, run on the main thread where GTK lives). Test
//! seam: when `AIRLOCK_PICK_PATH` is set, every picker returns that path without opening.

use std::path::PathBuf;

use serde::Deserialize;
use tauri::AppHandle;

use super::error::{CommandError, CommandResult};

/// Environment variable that makes every picker return its value (end-to-end tests).
pub const PICK_PATH_ENV: &str = "AIRLOCK_PICK_PATH";

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PickKind {
    BundleFolder,
    BundleFile,
    PublicKey,
    SecretKey,
    ExportFile,
    ExportFolder,
}

pub async fn pick(app: &AppHandle, kind: PickKind) -> CommandResult<Option<PathBuf>> {
    if let Some(p) = std::env::var_os(PICK_PATH_ENV).filter(|v| !v.is_empty()) {
        return Ok(Some(PathBuf::from(p)));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.run_on_main_thread(move || {
        let _ = tx.send(dialog(kind));
    })?;
    rx.await.map_err(|_| CommandError::new("app", "the file dialog closed unexpectedly"))
}

fn dialog(kind: PickKind) -> Option<PathBuf> {
    let home = dirs::home_dir().unwrap_or_default();
    let d = rfd::FileDialog::new().set_directory(&home);
    match kind {
        PickKind::BundleFolder => d.set_title("Import a bundle folder or an Ollama models folder").pick_folder(),
        PickKind::BundleFile => d
            .set_title("Import a bundle (.zip, first volume .zip.001) or a .gguf model")
            .add_filter("Bundles and models", &["zip", "001", "gguf"])
            .add_filter("All files", &["*"])
            .pick_file(),
        PickKind::PublicKey => d.set_title("Trust a signing key (.pub)").add_filter("minisign public keys", &["pub"]).pick_file(),
        PickKind::SecretKey => d.set_title("Sign with a secret key (.key)").add_filter("minisign secret keys", &["key"]).pick_file(),
        PickKind::ExportFile => d.set_title("Export to a .zip").set_file_name("models.zip").add_filter("Zip bundle", &["zip"]).save_file(),
        PickKind::ExportFolder => d.set_title("Export to a new bundle folder").save_file(),
    }
}
