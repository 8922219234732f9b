//! Where an import reads from: a folder (Ollama `models/` or a bundle), a zip of one, or a single
//! GGUF file. Everything a source yields is untrusted: names and digests are validated here,
//! contents are verified by the importer while copying.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read, Seek};
use std::path::{Component, Path, PathBuf};

use super::index::{BundleIndex, INDEX_FILE, MAX_INDEX_BYTES, SIGNATURE_FILE};
use super::volumes::{self, VolumeReader, VolumeSet};
use super::ImportError;
use crate::gguf;
use crate::store::manifest::MAX_MANIFEST_BYTES;
use crate::store::{Digest, ModelName};

/// A model offered by a source: its name and its manifest bytes, exactly as found.
pub struct SourceModel {
    pub name: ModelName,
    pub manifest_bytes: Vec<u8>,
    /// Where the manifest came from, for error messages.
    pub origin: String,
}

pub trait Source {
    fn models(&mut self) -> Result<Vec<SourceModel>, ImportError>;
    /// The length of a blob the source holds, or `None` when it does not have it.
    fn blob_len(&mut self, digest: &Digest) -> Result<Option<u64>, ImportError>;
    fn open_blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>, ImportError>;
    /// A file on disk holding the blob, for `--link`.
    fn blob_file(&self, _digest: &Digest) -> Option<PathBuf> {
        None
    }
    /// Names the blob's file inside the source, for error messages.
    fn blob_origin(&self, digest: &Digest) -> String;
    /// The bundle index and its exact bytes (what a signature covers), when there is one.
    fn index(&self) -> Option<(&BundleIndex, &[u8])> {
        None
    }
    /// The bytes of `airlock-bundle.json.minisig`, when the bundle has one.
    fn signature(&mut self) -> Result<Option<Vec<u8>>, ImportError> {
        Ok(None)
    }
}

/// Largest signature file accepted (a minisig is a few hundred bytes).
const MAX_SIGNATURE_BYTES: u64 = 64 << 10;

/// What a path holds, judged from its content rather than its name.
pub enum SourceKind {
    Folder,
    Zip,
    Gguf,
    /// A zip split into volumes; the path is the first one (`X.zip.001`).
    Volumes(PathBuf),
}

pub fn detect(path: &Path) -> Result<SourceKind, ImportError> {
    // `X.zip` when only its volumes were copied: read the volumes.
    let first_of = volumes::volume_path(path, 1);
    if !path.exists() && first_of.is_file() {
        return Ok(SourceKind::Volumes(first_of));
    }
    let meta = fs::metadata(path).map_err(|e| ImportError::source(path, format!("cannot open: {e}")))?;
    if meta.is_dir() {
        let holds_bundle = path.join("manifests").exists() || path.join("models").join("manifests").is_dir();
        if let Some(first) = volumes::first_volume_in(path).filter(|_| !holds_bundle) {
            return Ok(SourceKind::Volumes(first));
        }
        return Ok(SourceKind::Folder);
    }
    if let Some((base, n)) = volumes::split_volume_name(path) {
        if n == 1 {
            return Ok(SourceKind::Volumes(path.to_path_buf()));
        }
        let first = volumes::volume_path(&base, 1);
        return Err(ImportError::source(path, format!("is volume {n} of a split bundle; import the first volume, {}", first.display())));
    }
    let mut magic = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| ImportError::source(path, format!("cannot read: {e}")))?;
    match &magic[..n] {
        b"PK\x03\x04" | b"PK\x05\x06" => Ok(SourceKind::Zip),
        m if gguf::is_gguf_magic(m) => Ok(SourceKind::Gguf),
        _ => Err(ImportError::source(
            path,
            "not a bundle: expected a folder (an Ollama models/ folder or an Airlock bundle), a .zip of one, or a .gguf file",
        )),
    }
}

/// Whether a folder is an Ollama models folder or an Airlock bundle folder (or holds one in
/// `models/`, like a copied `~/.ollama`), rather than a folder of GGUF files.
pub fn holds_bundle(dir: &Path) -> bool {
    dir.join("manifests").exists() || dir.join(INDEX_FILE).exists() || dir.join("models").join("manifests").is_dir()
}

/// The bundle a transfer kit carries, when `dir` is a kit folder or its `models/` folder:
/// `models.zip`, or the first of its volumes.
pub fn bundle_in_kit(dir: &Path) -> Option<PathBuf> {
    if !dir.is_dir() || holds_bundle(dir) {
        return None;
    }
    [dir.join("models"), dir.to_path_buf()].into_iter().find_map(|models| {
        let zip = models.join(crate::bundle::KIT_BUNDLE);
        let first = volumes::volume_path(&zip, 1);
        [zip, first].into_iter().find(|p| p.is_file())
    })
}

fn read_index(bytes: &[u8], origin: &Path) -> Result<BundleIndex, ImportError> {
    BundleIndex::parse(bytes).map_err(|e| ImportError::source(origin, e))
}

/// Checks a manifest listed in the index: its path must be the one its name implies, and its
/// bytes must hash to what the index says.
fn check_index_model(m: &super::index::IndexModel, bytes: &[u8], origin: &Path) -> Result<ModelName, ImportError> {
    let name = ModelName::parse(&m.name).map_err(|e| ImportError::source(origin, e.to_string()))?;
    let expected = Path::new("manifests").join(name.manifest_rel_path());
    if Path::new(&m.manifest) != expected {
        return Err(ImportError::source(origin, format!("the index puts model {} at {:?}, expected {}", m.name, m.manifest, expected.display())));
    }
    if Digest::of_bytes(bytes) != m.manifest_sha256 {
        return Err(ImportError::integrity(&m.manifest, "manifest does not match the digest in airlock-bundle.json (changed after the bundle was made)"));
    }
    Ok(name)
}

// ---------------------------------------------------------------------------------------------
// Folder

pub struct FolderSource {
    root: PathBuf,
    index: Option<(BundleIndex, Vec<u8>)>,
}

impl FolderSource {
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        // Accept the folder that holds `models/` too (e.g. a copied `~/.ollama`).
        let root = if !path.join("manifests").exists() && path.join("models").join("manifests").is_dir() {
            path.join("models")
        } else {
            path.to_path_buf()
        };
        let manifests = root.join("manifests");
        if !manifests.is_dir() {
            return Err(ImportError::source(path, "not a bundle: there is no manifests/ folder in it (expected an Ollama models/ folder or an Airlock bundle)"));
        }
        for dir in [manifests, root.join("blobs")] {
            refuse_links_and_special_files(&dir)?;
        }
        let index_path = root.join(INDEX_FILE);
        let index = match fs::symlink_metadata(&index_path) {
            Ok(m) if !m.is_file() => return Err(ImportError::source(&index_path, "is not a regular file (symlinks are refused)")),
            Ok(m) if m.len() > MAX_INDEX_BYTES => return Err(ImportError::source(&index_path, "is too large to be a bundle index")),
            Ok(_) => {
                let bytes = fs::read(&index_path).map_err(|e| ImportError::source(&index_path, e.to_string()))?;
                Some((read_index(&bytes, &index_path)?, bytes))
            }
            Err(_) => None,
        };
        Ok(FolderSource { root, index })
    }

    fn blob_candidate(&self, digest: &Digest) -> Option<PathBuf> {
        let blobs = self.root.join("blobs");
        [digest.file_name(), digest.legacy_file_name()]
            .into_iter()
            .map(|n| blobs.join(n))
            .find(|p| fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))
    }
}

fn read_manifest_file(path: &Path) -> Result<Vec<u8>, ImportError> {
    let meta = fs::symlink_metadata(path).map_err(|e| ImportError::source(path, format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(ImportError::source(path, "is not a regular file (symlinks and special files are refused)"));
    }
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(ImportError::source(path, format!("is {} bytes, too large to be a manifest", meta.len())));
    }
    fs::read(path).map_err(|e| ImportError::source(path, format!("cannot read: {e}")))
}

impl Source for FolderSource {
    fn models(&mut self) -> Result<Vec<SourceModel>, ImportError> {
        let mut out = Vec::new();
        if let Some((index, _)) = &self.index {
            for m in &index.models {
                let rel = safe_relative(&m.manifest).ok_or_else(|| ImportError::source(&self.root.join(INDEX_FILE), format!("unsafe manifest path {:?}", m.manifest)))?;
                let path = self.root.join(rel);
                let bytes = read_manifest_file(&path)?;
                let name = check_index_model(m, &bytes, &path)?;
                out.push(SourceModel { name, manifest_bytes: bytes, origin: path.display().to_string() });
            }
            return Ok(out);
        }
        let manifests = self.root.join("manifests");
        for rel in walk_files(&manifests)? {
            let path = manifests.join(&rel);
            let name = ModelName::from_manifest_path(&rel).map_err(|e| ImportError::source(&path, e.to_string()))?;
            out.push(SourceModel { name, manifest_bytes: read_manifest_file(&path)?, origin: path.display().to_string() });
        }
        Ok(out)
    }

    fn blob_len(&mut self, digest: &Digest) -> Result<Option<u64>, ImportError> {
        Ok(self.blob_candidate(digest).and_then(|p| fs::metadata(p).ok()).map(|m| m.len()))
    }

    fn open_blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>, ImportError> {
        let path = self.blob_candidate(digest).ok_or_else(|| ImportError::source(&self.root.join("blobs").join(digest.file_name()), "missing"))?;
        let file = File::open(&path).map_err(|e| ImportError::source(&path, format!("cannot read: {e}")))?;
        Ok(Box::new(file))
    }

    fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        self.blob_candidate(digest)
    }

    fn blob_origin(&self, digest: &Digest) -> String {
        self.blob_candidate(digest).unwrap_or_else(|| self.root.join("blobs").join(digest.file_name())).display().to_string()
    }

    fn index(&self) -> Option<(&BundleIndex, &[u8])> {
        self.index.as_ref().map(|(i, b)| (i, b.as_slice()))
    }

    fn signature(&mut self) -> Result<Option<Vec<u8>>, ImportError> {
        let path = self.root.join(SIGNATURE_FILE);
        match fs::symlink_metadata(&path) {
            Err(_) => Ok(None),
            Ok(m) if !m.is_file() || m.len() > MAX_SIGNATURE_BYTES => Err(ImportError::source(&path, "is not a regular signature file")),
            Ok(_) => fs::read(&path).map(Some).map_err(|e| ImportError::source(&path, format!("cannot read: {e}"))),
        }
    }
}

/// Refuses symlinks and special files anywhere under `dir` (a bundle is plain files only).
fn refuse_links_and_special_files(dir: &Path) -> Result<(), ImportError> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let entry = entry.map_err(|e| ImportError::source(dir, e.to_string()))?;
        let path = entry.path();
        let ty = fs::symlink_metadata(&path).map_err(|e| ImportError::source(&path, e.to_string()))?.file_type();
        if ty.is_symlink() {
            return Err(ImportError::source(&path, "is a symbolic link; bundles may contain only regular files"));
        } else if ty.is_dir() {
            refuse_links_and_special_files(&path)?;
        } else if !ty.is_file() {
            return Err(ImportError::source(&path, "is a special file (device, socket or pipe); bundles may contain only regular files"));
        }
    }
    Ok(())
}

/// Files under `dir`, relative to it, skipping hidden ones (`.DS_Store`, editors' droppings).
fn walk_files(dir: &Path) -> Result<Vec<PathBuf>, ImportError> {
    fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
        let entries = fs::read_dir(dir).map_err(|e| ImportError::source(dir, e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImportError::source(dir, e.to_string()))?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let child = rel.join(entry.file_name());
            if entry.file_type().map_err(|e| ImportError::source(&entry.path(), e.to_string()))?.is_dir() {
                walk(&entry.path(), &child, out)?;
            } else {
                out.push(child);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, Path::new(""), &mut out)?;
    out.sort();
    Ok(out)
}

/// A relative path with only normal components, or `None`.
fn safe_relative(p: &str) -> Option<PathBuf> {
    if p.is_empty() || p.contains('\\') || p.contains('\0') {
        return None;
    }
    let path = Path::new(p);
    path.components().all(|c| matches!(c, Component::Normal(_))).then(|| path.to_path_buf())
}

// ---------------------------------------------------------------------------------------------
// Zip

/// Limits that stop zip bombs: a deflated entry may not claim more than this ratio.
const MAX_DEFLATE_RATIO: u64 = 200;

/// What a zip is read from: one file, or split volumes read as one.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

pub struct ZipSource {
    path: PathBuf,
    archive: zip::ZipArchive<Box<dyn ReadSeek>>,
    /// Lower-cased entry name (prefix stripped) → (entry name as written, entry index).
    entries: BTreeMap<String, (String, usize)>,
    index: Option<(BundleIndex, Vec<u8>)>,
}

impl ZipSource {
    pub fn open(path: &Path) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(|e| ImportError::source(path, format!("cannot open: {e}")))?;
        Self::from_reader(path, Box::new(BufReader::with_capacity(1 << 20, file)))
    }

    /// Opens a zip split into volumes, given the first (`X.zip.001`); a missing or short volume
    /// is named in the error.
    pub fn open_volumes(first: &Path) -> Result<Self, ImportError> {
        let set = VolumeSet::open(first)?;
        Self::from_reader(first, Box::new(BufReader::with_capacity(1 << 20, VolumeReader::new(set))))
    }

    fn from_reader(path: &Path, reader: Box<dyn ReadSeek>) -> Result<Self, ImportError> {
        let mut archive = zip::ZipArchive::new(reader).map_err(|e| ImportError::source(path, format!("not a valid zip: {e}")))?;
        let mut raw: Vec<(String, usize)> = Vec::new();
        for i in 0..archive.len() {
            let entry = archive.by_index_raw(i).map_err(|e| ImportError::source(path, format!("corrupt zip entry #{i}: {e}")))?;
            let name = String::from_utf8(entry.name_raw().to_vec()).map_err(|_| ImportError::source(path, format!("zip entry #{i} has a name that is not UTF-8")))?;
            let at = |why: &str| ImportError::source(path, format!("zip entry {name:?} {why}"));
            if entry.encrypted() {
                return Err(at("is encrypted"));
            }
            if entry.is_symlink() {
                return Err(at("is a symbolic link; bundles may contain only regular files"));
            }
            let trimmed = name.trim_end_matches('/');
            let drive_letter = trimmed.split('/').next().is_some_and(|first| first.contains(':'));
            if name.starts_with('/') || drive_letter || safe_relative(trimmed).is_none() {
                return Err(at("has an absolute or escaping path ('..', '/', '\\' or a drive letter)"));
            }
            if entry.is_dir() {
                continue;
            }
            let (size, packed) = (entry.size(), entry.compressed_size());
            match entry.compression() {
                zip::CompressionMethod::Stored if size != packed => return Err(at("claims a stored size different from its packed size")),
                zip::CompressionMethod::Stored => {}
                zip::CompressionMethod::Deflated if size > packed.saturating_mul(MAX_DEFLATE_RATIO).max(1 << 20) => {
                    return Err(at(&format!("expands {size} bytes from {packed} (a zip bomb?)")))
                }
                zip::CompressionMethod::Deflated => {}
                other => return Err(at(&format!("uses compression {other:?}; bundles store entries uncompressed"))),
            }
            raw.push((name, i));
        }
        // A zip of a folder puts everything under one top folder ("models/manifests/…"): strip it.
        let prefix = common_prefix(raw.iter().map(|(n, _)| n.as_str()));
        let mut entries = BTreeMap::new();
        for (name, i) in raw {
            let stripped = name[prefix.len()..].to_string();
            if entries.insert(stripped.to_lowercase(), (stripped, i)).is_some() {
                return Err(ImportError::source(path, format!("zip entry {name:?} appears twice")));
            }
        }
        let mut src = ZipSource { path: path.to_path_buf(), archive, entries, index: None };
        if src.entries.contains_key(INDEX_FILE) {
            let bytes = src.read_small(INDEX_FILE, MAX_INDEX_BYTES)?;
            src.index = Some((read_index(&bytes, &path.join(INDEX_FILE))?, bytes));
        }
        if !src.entries.keys().any(|k| k.starts_with("manifests/")) {
            return Err(ImportError::source(path, "not a bundle: the zip has no manifests/ folder (expected a zip of an Ollama models/ folder or of an Airlock bundle)"));
        }
        Ok(src)
    }

    fn entry_index(&self, name: &str) -> Option<usize> {
        self.entries.get(&name.to_lowercase()).map(|(_, i)| *i)
    }

    fn read_small(&mut self, name: &str, limit: u64) -> Result<Vec<u8>, ImportError> {
        let origin = self.path.join(name);
        let i = self.entry_index(name).ok_or_else(|| ImportError::source(&origin, "missing from the zip"))?;
        let entry = self.archive.by_index(i).map_err(|e| ImportError::source(&origin, e.to_string()))?;
        if entry.size() > limit {
            return Err(ImportError::source(&origin, format!("is {} bytes, more than the {limit} such a file may have", entry.size())));
        }
        let mut bytes = Vec::new();
        entry.take(limit + 1).read_to_end(&mut bytes).map_err(|e| ImportError::source(&origin, format!("cannot read: {e}")))?;
        Ok(bytes)
    }

    fn blob_entry(&self, digest: &Digest) -> Option<(String, usize)> {
        [digest.file_name(), digest.legacy_file_name()]
            .into_iter()
            .map(|n| format!("blobs/{n}"))
            .find_map(|n| self.entry_index(&n).map(|i| (n, i)))
    }
}

/// The folder all names share, up to and including a '/', when `manifests/` sits right under it.
fn common_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = names.next() else { return String::new() };
    let Some(slash) = first.find('/') else { return String::new() };
    let candidate = &first[..=slash];
    if candidate == "manifests/" || candidate == "blobs/" {
        return String::new();
    }
    if names.all(|n| n.starts_with(candidate)) {
        candidate.to_string()
    } else {
        String::new()
    }
}

impl Source for ZipSource {
    fn models(&mut self) -> Result<Vec<SourceModel>, ImportError> {
        let mut out = Vec::new();
        if let Some((index, _)) = self.index.clone() {
            for m in &index.models {
                let origin = self.path.join(&m.manifest);
                let bytes = self.read_small(&m.manifest, MAX_MANIFEST_BYTES)?;
                let name = check_index_model(m, &bytes, &origin)?;
                out.push(SourceModel { name, manifest_bytes: bytes, origin: origin.display().to_string() });
            }
            return Ok(out);
        }
        let names: Vec<String> = self.entries.iter().filter(|(k, _)| k.starts_with("manifests/")).map(|(_, (n, _))| n.clone()).collect();
        for entry in names {
            let rel = entry.strip_prefix("manifests/").unwrap_or(&entry);
            let origin = self.path.join(&entry);
            let name = ModelName::from_manifest_path(Path::new(rel)).map_err(|e| ImportError::source(&origin, e.to_string()))?;
            let bytes = self.read_small(&entry, MAX_MANIFEST_BYTES)?;
            out.push(SourceModel { name, manifest_bytes: bytes, origin: origin.display().to_string() });
        }
        Ok(out)
    }

    fn blob_len(&mut self, digest: &Digest) -> Result<Option<u64>, ImportError> {
        let Some((name, i)) = self.blob_entry(digest) else { return Ok(None) };
        let entry = self.archive.by_index_raw(i).map_err(|e| ImportError::source(&self.path.join(name), e.to_string()))?;
        Ok(Some(entry.size()))
    }

    fn open_blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>, ImportError> {
        let (name, i) = self.blob_entry(digest).ok_or_else(|| ImportError::source(&self.path.join("blobs").join(digest.file_name()), "missing from the zip"))?;
        let entry = self.archive.by_index(i).map_err(|e| ImportError::source(&self.path.join(name), e.to_string()))?;
        Ok(Box::new(entry))
    }

    fn blob_origin(&self, digest: &Digest) -> String {
        let name = self.blob_entry(digest).map_or_else(|| format!("blobs/{}", digest.file_name()), |(n, _)| n);
        format!("{} (in {})", name, self.path.display())
    }

    fn index(&self) -> Option<(&BundleIndex, &[u8])> {
        self.index.as_ref().map(|(i, b)| (i, b.as_slice()))
    }

    fn signature(&mut self) -> Result<Option<Vec<u8>>, ImportError> {
        if !self.entries.contains_key(SIGNATURE_FILE) {
            return Ok(None);
        }
        self.read_small(SIGNATURE_FILE, MAX_SIGNATURE_BYTES).map(Some)
    }
}
