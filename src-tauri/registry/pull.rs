//! `airlock pull`: manifest → signature policy → each missing blob streamed into
//! `<store>/.airlock-pull/<hex>.partial` while hashed (resuming a cut download with `Range`) →
//! verified, GGUF-validated, fsynced → moved into the store's staging → published with the
//! manifest last by [`Staging::publish`]. A refused or cut pull publishes nothing; a cut one
//! keeps its partial blob for the next pull to resume.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::client::{Client, ClientOptions};
use super::{signature, Reference, RegistryError, Status};
use crate::bundle::sign::{SignaturePolicy, Signer};
use crate::gguf;
use crate::store::fault::FaultPlan;
use crate::store::manifest::{is_gguf_layer, Layer, Manifest};
use crate::store::{Digest, Store};

/// Beside `blobs/` (never inside it: Ollama prunes unknown files there), on the same filesystem.
pub const PARTIAL_DIR: &str = ".airlock-pull";
const CHUNK: usize = 1 << 20;

#[derive(Default)]
pub struct PullOptions {
    pub client: ClientOptions,
    pub signature: SignaturePolicy,
    /// Folder of trusted keys; `None` means `<config>/trusted-keys`.
    pub trust_dir: Option<PathBuf>,
    pub cancel: Option<Arc<AtomicBool>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PullReport {
    pub name: String,
    pub reference: String,
    /// The model ID: SHA-256 of the manifest bytes.
    pub id: String,
    pub size: u64,
    pub blobs_downloaded: usize,
    pub blobs_already_present: usize,
    pub bytes_downloaded: u64,
    /// Bytes of interrupted downloads that were kept and resumed rather than fetched again.
    pub bytes_resumed: u64,
    pub signer: Option<Signer>,
    pub warnings: Vec<String>,
}

/// Pulls `reference` into `store`. On any error no manifest is published.
pub fn pull(store: &Store, reference: &Reference, opts: &PullOptions, progress: &dyn Fn(&Status)) -> Result<PullReport, RegistryError> {
    let client = Client::new(&reference.registry, &opts.client)?;
    let repo = &reference.repository;
    progress(&Status::phase("pulling manifest"));
    let manifest_bytes = client
        .manifest(repo, &reference.tag)?
        .ok_or_else(|| RegistryError::NotFound(format!("{} is not in the registry (no such repository or tag); `airlock push` puts it there", reference.display())))?;
    let manifest = Manifest::parse(&manifest_bytes).map_err(|e| RegistryError::Integrity(format!("{}: the registry's manifest is not a model manifest: {e}", reference.display())))?;

    let sig = match opts.signature {
        SignaturePolicy::Off => signature::fetch(&client, repo, &manifest_bytes).unwrap_or(None),
        _ => signature::fetch(&client, repo, &manifest_bytes)?,
    };
    let (signer, warnings) = signature::check(&manifest_bytes, sig.as_deref(), opts.signature, opts.trust_dir.as_deref())?;

    let mut report = PullReport {
        name: reference.local.display_shortest(),
        reference: reference.display(),
        id: Digest::of_bytes(&manifest_bytes).hex(),
        size: manifest.total_size(),
        signer,
        warnings,
        ..PullReport::default()
    };
    // Announce every blob first, as Ollama does, so a client knows the total at once.
    let mut seen = BTreeSet::new();
    for layer in manifest.blobs().filter(|l| seen.insert(l.digest)) {
        let present = store.blob_size(&layer.digest) == Some(layer.size);
        progress(&Status::blob("pulling", &layer.digest, layer.size, if present { layer.size } else { 0 }));
    }
    let partial_dir = store.root().join(PARTIAL_DIR);
    // Refused up front when the blobs still to fetch do not fit, and held while they are fetched.
    let _space = store.reserve_space(bytes_to_fetch(store, &manifest, &partial_dir)).map_err(|e| RegistryError::NoSpace(format!("cannot pull {}: {e}", reference.display())))?;
    let mut staging = store.begin_staging()?;
    seen.clear();
    for layer in manifest.blobs() {
        if !seen.insert(layer.digest) {
            continue;
        }
        if store.blob_size(&layer.digest) == Some(layer.size) {
            report.blobs_already_present += 1;
            continue;
        }
        fs::create_dir_all(&partial_dir).map_err(|e| RegistryError::Store(crate::store::StoreError::Io { path: partial_dir.clone(), source: e }))?;
        let partial = download(&client, repo, layer, &partial_dir, opts, &mut report, progress)?;
        let staged = staging.blob_path(&layer.digest);
        fs::rename(&partial, &staged).map_err(|e| RegistryError::Store(crate::store::StoreError::Io { path: staged.clone(), source: e }))?;
        if is_gguf_layer(&layer.media_type) {
            gguf::read_file(&staged).map_err(|source| RegistryError::Gguf { file: format!("blob {} from {}", layer.digest, reference.display()), source })?;
        }
        staging.add_verified(layer.digest, staged);
        report.blobs_downloaded += 1;
    }
    if cancelled(opts) {
        return Err(RegistryError::Cancelled);
    }
    progress(&Status::phase("verifying sha256 digest"));
    progress(&Status::phase("writing manifest"));
    staging.publish(&[(reference.local.clone(), manifest_bytes)], &FaultPlan::none())?;
    let _ = fs::remove_dir(&partial_dir);
    progress(&Status::phase("success"));
    Ok(report)
}

/// The bytes the store still lacks of `manifest`'s blobs: not counting blobs it has, nor what
/// interrupted pulls already fetched.
fn bytes_to_fetch(store: &Store, manifest: &Manifest, partial_dir: &Path) -> u64 {
    let mut seen = BTreeSet::new();
    manifest
        .blobs()
        .filter(|l| seen.insert(l.digest) && store.blob_size(&l.digest) != Some(l.size))
        .map(|l| {
            let partial = fs::metadata(partial_path(partial_dir, &l.digest)).map_or(0, |m| m.len());
            l.size.saturating_sub(partial)
        })
        .sum()
}

/// Where an interrupted download of `digest` is kept for the next pull to resume.
fn partial_path(partial_dir: &Path, digest: &Digest) -> PathBuf {
    partial_dir.join(format!("{}.partial", digest.hex()))
}

fn cancelled(opts: &PullOptions) -> bool {
    opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
}

/// Downloads one blob into `<partial_dir>/<hex>.partial`, resuming what an earlier pull left,
/// hashing every byte. Returns the verified, fsynced file. A blob whose content does not match
/// its digest is deleted and the pull refused, naming the digest.
fn download(client: &Client, repo: &str, layer: &Layer, partial_dir: &Path, opts: &PullOptions, report: &mut PullReport, progress: &dyn Fn(&Status)) -> Result<PathBuf, RegistryError> {
    let digest = layer.digest;
    let path = partial_path(partial_dir, &digest);
    let io_err = |e: std::io::Error| RegistryError::Store(crate::store::StoreError::Io { path: path.clone(), source: e });
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_err)?;
    lock_exclusive(&file).map_err(|_| RegistryError::Config(format!("another pull is downloading blob {digest} into this store; wait for it to finish")))?;

    // Hash what an interrupted pull left, then ask only for the rest.
    let mut hasher = Sha256::new();
    let mut have = file.metadata().map_err(io_err)?.len();
    if have > layer.size {
        file.set_len(0).map_err(io_err)?;
        have = 0;
    }
    if have > 0 {
        let mut buf = vec![0u8; CHUNK];
        let mut left = have;
        let mut reader = (&file).take(have);
        while left > 0 {
            let n = reader.read(&mut buf).map_err(io_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
    }
    if have < layer.size {
        let (mut body, start) = client.open_blob(repo, &digest, have)?;
        if start != have {
            // The registry ignored the range: start over.
            hasher = Sha256::new();
            file.set_len(0).map_err(io_err)?;
            have = 0;
        }
        report.bytes_resumed += have;
        file.seek(SeekFrom::Start(have)).map_err(io_err)?;
        progress(&Status::blob("pulling", &digest, layer.size, have));
        let mut buf = vec![0u8; CHUNK];
        let mut last_report = have;
        loop {
            if cancelled(opts) {
                return Err(RegistryError::Cancelled);
            }
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = file.sync_all();
                    let why = if e.kind() == std::io::ErrorKind::TimedOut || e.to_string().contains("timeout") {
                        format!("the registry sent nothing for {} s (it stalled) at {have} of {} bytes", client.read_timeout().as_secs(), layer.size)
                    } else {
                        format!("the download broke off at {have} of {} bytes ({e})", layer.size)
                    };
                    return Err(RegistryError::transport(&format!("blob {digest}"), format!("{why}; what arrived is kept, pull again to resume")));
                }
            };
            if have + n as u64 > layer.size {
                drop(file);
                let _ = fs::remove_file(&path);
                return Err(RegistryError::Integrity(format!("blob {digest}: the registry sent more than the {} bytes the manifest says; the registry's copy is damaged — push the model again", layer.size)));
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io_err)?;
            start_writeback(&file, have, n as u64);
            have += n as u64;
            report.bytes_downloaded += n as u64;
            if have - last_report >= 4 << 20 || have == layer.size {
                progress(&Status::blob("pulling", &digest, layer.size, have));
                last_report = have;
            }
        }
    } else {
        progress(&Status::blob("pulling", &digest, layer.size, have));
    }
    if have != layer.size {
        let _ = file.sync_all();
        return Err(RegistryError::transport(&format!("blob {digest}"), format!("the registry sent {have} of {} bytes; pull again to resume", layer.size)));
    }
    let actual = Digest::from_hasher(hasher);
    if actual != digest {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(RegistryError::Integrity(format!(
            "blob {digest}: the content the registry sent hashes to {actual}; the registry's copy is damaged — nothing was pulled; push the model to the registry again"
        )));
    }
    file.sync_all().map_err(io_err)?;
    Ok(path)
}

/// Starts writing a just-written range to disk now, so the final fsync has little left to wait
/// for (Linux; elsewhere the fsync does all of it).
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor and an in-range offset; the call only schedules I/O.
        unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// An advisory lock so two pulls into one store never write the same partial blob.
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; the lock is released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
    Ok(())
}
