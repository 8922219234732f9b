//! Crash-safe publishing. An import stages every blob in `<root>/.airlock-staging/<pid>-<n>/`
//! (beside `blobs/`, on the same filesystem, never inside it: Ollama prunes unknown files there),
//! and only when all of them are verified renames them into `blobs/` and writes the manifests,
//! last and atomically. A killed import leaves only its staging folder, which the next import
//! removes; no manifest ever points at a blob that is not there.
//!
//! Publishing holds the store lock and first checks, under it, that every blob the manifests
//! reference is staged or present: an import skips blobs it finds already in the store, and a
//! concurrent `rm` may have deleted one since.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::fault::FaultPlan;
use super::{io_err, sync_dir, write_err, Digest, Manifest, ModelName, Store, StoreError};

pub const STAGING_DIR: &str = ".airlock-staging";

pub struct Staging {
    root: PathBuf,
    dir: PathBuf,
    blobs_dir: PathBuf,
    manifests_dir: PathBuf,
    staged: Vec<(Digest, PathBuf)>,
}

impl Staging {
    pub(super) fn begin(store: &Store) -> Result<Self, StoreError> {
        let top = store.root().join(STAGING_DIR);
        for dir in [store.blobs_dir(), store.manifests_dir(), top.clone()] {
            fs::create_dir_all(&dir).map_err(write_err(store.root()))?;
        }
        remove_abandoned(&top);
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let dir = top.join(format!("{}-{nanos}", std::process::id()));
        // `_all`: another import that just finished may have removed the (then empty) top folder.
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(Staging { root: store.root().to_path_buf(), dir, blobs_dir: store.blobs_dir(), manifests_dir: store.manifests_dir(), staged: Vec::new() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path where the blob `digest` is staged.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.partial", digest.hex()))
    }

    /// Creates the staging file for `digest` (fails if it already exists).
    pub fn create_blob(&self, digest: &Digest) -> Result<(File, PathBuf), StoreError> {
        let path = self.blob_path(digest);
        let file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(io_err(&path))?;
        Ok((file, path))
    }

    /// Records a staged blob that has been hashed, checked and fsynced.
    pub fn add_verified(&mut self, digest: Digest, path: PathBuf) {
        self.staged.push((digest, path));
    }

    /// Under the store lock: checks that every blob the manifests reference is staged or in the
    /// store ([`StoreError::BlobsRemoved`] names those that vanished; stage them and publish
    /// again), moves every staged blob into `blobs/`, then writes the manifests. Each step
    /// reports to `fault` so tests can stop the process between any two of them.
    pub fn publish(&mut self, manifests: &[(ModelName, Vec<u8>)], fault: &FaultPlan) -> Result<(), StoreError> {
        let store = Store::at(&self.root);
        let _lock = store.lock()?;
        let staged: BTreeSet<Digest> = self.staged.iter().map(|(d, _)| *d).collect();
        let mut removed = BTreeSet::new();
        for (name, bytes) in manifests {
            let path = self.manifests_dir.join(name.manifest_rel_path());
            let manifest = Manifest::parse(bytes).map_err(|source| StoreError::Manifest { path, source })?;
            for layer in manifest.blobs() {
                if !staged.contains(&layer.digest) && store.blob_size(&layer.digest) != Some(layer.size) {
                    removed.insert(layer.digest);
                }
            }
        }
        if !removed.is_empty() {
            return Err(StoreError::BlobsRemoved(removed.into_iter().collect()));
        }
        for (digest, staged) in std::mem::take(&mut self.staged) {
            fault.step("move blob into store").map_err(io_err(&staged))?;
            let target = self.blobs_dir.join(digest.file_name());
            if target.exists() || self.blobs_dir.join(digest.legacy_file_name()).exists() {
                continue;
            }
            fs::rename(&staged, &target).map_err(io_err(&target))?;
        }
        sync_dir(&self.blobs_dir).map_err(io_err(&self.blobs_dir))?;
        for (name, bytes) in manifests {
            let target = self.manifests_dir.join(name.manifest_rel_path());
            let parent = target.parent().expect("manifest paths have four components");
            fault.step("create manifest folder").map_err(io_err(parent))?;
            fs::create_dir_all(parent).map_err(io_err(parent))?;
            fault.step("publish manifest").map_err(io_err(&target))?;
            crate::durable::write_atomic(&target, bytes).map_err(io_err(&target))?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        // Leave the top folder only while another import is using it.
        if let Some(top) = self.dir.parent() {
            let _ = fs::remove_dir(top);
        }
    }
}

/// Removes staging folders of imports that are no longer running (killed, crashed, power loss).
fn remove_abandoned(top: &Path) {
    let Ok(entries) = fs::read_dir(top) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let alive = match pid {
            Some(pid) if pid == std::process::id() => true,
            Some(pid) => process_alive(pid, &entry.path()),
            None => false,
        };
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn process_alive(pid: u32, staging: &Path) -> bool {
    if cfg!(target_os = "linux") {
        return Path::new(&format!("/proc/{pid}")).exists();
    }
    // Elsewhere, without a cheap liveness check: a day-old staging folder is abandoned.
    let age = fs::metadata(staging).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    age.is_none_or(|a| a < Duration::from_secs(24 * 3600))
}
