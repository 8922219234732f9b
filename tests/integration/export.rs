//! Export, split volumes, signatures, inventories and delta bundles (issue 6): round trips into a
//! second store, every tampering case under `--require-signature`, and the failure modes
//! (refused overwrite, no partial output, named missing/short volumes).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::bundle::export::{export, ExportError, ExportOptions};
use airlock::bundle::inventory::Inventory;
use airlock::bundle::sign::{self, SignaturePolicy, SigningKey};
use airlock::bundle::volumes::volume_path;
use airlock::bundle::{import, ImportError, ImportOptions};
use airlock::gguf::writer::GgufBuilder;
use airlock::gguf::GGML_TYPE_F32;
use airlock::progress::NoProgress;
use airlock::store::Store;
use tempfile::TempDir;

/// A tiny valid GGUF whose bytes differ per `seed` (so every model has its own blobs).
fn tiny_gguf(dir: &Path, seed: &str, cols: u64) -> PathBuf {
    let path = dir.join(format!("{seed}.gguf"));
    GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .kv_str("general.name", seed)
        .kv_u32("llama.context_length", 2048)
        .tensor("token_embd.weight", &[cols, 16], GGML_TYPE_F32)
        .write_to(&path)
        .unwrap();
    path
}

fn import_opts() -> ImportOptions {
    ImportOptions::default()
}

/// A store holding the named models (each a tiny GGUF).
fn store_with(models: &[&str]) -> (TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("models"));
    for m in models {
        let gguf = tiny_gguf(dir.path(), &m.replace([':', '/'], "_"), 256);
        let opts = ImportOptions { name: Some(m.to_string()), ..import_opts() };
        import(&store, &gguf, &opts, &NoProgress).unwrap();
        fs::remove_file(gguf).unwrap();
    }
    (dir, store)
}

fn ids(store: &Store) -> Vec<(String, String)> {
    store.list().unwrap().0.iter().map(|m| (m.name.display_shortest(), m.id.hex())).collect()
}

fn assert_clean(store: &Store) {
    let problems = store.verify(None, |_, _| {}).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}

fn fixed_time() -> Option<time::OffsetDateTime> {
    Some(time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap())
}

fn names(models: &[&str]) -> Vec<String> {
    models.iter().map(|s| s.to_string()).collect()
}

/// Imports `bundle` into a fresh store; returns it.
fn import_fresh(bundle: &Path, opts: &ImportOptions) -> Result<(TempDir, Store), ImportError> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::at(dir.path().join("models"));
    import(&store, bundle, opts, &NoProgress)?;
    Ok((dir, store))
}

fn entries_starting(dir: &Path, prefix: &str) -> Vec<String> {
    fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with(prefix)).collect()
}

#[test]
fn round_trips_folder_zip_and_volumes_with_identical_ids() {
    let (_a, store) = store_with(&["alpha:1b", "team/beta:q4"]);
    let out = tempfile::tempdir().unwrap();
    let models = names(&["alpha:1b", "team/beta:q4"]);
    let opts = ExportOptions { created: fixed_time(), ..Default::default() };
    for target in ["bundle", "bundle.zip"] {
        let path = out.path().join(target);
        let report = export(&store, &models, &path, &opts, &NoProgress).unwrap();
        assert_eq!(report.models.len(), 2);
        assert_eq!(report.blobs_written, 4);
        let (_b, other) = import_fresh(&path, &import_opts()).unwrap();
        assert_eq!(ids(&other), ids(&store), "{target}");
        assert_clean(&other);
    }
    // The folder has the store layout plus the index.
    assert!(out.path().join("bundle/airlock-bundle.json").is_file());
    assert!(out.path().join("bundle/manifests/registry.ollama.ai/team/beta/q4").is_file());

    let split = ExportOptions { split_size: Some(4096), created: fixed_time(), ..Default::default() };
    let base = out.path().join("split.zip");
    let report = export(&store, &models, &base, &split, &NoProgress).unwrap();
    assert!(report.outputs.len() > 2, "{:?}", report.outputs);
    assert!(!base.exists(), "a split export writes only volumes");
    let mut joined = Vec::new();
    for (i, p) in report.outputs.iter().enumerate() {
        assert_eq!(p, &volume_path(&base, i + 1));
        let bytes = fs::read(p).unwrap();
        assert!(bytes.len() <= 4096, "{} is {} bytes", p.display(), bytes.len());
        if i + 1 < report.outputs.len() {
            assert_eq!(bytes.len(), 4096);
        }
        joined.extend(bytes);
    }
    assert_eq!(joined, fs::read(out.path().join("bundle.zip")).unwrap(), "cat of the volumes is the unsplit zip");
    // Import from the first volume, and from a folder holding only the volumes.
    let (_c, other) = import_fresh(&volume_path(&base, 1), &import_opts()).unwrap();
    assert_eq!(ids(&other), ids(&store));
    assert_clean(&other);
    let vols = out.path().join("vols");
    fs::create_dir(&vols).unwrap();
    for p in &report.outputs {
        fs::copy(p, vols.join(p.file_name().unwrap())).unwrap();
    }
    let (_d, other) = import_fresh(&vols, &import_opts()).unwrap();
    assert_eq!(ids(&other), ids(&store));
}

#[test]
fn exported_zip_is_readable_by_the_zip_crate_and_stored() {
    let (_a, store) = store_with(&["alpha:1b"]);
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("b.zip");
    export(&store, &names(&["alpha:1b"]), &path, &ExportOptions::default(), &NoProgress).unwrap();
    let mut z = zip::ZipArchive::new(fs::File::open(&path).unwrap()).unwrap();
    for i in 0..z.len() {
        let mut e = z.by_index(i).unwrap();
        assert_eq!(e.compression(), zip::CompressionMethod::Stored);
        std::io::copy(&mut e, &mut std::io::sink()).unwrap(); // checks the CRC
    }
    assert!(z.by_name("airlock-bundle.json").is_ok());
}

#[test]
fn hand_made_ollama_folder_without_index_imports() {
    let (_a, store) = store_with(&["alpha:1b"]);
    let out = tempfile::tempdir().unwrap();
    let folder = out.path().join("ollama").join("models");
    fs::create_dir_all(folder.join("blobs")).unwrap();
    let entry = store.resolve("alpha:1b").unwrap();
    let mdir = folder.join("manifests/registry.ollama.ai/library/alpha");
    fs::create_dir_all(&mdir).unwrap();
    fs::write(mdir.join("1b"), &entry.manifest_bytes).unwrap();
    for l in entry.manifest.blobs() {
        fs::copy(store.blob_path(&l.digest), folder.join("blobs").join(l.digest.file_name())).unwrap();
    }
    let (_b, other) = import_fresh(&out.path().join("ollama"), &import_opts()).unwrap();
    assert_eq!(ids(&other), ids(&store));
    // Unsigned by nature: refused when signatures are required.
    let trust = tempfile::tempdir().unwrap();
    let strict = ImportOptions { signature: SignaturePolicy::Require, trust_dir: Some(trust.path().into()), ..import_opts() };
    let err = import_fresh(&folder, &strict).unwrap_err().to_string();
    assert!(err.contains("not signed"), "{err}");
}

struct Signed {
    _dirs: Vec<TempDir>,
    bundle: PathBuf,
    trust: PathBuf,
    key_id: String,
}

/// A signed folder bundle of one model and a trust dir holding the signing key.
fn signed_bundle() -> (Signed, TempDir, Store) {
    let (a, store) = store_with(&["alpha:1b"]);
    let keys = tempfile::tempdir().unwrap();
    let prefix = keys.path().join("me");
    let key_id = sign::keygen(&prefix, None).unwrap();
    let trust_root = tempfile::tempdir().unwrap();
    let trust = sign::trust_dir(trust_root.path());
    assert_eq!(sign::trust_add(&trust, &keys.path().join("me.pub")).unwrap(), key_id);
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("signed");
    let key = SigningKey::load(&keys.path().join("me.key"), None).unwrap();
    let report = export(&store, &names(&["alpha:1b"]), &bundle, &ExportOptions { sign: Some(key), ..Default::default() }, &NoProgress).unwrap();
    assert_eq!(report.signed_by.as_deref(), Some(key_id.as_str()));
    assert!(bundle.join("airlock-bundle.json.minisig").is_file());
    (Signed { _dirs: vec![keys, trust_root, out], bundle, trust, key_id }, a, store)
}

fn require(trust: &Path) -> ImportOptions {
    ImportOptions { signature: SignaturePolicy::Require, trust_dir: Some(trust.to_path_buf()), ..import_opts() }
}

/// A fresh copy of the signed bundle to tamper with.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn signed_bundle_imports_and_names_its_signer() {
    let (s, _a, store) = signed_bundle();
    let dir = tempfile::tempdir().unwrap();
    let other = Store::at(dir.path());
    let report = import(&other, &s.bundle, &require(&s.trust), &NoProgress).unwrap();
    let signer = report.signer.expect("signer reported");
    assert_eq!(signer.key_id, s.key_id);
    assert!(signer.trusted_comment.contains("tool:airlock "), "{}", signer.trusted_comment);
    assert!(signer.trusted_comment.contains("created:"), "{}", signer.trusted_comment);
    assert_eq!(ids(&other), ids(&store));
}

#[test]
fn every_tampering_case_is_refused_when_signatures_are_required() {
    let (s, _a, store) = signed_bundle();
    let entry = store.resolve("alpha:1b").unwrap();
    let gguf = entry.manifest.layers[0].digest;
    let work = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut tampered = |change: &dyn Fn(&Path)| {
        n += 1;
        let copy = work.path().join(format!("t{n}"));
        copy_dir(&s.bundle, &copy);
        change(&copy);
        import_fresh(&copy, &require(&s.trust)).map(|_| ()).unwrap_err().to_string()
    };
    let index_edited = tampered(&|b| {
        let p = b.join("airlock-bundle.json");
        let text = fs::read_to_string(&p).unwrap().replace("\"created\": \"", "\"created\": \"1");
        fs::write(p, text).unwrap();
    });
    assert!(index_edited.contains("changed after it was signed"), "{index_edited}");

    let manifest_edited = tampered(&|b| {
        let p = b.join("manifests/registry.ollama.ai/library/alpha/1b");
        let mut bytes = fs::read(&p).unwrap();
        bytes.push(b' ');
        fs::write(p, bytes).unwrap();
    });
    assert!(manifest_edited.contains("does not match the digest in airlock-bundle.json"), "{manifest_edited}");

    let blob_edited = tampered(&|b| {
        let p = b.join("blobs").join(gguf.file_name());
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(p, bytes).unwrap();
    });
    assert!(blob_edited.contains("hashes to"), "{blob_edited}");

    let unsigned = tampered(&|b| fs::remove_file(b.join("airlock-bundle.json.minisig")).unwrap());
    assert!(unsigned.contains("not signed"), "{unsigned}");

    let index_removed = tampered(&|b| fs::remove_file(b.join("airlock-bundle.json")).unwrap());
    assert!(index_removed.contains("no airlock-bundle.json"), "{index_removed}");

    // An unknown key: a trust dir without the signer's key.
    let empty = tempfile::tempdir().unwrap();
    let err = import_fresh(&s.bundle, &require(empty.path())).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains(&s.key_id) && err.contains("not a trusted key"), "{err}");

    // Under `warn`, an unknown key imports with a warning.
    let warn = ImportOptions { signature: SignaturePolicy::Warn, trust_dir: Some(empty.path().into()), ..import_opts() };
    let dir = tempfile::tempdir().unwrap();
    let report = import(&Store::at(dir.path()), &s.bundle, &warn, &NoProgress).unwrap();
    assert!(report.signer.is_none());
    assert!(report.warnings.iter().any(|w| w.contains("not a trusted key")), "{:?}", report.warnings);
}

#[test]
fn blob_not_listed_in_the_index_is_refused() {
    let (_a, store) = store_with(&["alpha:1b"]);
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("b");
    export(&store, &names(&["alpha:1b"]), &bundle, &ExportOptions::default(), &NoProgress).unwrap();
    let p = bundle.join("airlock-bundle.json");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    index["blobs"].as_array_mut().unwrap().remove(0);
    fs::write(&p, serde_json::to_vec(&index).unwrap()).unwrap();
    let err = import_fresh(&bundle, &import_opts()).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("not listed in airlock-bundle.json"), "{err}");
}

#[test]
fn delta_bundle_imports_onto_the_full_store_and_names_every_missing_blob_elsewhere() {
    let (_a, store) = store_with(&["alpha:1b", "beta:2b"]);
    // The air-gapped side already has alpha.
    let out = tempfile::tempdir().unwrap();
    let alpha_only = out.path().join("alpha");
    export(&store, &names(&["alpha:1b"]), &alpha_only, &ExportOptions::default(), &NoProgress).unwrap();
    let (_c, gapped) = import_fresh(&alpha_only, &import_opts()).unwrap();
    let inv_path = out.path().join("inventory.json");
    Inventory::of_store(&gapped).unwrap().write(&inv_path).unwrap();
    let (_inv, inv_digest) = Inventory::read(&inv_path).unwrap();

    let delta = out.path().join("delta.zip");
    let opts = ExportOptions { exclude_from: Some(inv_path), ..Default::default() };
    let report = export(&store, &names(&["alpha:1b", "beta:2b"]), &delta, &opts, &NoProgress).unwrap();
    assert_eq!(report.blobs_excluded, 2);
    assert_eq!(report.blobs_written, 2);
    assert_eq!(report.base_inventory, Some(inv_digest));
    let mut z = zip::ZipArchive::new(fs::File::open(&delta).unwrap()).unwrap();
    let index: serde_json::Value = serde_json::from_reader(z.by_name("airlock-bundle.json").unwrap()).unwrap();
    assert_eq!(index["base_inventory"], serde_json::json!(inv_digest.to_string()));
    assert_eq!(index["models"].as_array().unwrap().len(), 2);

    let r = import(&gapped, &delta, &import_opts(), &NoProgress).unwrap();
    assert_eq!(r.blobs_already_present, 2);
    assert_eq!(ids(&gapped), ids(&store));
    assert_clean(&gapped);

    let err = import_fresh(&delta, &import_opts()).map(|_| ()).unwrap_err();
    let alpha = store.resolve("alpha:1b").unwrap();
    match &err {
        ImportError::MissingBlobs(list) => {
            assert_eq!(list.len(), 2, "{list:?}");
            for l in alpha.manifest.blobs() {
                assert!(list.iter().any(|m| m.contains(&l.digest.hex())), "{} not named in {list:?}", l.digest);
            }
        }
        other => panic!("expected MissingBlobs, got {other}"),
    }
}

#[test]
fn missing_and_short_volumes_are_named() {
    let (_a, store) = store_with(&["alpha:1b"]);
    let out = tempfile::tempdir().unwrap();
    let base = out.path().join("x.zip");
    let report = export(&store, &names(&["alpha:1b"]), &base, &ExportOptions { split_size: Some(4096), ..Default::default() }, &NoProgress).unwrap();
    let n = report.outputs.len();
    assert!(n >= 4, "{n} volumes");
    let setup = |f: &dyn Fn(&Path)| {
        let d = tempfile::tempdir().unwrap();
        for p in &report.outputs {
            fs::copy(p, d.path().join(p.file_name().unwrap())).unwrap();
        }
        f(d.path());
        let err = import_fresh(&d.path().join("x.zip.001"), &import_opts()).map(|_| ()).unwrap_err().to_string();
        err
    };
    let err = setup(&|d| fs::remove_file(d.join("x.zip.003")).unwrap());
    assert!(err.contains("volume x.zip.003 is missing"), "{err}");
    let err = setup(&|d| {
        let p = d.join("x.zip.002");
        let bytes = fs::read(&p).unwrap();
        fs::write(&p, &bytes[..1000]).unwrap();
    });
    assert!(err.contains("x.zip.002") && err.contains("is 1000 bytes, expected 4096"), "{err}");
    let last = format!("x.zip.{n:03}");
    let err = setup(&|d| fs::remove_file(d.join(&last)).unwrap());
    assert!(err.contains(&format!("volume {last} is missing")), "{err}");
    let err = setup(&|d| {
        let p = d.join(&last);
        let bytes = fs::read(&p).unwrap();
        fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    });
    assert!(err.contains(&format!("the last volume {last} is incomplete")), "{err}");
    // Pointing at a later volume says which one to use.
    let err = import_fresh(&volume_path(&base, 2), &import_opts()).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("import the first volume"), "{err}");
}

#[test]
fn refuses_to_overwrite() {
    let (_a, store) = store_with(&["alpha:1b"]);
    let out = tempfile::tempdir().unwrap();
    for target in ["b.zip", "folder"] {
        let path = out.path().join(target);
        export(&store, &names(&["alpha:1b"]), &path, &ExportOptions::default(), &NoProgress).unwrap();
        let err = export(&store, &names(&["alpha:1b"]), &path, &ExportOptions::default(), &NoProgress).unwrap_err();
        assert!(matches!(err, ExportError::Exists(_)), "{err}");
    }
    let split = ExportOptions { split_size: Some(4096), ..Default::default() };
    let base = out.path().join("s.zip");
    export(&store, &names(&["alpha:1b"]), &base, &split, &NoProgress).unwrap();
    let err = export(&store, &names(&["alpha:1b"]), &base, &split, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("s.zip.001 already exists"), "{err}");
}

#[test]
fn corrupt_source_blob_aborts_and_leaves_no_partial_output() {
    let (_a, store) = store_with(&["alpha:1b"]);
    let entry = store.resolve("alpha:1b").unwrap();
    let digest = entry.manifest.layers[0].digest;
    let blob = store.blob_path(&digest);
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&blob, bytes).unwrap();
    let out = tempfile::tempdir().unwrap();
    for (target, split) in [("b.zip", None), ("folder", None), ("s.zip", Some(4096))] {
        let path = out.path().join(target);
        let opts = ExportOptions { split_size: split, ..Default::default() };
        let err = export(&store, &names(&["alpha:1b"]), &path, &opts, &NoProgress).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ExportError::CorruptBlob { .. }), "{msg}");
        assert!(msg.contains(&digest.to_string()) && msg.contains("airlock verify"), "{msg}");
        assert_eq!(entries_starting(out.path(), target), Vec::<String>::new(), "leftovers for {target}");
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI: keygen (password-protected), trust, signed export, --require-signature, inventory.

fn airlock(models: &Path, config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_MODELS", models)
        .env("AIRLOCK_CONFIG", config)
        .env("AIRLOCK_KEY_PASSWORD", "correct horse")
        .env_remove("OLLAMA_MODELS")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn cli_keygen_trust_signed_export_and_required_signature() {
    let (a, store) = store_with(&["alpha:1b"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let config = w.join("config");
    let prefix = w.join("signer");
    let (ok, out, err) = airlock(store.root(), &config, &["keygen", "--out", prefix.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let key = fs::read_to_string(w.join("signer.key")).unwrap();
    assert!(key.starts_with("untrusted comment:"), "minisign format");
    let (ok, _, _) = airlock(store.root(), &config, &["keygen", "--out", prefix.to_str().unwrap()]);
    assert!(!ok, "keygen must not overwrite");

    let bundle = w.join("b.zip");
    let (ok, out, err) = airlock(store.root(), &config, &["export", "alpha:1b", "--out", bundle.to_str().unwrap(), "--sign", w.join("signer.key").to_str().unwrap()]);
    assert!(ok, "{out}{err}");

    let target = w.join("target-store");
    let (ok, _, err) = airlock(&target, &config, &["import", bundle.to_str().unwrap(), "--require-signature"]);
    assert!(!ok);
    assert!(err.contains("not a trusted key"), "{err}");

    let (ok, out, err) = airlock(&target, &config, &["trust", "add", w.join("signer.pub").to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let id = out.trim().rsplit(' ').next().unwrap().to_string();
    let (ok, out, _) = airlock(&target, &config, &["trust", "list"]);
    assert!(ok && out.contains(&id), "{out}");

    let (ok, out, err) = airlock(&target, &config, &["import", bundle.to_str().unwrap(), "--require-signature"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&format!("signed by trusted key {id}")), "{out}");

    let inv = w.join("inv.json");
    let (ok, out, err) = airlock(&target, &config, &["inventory", "--out", inv.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(Inventory::read(&inv).unwrap().0.models.iter().any(|m| m.name == "alpha:1b"));

    let (ok, _, _) = airlock(&target, &config, &["trust", "remove", &id]);
    assert!(ok);
    let (ok, out, _) = airlock(&target, &config, &["trust", "list", "--json"]);
    assert!(ok && !out.contains(&id), "{out}");
    drop(a);
}

/// An encrypted `--sign` key with no AIRLOCK_KEY_PASSWORD and no terminal: a clear error at once
/// (never minisign's prompt, which would wait for a terminal nobody types into), nothing
/// written; with the password the same export is signed.
#[test]
fn cli_encrypted_key_without_password_and_no_terminal_is_a_clear_error() {
    let (a, store) = store_with(&["alpha:1b"]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let config = w.join("config");
    let (ok, out, err) = airlock(store.root(), &config, &["keygen", "--out", w.join("signer").to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let bundle = w.join("b.zip");
    let key = w.join("signer.key");
    let args = ["export", "alpha:1b", "--out", bundle.to_str().unwrap(), "--sign", key.to_str().unwrap()];
    let run = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_MODELS", store.root())
        .env("AIRLOCK_CONFIG", &config)
        .env_remove("AIRLOCK_KEY_PASSWORD")
        .env_remove("OLLAMA_MODELS")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(err.contains("is encrypted") && err.contains("AIRLOCK_KEY_PASSWORD"), "says what to do: {err}");
    assert!(!bundle.exists(), "nothing written");
    let (ok, out, err) = airlock(store.root(), &config, &args);
    assert!(ok, "{out}{err}");
    assert!(bundle.exists());
    drop(a);
}

#[test]
fn cli_split_export_and_fat32_flag() {
    let (_a, store) = store_with(&["alpha:1b"]);
    let work = tempfile::tempdir().unwrap();
    let base = work.path().join("v.zip");
    let (ok, out, err) = airlock(store.root(), work.path(), &["export", "alpha:1b", "--out", base.to_str().unwrap(), "--split-size", "4K"]);
    assert!(ok, "{out}{err}");
    assert!(volume_path(&base, 2).is_file());
    let (ok, out, err) = airlock(&work.path().join("s2"), work.path(), &["import", volume_path(&base, 1).to_str().unwrap()]);
    assert!(ok && out.contains("imported alpha:1b"), "{out}{err}");
    // --fat32: one volume for a tiny model, named .001.
    let fat = work.path().join("f.zip");
    let (ok, out, err) = airlock(store.root(), work.path(), &["export", "alpha:1b", "--out", fat.to_str().unwrap(), "--fat32"]);
    assert!(ok, "{out}{err}");
    assert!(volume_path(&fat, 1).is_file() && !volume_path(&fat, 2).exists());
}

#[test]
#[cfg(target_os = "linux")]
fn leftovers_of_a_killed_export_are_removed_by_the_next_one() {
    let (_a, store) = store_with(&["alpha:1b"]);
    let out = tempfile::tempdir().unwrap();
    // A pid that cannot be running (above the kernel's pid_max).
    let stale = out.path().join("b.zip.partial-4194305");
    fs::create_dir(&stale).unwrap();
    fs::write(stale.join("b.zip"), b"half a zip").unwrap();
    export(&store, &names(&["alpha:1b"]), &out.path().join("b.zip"), &ExportOptions::default(), &NoProgress).unwrap();
    assert_eq!(entries_starting(out.path(), "b.zip"), vec!["b.zip".to_string()]);
}
