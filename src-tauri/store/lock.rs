//! The store lock: an advisory lock on `<root>/.airlock-lock`, taken by every process that uses
//! the store (the CLI, `airlock serve`, the app) around the two steps that must not interleave:
//! publishing manifests (which rely on blobs being present) and removing models (which deletes
//! the blobs no manifest references). Without it, `rm` could delete a blob that an import found
//! present, skipped, and was about to reference.
//!
//! Held only for those short steps, never while a blob is copied or hashed. Ollama does not take
//! it; a store shared with a running Ollama is protected only against other Airlock processes.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use super::{io_err, write_err, StoreError};

pub const LOCK_FILE: &str = ".airlock-lock";

/// Held while alive; dropping it (closing the file) releases the lock, also when the process dies.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Blocks until this process holds the store at `root` exclusively.
    pub(super) fn exclusive(root: &Path) -> Result<Self, StoreError> {
        let file = Self::open(root)?;
        file.lock().map_err(io_err(&root.join(LOCK_FILE)))?;
        Ok(StoreLock { _file: file })
    }

    /// Opens the lock file for writing, without locking: what every change does first.
    pub(super) fn open(root: &Path) -> Result<File, StoreError> {
        fs::create_dir_all(root).map_err(write_err(root))?;
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(root.join(LOCK_FILE)).map_err(write_err(root))
    }
}
