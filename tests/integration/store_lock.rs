//! Several `airlock` processes on one store at once: the store lock keeps every published
//! manifest's blobs present while other processes import and remove models beside it.

use std::path::{Path, PathBuf};

use airlock::store::manifest::MEDIA_LICENSE;
use airlock::store::Store;
use tempfile::TempDir;

use crate::common::*;

const ROUNDS: usize = 25;

/// One worker: import its model, check it, remove it, `ROUNDS` times; returns what went wrong.
fn import_check_remove(store: &Path, source: &Path, name: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let out = airlock(store, &["import", source.to_str().unwrap()]);
        if !out.status.success() {
            failures.push(format!("round {round}: import {name} failed: {}", stderr(&out)));
            continue;
        }
        // Right after its import, before this worker removes it: the other worker's `rm` may
        // delete only blobs no manifest references, so every blob of this model must be here.
        let out = airlock(store, &["verify", name]);
        if !out.status.success() {
            failures.push(format!("round {round}: verify {name} after its import: {}{}", stdout(&out), stderr(&out)));
        }
        let out = airlock(store, &["rm", name]);
        if !out.status.success() {
            failures.push(format!("round {round}: rm {name} failed: {}", stderr(&out)));
        }
    }
    failures
}

#[test]
fn concurrent_imports_and_removals_never_publish_a_model_whose_blobs_are_gone() {
    let base = TempDir::new().unwrap();
    let store = base.path().join("store");
    // Two models that share their config and weights, each with a large blob of its own: an
    // import finds the shared blobs present (the other model has them), skips them, and spends a
    // while copying its own one, while the other worker removes its model and with it the
    // shared blobs that no published manifest references.
    let sources: Vec<(PathBuf, &str)> = ["alpha", "beta"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut m = FixtureModel::new(&format!("registry.ollama.ai/library/{name}/latest"), 1);
            m.blobs.push((MEDIA_LICENSE.into(), vec![b'a' + i as u8; 8 << 20]));
            let dir = base.path().join(name);
            write_folder(&dir, &[m]);
            (dir, *name)
        })
        .collect();
    let failures: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = sources.iter().map(|(src, name)| s.spawn(|| import_check_remove(&store, src, name))).collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{} failure(s) in {} rounds per worker:\n{}", failures.len(), ROUNDS, failures.join("\n"));
    // Both models once more, then the whole store verifies and nothing is left staged.
    for (src, _) in &sources {
        let out = airlock(&store, &["import", src.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = airlock(&store, &["verify"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert_store_consistent(&store);
    assert_eq!(Store::at(&store).list().unwrap().0.len(), 2);
    assert!(!store.join(".airlock-staging").exists(), "staging left behind");
}
