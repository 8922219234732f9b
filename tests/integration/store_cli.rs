//! `airlock list / show / rm / verify / prune` against real stores.

use std::fs;

use airlock::store::manifest::MEDIA_TENSOR;
use tempfile::TempDir;

use crate::common::*;

fn store_with(models: &[FixtureModel]) -> TempDir {
    let dir = TempDir::new().unwrap();
    write_folder(dir.path(), models);
    dir
}

#[test]
fn list_prints_like_ollama_and_as_json() {
    let store = store_with(&[FixtureModel::new("registry.ollama.ai/library/alpha/latest", 1), FixtureModel::new("example.com/team/beta/v2", 2)]);
    let out = airlock(store.path(), &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("ID") && lines[0].contains("SIZE") && lines[0].ends_with("MODIFIED"), "{text}");
    assert!(lines[1].starts_with("alpha:latest "), "{text}");
    assert!(lines[2].starts_with("example.com/team/beta:v2 "), "{text}");
    assert!(lines[1].contains(" B ") && lines[1].contains("ago"), "{text}");
    let json: serde_json::Value = serde_json::from_slice(&airlock(store.path(), &["list", "--json"]).stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["id"].as_str().unwrap().len(), 64);
    assert_eq!(lines[1].split_whitespace().nth(1).unwrap(), &json[0]["id"].as_str().unwrap()[..12], "{text}");
}

#[test]
fn show_reports_metadata_and_mlx_models_as_not_runnable() {
    let mut mlx = FixtureModel::new("registry.ollama.ai/library/mlx/latest", 2);
    mlx.blobs[1].0 = MEDIA_TENSOR.into();
    let store = store_with(&[FixtureModel::new("registry.ollama.ai/library/alpha/latest", 1), mlx]);
    let out = airlock(store.path(), &["show", "alpha"]);
    let text = stdout(&out);
    for want in ["architecture        llama", "context length      2049", "embedding length    8", "layers              1", "runnable here       yes", "chat template       no"] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let out = airlock(store.path(), &["show", "mlx:latest", "--json"]);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["runnable"], false);
    assert!(d["not_runnable_reason"].as_str().unwrap().contains("MLX"), "{d}");
    let out = airlock(store.path(), &["show", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn rm_deletes_the_manifest_then_only_unshared_blobs() {
    let a = FixtureModel::new("registry.ollama.ai/library/alpha/latest", 1);
    let mut b = FixtureModel::new("registry.ollama.ai/library/beta/latest", 2);
    b.blobs[1] = a.blobs[1].clone();
    let store = store_with(&[a, b]);
    let shared = model_blob_path(store.path(), &FixtureModel::new("registry.ollama.ai/library/alpha/latest", 1), 1);
    let out = airlock(store.path(), &["rm", "alpha"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "deleted 'alpha:latest'\n");
    assert!(shared.exists(), "a blob beta still uses was deleted");
    assert!(!store.path().join("manifests/registry.ollama.ai/library/alpha").exists());
    assert_eq!(airlock(store.path(), &["list", "--json"]).stdout.iter().filter(|&&c| c == b'{').count(), 1);
    assert!(airlock(store.path(), &["rm", "beta"]).status.success());
    assert_eq!(fs::read_dir(store.path().join("blobs")).unwrap().count(), 0, "every blob goes with the last model using it");
    assert_store_consistent(store.path());
}

#[test]
fn verify_names_every_corrupt_or_missing_blob() {
    let a = FixtureModel::new("registry.ollama.ai/library/alpha/latest", 1);
    let b = FixtureModel::new("registry.ollama.ai/library/beta/latest", 2);
    let store = store_with(&[a, b]);
    assert!(airlock(store.path(), &["verify"]).status.success());
    let a = FixtureModel::new("registry.ollama.ai/library/alpha/latest", 1);
    let b = FixtureModel::new("registry.ollama.ai/library/beta/latest", 2);
    let corrupt = model_blob_path(store.path(), &a, 1);
    let mut data = fs::read(&corrupt).unwrap();
    data[0] ^= 0xff;
    fs::write(&corrupt, data).unwrap();
    let missing = model_blob_path(store.path(), &b, 0);
    fs::remove_file(&missing).unwrap();
    let out = airlock(store.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(&corrupt.display().to_string()) && err.contains("corrupt"), "{err}");
    assert!(err.contains(&missing.display().to_string()) && err.contains("missing"), "{err}");
    assert!(airlock(store.path(), &["verify", "beta"]).status.code() == Some(1));
}

/// Writes a blob no manifest references, last written `age_secs` ago; returns its path.
fn orphan_blob(store: &std::path::Path, content: &[u8], age_secs: u64) -> std::path::PathBuf {
    let path = store.join("blobs").join(airlock::store::Digest::of_bytes(content).file_name());
    fs::write(&path, content).unwrap();
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(age_secs);
    fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
    path
}

#[test]
fn prune_removes_old_blobs_no_model_uses_and_serve_prunes_as_it_starts() {
    let store = store_with(&[FixtureModel::new("registry.ollama.ai/library/alpha/latest", 1)]);
    let old = orphan_blob(store.path(), b"left by a removed model", 2 * 3600);
    let recent = orphan_blob(store.path(), b"about to be published", 10);
    let out = airlock(store.path(), &["prune"]);
    let said = stdout(&out);
    assert!(out.status.success() && said.contains("removed 1 blob(s)") && said.contains("kept 1"), "{said}{}", stderr(&out));
    assert!(!old.exists() && recent.exists());
    assert!(airlock(store.path(), &["verify"]).status.success(), "the model's own blobs are all there");

    // `airlock serve` prunes as it starts, in the background, unless OLLAMA_NOPRUNE is set.
    let old = orphan_blob(store.path(), b"another leftover", 2 * 3600);
    let state = tempfile::TempDir::new().unwrap();
    let log = state.path().join("serve.log");
    let serve = |env: &[(&str, &str)]| {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("serve")
            .env("AIRLOCK_MODELS", store.path())
            .env("AIRLOCK_HOST", format!("127.0.0.1:{port}"))
            .env("AIRLOCK_AUDIT_LOG", state.path().join("audit.jsonl"))
            .envs(env.iter().copied())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap()
    };
    let mut server = serve(&[("OLLAMA_NOPRUNE", "1")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !fs::read_to_string(&log).unwrap_or_default().contains("OLLAMA_NOPRUNE is set") {
        assert!(std::time::Instant::now() < deadline, "serve did not say it leaves blobs: {}", fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let said = fs::read_to_string(&log).unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(said.contains("OLLAMA_NOPRUNE is set") && old.exists(), "{said}");
    let mut server = serve(&[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !fs::read_to_string(&log).unwrap_or_default().contains("pruned 1 blob(s) no model uses") {
        if std::time::Instant::now() > deadline {
            let _ = server.kill();
            panic!("serve did not prune: {}", fs::read_to_string(&log).unwrap_or_default());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = server.kill();
    let _ = server.wait();
    assert!(!old.exists() && recent.exists());
}
