//! `import PATH`: what a path holds decides how it is imported: a bundle (folder, zip or
//! volumes), a transfer kit or its `models/` folder, an Ollama models folder, a `.gguf` (split
//! parts found beside it), or any folder of GGUF files.

use std::path::Path;

use super::gguf_import;
use super::import::{import_from, ImportOptions, ImportReport};
use super::sign::SignaturePolicy;
use super::source::{self, FolderSource, SourceKind, ZipSource};
use super::ImportError;
use crate::library::Scan;
use crate::progress::ProgressSink;
use crate::store::Store;

/// Imports every model found at `path` into `store`: a bundle (folder, zip or volumes), a kit
/// folder or its `models/`, an Ollama models folder, a `.gguf` (split parts found beside it), or
/// any folder of GGUF files ([`crate::library`]). On any error the store is unchanged.
pub fn import(store: &Store, path: &Path, opts: &ImportOptions, progress: &dyn ProgressSink) -> Result<ImportReport, ImportError> {
    let bundle = source::bundle_in_kit(path);
    let path = bundle.as_deref().unwrap_or(path);
    let kind = source::detect(path)?;
    if opts.projector.is_some() && !matches!(kind, SourceKind::Gguf) {
        return Err(ImportError::source(path, "a projector goes with a single .gguf model file; bundles and models folders carry their projector layers themselves".to_string()));
    }
    match kind {
        SourceKind::Folder if source::holds_bundle(path) => import_from(store, &mut FolderSource::open(path)?, opts, progress),
        SourceKind::Folder | SourceKind::Gguf if opts.signature == SignaturePolicy::Require => Err(ImportError::Signature(format!(
            "{}: GGUF files carry no signature, and signatures are required; import a signed bundle instead",
            path.display()
        ))),
        SourceKind::Folder | SourceKind::Gguf => {
            let scan = gguf_import::scan(store, path, opts.projector.as_deref())?;
            let picks: Vec<(String, String)> = match (&opts.name, scan.models.as_slice()) {
                (Some(name), [one]) => vec![(one.id.clone(), name.clone())],
                (Some(_), models) => {
                    let names: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
                    return Err(ImportError::source("--name", format!("can rename only a single model; {} holds {}: {}", path.display(), names.len(), names.join(", "))));
                }
                (None, models) => models.iter().map(|m| (m.id.clone(), m.name.clone())).collect(),
            };
            let mut report = gguf_import::import_picked(store, &scan, &picks, opts, progress)?;
            report.warnings.extend(scan.skipped.iter().map(|s| format!("left out {}: {}", s.path, s.reason)));
            if scan.skipped_more > 0 {
                report.warnings.push(format!("and {} more files left out", scan.skipped_more));
            }
            Ok(report)
        }
        SourceKind::Zip => import_from(store, &mut ZipSource::open(path)?, opts, progress),
        SourceKind::Volumes(first) => import_from(store, &mut ZipSource::open_volumes(&first)?, opts, progress),
    }
}

/// What `import PATH` would import from a folder of GGUF files or a `.gguf`, with names, sizes
/// and pairings; nothing is written. Bundles and kits are checked by importing them.
pub fn dry_run(store: &Store, path: &Path, projector: Option<&Path>) -> Result<Scan, ImportError> {
    if is_bundle(path)? {
        return Err(ImportError::source(path, "is a bundle or a kit: --dry-run lists what a folder of GGUF files or a .gguf holds; a bundle is checked as it is imported (nothing is written unless all of it verifies)"));
    }
    gguf_import::scan(store, path, projector)
}

/// Whether `path` is imported as a bundle (a bundle folder, zip or volumes, a kit, an Ollama
/// models folder) rather than as GGUF files.
pub fn is_bundle(path: &Path) -> Result<bool, ImportError> {
    Ok(source::bundle_in_kit(path).is_some() || source::holds_bundle(path) || !matches!(source::detect(path)?, SourceKind::Folder | SourceKind::Gguf))
}
