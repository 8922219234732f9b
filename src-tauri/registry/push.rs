//! `airlock push`: every blob of a model the repository lacks is mounted from another repository
//! of the registry that has it (when one is known) or uploaded; then the store's manifest bytes are
//! stored under the tag, byte for byte, so the model ID is the same in every store. With a signing
//! key, the signature goes under `sha256-<id>.sig` first (see [`super::signature`]).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::client::{Client, ClientOptions, Mount};
use super::{signature, Reference, RegistryError, Status};
use crate::bundle::sign::SigningKey;
use crate::store::manifest::Layer;
use crate::store::{Digest, Store, StoreError};

#[derive(Default)]
pub struct PushOptions {
    pub client: ClientOptions,
    /// Sign the manifest with this key and push the signature beside it.
    pub sign: Option<SigningKey>,
    /// Checked between blobs: a cancelled push stores no manifest (uploaded blobs stay, unreferenced).
    pub cancel: Option<Arc<AtomicBool>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PushReport {
    pub name: String,
    pub reference: String,
    pub id: String,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_already_present: usize,
    pub bytes_uploaded: u64,
    pub signed_by: Option<String>,
}

/// Pushes the local model `model` to `dest`.
pub fn push(store: &Store, model: &str, dest: &Reference, opts: &PushOptions, progress: &dyn Fn(&Status)) -> Result<PushReport, RegistryError> {
    let entry = store.resolve(model)?;
    let client = Client::new(&dest.registry, &opts.client)?;
    let repo = &dest.repository;
    progress(&Status::phase("retrieving manifest"));
    let mut report = PushReport { name: entry.name.display_shortest(), reference: dest.display(), id: entry.id.hex(), ..PushReport::default() };
    let mut seen = BTreeSet::new();
    for layer in entry.manifest.blobs().filter(|l| seen.insert(l.digest)) {
        progress(&Status::blob("pushing", &layer.digest, layer.size, 0));
    }
    seen.clear();
    for layer in entry.manifest.blobs() {
        if !seen.insert(layer.digest) {
            continue;
        }
        let path = store.blob_path(&layer.digest);
        if store.blob_size(&layer.digest) != Some(layer.size) {
            return Err(RegistryError::Store(StoreError::Io {
                path: path.clone(),
                source: std::io::Error::other(format!("blob {} of {} is missing or not {} bytes; `airlock verify` checks the store", layer.digest, entry.name, layer.size)),
            }));
        }
        if opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(RegistryError::Cancelled);
        }
        push_blob(&client, store, repo, layer, path, &mut report, progress)?;
    }
    if let Some(key) = &opts.sign {
        let (config, sig, manifest) = signature::artefact(&entry.manifest_bytes, key, &dest.display())?;
        for bytes in [&config, &sig] {
            upload_bytes(&client, repo, bytes)?;
        }
        client.put_manifest(repo, &signature::signature_tag(&entry.id), &manifest)?;
        report.signed_by = Some(key.key_id.clone());
    }
    progress(&Status::phase("pushing manifest"));
    client.put_manifest(repo, &dest.tag, &entry.manifest_bytes)?;
    progress(&Status::phase("success"));
    Ok(report)
}

fn push_blob(client: &Client, store: &Store, repo: &str, layer: &Layer, path: PathBuf, report: &mut PushReport, progress: &dyn Fn(&Status)) -> Result<(), RegistryError> {
    let digest = layer.digest;
    if client.blob_size(repo, &digest)? == Some(layer.size) {
        report.blobs_already_present += 1;
        progress(&Status::blob("pushing", &digest, layer.size, layer.size));
        return Ok(());
    }
    // Another repository of this registry may hold it already (a model sharing its weights).
    let mut location = None;
    for from in mount_candidates(store, repo, &digest) {
        match client.mount(repo, &digest, &from)? {
            Mount::Mounted => {
                report.blobs_mounted += 1;
                progress(&Status::blob("pushing", &digest, layer.size, layer.size));
                return Ok(());
            }
            Mount::Upload(loc) => {
                location = Some(loc);
                break;
            }
        }
    }
    let location = match location {
        Some(l) => l,
        None => client.start_upload(repo)?,
    };
    let sent = AtomicU64::new(0);
    let last = AtomicU64::new(0);
    let on_sent = |n: u64| {
        let now = sent.fetch_add(n, Ordering::Relaxed) + n;
        if now - last.load(Ordering::Relaxed) >= 4 << 20 || now == layer.size {
            last.store(now, Ordering::Relaxed);
            progress(&Status::blob("pushing", &digest, layer.size, now.min(layer.size)));
        }
    };
    client.upload(location, &digest, &path, layer.size, &on_sent)?;
    progress(&Status::blob("pushing", &digest, layer.size, layer.size));
    report.blobs_uploaded += 1;
    report.bytes_uploaded += layer.size;
    Ok(())
}

/// Repositories that may hold `digest`: those of the other local models using it (their
/// `namespace/model`, as a push of them would have named it).
fn mount_candidates(store: &Store, repo: &str, digest: &Digest) -> Vec<String> {
    let Ok((models, _)) = store.list() else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    for m in models {
        let candidate = format!("{}/{}", m.name.namespace, m.name.model).to_ascii_lowercase();
        if candidate != repo && !out.contains(&candidate) && m.manifest.blobs().any(|l| l.digest == *digest) {
            out.push(candidate);
        }
    }
    out.truncate(3);
    out
}

/// Uploads a small in-memory blob unless the repository has it.
fn upload_bytes(client: &Client, repo: &str, bytes: &[u8]) -> Result<(), RegistryError> {
    let digest = Digest::of_bytes(bytes);
    if client.blob_size(repo, &digest)? == Some(bytes.len() as u64) {
        return Ok(());
    }
    let location = client.start_upload(repo)?;
    client.upload_bytes(location, &digest, bytes)
}
