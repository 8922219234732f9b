//! Durability, observed: the real `airlock` runs under `strace`, and every file it writes must be
//! fsynced after its last write, and before it is renamed into place. A crash or power loss
//! right after the command returns must not leave a volume, an inventory or a manifest with
//! bytes that only ever reached the page cache.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::store::manifest::MEDIA_LICENSE;
use tempfile::TempDir;

use crate::common::*;

/// What the trace says about each file the command wrote.
#[derive(Debug, Default)]
struct Writes {
    /// Files (by their final path) with a write after their last fsync.
    unsynced: BTreeMap<PathBuf, String>,
    /// Files renamed while they had unsynced writes (`from -> to`).
    renamed_unsynced: Vec<String>,
    /// Every file written, by its final path.
    written: Vec<PathBuf>,
}

/// Runs `airlock ARGS` with `AIRLOCK_MODELS=store` under `strace -f -y` and follows each file
/// from its writes through fsyncs and renames. strace must be installed (scripts/deps.sh).
fn traced(store: &Path, work: &Path, args: &[&str]) -> Writes {
    let trace = work.join("strace.txt");
    let out = Command::new("strace")
        .args(["-f", "-y", "-qq", "-s", "0", "-e", "trace=write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,rename,renameat,renameat2", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .env("AIRLOCK_MODELS", store)
        .output()
        .expect("strace must be installed to run this test (scripts/deps.sh installs it)");
    assert!(out.status.success(), "airlock {args:?} failed: {}", stderr(&out));
    let text = fs::read_to_string(&trace).unwrap();
    // Path -> whether it has writes after its last fsync.
    let mut dirty: BTreeMap<PathBuf, bool> = BTreeMap::new();
    let mut writes = Writes::default();
    for line in text.lines() {
        // `PID syscall(args) = result`; resumed halves of interrupted calls carry no new fd.
        let call = line.split_once(' ').map_or(line, |(_, rest)| rest.trim_start());
        let Some((name, args)) = call.split_once('(') else { continue };
        let fd_path = || args.split_once('<').and_then(|(_, r)| r.split_once('>')).map(|(p, _)| PathBuf::from(p));
        match name {
            "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" => {
                if let Some(p) = fd_path().filter(|p| p.starts_with(work)) {
                    dirty.insert(p, true);
                }
            }
            "fsync" | "fdatasync" => {
                if let Some(d) = fd_path().and_then(|p| dirty.get_mut(&p)) {
                    *d = false;
                }
            }
            "rename" | "renameat" | "renameat2" => {
                if !call.trim_end().ends_with("= 0") {
                    continue;
                }
                let quoted: Vec<&str> = args.split('"').skip(1).step_by(2).collect();
                let (from, to) = (PathBuf::from(quoted[0]), PathBuf::from(quoted[1]));
                if let Some(was_dirty) = dirty.remove(&from) {
                    if was_dirty {
                        writes.renamed_unsynced.push(format!("{} -> {}", from.display(), to.display()));
                    }
                    dirty.insert(to, was_dirty);
                }
            }
            _ => {}
        }
    }
    for (path, is_dirty) in dirty {
        if is_dirty {
            writes.unsynced.insert(path.clone(), "written after its last fsync".into());
        }
        writes.written.push(path);
    }
    writes
}

fn store_with_big_model(dir: &Path) {
    // A blob larger than a volume, so its zip entry's header (whose CRC is patched in after the
    // data) sits in an earlier volume than its end.
    let mut m = FixtureModel::new("registry.ollama.ai/library/alpha/latest", 1);
    m.blobs.push((MEDIA_LICENSE.into(), (0..20_000u32).map(|i| (i % 251) as u8).collect()));
    write_folder(dir, &[m]);
}

#[test]
fn split_export_fsyncs_every_volume_after_its_last_write() {
    let work = TempDir::new().unwrap();
    let work = work.path().canonicalize().unwrap();
    let store = work.join("store");
    store_with_big_model(&store);
    let out = work.join("out");
    fs::create_dir(&out).unwrap();
    let bundle = out.join("b.zip");
    let w = traced(&store, &work, &["export", "alpha", "--out", bundle.to_str().unwrap(), "--split-size", "4096"]);
    let volumes: Vec<&PathBuf> = w.written.iter().filter(|p| p.starts_with(&out)).collect();
    assert!(volumes.len() >= 5, "expected the export to write several volumes into {}, saw {:?}", out.display(), w.written);
    for v in &volumes {
        assert!(v.is_file(), "{} was written but is not in the output", v.display());
    }
    assert!(w.unsynced.is_empty(), "files not fsynced after their last write: {:?}", w.unsynced);
    assert!(w.renamed_unsynced.is_empty(), "files renamed into place before being fsynced: {:?}", w.renamed_unsynced);
    // And the volumes still make a bundle that imports.
    let dst = work.join("dst");
    let imported = airlock(&dst, &["import", out.join("b.zip.001").to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
}

#[test]
fn inventory_is_fsynced_before_it_replaces_the_old_one() {
    let work = TempDir::new().unwrap();
    let work = work.path().canonicalize().unwrap();
    let store = work.join("store");
    store_with_big_model(&store);
    let inv = work.join("inv.json");
    fs::write(&inv, b"{}").unwrap();
    let w = traced(&store, &work, &["inventory", "--out", inv.to_str().unwrap()]);
    assert!(w.written.contains(&inv), "the inventory was not written through a rename onto {}: {:?}", inv.display(), w.written);
    assert!(w.unsynced.is_empty(), "files not fsynced after their last write: {:?}", w.unsynced);
    assert!(w.renamed_unsynced.is_empty(), "files renamed into place before being fsynced: {:?}", w.renamed_unsynced);
    assert!(fs::read_to_string(&inv).unwrap().contains("airlock-inventory"));
    assert_eq!(fs::read_dir(&work).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains(".tmp")).count(), 0, "temporary file left behind");
}

#[test]
fn imported_manifests_are_fsynced_before_they_become_visible() {
    let work = TempDir::new().unwrap();
    let work = work.path().canonicalize().unwrap();
    let src = work.join("src");
    store_with_big_model(&src);
    let store = work.join("store");
    let w = traced(&store, &work, &["import", src.to_str().unwrap()]);
    let manifests = store.join("manifests");
    assert!(w.written.iter().any(|p| p.starts_with(&manifests)), "no manifest written: {:?}", w.written);
    assert!(w.unsynced.is_empty(), "files not fsynced after their last write: {:?}", w.unsynced);
    assert!(w.renamed_unsynced.is_empty(), "files renamed into place before being fsynced: {:?}", w.renamed_unsynced);
}
