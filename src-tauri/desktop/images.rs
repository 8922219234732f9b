//! Images attached to a message in the window: a dropped image file, read once its handle was
//! granted for attaching (`Purpose::Attach`), as the base64 the chat sends (pasted images are
//! read by the web view itself). Only image files, and only up to [`MAX_IMAGE_BYTES`].

use base64::Engine as _;
use serde::Serialize;
use tauri::State;

use super::access::blocking;
use super::dropped::{drop_kind, DropKind};
use super::error::{CommandError, CommandResult};
use super::grants::Purpose;
use super::AppState;

/// Larger files are refused: a photo is a few MB, and the projector scales every image down.
pub const MAX_IMAGE_BYTES: u64 = 20 << 20;

#[derive(Debug, Serialize)]
pub struct AttachedImage {
    /// The file name, for the thumbnail's label.
    pub name: String,
    /// A MIME type from the extension (for the thumbnail's data URL).
    pub mime: &'static str,
    /// The file's bytes, base64.
    pub data: String,
}

#[tauri::command]
pub async fn read_image(state: State<'_, AppState>, handle: String) -> CommandResult<AttachedImage> {
    let path = state.grants.path(&handle, Purpose::Attach)?;
    blocking(move || read(&path)).await
}

fn read(path: &std::path::Path) -> CommandResult<AttachedImage> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if drop_kind(path) != DropKind::Image {
        return Err(CommandError::invalid(format!("{name} is not an image file (PNG, JPEG, GIF or BMP)")));
    }
    let len = std::fs::metadata(path).map_err(|e| CommandError::new("io", format!("cannot read {name}: {e}")))?.len();
    if len > MAX_IMAGE_BYTES {
        return Err(CommandError::new("too_large", format!("{name} is {} MB; images up to {} MB can be attached", len >> 20, MAX_IMAGE_BYTES >> 20)));
    }
    let bytes = std::fs::read(path).map_err(|e| CommandError::new("io", format!("cannot read {name}: {e}")))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let mime = match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "webp" => "image/webp",
        _ => "application/octet-stream",
    };
    Ok(AttachedImage { name, mime, data: base64::engine::general_purpose::STANDARD.encode(bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_images_as_base64_and_refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("cat.PNG");
        std::fs::write(&png, b"\x89PNG fake").unwrap();
        let got = read(&png).unwrap();
        assert_eq!((got.name.as_str(), got.mime, got.data.as_str()), ("cat.PNG", "image/png", "iVBORyBmYWtl"));
        let txt = dir.path().join("notes.txt");
        std::fs::write(&txt, b"hello").unwrap();
        assert!(read(&txt).unwrap_err().message.contains("not an image"));
    }
}
