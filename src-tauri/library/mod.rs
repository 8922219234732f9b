//! The models people already have on disk: a Hugging Face hub cache, LM Studio's, Jan's or
//! GPT4All's models folder, or any folder of `.gguf` files, read as a list of models to import.
//!
//! Owns: the bounded walk ([`walk`]); telling models, split parts and vision projectors apart by
//! their GGUF headers (never by file names alone); grouping split parts and checking they belong
//! together; pairing a projector with the models beside it that it fits; names from each model's
//! own metadata ([`naming`]). What it finds is a plan: nothing is read past the headers and
//! nothing is written; `bundle` imports what the person picks from it.
//!
//! Uses: `gguf`, `store` (names).

pub mod naming;
mod walk;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::gguf::{self, split, GgufInfo};
use crate::store::ModelName;
pub use walk::{MAX_DEPTH, MAX_ENTRIES};

/// Skipped files listed one by one; past this many only a count is kept.
pub const MAX_SKIPPED_LISTED: usize = 200;

/// Where a model file sits, as far as its path tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Layout {
    #[serde(rename = "Hugging Face cache")]
    HuggingFace,
    #[serde(rename = "LM Studio")]
    LmStudio,
    Jan,
    #[serde(rename = "GPT4All")]
    Gpt4All,
    #[serde(rename = "folder")]
    Folder,
}

/// A file looked at and left out, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

impl Skipped {
    fn new(path: &Path, reason: impl Into<String>) -> Self {
        Skipped { path: path.display().to_string(), reason: reason.into() }
    }
}

/// A model found: one file or the parts of a split one, maybe with a vision projector.
#[derive(Clone, Debug, Serialize)]
pub struct Found {
    /// The first file's path relative to the folder: how a choice refers to this model.
    pub id: String,
    /// The proposed name (unique in the list and the store).
    pub name: String,
    /// Why the name is not the one the metadata gives (a clash), when it is not.
    pub note: Option<String>,
    /// Paths relative to the folder: one file, or the parts in order.
    pub files: Vec<String>,
    pub projector: Option<String>,
    /// Bytes of the files and the projector.
    pub size: u64,
    pub architecture: String,
    pub parameters: String,
    pub quantization: String,
    pub layout: Layout,
    #[serde(skip)]
    pub paths: Vec<PathBuf>,
    #[serde(skip)]
    pub projector_path: Option<PathBuf>,
}

/// What a folder holds.
#[derive(Clone, Debug, Serialize)]
pub struct Scan {
    pub root: PathBuf,
    pub models: Vec<Found>,
    pub skipped: Vec<Skipped>,
    /// Skipped files beyond those listed.
    pub skipped_more: usize,
    /// Entries looked at.
    pub entries: usize,
    /// The walk stopped at [`MAX_ENTRIES`] entries; more may lie beyond.
    pub truncated: bool,
}

/// What a scan looks for, for a folder where it finds nothing.
pub const LOOKED_FOR: &str = "Looked for GGUF model files (.gguf) at any depth: a Hugging Face cache (models--ORG--NAME/snapshots/…), an LM Studio, Jan or GPT4All models folder, split models (NAME-00001-of-0000N.gguf) and vision projectors (mmproj) beside them.";

/// A GGUF file whose header was read and checked.
struct Header {
    path: PathBuf,
    info: GgufInfo,
    len: u64,
}

/// Lists the models under `root`. `taken` are the names already in the store (a proposed name
/// never clashes with one). Fails only when `root` itself cannot be read.
pub fn scan(root: &Path, taken: &[ModelName]) -> std::io::Result<Scan> {
    let found = walk::walk(root)?;
    let root = std::fs::canonicalize(root)?;
    let mut skipped = found.skipped;
    let mut headers = Vec::new();
    for path in found.files {
        match read_header(&path) {
            Ok(h) => headers.push(h),
            Err(reason) => skipped.push(Skipped::new(&path, reason)),
        }
    }
    let (projectors, models): (Vec<Header>, Vec<Header>) = headers.into_iter().partition(|h| h.info.architecture() == Some("clip"));
    let groups = group_splits(models, &mut skipped);
    let pairs = pair_projectors(&groups, projectors, &mut skipped);

    let models = describe(&root, &groups, &pairs, taken);
    // Empty files are many in a hostile folder and tell least: they are listed last.
    skipped.sort_by_key(|s| s.reason == walk::EMPTY_FILE);
    for s in &mut skipped {
        if let Ok(rel) = Path::new(&s.path).strip_prefix(&root) {
            s.path = rel.display().to_string();
        }
    }
    let skipped_more = skipped.len().saturating_sub(MAX_SKIPPED_LISTED);
    skipped.truncate(MAX_SKIPPED_LISTED);
    Ok(Scan { root, models, skipped, skipped_more, entries: found.entries, truncated: found.truncated })
}

/// The model a single `.gguf` file is: the file, or (for a part named as gguf-split names them)
/// all the parts beside it, with `projector` as its vision projector. The error says why the
/// file cannot be imported.
pub fn scan_file(path: &Path, projector: Option<&Path>, taken: &[ModelName]) -> Result<Scan, String> {
    let path = std::fs::canonicalize(path).map_err(|e| format!("cannot open: {e}"))?;
    let root = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let files: Vec<PathBuf> = match split::part_name(&file_name) {
        Some((prefix, _, count)) => {
            let mut parts: Vec<PathBuf> = std::fs::read_dir(&root)
                .map_err(|e| format!("cannot read its folder: {e}"))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| split::part_name(&n.to_string_lossy()).map(|(pre, _, c)| pre == prefix && c == count)).unwrap_or(false))
                .collect();
            parts.sort();
            parts
        }
        None => vec![path.clone()],
    };
    let mut skipped = Vec::new();
    let mut headers = Vec::new();
    for f in files {
        headers.push(read_header(&f).map_err(|reason| format!("{}: {reason}", f.display()))?);
    }
    if headers[0].info.architecture() == Some("clip") {
        return Err("is a vision projector (mmproj), not a model: import its model with --projector pointing at it".into());
    }
    let groups = group_splits(headers, &mut skipped);
    if let Some(why) = skipped.first() {
        return Err(why.reason.clone());
    }
    let mut pairs = BTreeMap::new();
    if let Some(p) = projector {
        let h = read_header(p).map_err(|reason| format!("{}: {reason}", p.display()))?;
        if h.info.architecture() != Some("clip") {
            let arch = h.info.architecture().map_or("none".to_string(), |a| format!("\"{a}\""));
            return Err(format!("{} is not a vision projector (an mmproj GGUF has architecture \"clip\", this one {arch}); pass the model's mmproj file to --projector", p.display()));
        }
        pairs.insert(0, (h.path, h.len));
    }
    let models = describe(&root, &groups, &pairs, taken);
    Ok(Scan { root, models, skipped, skipped_more: 0, entries: 1, truncated: false })
}

/// The list entries for checked model groups and their projectors, with settled names.
fn describe(root: &Path, groups: &[Vec<Header>], pairs: &BTreeMap<usize, (PathBuf, u64)>, taken: &[ModelName]) -> Vec<Found> {
    let proposed: Vec<String> = groups.iter().map(|g| naming::proposed_name(&g[0].info, &name_hint(root, &g[0].path))).collect();
    let settled = naming::settle_clashes(&proposed, taken);
    let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let mut models = Vec::new();
    for (i, (group, (name, note))) in groups.iter().zip(settled).enumerate() {
        let projector = pairs.get(&i);
        let first = &group[0];
        let parameters: u64 = group.iter().map(|h| h.info.parameter_count()).sum();
        models.push(Found {
            id: rel(&first.path),
            name,
            note,
            files: group.iter().map(|h| rel(&h.path)).collect(),
            projector: projector.map(|(p, _)| rel(p)),
            size: group.iter().map(|h| h.len).sum::<u64>() + projector.map_or(0, |(_, len)| *len),
            architecture: first.info.architecture().unwrap_or("unknown").to_string(),
            parameters: gguf::format_parameter_count(parameters),
            quantization: first.info.quantization(),
            layout: layout_of(&first.path),
            paths: group.iter().map(|h| h.path.clone()).collect(),
            projector_path: projector.map(|(p, _)| p.clone()),
        });
    }
    models
}

/// The header of a file named `.gguf`, or why it is not a model file.
fn read_header(path: &Path) -> Result<Header, String> {
    let mut magic = [0u8; 4];
    let n = File::open(path).and_then(|mut f| f.read(&mut magic)).map_err(|e| format!("cannot read: {e}"))?;
    if !gguf::is_gguf_magic(&magic[..n]) {
        return Err("not a GGUF file (it does not start with \"GGUF\")".into());
    }
    let info = gguf::read_file(path).map_err(|e| format!("not a valid GGUF file: {e}"))?;
    Ok(Header { path: path.to_path_buf(), len: info.file_len, info })
}

/// One entry per model: a whole file, or the checked parts of a split one in order. Parts that
/// are missing, mixed up or from elsewhere leave their whole split out, with the reason.
fn group_splits(models: Vec<Header>, skipped: &mut Vec<Skipped>) -> Vec<Vec<Header>> {
    let mut groups: Vec<Vec<Header>> = Vec::new();
    let mut splits: BTreeMap<(PathBuf, String, u32), Vec<(u32, Header)>> = BTreeMap::new();
    for h in models {
        let file_name = h.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match split::part_name(&file_name) {
            Some((prefix, no, count)) => {
                let key = (h.path.parent().map(Path::to_path_buf).unwrap_or_default(), prefix.to_string(), count);
                splits.entry(key).or_default().push((no, h));
            }
            None => match split::split_meta(&h.info).filter(|m| m.count > 1) {
                Some(m) => skipped.push(Skipped::new(&h.path, format!(
                    "part {} of a {}-part split model, but not named as one (NAME-0000i-of-0000n.gguf); rename the parts as gguf-split wrote them",
                    m.no.saturating_add(1),
                    m.count
                ))),
                None => groups.push(vec![h]),
            },
        }
    }
    for ((dir, prefix, count), mut parts) in splits {
        parts.sort_by_key(|(no, _)| *no);
        let missing: Vec<String> = (1..=count).filter(|n| !parts.iter().any(|(no, _)| no == n)).map(|n| split::part_file_name(&prefix, n, count)).collect();
        let first = dir.join(split::part_file_name(&prefix, 1, count));
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
            let more = if missing.len() > 5 { format!(" and {} more", missing.len() - 5) } else { String::new() };
            skipped.push(Skipped::new(&first, format!("a split model with {} of its {count} parts missing: {}{more}", missing.len(), shown.join(", "))));
            continue;
        }
        let parts: Vec<(PathBuf, GgufInfo)> = parts.into_iter().map(|(_, h)| (h.path, h.info)).collect();
        if let Err(reason) = split::check_parts(&parts) {
            skipped.push(Skipped::new(&first, format!("a split model whose parts do not belong together: {reason}")));
            continue;
        }
        groups.push(parts.into_iter().map(|(path, info)| Header { len: info.file_len, path, info }).collect());
    }
    groups.sort_by(|a, b| a[0].path.cmp(&b[0].path));
    groups
}

/// Pairs each vision projector with the models in its folder that it fits: its
/// `clip.vision.projection_dim` must equal a model's embedding length (when it says one), and
/// among several different models the one whose file name it shares most with. Returns, per
/// model index, the projector path and length.
fn pair_projectors(groups: &[Vec<Header>], projectors: Vec<Header>, skipped: &mut Vec<Skipped>) -> BTreeMap<usize, (PathBuf, u64)> {
    let mut pairs = BTreeMap::new();
    for p in projectors {
        let dim = p.info.get_u64("clip.vision.projection_dim");
        let fits: Vec<usize> = (0..groups.len())
            .filter(|&i| groups[i][0].path.parent() == p.path.parent())
            .filter(|&i| dim.is_none() || groups[i][0].info.embedding_length() == dim)
            .collect();
        let stem = |path: &Path| path.file_stem().map(|s| s.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        let base = |i: usize| groups[i][0].info.get_str("general.basename").map(str::to_string).unwrap_or_else(|| stem(&groups[i][0].path));
        let chosen: Vec<usize> = if fits.is_empty() {
            skipped.push(Skipped::new(&p.path, "a vision projector (mmproj) with no model beside it that it fits; import it with its model: airlock import MODEL.gguf --projector MMPROJ.gguf"));
            continue;
        } else if fits.iter().all(|&i| base(i) == base(fits[0])) {
            // Quantisations of one model share its projector.
            fits
        } else {
            {
                let own = stem(&p.path).replace("mmproj", "");
                let shared = |i: usize| common_prefix(own.trim_matches(['-', '_', '.']), &stem(&groups[i][0].path));
                let best = fits.iter().map(|&i| shared(i)).max().unwrap_or(0);
                let winners: Vec<usize> = fits.iter().copied().filter(|&i| shared(i) == best && best > 0).collect();
                if winners.is_empty() || winners.iter().any(|&i| base(i) != base(winners[0])) {
                    skipped.push(Skipped::new(&p.path, "a vision projector beside several different models; which one it belongs to is unclear: import it with airlock import MODEL.gguf --projector MMPROJ.gguf"));
                    continue;
                }
                winners
            }
        };
        for i in chosen {
            match pairs.entry(i) {
                std::collections::btree_map::Entry::Occupied(_) => skipped.push(Skipped::new(&p.path, format!("another vision projector for {} was paired first", groups[i][0].path.display()))),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert((p.path.clone(), p.len));
                }
            }
        }
    }
    pairs
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// The layout a file's path shows.
fn layout_of(path: &Path) -> Layout {
    let text = path.to_string_lossy().to_ascii_lowercase();
    let names: Vec<String> = path.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if names.iter().any(|n| n.starts_with("models--")) && names.iter().any(|n| n == "snapshots") {
        Layout::HuggingFace
    } else if text.contains("/.lmstudio/") || text.contains("/lm-studio/") || text.contains("/lmstudio/") {
        Layout::LmStudio
    } else if text.contains("/nomic.ai/gpt4all/") {
        Layout::Gpt4All
    } else if path.parent().is_some_and(|d| d.join("model.yml").is_file()) || text.contains("/llamacpp/models/") {
        Layout::Jan
    } else {
        Layout::Folder
    }
}

/// A name for a model whose metadata names nothing: the Hugging Face repository (`NAME` of
/// `models--ORG--NAME`), else the file name, else (for `model.gguf`) its folder.
fn name_hint(root: &Path, path: &Path) -> String {
    let strip = |s: &str| s.trim_end_matches("-GGUF").trim_end_matches("-gguf").to_string();
    if let Some(repo) = path.ancestors().filter_map(|a| a.file_name()).map(|n| n.to_string_lossy()).find(|n| n.starts_with("models--")) {
        if let Some(name) = repo.rsplit("--").next() {
            return strip(name);
        }
    }
    let folder = path.parent().filter(|p| p.starts_with(root)).and_then(Path::file_name).map(|n| strip(&n.to_string_lossy())).unwrap_or_default();
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    naming::hint_from_file(&stem, &folder)
}

#[cfg(test)]
mod tests;
