//! A bounded walk of a folder someone chose, for `.gguf` files. The folder is untrusted: links
//! may loop or lead anywhere, and it may hold millions of entries. So the walk looks at a fixed
//! number of entries and depth, follows a link only when it stays inside the folder (or, in a
//! Hugging Face cache, inside the repository, whose snapshots link into its `blobs/`), enters
//! each folder once, and yields each file once however many links reach it.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Skipped;

/// Entries (files, folders, links) looked at before the walk stops.
pub const MAX_ENTRIES: usize = 200_000;
/// Folders below the chosen one.
pub const MAX_DEPTH: usize = 16;
/// Why an empty `.gguf` file is skipped.
pub const EMPTY_FILE: &str = "an empty file";

pub struct Walk {
    /// `.gguf` files found (not empty), in a stable order.
    pub files: Vec<PathBuf>,
    pub skipped: Vec<Skipped>,
    pub entries: usize,
    /// The walk stopped at [`MAX_ENTRIES`].
    pub truncated: bool,
}

/// The folder links may point into: the chosen folder, or the Hugging Face repository folder
/// (`models--ORG--NAME`) it is in.
pub fn boundary(root: &Path) -> PathBuf {
    root.ancestors().find(|a| a.file_name().is_some_and(|n| n.to_string_lossy().starts_with("models--"))).unwrap_or(root).to_path_buf()
}

pub fn walk(root: &Path) -> std::io::Result<Walk> {
    let root = fs::canonicalize(root)?;
    let inside = boundary(&root);
    let mut out = Walk { files: Vec::new(), skipped: Vec::new(), entries: 0, truncated: false };
    let mut folders_seen = HashSet::new();
    let mut files_seen = HashSet::new();
    let meta = fs::metadata(&root)?;
    folders_seen.insert((meta.dev(), meta.ino()));
    let mut stack = vec![(root.clone(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let mut entries: Vec<fs::DirEntry> = match fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(Result::ok).take(MAX_ENTRIES + 1 - out.entries.min(MAX_ENTRIES)).collect(),
            Err(e) => {
                out.skipped.push(Skipped::new(&dir, format!("cannot read this folder: {e}")));
                continue;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        let mut subfolders = Vec::new();
        for entry in entries {
            out.entries += 1;
            if out.entries > MAX_ENTRIES {
                out.truncated = true;
                return Ok(out);
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else { continue };
            let is_gguf = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
            let meta = if kind.is_symlink() {
                let Ok(target) = fs::canonicalize(&path) else {
                    if is_gguf {
                        out.skipped.push(Skipped::new(&path, "a link to nothing (its target is missing)"));
                    }
                    continue;
                };
                if !target.starts_with(&inside) {
                    out.skipped.push(Skipped::new(&path, format!("a link leading outside the folder (to {}); not followed", target.display())));
                    continue;
                }
                match fs::metadata(&target) {
                    Ok(m) => m,
                    Err(_) => continue,
                }
            } else if kind.is_dir() || is_gguf {
                match entry.metadata() {
                    Ok(m) => m,
                    Err(_) => continue,
                }
            } else {
                continue;
            };
            if meta.is_dir() {
                if depth + 1 > MAX_DEPTH {
                    out.skipped.push(Skipped::new(&path, format!("more than {MAX_DEPTH} folders deep; not looked into")));
                } else if !folders_seen.insert((meta.dev(), meta.ino())) {
                    out.skipped.push(Skipped::new(&path, "a link back to a folder already looked through (a loop); not followed"));
                } else {
                    subfolders.push(path);
                }
            } else if is_gguf && meta.is_file() {
                if meta.len() == 0 {
                    out.skipped.push(Skipped::new(&path, EMPTY_FILE));
                } else if files_seen.insert((meta.dev(), meta.ino())) {
                    out.files.push(path);
                }
            }
        }
        // Depth first, in name order.
        stack.extend(subfolders.into_iter().rev().map(|p| (p, depth + 1)));
    }
    Ok(out)
}
