//! Export: models from the active store (Airlock's or Ollama's) into a bundle folder, one zip
//! (entries stored, zip64 when needed) or that zip cut into volumes (Bundle format v1,
//! DESIGN.md).
//!
//! Manifests are copied byte for byte so model IDs survive; each referenced blob is copied once
//! and hashed on the way, so a corrupt source store aborts the export instead of spreading.
//! Everything is written under a temporary sibling (`PATH.partial-<pid>`) and renamed into place
//! at the end: a failed export leaves nothing, an interrupted one only that marked sibling
//! (removed by the next export to the same path).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::index::{created_by, BundleIndex, IndexBlob, IndexModel, FORMAT, INDEX_FILE, SIGNATURE_FILE};
use super::inventory::Inventory;
use super::sign::SigningKey;
use super::volumes::{volume_path, VolumeWriter};
use crate::progress::{Progress, ProgressSink};
use crate::store::{Digest, ModelEntry, Store, StoreError};

const CHUNK: usize = 4 << 20;

#[derive(Default)]
pub struct ExportOptions {
    /// Cut the zip into volumes of at most this many bytes (`PATH.001`, …). Zip output only.
    pub split_size: Option<u64>,
    /// Sign the index with this key.
    pub sign: Option<SigningKey>,
    /// Write a delta bundle: leave out the blobs this inventory lists.
    pub exclude_from: Option<PathBuf>,
    pub cancel: Option<Arc<AtomicBool>>,
    /// The creation time written into the index and the zip entries (default: now). Fixing it
    /// makes exports reproducible byte for byte (the CLI honours `SOURCE_DATE_EPOCH`).
    pub created: Option<time::OffsetDateTime>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExportedModel {
    pub name: String,
    pub id: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    pub models: Vec<ExportedModel>,
    pub blobs_written: usize,
    /// Blobs left out because the inventory says the other side has them.
    pub blobs_excluded: usize,
    pub bytes_written: u64,
    /// The files or folder written (several for split volumes).
    pub outputs: Vec<PathBuf>,
    pub signed_by: Option<String>,
    pub base_inventory: Option<Digest>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0} already exists; choose another --out path or remove it first")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("blob {digest} of {model} in the store ({path}) is corrupt: {problem}; run `airlock verify` and import or pull the model again")]
    CorruptBlob { model: String, digest: Digest, path: PathBuf, problem: String },
    #[error("{0}")]
    Invalid(String),
    #[error("export cancelled; nothing was written")]
    Cancelled,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.to_path_buf(), source }
}

/// Exports `models` from `store` to `out` (a `.zip` file, else a folder).
pub fn export(store: &Store, models: &[String], out: &Path, opts: &ExportOptions, progress: &dyn ProgressSink) -> Result<ExportReport, ExportError> {
    let zip = out.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip"));
    if opts.split_size.is_some() && !zip {
        return Err(ExportError::Invalid(format!("--split-size needs a .zip output; {} is a folder bundle", out.display())));
    }
    if models.is_empty() {
        return Err(ExportError::Invalid("name at least one model to export; `airlock list` shows them".into()));
    }

    // Plan: resolve every model and every blob before writing anything.
    let mut entries: Vec<ModelEntry> = Vec::new();
    for m in models {
        let e = store.resolve(m)?;
        if !entries.iter().any(|x| x.name == e.name) {
            entries.push(e);
        }
    }
    let mut blobs: BTreeMap<Digest, (u64, String)> = BTreeMap::new();
    for e in &entries {
        for l in e.manifest.blobs() {
            let model = e.name.display_shortest();
            if let Some((size, other)) = blobs.get(&l.digest) {
                if *size != l.size {
                    return Err(ExportError::Invalid(format!("{model} says blob {} is {} bytes, {other} says {size}; the store is inconsistent", l.digest, l.size)));
                }
                continue;
            }
            match store.blob_size(&l.digest) {
                Some(s) if s == l.size => {}
                Some(s) => {
                    return Err(ExportError::CorruptBlob { model, digest: l.digest, path: store.blob_path(&l.digest), problem: format!("it is {s} bytes, the manifest says {}", l.size) })
                }
                None => return Err(ExportError::Invalid(format!("model {model} is incomplete in the store: blob {} is missing ({}); import or pull it again", l.digest, store.blob_path(&l.digest).display()))),
            }
            blobs.insert(l.digest, (l.size, model));
        }
    }
    let mut excluded = 0;
    let base_inventory = match &opts.exclude_from {
        None => None,
        Some(path) => {
            let (inv, digest) = Inventory::read(path).map_err(ExportError::Invalid)?;
            let have: BTreeMap<Digest, u64> = inv.blobs.iter().map(|b| (b.digest, b.size)).collect();
            let before = blobs.len();
            blobs.retain(|d, (size, _)| have.get(d) != Some(size));
            excluded = before - blobs.len();
            Some(digest)
        }
    };

    let created_at = opts.created.unwrap_or_else(time::OffsetDateTime::now_utc);
    let created = created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let index = BundleIndex {
        format: FORMAT.into(),
        version: 1,
        created: created.clone(),
        created_by: created_by(),
        models: entries
            .iter()
            .map(|e| IndexModel {
                name: e.name.display_shortest(),
                manifest: manifest_entry_name(e),
                manifest_sha256: e.id,
                size: e.size(),
            })
            .collect(),
        blobs: blobs.iter().map(|(d, (size, _))| IndexBlob { digest: *d, size: *size }).collect(),
        base_inventory,
    };
    let index_bytes = serde_json::to_vec_pretty(&index).expect("index serialises");
    let signature = match &opts.sign {
        None => None,
        Some(key) => {
            let unix = created_at.unix_timestamp();
            let comment = format!("timestamp:{unix}\tcreated:{created}\ttool:{}", created_by());
            Some(key.sign(&index_bytes, &comment).map_err(|e| ExportError::Invalid(e.to_string()))?)
        }
    };

    // Write under a temporary sibling; refuse to overwrite anything.
    let outputs_final: Vec<PathBuf> = match opts.split_size {
        Some(_) => vec![out.to_path_buf(), volume_path(out, 1)],
        None => vec![out.to_path_buf()],
    };
    for p in &outputs_final {
        if fs::symlink_metadata(p).is_ok() {
            return Err(ExportError::Exists(p.clone()));
        }
    }
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(ExportError::Invalid(format!("the folder {} does not exist; create it first", parent.display())));
    }
    let file_name = out.file_name().ok_or_else(|| ExportError::Invalid(format!("{} is not a file or folder name", out.display())))?.to_string_lossy().into_owned();
    remove_stale_partials(parent, &file_name);
    let tmp = parent.join(format!("{file_name}.partial-{}", std::process::id()));
    let mut guard = Cleanup(Some(tmp.clone()));

    let total: u64 = blobs.values().map(|(s, _)| s).sum();
    let mut w = Writer { store, opts, progress, done: 0, total, written: 0 };
    let produced: Vec<PathBuf> = if zip {
        fs::create_dir(&tmp).map_err(io_at(&tmp))?;
        let target = tmp.join(&file_name);
        let mut z = ZipOut::new(VolumeWriter::create(&target, opts.split_size).map_err(io_at(&target))?, created_at);
        z.add_bytes(INDEX_FILE, &index_bytes).map_err(io_at(&target))?;
        if let Some(sig) = &signature {
            z.add_bytes(SIGNATURE_FILE, sig).map_err(io_at(&target))?;
        }
        for e in &entries {
            z.add_bytes(&manifest_entry_name(e), &e.manifest_bytes).map_err(io_at(&target))?;
        }
        for (digest, (size, model)) in &blobs {
            let name = format!("blobs/{}", digest.file_name());
            z.begin(&name, *size).map_err(io_at(&target))?;
            let crc = w.copy_blob(digest, *size, model, |buf| z.w.write_all(buf))?;
            z.end(crc).map_err(io_at(&target))?;
        }
        z.finish().map_err(io_at(&target))?
    } else {
        fs::create_dir(&tmp).map_err(io_at(&tmp))?;
        write_file(&tmp.join(INDEX_FILE), &index_bytes)?;
        if let Some(sig) = &signature {
            write_file(&tmp.join(SIGNATURE_FILE), sig)?;
        }
        for e in &entries {
            let path = tmp.join(manifest_entry_name(e));
            fs::create_dir_all(path.parent().unwrap()).map_err(io_at(&path))?;
            write_file(&path, &e.manifest_bytes)?;
        }
        let blob_dir = tmp.join("blobs");
        fs::create_dir_all(&blob_dir).map_err(io_at(&blob_dir))?;
        for (digest, (size, model)) in &blobs {
            let path = blob_dir.join(digest.file_name());
            let mut f = VolumeWriter::create(&path, None).map_err(io_at(&path))?;
            w.copy_blob(digest, *size, model, |buf| f.write_all(buf))?;
            f.finish().map_err(io_at(&path))?;
        }
        sync_tree(&tmp)?;
        vec![tmp.clone()]
    };

    // Publish: the folder itself, or the zip / each volume out of the temporary folder.
    let outputs = if zip {
        let mut moved = Vec::new();
        for p in &produced {
            let dest = parent.join(p.file_name().unwrap());
            if fs::symlink_metadata(&dest).is_ok() {
                moved.iter().for_each(|m: &PathBuf| drop(fs::remove_file(m)));
                return Err(ExportError::Exists(dest));
            }
            fs::rename(p, &dest).map_err(io_at(&dest))?;
            moved.push(dest);
        }
        moved
    } else {
        fs::rename(&tmp, out).map_err(io_at(out))?;
        guard.0 = None;
        vec![out.to_path_buf()]
    };
    let _ = crate::store::sync_dir(parent);
    drop(guard);
    Ok(ExportReport {
        models: entries.iter().map(|e| ExportedModel { name: e.name.display_shortest(), id: e.short_id(), size: e.size() }).collect(),
        blobs_written: blobs.len(),
        blobs_excluded: excluded,
        bytes_written: w.written,
        outputs,
        signed_by: opts.sign.as_ref().map(|k| k.key_id.clone()),
        base_inventory,
    })
}

/// `manifests/<host>/<namespace>/<model>/<tag>` with `/` on every platform.
fn manifest_entry_name(e: &ModelEntry) -> String {
    let rel: Vec<String> = e.name.manifest_rel_path().iter().map(|c| c.to_string_lossy().into_owned()).collect();
    format!("manifests/{}", rel.join("/"))
}

/// Removes the temporary output on every early return.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
        }
    }
}

/// Removes `NAME.partial-<pid>` left by exports that were killed (their process is gone).
fn remove_stale_partials(parent: &Path, file_name: &str) {
    let prefix = format!("{file_name}.partial-");
    let Ok(entries) = fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        // Without a cheap liveness check elsewhere, only Linux cleans up after others.
        let alive = !cfg!(target_os = "linux") || pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = fs::remove_dir_all(e.path()).or_else(|_| fs::remove_file(e.path()));
        }
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let mut f = fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io_at(path))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io_at(path))
}

/// fsyncs every folder under `dir` so the renamed bundle is complete after a crash.
fn sync_tree(dir: &Path) -> Result<(), ExportError> {
    for e in fs::read_dir(dir).map_err(io_at(dir))?.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            sync_tree(&e.path())?;
        }
    }
    crate::store::sync_dir(dir).map_err(io_at(dir))
}

struct Writer<'a> {
    store: &'a Store,
    opts: &'a ExportOptions,
    progress: &'a dyn ProgressSink,
    done: u64,
    total: u64,
    written: u64,
}

impl Writer<'_> {
    /// Copies one blob from the store to `sink` in one pass, re-hashing it (SHA-256 on a second
    /// thread, so hashing overlaps the writes) and computing the zip CRC-32. Returns the CRC.
    fn copy_blob(&mut self, digest: &Digest, size: u64, model: &str, mut sink: impl FnMut(&[u8]) -> io::Result<()>) -> Result<u32, ExportError> {
        let path = self.store.blob_path(digest);
        let mut src = File::open(&path).map_err(io_at(&path))?;
        let corrupt = |problem: String| ExportError::CorruptBlob { model: model.to_string(), digest: *digest, path: path.clone(), problem };
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0u64;
        let cancel = self.opts.cancel.clone();
        let (progress, total, done0) = (self.progress, self.total, self.done);
        let item = format!("{model} {}", &digest.hex()[..12]);
        let result: Result<Digest, ExportError> = std::thread::scope(|s| {
            let (full_tx, full_rx) = sync_channel::<(Vec<u8>, usize)>(3);
            let (free_tx, free_rx) = sync_channel::<Vec<u8>>(4);
            for _ in 0..4 {
                free_tx.send(vec![0u8; CHUNK]).expect("pool");
            }
            let hasher = s.spawn(move || {
                let mut h = Sha256::new();
                for (buf, n) in full_rx {
                    h.update(&buf[..n]);
                    let _ = free_tx.send(buf);
                }
                Digest::from_hasher(h)
            });
            let mut failure = None;
            loop {
                if cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                    failure = Some(ExportError::Cancelled);
                    break;
                }
                let mut buf = free_rx.recv().expect("the hasher returns buffers");
                let n = match read_full(&mut src, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        failure = Some(ExportError::Io { path: path.clone(), source: e });
                        break;
                    }
                };
                len += n as u64;
                if len > size {
                    failure = Some(corrupt(format!("it is longer than the {size} bytes the manifest says")));
                    break;
                }
                crc.update(&buf[..n]);
                if let Err(e) = sink(&buf[..n]) {
                    failure = Some(ExportError::Io { path: PathBuf::from("output"), source: e });
                    break;
                }
                full_tx.send((buf, n)).expect("the hasher runs until the channel closes");
                progress.report(&Progress { phase: "exporting", item: item.clone(), done_bytes: done0 + len, total_bytes: total });
            }
            drop(full_tx);
            let digest = hasher.join().expect("hasher thread");
            match failure {
                Some(e) => Err(e),
                None => Ok(digest),
            }
        });
        let got = result?;
        if len != size {
            return Err(corrupt(format!("it is {len} bytes, the manifest says {size}")));
        }
        if got != *digest {
            return Err(corrupt(format!("its content hashes to {got}")));
        }
        self.done += size;
        self.written += size;
        Ok(crc.finalize())
    }
}

fn read_full(src: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// A minimal zip writer: stored entries only, zip64 fields where a size or offset needs them.
// Sizes are known up front (from the manifests); each local header's CRC is patched in after the
// data, so the output is written front to back in one pass and `cat` of the volumes is the zip.

struct CdEntry {
    name: String,
    size: u64,
    crc: u32,
    offset: u64,
}

struct ZipOut {
    w: VolumeWriter,
    entries: Vec<CdEntry>,
    dos_time: u16,
    dos_date: u16,
}

const U32_MAX: u64 = 0xFFFF_FFFF;

impl ZipOut {
    fn new(w: VolumeWriter, now: time::OffsetDateTime) -> Self {
        let now = now.to_offset(time::UtcOffset::UTC);
        let dos_time = ((now.hour() as u16) << 11) | ((now.minute() as u16) << 5) | (now.second() as u16 / 2);
        let dos_date = (((now.year() - 1980).clamp(0, 127) as u16) << 9) | ((now.month() as u16) << 5) | now.day() as u16;
        ZipOut { w, entries: Vec::new(), dos_time, dos_date }
    }

    fn begin(&mut self, name: &str, size: u64) -> io::Result<()> {
        let zip64 = size >= U32_MAX;
        let mut h = Vec::with_capacity(64 + name.len());
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        h.extend_from_slice(&(if zip64 { 45u16 } else { 20 }).to_le_bytes());
        h.extend_from_slice(&0x0800u16.to_le_bytes()); // UTF-8 names
        h.extend_from_slice(&0u16.to_le_bytes()); // stored
        h.extend_from_slice(&self.dos_time.to_le_bytes());
        h.extend_from_slice(&self.dos_date.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes()); // CRC, patched in `end`
        let small = if zip64 { U32_MAX as u32 } else { size as u32 };
        h.extend_from_slice(&small.to_le_bytes());
        h.extend_from_slice(&small.to_le_bytes());
        h.extend_from_slice(&(name.len() as u16).to_le_bytes());
        h.extend_from_slice(&(if zip64 { 20u16 } else { 0 }).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        if zip64 {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
        }
        let offset = self.w.position();
        self.w.write_all(&h)?;
        self.entries.push(CdEntry { name: name.to_string(), size, crc: 0, offset });
        Ok(())
    }

    fn end(&mut self, crc: u32) -> io::Result<()> {
        let e = self.entries.last_mut().expect("begin before end");
        e.crc = crc;
        let at = e.offset + 14;
        self.w.patch(at, &crc.to_le_bytes())
    }

    fn add_bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.begin(name, data.len() as u64)?;
        self.w.write_all(data)?;
        self.end(crc32fast::hash(data))
    }

    fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        let cd_start = self.w.position();
        let mut cd = Vec::new();
        for e in &self.entries {
            let mut extra = Vec::new();
            if e.size >= U32_MAX {
                extra.extend_from_slice(&e.size.to_le_bytes());
                extra.extend_from_slice(&e.size.to_le_bytes());
            }
            if e.offset >= U32_MAX {
                extra.extend_from_slice(&e.offset.to_le_bytes());
            }
            let zip64 = !extra.is_empty();
            cd.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            cd.extend_from_slice(&(0x0300u16 | 45).to_le_bytes()); // made by: Unix, spec 4.5
            cd.extend_from_slice(&(if zip64 { 45u16 } else { 20 }).to_le_bytes());
            cd.extend_from_slice(&0x0800u16.to_le_bytes());
            cd.extend_from_slice(&0u16.to_le_bytes());
            cd.extend_from_slice(&self.dos_time.to_le_bytes());
            cd.extend_from_slice(&self.dos_date.to_le_bytes());
            cd.extend_from_slice(&e.crc.to_le_bytes());
            let small = e.size.min(U32_MAX) as u32;
            cd.extend_from_slice(&small.to_le_bytes());
            cd.extend_from_slice(&small.to_le_bytes());
            cd.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            let extra_len = if zip64 { extra.len() as u16 + 4 } else { 0 };
            cd.extend_from_slice(&extra_len.to_le_bytes());
            cd.extend_from_slice(&0u16.to_le_bytes()); // comment
            cd.extend_from_slice(&0u16.to_le_bytes()); // disk
            cd.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            cd.extend_from_slice(&(0o100644u32 << 16).to_le_bytes());
            cd.extend_from_slice(&(e.offset.min(U32_MAX) as u32).to_le_bytes());
            cd.extend_from_slice(e.name.as_bytes());
            if zip64 {
                cd.extend_from_slice(&1u16.to_le_bytes());
                cd.extend_from_slice(&(extra.len() as u16).to_le_bytes());
                cd.extend_from_slice(&extra);
            }
        }
        let cd_size = cd.len() as u64;
        let count = self.entries.len() as u64;
        if count >= 0xFFFF || cd_size >= U32_MAX || cd_start >= U32_MAX {
            let rec_pos = cd_start + cd_size;
            cd.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            cd.extend_from_slice(&44u64.to_le_bytes());
            cd.extend_from_slice(&(0x0300u16 | 45).to_le_bytes());
            cd.extend_from_slice(&45u16.to_le_bytes());
            cd.extend_from_slice(&0u32.to_le_bytes());
            cd.extend_from_slice(&0u32.to_le_bytes());
            cd.extend_from_slice(&count.to_le_bytes());
            cd.extend_from_slice(&count.to_le_bytes());
            cd.extend_from_slice(&cd_size.to_le_bytes());
            cd.extend_from_slice(&cd_start.to_le_bytes());
            cd.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            cd.extend_from_slice(&0u32.to_le_bytes());
            cd.extend_from_slice(&rec_pos.to_le_bytes());
            cd.extend_from_slice(&1u32.to_le_bytes());
        }
        cd.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes());
        cd.extend_from_slice(&(count.min(0xFFFF) as u16).to_le_bytes());
        cd.extend_from_slice(&(count.min(0xFFFF) as u16).to_le_bytes());
        cd.extend_from_slice(&(cd_size.min(U32_MAX) as u32).to_le_bytes());
        cd.extend_from_slice(&(cd_start.min(U32_MAX) as u32).to_le_bytes());
        cd.extend_from_slice(&0u16.to_le_bytes());
        self.w.write_all(&cd)?;
        self.w.finish()
    }
}
