//! The Ollama-compatible model store: `manifests/<host>/<namespace>/<model>/<tag>` and
//! `blobs/sha256-<hex>`, byte for byte what Ollama reads and writes.
//!
//! Owns names, digests, manifests and blob files; talks to the filesystem only. It never deletes
//! anything except on an explicit [`Store::remove`] (the store may be shared with Ollama), and
//! builds paths only from validated names and digests.
//!
//! Uses: `durable`, `gguf` (nothing above it).

pub mod digest;
pub mod fault;
mod gguf_cache;
pub mod layers;
mod lock;
pub mod manifest;
pub mod name;
mod prune;
pub mod space;
mod staging;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use digest::{hash_reader, Digest, InvalidDigest};
pub use lock::{StoreLock, LOCK_FILE};
pub use manifest::{Layer, Manifest, ManifestError};
pub use name::{InvalidName, ModelName};
pub use prune::{PruneReport, PRUNE_MIN_AGE};
pub use staging::Staging;

/// Where the store's root came from, so the user can see why it is where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum RootSource {
    #[serde(rename = "AIRLOCK_MODELS")]
    AirlockModels,
    #[serde(rename = "OLLAMA_MODELS")]
    OllamaModels,
    #[serde(rename = "default")]
    Default,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("model {0:?} not found; `airlock list` shows the models in this store")]
    NotFound(String),
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Manifest { path: PathBuf, source: ManifestError },
    #[error("no home or data directory known; set AIRLOCK_MODELS to the folder for the model store")]
    NoDataDir,
    /// Blobs an import relied on (found present, so not copied) were removed before it could
    /// publish its manifests: a concurrent `rm`. The import copies them again.
    #[error("{} blob(s) this import needs were removed from the store while it ran (by a concurrent `airlock rm`?); import again", .0.len())]
    BlobsRemoved(Vec<Digest>),
    /// A read-only mount (a shared store), or a store another user owns: models are listed and
    /// run, nothing is changed.
    #[error("the model store is read-only here ({path}): its models can be listed and run, but not changed; import, pull, create, copy or remove on a machine that can write it")]
    ReadOnly { path: PathBuf },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| match source.kind() {
        io::ErrorKind::ReadOnlyFilesystem => StoreError::ReadOnly { path: path.to_path_buf() },
        _ => StoreError::Io { path: path.to_path_buf(), source },
    }
}

/// [`io_err`] for the first write of every change (the lock, the staging folder): a folder this
/// user may not write is a read-only store too.
pub(crate) fn write_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| match source.kind() {
        io::ErrorKind::PermissionDenied => StoreError::ReadOnly { path: path.to_path_buf() },
        _ => io_err(path)(source),
    }
}

/// One model in the store.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub name: ModelName,
    pub manifest_path: PathBuf,
    pub manifest_bytes: Vec<u8>,
    pub manifest: Manifest,
    /// SHA-256 of the manifest bytes, as Ollama computes its model ID.
    pub id: Digest,
    pub modified: SystemTime,
}

impl ModelEntry {
    pub fn size(&self) -> u64 {
        self.manifest.total_size()
    }
    /// The first 12 hex digits, as `ollama list` shows.
    pub fn short_id(&self) -> String {
        self.id.hex()[..12].to_string()
    }
}

/// A problem found by [`Store::verify`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct BlobProblem {
    pub model: String,
    pub digest: Digest,
    pub problem: String,
}

#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    source: RootSource,
    gguf: gguf_cache::GgufCache,
    space: space::SpaceLedger,
}

impl Store {
    /// Opens (without creating) the store at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Store::with_source(root.into(), RootSource::Default)
    }

    /// The store chosen by the environment: `AIRLOCK_MODELS`, else `OLLAMA_MODELS`, else the
    /// platform data dir (`~/.local/share/airlock/models`).
    pub fn from_env() -> Result<Self, StoreError> {
        let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        if let Some(p) = non_empty("AIRLOCK_MODELS") {
            return Ok(Store::with_source(p, RootSource::AirlockModels));
        }
        if let Some(p) = non_empty("OLLAMA_MODELS") {
            return Ok(Store::with_source(p, RootSource::OllamaModels));
        }
        let data = dirs::data_dir().ok_or(StoreError::NoDataDir)?;
        Ok(Store::with_source(data.join("airlock").join("models"), RootSource::Default))
    }

    fn with_source(root: PathBuf, source: RootSource) -> Self {
        Store { root, source, gguf: Default::default(), space: Default::default() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Holds `bytes` of the store's free disk space for a write in progress (see [`space`]).
    pub fn reserve_space(&self, bytes: u64) -> Result<space::Reservation, space::NoSpace> {
        self.space.reserve(&self.root, bytes)
    }
    pub fn root_source(&self) -> RootSource {
        self.source
    }
    pub fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Path of a blob: the `sha256-` file, or an old `sha256:` one when only that exists.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let dir = self.blobs_dir();
        let modern = dir.join(digest.file_name());
        if !modern.exists() {
            let legacy = dir.join(digest.legacy_file_name());
            if legacy.exists() {
                return legacy;
            }
        }
        modern
    }

    /// The size of a blob if present as a regular file.
    pub fn blob_size(&self, digest: &Digest) -> Option<u64> {
        fs::symlink_metadata(self.blob_path(digest)).ok().filter(|m| m.is_file()).map(|m| m.len())
    }

    /// The GGUF metadata of the blob `digest`, parsed once and cached by digest (see
    /// [`gguf_cache`]).
    pub fn gguf_info(&self, digest: &Digest) -> Result<std::sync::Arc<crate::gguf::GgufInfo>, crate::gguf::GgufError> {
        self.gguf.get(digest, &self.blob_path(digest))
    }

    /// How many GGUF blobs this store value has parsed rather than served from its cache.
    pub fn gguf_parses(&self) -> u64 {
        self.gguf.parses()
    }

    /// Every model, sorted by name. Manifests that cannot be read are returned as errors beside
    /// the list rather than hiding the rest.
    pub fn list(&self) -> Result<(Vec<ModelEntry>, Vec<StoreError>), StoreError> {
        let mut models = Vec::new();
        let mut problems = Vec::new();
        for rel in manifest_files(&self.manifests_dir()).map_err(io_err(&self.manifests_dir()))? {
            match self.load(&rel) {
                Ok(m) => models.push(m),
                Err(e) => problems.push(e),
            }
        }
        models.sort_by_key(|m| m.name.display_shortest());
        Ok((models, problems))
    }

    fn load(&self, rel: &Path) -> Result<ModelEntry, StoreError> {
        let name = ModelName::from_manifest_path(rel)?;
        let path = self.manifests_dir().join(rel);
        let meta = fs::metadata(&path).map_err(io_err(&path))?;
        if meta.len() > manifest::MAX_MANIFEST_BYTES {
            return Err(StoreError::Manifest { path, source: ManifestError::TooLarge(meta.len()) });
        }
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let manifest = Manifest::parse(&bytes).map_err(|source| StoreError::Manifest { path: path.clone(), source })?;
        Ok(ModelEntry {
            name,
            id: Digest::of_bytes(&bytes),
            manifest_bytes: bytes,
            manifest,
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            manifest_path: path,
        })
    }

    /// Finds a model by user-supplied name (case-insensitive, like Ollama).
    pub fn resolve(&self, name: &str) -> Result<ModelEntry, StoreError> {
        let wanted = ModelName::parse(name)?;
        let exact = wanted.manifest_rel_path();
        if self.manifests_dir().join(&exact).is_file() {
            return self.load(&exact);
        }
        let (models, _) = self.list()?;
        models
            .into_iter()
            .find(|m| m.name.matches(&wanted))
            .ok_or_else(|| StoreError::NotFound(name.to_string()))
    }

    /// Takes the store lock (see [`StoreLock`]): every change to which manifests exist or which
    /// blobs they may rely on happens under it.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        StoreLock::exclusive(&self.root)
    }

    /// Removes a model: its manifest first, then the blobs no other manifest references.
    /// Returns the blobs deleted. Holds the store lock, so no import publishes a manifest
    /// relying on a blob between the listing and the deletion.
    pub fn remove(&self, name: &str) -> Result<Vec<Digest>, StoreError> {
        let _lock = self.lock()?;
        let entry = self.resolve(name)?;
        fs::remove_file(&entry.manifest_path).map_err(io_err(&entry.manifest_path))?;
        prune_empty_dirs(entry.manifest_path.parent(), &self.manifests_dir());
        let (others, problems) = self.list()?;
        if !problems.is_empty() {
            // An unreadable manifest may reference any blob: keep them all rather than guess.
            return Ok(Vec::new());
        }
        let referenced: HashSet<Digest> = others.iter().flat_map(|m| m.manifest.blobs().map(|l| l.digest)).collect();
        let mut deleted = Vec::new();
        for layer in entry.manifest.blobs() {
            if referenced.contains(&layer.digest) || deleted.contains(&layer.digest) {
                continue;
            }
            for file in [layer.digest.file_name(), layer.digest.legacy_file_name()] {
                let path = self.blobs_dir().join(file);
                if path.exists() {
                    fs::remove_file(&path).map_err(io_err(&path))?;
                    deleted.push(layer.digest);
                }
            }
        }
        Ok(deleted)
    }

    /// Copies a model under a new name (the manifest only: blobs are shared), like `ollama cp`.
    pub fn copy(&self, source: &str, destination: &str) -> Result<ModelName, StoreError> {
        let _lock = self.lock()?;
        let entry = self.resolve(source)?;
        let dest = ModelName::parse(destination)?;
        let target = self.manifests_dir().join(dest.manifest_rel_path());
        let parent = target.parent().expect("manifest paths have four components");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        crate::durable::write_atomic(&target, &entry.manifest_bytes).map_err(io_err(&target))?;
        Ok(dest)
    }

    /// Re-hashes the blobs of one model (or of every model) and reports each missing, short or
    /// corrupt one. Blobs shared by several models are hashed once.
    pub fn verify(&self, name: Option<&str>, mut on_blob: impl FnMut(&Digest, u64)) -> Result<Vec<BlobProblem>, StoreError> {
        let models = match name {
            Some(n) => vec![self.resolve(n)?],
            None => self.list()?.0,
        };
        let mut checked: BTreeMap<Digest, Option<String>> = BTreeMap::new();
        let mut problems = Vec::new();
        for m in &models {
            for layer in m.manifest.blobs() {
                let problem = match checked.get(&layer.digest) {
                    Some(p) => p.clone(),
                    None => {
                        let p = self.check_blob(layer);
                        on_blob(&layer.digest, layer.size);
                        checked.insert(layer.digest, p.clone());
                        p
                    }
                };
                if let Some(problem) = problem {
                    problems.push(BlobProblem { model: m.name.display_shortest(), digest: layer.digest, problem });
                }
            }
        }
        Ok(problems)
    }

    fn check_blob(&self, layer: &Layer) -> Option<String> {
        let path = self.blob_path(&layer.digest);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(format!("missing blob {}", path.display())),
            Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
        };
        match hash_reader(file) {
            Ok((_, len)) if len != layer.size => Some(format!("{} is {len} bytes, the manifest says {}", path.display(), layer.size)),
            Ok((d, _)) if d != layer.digest => Some(format!("{} is corrupt: its content hashes to {d}", path.display())),
            Ok(_) => None,
            Err(e) => Some(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Whether this process may change the store: [`StoreError::ReadOnly`] on a read-only mount or
    /// a store another user owns, so a change is refused before it begins.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        lock::StoreLock::open(self.root()).map(drop)
    }

    /// Starts a staging area beside `blobs/` for an import (see [`Staging`]).
    pub fn begin_staging(&self) -> Result<Staging, StoreError> {
        Staging::begin(self)
    }
}

/// Manifest files under `dir`, as paths relative to it, exactly four levels deep. Hidden entries
/// and anything that is not a regular file are skipped.
fn manifest_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, rel: &Path, depth: usize, out: &mut Vec<PathBuf>) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let ty = entry.file_type()?;
            let child = rel.join(&name);
            if depth == 3 && ty.is_file() {
                out.push(child);
            } else if depth < 3 && ty.is_dir() {
                walk(&entry.path(), &child, depth + 1, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), 0, &mut out)?;
    Ok(out)
}

/// Removes now-empty folders from `dir` up to (not including) `stop`.
fn prune_empty_dirs(mut dir: Option<&Path>, stop: &Path) {
    while let Some(d) = dir {
        if d == stop || !d.starts_with(stop) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

pub(crate) use crate::durable::sync_dir;
