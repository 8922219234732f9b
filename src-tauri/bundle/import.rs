//! The bundle import pipeline: plan (every manifest parsed, every blob accounted for) → copy each blob
//! once into staging while hashing it → validate → fsync → publish blobs, then manifests.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::sign::{self, SignaturePolicy, Signer, Verdict};
use super::source::Source;
use super::ImportError;
use crate::gguf;
use crate::progress::{Progress, ProgressSink};
use crate::store::fault::FaultPlan;
use crate::store::manifest::{is_gguf_layer, Layer, Manifest};
use crate::store::{Digest, ModelName, Staging, Store, StoreError};

const CHUNK: usize = 1 << 20;

#[derive(Default)]
pub struct ImportOptions {
    /// Import under this name (only for a source holding exactly one model).
    pub name: Option<String>,
    /// Clone blobs copy-on-write (a reflink) where the filesystem can, else copy. Never a hard
    /// link: the store must not share a file that the source's owner may edit later.
    pub link: bool,
    pub cancel: Option<Arc<AtomicBool>>,
    pub fault: FaultPlan,
    /// Whether bundles must be signed by a trusted key.
    pub signature: SignaturePolicy,
    /// Folder of trusted keys; `None` means `<config>/trusted-keys` (see [`sign::config_dir`]).
    pub trust_dir: Option<PathBuf>,
    /// A vision projector (`mmproj` GGUF) imported with a single `.gguf` model as its
    /// `projector` layer.
    pub projector: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImportedModel {
    pub name: String,
    pub id: String,
    pub size: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    pub models: Vec<ImportedModel>,
    pub blobs_copied: usize,
    /// Blobs cloned copy-on-write (`link`): no bytes copied, no blocks shared with later edits.
    pub blobs_linked: usize,
    pub blobs_already_present: usize,
    pub bytes_copied: u64,
    /// Bytes cloned copy-on-write (`link`) rather than copied.
    pub bytes_linked: u64,
    /// Who signed the bundle, when it carries a valid signature by a trusted key.
    pub signer: Option<Signer>,
    /// Things the user should know that did not stop the import (e.g. an unsigned bundle under
    /// the `warn` policy).
    pub warnings: Vec<String>,
}

pub(super) struct Copier<'a> {
    pub(super) opts: &'a ImportOptions,
    pub(super) progress: &'a dyn ProgressSink,
    pub(super) done: u64,
    pub(super) total: u64,
    pub(super) report: ImportReport,
}

impl Copier<'_> {
    pub(super) fn cancelled(&self) -> bool {
        self.opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed))
    }

    fn report(&self, item: &str) {
        self.progress.report(&Progress { phase: "importing", item: item.to_string(), done_bytes: self.done, total_bytes: self.total });
    }

    /// Stages one blob: clone (reflink) or copy, hashing every byte, then checks the digest and
    /// size (when known), validates GGUF layers and fsyncs. Returns the digest and size found.
    pub(super) fn stage<'r>(
        &mut self,
        staging: &mut Staging,
        read: impl FnOnce() -> Result<Box<dyn Read + 'r>, ImportError>,
        link_from: Option<PathBuf>,
        expected: Option<&Layer>,
        media_type: &str,
        origin: &str,
    ) -> Result<(Digest, u64), ImportError> {
        self.opts.fault.step("stage blob").map_err(|e| ImportError::source(origin, e.to_string()))?;
        // Unknown digests (a bare .gguf) get a temporary staging name until hashed.
        let tmp_digest = expected.map(|l| l.digest).unwrap_or(Digest::of_bytes(origin.as_bytes()));
        let staged = staging.blob_path(&tmp_digest);
        // A reflink shares disk blocks copy-on-write: instant, and a later edit of the source
        // never reaches the store (a hard link would change the blob behind its digest).
        let linked = self.opts.link && link_from.as_ref().is_some_and(|src| reflink_copy::reflink(src, &staged).is_ok());
        if self.opts.link && !linked {
            let _ = fs::remove_file(&staged);
        }
        let limit = expected.map_or(u64::MAX, |l| l.size);
        let (digest, len) = if linked {
            let file = File::open(&staged).map_err(|e| ImportError::source(origin, e.to_string()))?;
            let hashed = self.hash_copy(Box::new(file), None, limit, origin)?;
            File::open(&staged).and_then(|f| f.sync_all()).map_err(|e| ImportError::source(origin, format!("cannot write to the store: {e}")))?;
            hashed
        } else {
            let (out, _) = staging.create_blob(&tmp_digest)?;
            self.hash_copy(read()?, Some(out), limit, origin)?
        };
        if let Some(layer) = expected {
            if len != layer.size {
                return Err(ImportError::integrity(origin, format!("is {len} bytes, the manifest says {}", layer.size)));
            }
            if digest != layer.digest {
                return Err(ImportError::integrity(origin, format!("content hashes to {digest}, the manifest says {}", layer.digest)));
            }
        }
        if is_gguf_layer(media_type) {
            gguf::read_file(&staged).map_err(|source| ImportError::Gguf { file: origin.to_string(), source })?;
        }
        let final_path = staging.blob_path(&digest);
        if final_path != staged {
            fs::rename(&staged, &final_path).map_err(|e| ImportError::source(&final_path, e.to_string()))?;
        }
        if linked {
            self.report.blobs_linked += 1;
            self.report.bytes_linked += len;
        } else {
            self.report.blobs_copied += 1;
            self.report.bytes_copied += len;
        }
        staging.add_verified(digest, final_path);
        Ok((digest, len))
    }

    /// One pass: read → SHA-256 → write (if `out`), never past `limit` bytes; fsyncs `out`.
    /// One pass: read → SHA-256 → write (if `out`), never past `limit` bytes; fsyncs `out`.
    /// Writing runs on its own thread so hashing and disk writes overlap.
    fn hash_copy(&mut self, mut reader: Box<dyn Read + '_>, out: Option<File>, limit: u64, origin: &str) -> Result<(Digest, u64), ImportError> {
        let write_err = |e: std::io::Error| ImportError::source(origin, format!("cannot write to the store: {e}"));
        let read_err = |e: std::io::Error| ImportError::source(origin, format!("cannot read (was the medium removed?): {e}"));
        std::thread::scope(|scope| {
            let (to_writer, chunks) = mpsc::sync_channel::<Vec<u8>>(4);
            let (recycle, spare) = mpsc::channel::<Vec<u8>>();
            let writer = out.map(|mut out| {
                scope.spawn(move || -> std::io::Result<()> {
                    let mut written = 0u64;
                    for chunk in chunks {
                        out.write_all(&chunk)?;
                        start_writeback(&out, written, chunk.len() as u64);
                        written += chunk.len() as u64;
                        let _ = recycle.send(chunk);
                    }
                    out.sync_all()
                })
            });
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            loop {
                if self.cancelled() {
                    return Err(ImportError::Cancelled);
                }
                let mut buf = spare.try_recv().unwrap_or_default();
                buf.resize(CHUNK, 0);
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(read_err(e)),
                };
                len += n as u64;
                if len > limit {
                    return Err(ImportError::integrity(origin, format!("is longer than the {limit} bytes the manifest says")));
                }
                hasher.update(&buf[..n]);
                self.opts.fault.step("copy chunk").map_err(read_err)?;
                buf.truncate(n);
                // A send fails only when the writer has stopped on an error; join it below to get it.
                if writer.is_some() && to_writer.send(buf).is_err() {
                    break;
                }
                self.done += n as u64;
                self.report(origin);
            }
            drop(to_writer);
            if let Some(writer) = writer {
                writer.join().expect("the writer thread does not panic").map_err(write_err)?;
            }
            Ok((Digest::from_hasher(hasher), len))
        })
    }
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

pub(super) fn import_from(store: &Store, src: &mut dyn Source, opts: &ImportOptions, progress: &dyn ProgressSink) -> Result<ImportReport, ImportError> {
    let mut models = src.models()?;
    if models.is_empty() {
        return Err(ImportError::Source { path: "bundle".into(), problem: "contains no models (manifests/ is empty)".into() });
    }
    if let Some(name) = &opts.name {
        if models.len() != 1 {
            let names: Vec<String> = models.iter().map(|m| m.name.display_shortest()).collect();
            return Err(ImportError::Source { path: "--name".into(), problem: format!("can rename only a single model; this bundle has {}: {}", names.len(), names.join(", ")) });
        }
        models[0].name = ModelName::parse(name).map_err(|e| ImportError::source("--name", e.to_string()))?;
    }

    let (signer, warnings) = check_signature(src, opts)?;
    // With an index, the blobs read from the bundle must be the ones it lists (a signed index
    // then pins every byte: manifests by their SHA-256, blobs by digest and size).
    let listed: Option<BTreeMap<Digest, u64>> = src.index().map(|(i, _)| i.blobs.iter().map(|b| (b.digest, b.size)).collect());

    // Plan: parse every manifest and account for every blob before writing anything.
    let mut needed: BTreeMap<Digest, (Layer, String)> = BTreeMap::new();
    let mut publish = Vec::new();
    for m in &models {
        let manifest = Manifest::parse(&m.manifest_bytes).map_err(|e| ImportError::source(&m.origin, e.to_string()))?;
        for layer in manifest.blobs() {
            if let Some((seen, _)) = needed.get(&layer.digest) {
                if seen.size != layer.size {
                    return Err(ImportError::source(&m.origin, format!("says blob {} is {} bytes, another manifest says {}", layer.digest, layer.size, seen.size)));
                }
            }
            needed.entry(layer.digest).or_insert_with(|| (layer.clone(), m.name.display_shortest()));
        }
        publish.push((m.name.clone(), m.manifest_bytes.clone(), manifest.total_size()));
    }
    let mut to_copy = Vec::new();
    let mut missing = Vec::new();
    let mut report = ImportReport { signer, warnings, ..ImportReport::default() };
    for (digest, (layer, model)) in &needed {
        if store.blob_size(digest) == Some(layer.size) {
            report.blobs_already_present += 1;
            continue;
        }
        if let Some(listed) = &listed {
            match listed.get(digest) {
                Some(&size) if size == layer.size => {}
                Some(&size) => return Err(ImportError::integrity(src.blob_origin(digest), format!("airlock-bundle.json lists it as {size} bytes, the manifest of {model} says {}", layer.size))),
                None if src.blob_len(digest)?.is_some() => {
                    return Err(ImportError::integrity(src.blob_origin(digest), format!("is needed by {model} but not listed in airlock-bundle.json (added after the bundle was made)")))
                }
                None => {
                    missing.push(format!("{} (for {model})", src.blob_origin(digest)));
                    continue;
                }
            }
        }
        match src.blob_len(digest)? {
            Some(len) if len == layer.size => to_copy.push(layer.clone()),
            Some(len) => return Err(ImportError::integrity(src.blob_origin(digest), format!("is {len} bytes, the manifest of {model} says {}", layer.size))),
            None => missing.push(format!("{} (for {model})", src.blob_origin(digest))),
        }
    }
    if !missing.is_empty() {
        return Err(ImportError::MissingBlobs(missing));
    }

    let total = to_copy.iter().map(|l| l.size).sum();
    let mut copier = Copier { opts, progress, done: 0, total, report };
    let mut staging = store.begin_staging()?;
    for layer in &to_copy {
        let origin = src.blob_origin(&layer.digest);
        let link_from = src.blob_file(&layer.digest);
        copier.stage(&mut staging, || src.open_blob(&layer.digest), link_from, Some(layer), &layer.media_type, &origin)?;
    }
    if copier.cancelled() {
        return Err(ImportError::Cancelled);
    }
    let manifests: Vec<(ModelName, Vec<u8>)> = publish.iter().map(|(n, b, _)| (n.clone(), b.clone())).collect();
    // A blob found present (and so not copied) may be deleted by a concurrent `rm` before the
    // manifests are published: publishing checks under the store lock, and the import copies
    // what vanished and tries again.
    let mut attempts = 0;
    loop {
        match staging.publish(&manifests, &opts.fault) {
            Err(StoreError::BlobsRemoved(gone)) if attempts < 3 => {
                attempts += 1;
                for digest in gone {
                    let (layer, model) = &needed[&digest];
                    let origin = src.blob_origin(&digest);
                    let listed_ok = listed.as_ref().is_none_or(|l| l.get(&digest) == Some(&layer.size));
                    if !listed_ok || src.blob_len(&digest)? != Some(layer.size) {
                        return Err(ImportError::MissingBlobs(vec![format!("{origin} (for {model}; it was in the store when the import began, and was removed while it ran)")]));
                    }
                    copier.total += layer.size;
                    let link_from = src.blob_file(&digest);
                    copier.stage(&mut staging, || src.open_blob(&digest), link_from, Some(layer), &layer.media_type, &origin)?;
                }
            }
            done => break done?,
        }
    }
    let mut report = copier.report;
    report.models = publish
        .into_iter()
        .map(|(name, bytes, size)| ImportedModel { name: name.display_shortest(), id: Digest::of_bytes(&bytes).hex()[..12].to_string(), size })
        .collect();
    Ok(report)
}

/// Applies the signature policy to the bundle; returns the signer (if any) and warnings.
fn check_signature(src: &mut dyn Source, opts: &ImportOptions) -> Result<(Option<Signer>, Vec<String>), ImportError> {
    let sig = src.signature()?;
    let index_bytes = src.index().map(|(_, b)| b.to_vec());
    let policy = opts.signature;
    if policy == SignaturePolicy::Off && sig.is_none() {
        return Ok((None, Vec::new()));
    }
    let dir = match &opts.trust_dir {
        Some(d) => d.clone(),
        None => match sign::config_dir() {
            Ok(c) => sign::trust_dir(&c),
            Err(e) if policy == SignaturePolicy::Off => return Ok((None, vec![e.to_string()])),
            Err(e) => return Err(ImportError::Signature(e.to_string())),
        },
    };
    let verdict = match (&index_bytes, &sig) {
        (None, Some(_)) => Verdict::Bad("the bundle has a signature but no airlock-bundle.json for it to cover (the index was removed)".into()),
        (None, None) => Verdict::Unsigned,
        (Some(index), sig) => sign::check(index, sig.as_deref(), &dir).map_err(|e| ImportError::Signature(e.to_string()))?,
    };
    let problem = match verdict {
        Verdict::Signed(s) => return Ok((Some(s), Vec::new())),
        Verdict::Unsigned => "the bundle is not signed".to_string(),
        Verdict::UnknownKey(id) => format!("the bundle is signed by key {id}, which is not a trusted key (`airlock trust add FILE.pub` trusts it)"),
        Verdict::Bad(why) if policy == SignaturePolicy::Off => return Ok((None, vec![why])),
        Verdict::Bad(why) => return Err(ImportError::Signature(why)),
    };
    match policy {
        SignaturePolicy::Off => Ok((None, Vec::new())),
        SignaturePolicy::Warn => Ok((None, vec![format!("{problem}; importing anyway (signature policy: warn)")])),
        SignaturePolicy::Require => Err(ImportError::Signature(format!("{problem}, and signatures are required; nothing was imported"))),
    }
}
