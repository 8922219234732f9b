//! GGUF files into the store, as `ollama create` would store them: each model one GGUF blob (a
//! split model merged while it is hashed), its vision projector, a config blob and a manifest.
//! Every model picked goes into one staging area and is published together, or not at all.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::import::{Copier, ImportOptions, ImportReport, ImportedModel};
use super::ImportError;
use crate::gguf::{self, split, GgufInfo};
use crate::library::{self, Found, Scan};
use crate::progress::ProgressSink;
use crate::store::manifest::{self, Layer, Manifest};
use crate::store::{Digest, ModelName, Store};

/// The models a folder of GGUF files holds, named against the store's models; the list may be
/// empty.
pub fn scan_folder(store: &Store, path: &Path) -> Result<Scan, ImportError> {
    library::scan(path, &taken_names(store)).map_err(|e| ImportError::source(path, format!("cannot read: {e}")))
}

fn taken_names(store: &Store) -> Vec<ModelName> {
    store.list().map(|(models, _)| models.into_iter().map(|m| m.name).collect()).unwrap_or_default()
}

/// What `path` (a folder of GGUF files, or one `.gguf`) holds, named against the store's models;
/// a folder with no model is an error that says what was looked for.
pub fn scan(store: &Store, path: &Path, projector: Option<&Path>) -> Result<Scan, ImportError> {
    if path.is_dir() {
        let scan = scan_folder(store, path)?;
        if scan.models.is_empty() {
            let skipped: Vec<String> = scan.skipped.iter().take(10).map(|s| format!("\n  {}: {}", s.path, s.reason)).collect();
            let more = if scan.skipped.len() + scan.skipped_more > 10 { format!("\n  … and {} more", scan.skipped.len() + scan.skipped_more - 10) } else { String::new() };
            return Err(ImportError::source(path, format!("no models found. {}{}{more}", library::LOOKED_FOR, skipped.concat())));
        }
        Ok(scan)
    } else {
        library::scan_file(path, projector, &taken_names(store)).map_err(|problem| ImportError::source(path, problem))
    }
}

/// Imports the models of `scan` named by `picks` (id, name), under those names.
pub fn import_picked(store: &Store, scan: &Scan, picks: &[(String, String)], opts: &ImportOptions, progress: &dyn ProgressSink) -> Result<ImportReport, ImportError> {
    if picks.is_empty() {
        return Err(ImportError::source(&scan.root, "no models chosen to import"));
    }
    let mut names = HashSet::new();
    let mut chosen = Vec::new();
    for (id, name) in picks {
        let found = scan.models.iter().find(|m| &m.id == id).ok_or_else(|| ImportError::source(scan.root.join(id), "is not a model found in this folder (was it moved or changed since the folder was read?)"))?;
        if name.contains("://") {
            return Err(ImportError::source(&found.id, format!("the name {name:?} has a scheme; a model name is [namespace/]model[:tag]")));
        }
        let parsed = ModelName::parse(name).map_err(|e| ImportError::source(&found.id, e.to_string()))?;
        if !names.insert(parsed.display_shortest().to_ascii_lowercase()) {
            return Err(ImportError::source(&found.id, format!("the name {name} is chosen for two models; give each its own")));
        }
        chosen.push((found, parsed));
    }
    import_models(store, &chosen, opts, progress)
}

/// A model's files, checked again now (they may have changed since the scan).
struct Checked<'a> {
    found: &'a Found,
    name: &'a ModelName,
    info: GgufInfo,
    merge: Option<split::Merge>,
}

fn import_models(store: &Store, chosen: &[(&Found, ModelName)], opts: &ImportOptions, progress: &dyn ProgressSink) -> Result<ImportReport, ImportError> {
    let mut checked = Vec::new();
    for (found, name) in chosen {
        let read = |p: &PathBuf| gguf::read_file(p).map_err(|source| ImportError::Gguf { file: p.display().to_string(), source });
        let infos: Vec<(PathBuf, GgufInfo)> = found.paths.iter().map(|p| Ok((p.clone(), read(p)?))).collect::<Result<_, ImportError>>()?;
        let merge = if infos.len() > 1 {
            split::check_parts(&infos).map_err(|problem| ImportError::source(&found.paths[0], problem))?;
            Some(split::Merge::plan(&infos).map_err(|e| ImportError::source(&found.paths[0], format!("cannot read: {e}")))?)
        } else {
            None
        };
        if let Some(p) = &found.projector_path {
            if read(p)?.architecture() != Some("clip") {
                return Err(ImportError::source(p, "is no longer a vision projector (its architecture is not \"clip\")"));
            }
        }
        checked.push(Checked { found, name, info: infos.into_iter().next().expect("a model has a file").1, merge });
    }
    let total = checked.iter().map(|c| c.found.size).sum();
    let mut copier = Copier { opts, progress, done: 0, total, report: ImportReport::default() };
    let mut staging = store.begin_staging()?;
    let mut manifests = Vec::new();
    let mut imported = Vec::new();
    for c in &checked {
        let first = &c.found.paths[0];
        let origin = first.display().to_string();
        let (digest, size) = match &c.merge {
            Some(merge) => copier.stage(&mut staging, || Ok(Box::new(merge.reader()) as Box<dyn Read>), None, None, manifest::MEDIA_MODEL, &origin)?,
            None => copier.stage(&mut staging, || open(first), Some(first.clone()), None, manifest::MEDIA_MODEL, &origin)?,
        };
        let projector = match &c.found.projector_path {
            None => None,
            Some(p) => {
                let (digest, size) = copier.stage(&mut staging, || open(p), Some(p.clone()), None, manifest::MEDIA_PROJECTOR, &p.display().to_string())?;
                Some(Layer { media_type: manifest::MEDIA_PROJECTOR.into(), digest, size })
            }
        };
        let config_bytes = config_blob(&c.info, c.found, [Some(digest), projector.as_ref().map(|l| l.digest)].into_iter().flatten().collect());
        let config = Layer { media_type: manifest::CONFIG_MEDIA_TYPE.into(), digest: Digest::of_bytes(&config_bytes), size: config_bytes.len() as u64 };
        let read_config = || -> Result<Box<dyn Read + '_>, ImportError> { Ok(Box::new(config_bytes.as_slice())) };
        copier.stage(&mut staging, read_config, None, Some(&config), manifest::CONFIG_MEDIA_TYPE, "config")?;
        let mut manifest = Manifest::for_gguf(config, Layer { media_type: manifest::MEDIA_MODEL.into(), digest, size });
        manifest.layers.extend(projector);
        let bytes = manifest.to_bytes();
        imported.push(ImportedModel { name: c.name.display_shortest(), id: Digest::of_bytes(&bytes).hex()[..12].to_string(), size: manifest.total_size() });
        manifests.push((c.name.clone(), bytes));
    }
    if copier.cancelled() {
        return Err(ImportError::Cancelled);
    }
    staging.publish(&manifests, &opts.fault)?;
    let mut report = copier.report;
    report.models = imported;
    Ok(report)
}

fn open(path: &Path) -> Result<Box<dyn Read>, ImportError> {
    Ok(Box::new(File::open(path).map_err(|e| ImportError::source(path, format!("cannot read: {e}")))?))
}

/// The config blob `ollama create` writes for a GGUF model.
#[derive(Serialize)]
struct ModelConfig<'a> {
    model_format: &'a str,
    model_family: &'a str,
    model_families: [&'a str; 1],
    model_type: &'a str,
    file_type: String,
    architecture: &'a str,
    os: &'a str,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<Digest>,
}

fn config_blob(info: &GgufInfo, found: &Found, diff_ids: Vec<Digest>) -> Vec<u8> {
    let family = info.architecture().unwrap_or("unknown");
    serde_json::to_vec(&ModelConfig {
        model_format: "gguf",
        model_family: family,
        model_families: [family],
        model_type: &found.parameters,
        file_type: info.quantization(),
        architecture: std::env::consts::ARCH,
        os: std::env::consts::OS,
        rootfs: RootFs { kind: "layers", diff_ids },
    })
    .expect("config serialises")
}
