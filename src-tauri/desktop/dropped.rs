//! Files dropped on the window. What a path looks like decides what the app may do with it: a
//! bundle, a `.gguf` or a folder is imported as models; an image or a document is attached to the
//! open conversation. Each gets a handle granted for that one purpose. The window subscribes
//! here to the drops and to the drags over it; it never names a dropped path itself.

use std::path::Path;

use serde::Serialize;
use tauri::ipc::Channel;
use tauri::State;

use super::grants::{Chosen, PathGrants, Purpose};
use super::AppState;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropKind {
    Model,
    Document,
    Image,
}

/// Image types the vision models' projector reads.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "gif", "bmp"];

pub fn drop_kind(path: &Path) -> DropKind {
    if path.is_dir() {
        return DropKind::Model;
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    // `.zip.001`, `.zip.002`, …: volumes of a split bundle.
    let volume = ext.len() == 3 && ext.bytes().all(|b| b.is_ascii_digit());
    if ext == "gguf" || ext == "zip" || volume {
        DropKind::Model
    } else if IMAGE_EXTENSIONS.contains(&ext.as_str()) {
        DropKind::Image
    } else {
        DropKind::Document
    }
}

/// A dropped path as the web view sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Dropped {
    #[serde(flatten)]
    pub chosen: Chosen,
    pub kind: DropKind,
}

/// Files being dragged over the window: what they would be used for if dropped now (nothing is
/// granted until the drop), or `over: false` once they left or were dropped.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Dragging {
    pub over: bool,
    pub kinds: Vec<DropKind>,
}

impl Dragging {
    pub fn entered(paths: &[std::path::PathBuf]) -> Self {
        let mut kinds: Vec<DropKind> = Vec::new();
        for k in paths.iter().map(|p| drop_kind(p)) {
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        Dragging { over: true, kinds }
    }

    pub fn left() -> Self {
        Dragging { over: false, kinds: Vec::new() }
    }
}

pub fn grant(grants: &PathGrants, path: &Path) -> Dropped {
    let kind = drop_kind(path);
    let purpose = if kind == DropKind::Model { Purpose::Import } else { Purpose::Attach };
    Dropped { chosen: grants.grant(path.to_path_buf(), purpose), kind }
}

/// Paths dropped on the window arrive as [`Chosen`] handles: a drop is the person's choice.
#[tauri::command]
pub fn subscribe_drops(state: State<'_, AppState>, on_drop: Channel<Vec<Dropped>>) {
    *state.drops.lock().unwrap() = Some(on_drop);
}

/// Files being dragged over the window (entered, left): the UI shows where they will go.
#[tauri::command]
pub fn subscribe_drag(state: State<'_, AppState>, on_drag: Channel<Dragging>) {
    *state.dragging.lock().unwrap() = Some(on_drag);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_import_and_the_rest_attach() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(drop_kind(dir.path()), DropKind::Model);
        for p in ["/m/models.zip", "/m/models.zip.001", "/m/Gemma.GGUF"] {
            assert_eq!(drop_kind(Path::new(p)), DropKind::Model, "{p}");
        }
        for p in ["/d/photo.JPG", "/d/scan.png"] {
            assert_eq!(drop_kind(Path::new(p)), DropKind::Image, "{p}");
        }
        for p in ["/d/manual.pdf", "/d/notes.md", "/d/main.rs", "/d/README"] {
            assert_eq!(drop_kind(Path::new(p)), DropKind::Document, "{p}");
        }
        let grants = PathGrants::default();
        let pdf = grant(&grants, Path::new("/d/manual.pdf"));
        assert_eq!(grants.path(&pdf.chosen.handle, Purpose::Attach).unwrap(), Path::new("/d/manual.pdf"));
        assert!(grants.path(&pdf.chosen.handle, Purpose::Import).is_err(), "a dropped document is never imported");
    }

    #[test]
    fn dragging_says_what_a_drop_would_do_once_per_kind() {
        let paths: Vec<std::path::PathBuf> = ["/m/a.gguf", "/d/x.pdf", "/m/b.zip", "/d/y.md"].iter().map(Into::into).collect();
        assert_eq!(Dragging::entered(&paths), Dragging { over: true, kinds: vec![DropKind::Model, DropKind::Document] });
        assert_eq!(serde_json::to_value(Dragging::left()).unwrap(), serde_json::json!({"over": false, "kinds": []}));
    }
}
