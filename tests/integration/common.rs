//! Fixtures built by code: tiny GGUF models, Ollama-layout folders, raw (and hostile) zips, and
//! helpers to run the real `airlock` binary against a temporary store.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock::gguf::writer::GgufBuilder;
use airlock::gguf::GGML_TYPE_F32;
use airlock::store::manifest::{CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, MEDIA_MODEL};
use airlock::store::{Digest, Store};

/// A tiny valid GGUF "model"; `seed` varies its metadata so different seeds give different blobs.
pub fn tiny_gguf(seed: u32) -> Vec<u8> {
    GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .kv_u32("general.file_type", 0)
        .kv_u32("llama.context_length", 2048 + seed)
        .kv_u32("llama.embedding_length", 8)
        .kv_u32("llama.block_count", 1)
        .tensor("token_embd.weight", &[8, 4], GGML_TYPE_F32)
        .build()
}

/// One model to put in a folder: its name parts and its blobs (media type, content).
pub struct FixtureModel {
    pub manifest_path: String,
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl FixtureModel {
    /// `host/namespace/model/tag` with a config blob and a tiny GGUF model layer.
    pub fn new(manifest_path: &str, seed: u32) -> Self {
        let config = format!(r#"{{"model_format":"gguf","seed":{seed}}}"#).into_bytes();
        FixtureModel {
            manifest_path: manifest_path.into(),
            blobs: vec![(CONFIG_MEDIA_TYPE.into(), config), (MEDIA_MODEL.into(), tiny_gguf(seed))],
        }
    }

    pub fn manifest_bytes(&self) -> Vec<u8> {
        let layer = |(mt, data): &(String, Vec<u8>)| format!(r#"{{"mediaType":"{mt}","digest":"{}","size":{}}}"#, Digest::of_bytes(data), data.len());
        let layers: Vec<String> = self.blobs[1..].iter().map(layer).collect();
        format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MEDIA_TYPE}","config":{},"layers":[{}]}}"#, layer(&self.blobs[0]), layers.join(",")).into_bytes()
    }

    /// (path inside a bundle, bytes) for the manifest and every blob.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        let mut out = vec![(format!("manifests/{}", self.manifest_path), self.manifest_bytes())];
        for (_, data) in &self.blobs {
            out.push((format!("blobs/{}", Digest::of_bytes(data).file_name()), data.clone()));
        }
        out
    }
}

/// Writes an Ollama `models/` layout holding `models` under `dir`.
pub fn write_folder(dir: &Path, models: &[FixtureModel]) {
    for m in models {
        for (rel, data) in m.files() {
            let path = dir.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, data).unwrap();
        }
    }
}

pub fn model_blob_path(dir: &Path, m: &FixtureModel, i: usize) -> PathBuf {
    dir.join("blobs").join(Digest::of_bytes(&m.blobs[i].1).file_name())
}

// ---------------------------------------------------------------------------------------------
// Raw zip writer: stored entries, every field under the test's control (so hostile archives can
// be made that a well-behaved zip library would refuse to write).

pub struct ZipEntry {
    pub name: String,
    pub data: Vec<u8>,
    /// Overrides the uncompressed size written in the headers.
    pub declared_size: Option<u32>,
    /// 8 = deflate (data is written as is), 0 = stored.
    pub method: u16,
    pub symlink: bool,
}

impl ZipEntry {
    pub fn file(name: &str, data: Vec<u8>) -> Self {
        ZipEntry { name: name.into(), data, declared_size: None, method: 0, symlink: false }
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *t = c;
    }
    !data.iter().fold(!0u32, |c, &b| table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8))
}

pub fn raw_zip(entries: &[ZipEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for e in entries {
        let offset = out.len() as u32;
        let crc = crc32(&e.data);
        let size = e.declared_size.unwrap_or(e.data.len() as u32);
        let header = |sig: u32, central: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central {
                h.extend((3u16 << 8 | 20).to_le_bytes()); // made by: unix
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(e.method.to_le_bytes());
            h.extend(0u32.to_le_bytes()); // time/date
            h.extend(crc.to_le_bytes());
            h.extend((e.data.len() as u32).to_le_bytes());
            h.extend(size.to_le_bytes());
            h.extend((e.name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central {
                h.extend(0u16.to_le_bytes()); // comment
                h.extend(0u16.to_le_bytes()); // disk
                h.extend(0u16.to_le_bytes()); // internal attrs
                let mode: u32 = if e.symlink { 0o120777 } else { 0o100644 };
                h.extend((mode << 16).to_le_bytes());
                h.extend(offset.to_le_bytes());
            }
            h.extend(e.name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend(&e.data);
        central.extend(header(0x0201_4b50, true));
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// A zip of `models` as a bundle, optionally under a top folder (`models/…`).
pub fn zip_of(models: &[FixtureModel], prefix: &str) -> Vec<u8> {
    let mut seen = std::collections::BTreeSet::new();
    let entries: Vec<ZipEntry> = models
        .iter()
        .flat_map(|m| m.files())
        .filter(|(n, _)| seen.insert(n.clone()))
        .map(|(n, d)| ZipEntry::file(&format!("{prefix}{n}"), d))
        .collect();
    raw_zip(&entries)
}

// ---------------------------------------------------------------------------------------------
// Running the CLI and checking the store.

pub fn airlock(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_MODELS", store)
        .output()
        .expect("run airlock")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every file under `dir` with its content hash: two equal snapshots mean nothing changed.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Digest> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, Digest>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                walk(&p, root, out);
            } else if ty.is_file() {
                out.insert(p.strip_prefix(root).unwrap().to_path_buf(), Digest::of_bytes(&fs::read(&p).unwrap_or_default()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The store invariant: every visible model's blobs are all present and intact.
pub fn assert_store_consistent(root: &Path) {
    let store = Store::at(root);
    let (_, problems) = store.list().unwrap();
    assert!(problems.is_empty(), "unreadable manifests: {problems:?}");
    let bad = store.verify(None, |_, _| {}).unwrap();
    assert!(bad.is_empty(), "store has a model with missing or corrupt blobs: {bad:?}");
}

/// Files of the store proper (manifests and blobs), ignoring empty folders, staging and the lock.
pub fn store_files(root: &Path) -> BTreeMap<PathBuf, Digest> {
    snapshot(root).into_iter().filter(|(p, _)| !p.starts_with(".airlock-staging") && !p.starts_with(airlock::store::LOCK_FILE)).collect()
}

/// The real test model, fetched by tests/fixtures/fetch-test-model.sh. Its absence is a failure:
/// CI fetches it first.
pub fn real_model() -> PathBuf {
    let path = std::env::var_os("AIRLOCK_TEST_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        dirs::home_dir().unwrap().join(".cache/airlock-test/gemma-3-270m-q4_k_m.gguf")
    });
    assert!(path.is_file(), "test model missing at {}: run tests/fixtures/fetch-test-model.sh", path.display());
    path
}
