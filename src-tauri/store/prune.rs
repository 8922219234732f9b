//! Removing the blobs no model uses, as Ollama prunes at start: `airlock serve` does it as it
//! starts, `airlock prune` on demand. A blob written recently is kept (an import or pull about to
//! publish it holds no lock while it writes), nothing goes while any manifest is unreadable (it
//! may reference any blob), and only files named like blobs are touched.

use std::collections::HashSet;
use std::fs;
use std::time::Duration;

use serde::Serialize;

use super::{io_err, Digest, Store, StoreError};

/// Blobs younger than this are kept: Ollama's own prune uses the same hour.
pub const PRUNE_MIN_AGE: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub removed: Vec<Digest>,
    pub bytes: u64,
    /// Unreferenced blobs kept because they are younger than the minimum age.
    pub kept_recent: usize,
    /// Why nothing was removed, when something stopped it.
    pub skipped: Option<String>,
}

impl Store {
    /// Removes the blobs no manifest references that were last written at least `min_age` ago.
    pub fn prune(&self, min_age: Duration) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        let blobs = self.blobs_dir();
        if !blobs.is_dir() {
            return Ok(report);
        }
        let _lock = self.lock()?;
        let (models, problems) = self.list()?;
        if !problems.is_empty() {
            report.skipped = Some(format!("{} manifest(s) cannot be read and may use any blob, so nothing was removed; `airlock list` names them", problems.len()));
            return Ok(report);
        }
        let referenced: HashSet<Digest> = models.iter().flat_map(|m| m.manifest.blobs().map(|l| l.digest)).collect();
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = Digest::parse(&name) else { continue };
            let Ok(meta) = entry.metadata() else { continue };
            if referenced.contains(&digest) || !meta.is_file() {
                continue;
            }
            let age = meta.modified().ok().and_then(|t| t.elapsed().ok()).unwrap_or_default();
            if age < min_age {
                report.kept_recent += 1;
                continue;
            }
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err(&path))?;
            report.removed.push(digest);
            report.bytes += meta.len();
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_blobs_no_manifest_uses_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path());
        let blobs = store.blobs_dir();
        fs::create_dir_all(&blobs).unwrap();
        let used = Digest::of_bytes(b"config");
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{used}","size":6}},"layers":[]}}"#,
            super::super::manifest::MANIFEST_MEDIA_TYPE,
            super::super::manifest::CONFIG_MEDIA_TYPE
        );
        let manifest_path = store.manifests_dir().join("registry.ollama.ai/library/m/latest");
        fs::create_dir_all(manifest_path.parent().unwrap()).unwrap();
        fs::write(&manifest_path, manifest).unwrap();
        let (old, recent) = (Digest::of_bytes(b"old"), Digest::of_bytes(b"recent"));
        for (d, bytes) in [(used, &b"config"[..]), (old, b"old"), (recent, b"recent")] {
            fs::write(blobs.join(d.file_name()), bytes).unwrap();
        }
        fs::write(blobs.join("notes.txt"), "not a blob").unwrap();
        let hour_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
        for name in [used.file_name(), old.file_name(), "notes.txt".into()] {
            fs::File::options().write(true).open(blobs.join(name)).unwrap().set_modified(hour_ago).unwrap();
        }

        let report = store.prune(PRUNE_MIN_AGE).unwrap();
        assert_eq!((report.removed.clone(), report.bytes, report.kept_recent), (vec![old], 3, 1));
        assert!(blobs.join(used.file_name()).exists() && blobs.join(recent.file_name()).exists() && blobs.join("notes.txt").exists());

        // An unreadable manifest may use any blob: nothing goes.
        fs::write(store.manifests_dir().join("registry.ollama.ai/library/m/broken"), "{").unwrap();
        let report = store.prune(Duration::ZERO).unwrap();
        assert!(report.removed.is_empty() && report.skipped.is_some(), "{report:?}");
        assert!(blobs.join(recent.file_name()).exists());
    }
}
