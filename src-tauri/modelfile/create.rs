//! Making a model from a [`Recipe`] (a Modelfile, or the fields of `/api/create`): the base's
//! layers, then Ollama's rules — a new `template`, `system`, `adapter` or `messages` replaces the
//! base's, `license`s add up, `params` merge key by key — written through the store's staging
//! area (blobs verified and fsynced, the manifest last). Everything is checked before the first
//! byte is written; a failure leaves the store as it was.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::params::{go_string, go_value, Parameters};
use super::parser::{Instruction, Modelfile};
use super::params::Applied;
use crate::engine::speculative;
use crate::engine::template::{check_go_template, TemplateError};
use crate::gguf::{self, GgufInfo};
use crate::store::fault::FaultPlan;
use crate::store::layers::LayerMessage;
use crate::store::manifest::{self, Layer, Manifest, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::store::{hash_reader, Digest, ModelName, Store, StoreError};

/// Text layers are small; a bigger one is refused rather than read.
const MAX_TEXT_LAYER: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The request or Modelfile is wrong (HTTP 400): the message says what to change.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl CreateError {
    fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        CreateError::Io { path: path.display().to_string(), message: e.to_string() }
    }
}

/// Where the weights (or the adapter) come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `.gguf` file, or a folder holding exactly one.
    File(PathBuf),
    /// A model in the store (FROM only).
    Model(String),
    /// A blob already in the store (uploaded with `POST /api/blobs/:digest`).
    Blob(Digest),
}

/// Everything a new model is made of, however it was asked for.
#[derive(Clone, Debug, Default)]
pub struct Recipe {
    pub from: Option<Source>,
    pub adapter: Option<Source>,
    /// A vision projector (an mmproj `.gguf`): a second FROM naming one, as in Ollama.
    pub projector: Option<Source>,
    /// A draft model for speculative decoding (`DRAFT`: a model name or a `.gguf`).
    pub draft: Option<Source>,
    pub template: Option<String>,
    pub system: Option<String>,
    pub licenses: Vec<String>,
    pub parameters: Parameters,
    pub messages: Vec<LayerMessage>,
    pub renderer: Option<String>,
    pub parser: Option<String>,
    pub requires: Option<String>,
    /// Things that did not stop the model from being made (deprecated parameters).
    pub warnings: Vec<String>,
}

impl Recipe {
    /// Reads a parsed Modelfile; paths are relative to `dir` (the Modelfile's folder). A FROM
    /// that names no existing file is a model name, as in Ollama.
    pub fn from_modelfile(mf: &Modelfile, dir: &Path) -> Result<Recipe, CreateError> {
        let mut r = Recipe::default();
        let at = |line: usize, msg: String| CreateError::Invalid(format!("line {line}: {msg}"));
        for cmd in &mf.commands {
            let line = cmd.line;
            match &cmd.instruction {
                Instruction::From(v) => {
                    let path = expand_path(v, dir);
                    if r.from.is_some() {
                        if r.projector.is_none() && path.is_file() && gguf::read_file(&path).is_ok_and(|i| i.architecture() == Some("clip")) {
                            r.projector = Some(Source::File(path));
                            continue;
                        }
                        return Err(at(line, "a second FROM: after the model only its vision projector (an mmproj .gguf) may follow; split model files are not supported".into()));
                    }
                    r.from = Some(if path.exists() { Source::File(path) } else { Source::Model(v.clone()) });
                }
                Instruction::Adapter(v) => {
                    if r.adapter.is_some() {
                        return Err(at(line, "a second ADAPTER: one LoRA adapter per model is supported".into()));
                    }
                    let path = expand_path(v, dir);
                    if !path.exists() {
                        return Err(at(line, format!("ADAPTER {}: no such file; ADAPTER names a LoRA adapter .gguf file", path.display())));
                    }
                    r.adapter = Some(Source::File(path));
                }
                Instruction::Parameter { name, value } => match r.parameters.set_text(name, value) {
                    Ok(Applied::Set) => {}
                    Ok(Applied::Ignored(w)) => r.warnings.push(format!("line {line}: {w}")),
                    Err(e) => return Err(at(line, e)),
                },
                Instruction::Template(t) => {
                    check_template(t).map_err(|e| at(line, e))?;
                    r.template = Some(t.clone());
                }
                Instruction::System(s) => r.system = Some(s.clone()),
                Instruction::Message { role, content } => r.messages.push(LayerMessage::new(role.clone(), content.clone())),
                Instruction::License(l) => r.licenses.push(l.clone()),
                Instruction::Renderer(v) => r.renderer = Some(v.clone()),
                Instruction::Parser(v) => r.parser = Some(v.clone()),
                Instruction::Requires(v) => r.requires = Some(v.trim_start_matches('v').to_string()),
                Instruction::Draft(v) => {
                    let path = expand_path(v, dir);
                    r.draft = Some(if path.exists() { Source::File(path) } else { Source::Model(v.clone()) });
                }
            }
        }
        Ok(r)
    }
}

/// `~/x`, an absolute path, or a path relative to the Modelfile's folder.
fn expand_path(v: &str, dir: &Path) -> PathBuf {
    if v == "~" || v.starts_with("~/") {
        if let Some(home) = dirs::home_dir() {
            return home.join(v.trim_start_matches('~').trim_start_matches('/'));
        }
    }
    let p = Path::new(v);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Parses a TEMPLATE with the Go-template engine the runner uses, so a broken one is refused
/// before anything is written.
pub fn check_template(t: &str) -> Result<(), String> {
    check_go_template(t).map_err(|e| match e {
        TemplateError::Syntax { line, message, .. } => {
            format!("TEMPLATE does not parse as a Go template{}: {message}", line.map(|l| format!(" (its line {l})")).unwrap_or_default())
        }
        other => format!("TEMPLATE is not usable: {other}"),
    })
}

/// The model that was written.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Created {
    pub name: String,
    pub id: String,
    pub size: u64,
    pub warnings: Vec<String>,
}

/// A blob of the new manifest that the store does not have yet.
enum NewBlob {
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// Layer order of a created manifest: weights first, then Ollama's text layers. A fixed order
/// makes the model ID a function of the content, so `show --modelfile` recreates it exactly.
fn rank(media_type: &str) -> u8 {
    match media_type {
        manifest::MEDIA_MODEL => 0,
        manifest::MEDIA_PROJECTOR => 1,
        manifest::MEDIA_ADAPTER => 2,
        manifest::MEDIA_DRAFT => 2,
        manifest::MEDIA_TEMPLATE => 3,
        manifest::MEDIA_SYSTEM => 4,
        manifest::MEDIA_LICENSE => 5,
        manifest::MEDIA_PARAMS => 6,
        manifest::MEDIA_MESSAGES => 7,
        _ => 8,
    }
}

/// Makes model `name` from `recipe`. `status` hears Ollama's progress lines ("using existing
/// layer sha256:…", "writing manifest", …).
pub fn create(store: &Store, name: &str, recipe: &Recipe, status: &mut dyn FnMut(String)) -> Result<Created, CreateError> {
    let target = ModelName::parse(name).map_err(|e| CreateError::Invalid(e.to_string()))?;
    if let Some(t) = &recipe.template {
        check_template(t).map_err(CreateError::Invalid)?;
    }
    // Two uploaded files (`/api/create`'s `files`): the projector is the one whose architecture
    // is `clip`, whichever name it was uploaded under.
    let is_clip = |s: &Option<Source>| matches!(s, Some(Source::Blob(d)) if gguf::read_file(&store.blob_path(d)).is_ok_and(|i| i.architecture() == Some("clip")));
    let swapped;
    let recipe = if is_clip(&recipe.from) && !is_clip(&recipe.projector) && matches!(recipe.projector, Some(Source::Blob(_))) {
        swapped = Recipe { from: recipe.projector.clone(), projector: recipe.from.clone(), ..recipe.clone() };
        &swapped
    } else {
        recipe
    };
    let mut new_blobs: Vec<(Layer, NewBlob)> = Vec::new();
    let mut layers: Vec<Layer> = Vec::new();
    let mut base_config: serde_json::Map<String, Value> = serde_json::Map::new();
    let mut base_params = Parameters::default();

    let (weights_info, weights) = match recipe.from.as_ref().ok_or_else(|| CreateError::Invalid("no FROM: name a .gguf file, a folder holding one, or a model in the store".into()))? {
        Source::Model(from) => {
            let entry = store.resolve(from).map_err(|e| match e {
                StoreError::NotFound(_) => CreateError::Invalid(format!("FROM {from}: no such file, and no model {from:?} in the store (`airlock list` shows them)")),
                other => other.into(),
            })?;
            let model = entry.manifest.layer(manifest::MEDIA_MODEL).ok_or_else(|| CreateError::Invalid(format!("FROM {from}: the model has no GGUF weights layer")))?.clone();
            let path = store.blob_path(&model.digest);
            let info = gguf::read_file(&path).map_err(|e| CreateError::Invalid(format!("FROM {from}: its weights are not a valid GGUF file ({e})")))?;
            if let Some(Value::Object(map)) = read_small(store, &entry.manifest.config).and_then(|b| serde_json::from_slice(&b).ok()) {
                base_config = map;
            }
            if let Some(p) = entry.manifest.layer(manifest::MEDIA_PARAMS) {
                let text = read_small(store, p).ok_or_else(|| CreateError::Invalid(format!("FROM {from}: its params layer is missing or too large")))?;
                base_params = Parameters::from_layer(&String::from_utf8_lossy(&text)).map_err(|e| CreateError::Invalid(format!("FROM {from}: {e}")))?;
            }
            layers.extend(entry.manifest.layers.iter().cloned());
            (info, model)
        }
        source => {
            let (layer, info, file) = weights_layer(store, source, manifest::MEDIA_MODEL, "FROM")?;
            if let Some(file) = file {
                new_blobs.push((layer.clone(), NewBlob::File(file)));
            }
            layers.push(layer.clone());
            (info, layer)
        }
    };

    let replace = |layers: &mut Vec<Layer>, media_type: &str| layers.retain(|l| l.media_type != media_type);
    let text_layer = |layers: &mut Vec<Layer>, new_blobs: &mut Vec<(Layer, NewBlob)>, media_type: &str, bytes: Vec<u8>| {
        let layer = Layer { media_type: media_type.into(), digest: Digest::of_bytes(&bytes), size: bytes.len() as u64 };
        new_blobs.push((layer.clone(), NewBlob::Bytes(bytes)));
        layers.push(layer);
    };

    if let Some(source) = &recipe.projector {
        let (layer, info, file) = weights_layer(store, source, manifest::MEDIA_PROJECTOR, "FROM")?;
        if info.architecture() != Some("clip") {
            return Err(CreateError::Invalid("the second file is not a vision projector (an mmproj GGUF has architecture \"clip\"); a model is made from one GGUF file and, optionally, its projector".into()));
        }
        replace(&mut layers, manifest::MEDIA_PROJECTOR);
        if let Some(file) = file {
            new_blobs.push((layer.clone(), NewBlob::File(file)));
        }
        layers.push(layer);
    }
    if let Some(source) = &recipe.adapter {
        let (layer, info, file) = weights_layer(store, source, manifest::MEDIA_ADAPTER, "ADAPTER")?;
        if info.get_str("general.type") != Some("adapter") {
            return Err(CreateError::Invalid("ADAPTER: the file is a GGUF model, not a LoRA adapter (its general.type is not \"adapter\"); convert the adapter with llama.cpp's convert_lora_to_gguf.py".into()));
        }
        if let (Some(a), Some(m)) = (info.architecture(), weights_info.architecture()) {
            if a != m {
                return Err(CreateError::Invalid(format!("ADAPTER: the adapter is for {a} models, the base model is {m}")));
            }
        }
        replace(&mut layers, manifest::MEDIA_ADAPTER);
        if let Some(file) = file {
            new_blobs.push((layer.clone(), NewBlob::File(file)));
        }
        layers.push(layer);
    }
    if let Some(source) = &recipe.draft {
        let (layer, file) = draft_layer(store, source)?;
        // The draft is checked against the weights as they will be stored.
        let model_path = |l: &Layer| new_blobs.iter().find_map(|(n, b)| match b {
            NewBlob::File(f) if n.digest == l.digest => Some(f.clone()),
            _ => None,
        });
        let weights_path = model_path(&weights).unwrap_or_else(|| store.blob_path(&weights.digest));
        let draft_path = file.clone().unwrap_or_else(|| store.blob_path(&layer.digest));
        let draft_info = gguf::read_file(&draft_path).map_err(|e| CreateError::Invalid(format!("DRAFT: not a valid GGUF file ({e})")))?;
        speculative::same_vocabulary(&weights_path, &weights_info, &draft_path, &draft_info).map_err(|why| CreateError::Invalid(format!("DRAFT: the draft model cannot draft for this model: {why}")))?;
        replace(&mut layers, manifest::MEDIA_DRAFT);
        if let Some(file) = file {
            new_blobs.push((layer.clone(), NewBlob::File(file)));
        }
        layers.push(layer);
    }
    if let Some(t) = &recipe.template {
        replace(&mut layers, manifest::MEDIA_TEMPLATE);
        text_layer(&mut layers, &mut new_blobs, manifest::MEDIA_TEMPLATE, t.clone().into_bytes());
    }
    if let Some(s) = recipe.system.as_ref().filter(|s| !s.is_empty()) {
        replace(&mut layers, manifest::MEDIA_SYSTEM);
        text_layer(&mut layers, &mut new_blobs, manifest::MEDIA_SYSTEM, s.clone().into_bytes());
    }
    for l in recipe.licenses.iter().filter(|l| !l.is_empty()) {
        text_layer(&mut layers, &mut new_blobs, manifest::MEDIA_LICENSE, l.clone().into_bytes());
    }
    if !recipe.parameters.is_empty() {
        let merged = recipe.parameters.clone().over(&base_params);
        replace(&mut layers, manifest::MEDIA_PARAMS);
        text_layer(&mut layers, &mut new_blobs, manifest::MEDIA_PARAMS, merged.to_layer_bytes());
    }
    if !recipe.messages.is_empty() {
        replace(&mut layers, manifest::MEDIA_MESSAGES);
        text_layer(&mut layers, &mut new_blobs, manifest::MEDIA_MESSAGES, messages_bytes(&recipe.messages));
    }
    layers.sort_by_key(|l| rank(&l.media_type));
    let mut seen = std::collections::HashSet::new();
    layers.retain(|l| seen.insert((l.digest, l.media_type.clone())));

    let config_bytes = config_bytes(&weights_info, &base_config, recipe);
    let config = Layer { media_type: CONFIG_MEDIA_TYPE.into(), digest: Digest::of_bytes(&config_bytes), size: config_bytes.len() as u64 };
    new_blobs.push((config.clone(), NewBlob::Bytes(config_bytes)));

    // Every layer must be in the store or about to be: a base model with a missing blob is
    // refused rather than copied into a broken model.
    for l in &layers {
        let coming = new_blobs.iter().any(|(n, _)| n.digest == l.digest);
        if !coming && store.blob_size(&l.digest) != Some(l.size) {
            return Err(CreateError::Invalid(format!("blob {} of the base model is missing or damaged; run `airlock verify` and import the base model again", l.digest)));
        }
    }

    // Everything is checked; from here on the store is written (blobs first, the manifest last).
    status("parsing GGUF".into());
    let mut staging = store.begin_staging()?;
    let mut staged = std::collections::HashSet::new();
    for layer in layers.iter().chain(std::iter::once(&config)) {
        let source = new_blobs.iter().find(|(l, _)| l.digest == layer.digest).map(|(_, b)| b);
        let Some(blob) = source.filter(|_| store.blob_size(&layer.digest) != Some(layer.size)) else {
            status(format!("using existing layer {}", layer.digest));
            continue;
        };
        if !staged.insert(layer.digest) {
            continue;
        }
        status(format!("creating new layer {}", layer.digest));
        let (mut out, path) = staging.create_blob(&layer.digest)?;
        let digest = match blob {
            NewBlob::Bytes(b) => {
                out.write_all(b).and_then(|_| out.sync_all()).map_err(|e| CreateError::io(&path, e))?;
                layer.digest
            }
            NewBlob::File(src) => copy_hashing(src, &mut out, &path)?,
        };
        if digest != layer.digest {
            return Err(CreateError::Invalid(format!("{}: the file changed while the model was being made; try again", describe_source(blob))));
        }
        staging.add_verified(layer.digest, path);
    }
    let manifest = Manifest { schema_version: 2, media_type: MANIFEST_MEDIA_TYPE.into(), config: config.clone(), layers: layers.clone() };
    // Ollama's json.Encoder ends the manifest with a newline; so do we, so IDs match.
    let mut bytes = manifest.to_bytes();
    bytes.push(b'\n');
    status("writing manifest".into());
    staging.publish(&[(target.clone(), bytes.clone())], &FaultPlan::none())?;
    Ok(Created { name: target.display_shortest(), id: Digest::of_bytes(&bytes).hex(), size: manifest.total_size(), warnings: recipe.warnings.clone() })
}

fn describe_source(b: &NewBlob) -> String {
    match b {
        NewBlob::File(p) => p.display().to_string(),
        NewBlob::Bytes(_) => "a text layer".into(),
    }
}

/// A small blob (config, params), or `None` when missing or too big to be one.
fn read_small(store: &Store, layer: &Layer) -> Option<Vec<u8>> {
    if layer.size > MAX_TEXT_LAYER {
        return None;
    }
    fs::read(store.blob_path(&layer.digest)).ok()
}

/// The GGUF of a FROM or ADAPTER source: its layer, header, and the file to copy in when the
/// store does not hold it yet.
fn weights_layer(store: &Store, source: &Source, media_type: &str, what: &str) -> Result<(Layer, GgufInfo, Option<PathBuf>), CreateError> {
    match source {
        Source::Blob(digest) => {
            let path = store.blob_path(digest);
            let size = store.blob_size(digest).ok_or_else(|| CreateError::Invalid(format!("{what}: blob {digest} is not on the server; upload it first with POST /api/blobs/{digest}")))?;
            let info = gguf::read_file(&path).map_err(|e| CreateError::Invalid(format!("{what}: blob {digest} is not a valid GGUF file ({e}); Airlock makes models from GGUF files only")))?;
            Ok((Layer { media_type: media_type.into(), digest: *digest, size }, info, None))
        }
        Source::File(path) => {
            let file = gguf_in(path, what)?;
            let info = gguf::read_file(&file).map_err(|e| CreateError::Invalid(format!("{what} {}: not a valid GGUF file ({e}); Airlock makes models from GGUF files only", file.display())))?;
            let (digest, size) = File::open(&file).and_then(hash_reader).map_err(|e| CreateError::io(&file, e))?;
            let present = store.blob_size(&digest) == Some(size);
            Ok((Layer { media_type: media_type.into(), digest, size }, info, (!present).then_some(file)))
        }
        Source::Model(name) => Err(CreateError::Invalid(format!("{what} {name}: no such file"))),
    }
}

/// The draft's layer: a model in the store lends its weights blob, a file is hashed (and staged
/// when the store lacks it).
fn draft_layer(store: &Store, source: &Source) -> Result<(Layer, Option<PathBuf>), CreateError> {
    if let Source::Model(name) = source {
        let entry = store.resolve(name).map_err(|e| CreateError::Invalid(format!("DRAFT {name}: no such file, and no such model in the store ({e})")))?;
        let weights = entry.manifest.layer(manifest::MEDIA_MODEL).ok_or_else(|| CreateError::Invalid(format!("DRAFT {name}: the model has no GGUF weights layer")))?;
        return Ok((Layer { media_type: manifest::MEDIA_DRAFT.into(), ..weights.clone() }, None));
    }
    let (layer, _, file) = weights_layer(store, source, manifest::MEDIA_DRAFT, "DRAFT")?;
    Ok((layer, file))
}

/// The `.gguf` a FROM path names: the file itself, or the only one in a folder.
fn gguf_in(path: &Path, what: &str) -> Result<PathBuf, CreateError> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let mut found: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|e| CreateError::io(path, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("gguf")))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(CreateError::Invalid(format!("{what} {}: the folder holds no .gguf file (safetensors models must be converted to GGUF first)", path.display()))),
        _ => Err(CreateError::Invalid(format!(
            "{what} {}: the folder holds {} .gguf files ({}); name the one to use",
            path.display(),
            found.len(),
            found.iter().filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Copies `src` into `out` while hashing it; fsyncs. Returns the digest of what was copied.
fn copy_hashing(src: &Path, out: &mut File, out_path: &Path) -> Result<Digest, CreateError> {
    let mut input = File::open(src).map_err(|e| CreateError::io(src, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CreateError::io(src, e)),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| CreateError::io(out_path, format!("cannot write to the store: {e}")))?;
    }
    out.sync_all().map_err(|e| CreateError::io(out_path, e))?;
    Ok(Digest::from_hasher(hasher))
}

/// The `messages` layer: Go's encoding of `[]api.Message` (role and content; empty fields left out).
pub fn messages_bytes(messages: &[LayerMessage]) -> Vec<u8> {
    let mut out = String::from("[");
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"role\":");
        go_string(&mut out, &m.role);
        out.push_str(",\"content\":");
        go_string(&mut out, &m.content);
        out.push('}');
    }
    out.push_str("]\n");
    out.into_bytes()
}

/// The config blob, Ollama's `ConfigV2` field by field: facts from the GGUF, the base model's
/// renderer/parser/requires/capabilities unless the recipe sets them.
fn config_bytes(info: &GgufInfo, base: &serde_json::Map<String, Value>, recipe: &Recipe) -> Vec<u8> {
    let family = info.architecture().unwrap_or("unknown").to_string();
    let base_str = |k: &str| base.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let mut out = String::from("{");
    let field = |out: &mut String, key: &str, v: &Value| {
        if out.len() > 1 {
            out.push(',');
        }
        go_string(out, key);
        out.push(':');
        go_value(out, v);
    };
    field(&mut out, "model_format", &Value::String(base_str("model_format").unwrap_or_else(|| "gguf".into())));
    field(&mut out, "model_family", &Value::String(family.clone()));
    field(&mut out, "model_families", &Value::Array(vec![Value::String(family)]));
    field(&mut out, "model_type", &Value::String(gguf::format_parameter_count(info.parameter_count())));
    field(&mut out, "file_type", &Value::String(info.quantization()));
    for (key, own) in [("renderer", &recipe.renderer), ("parser", &recipe.parser), ("requires", &recipe.requires)] {
        if let Some(v) = own.clone().filter(|s| !s.is_empty()).or_else(|| base_str(key)) {
            field(&mut out, key, &Value::String(v));
        }
    }
    if let Some(caps) = base.get("capabilities").filter(|c| c.as_array().is_some_and(|a| !a.is_empty())) {
        field(&mut out, "capabilities", caps);
    }
    field(&mut out, "architecture", &Value::String("amd64".into()));
    field(&mut out, "os", &Value::String("linux".into()));
    out.push_str("}\n");
    out.into_bytes()
}
