//! `Core`: the one value the CLI, the HTTP API and the desktop app share (the store today; the
//! engine supervisor and hardware probe join it as they arrive), so the three faces cannot drift.
//! It also turns a store entry plus its GGUF metadata into the details users see.
//!
//! Uses: `store`, `engine`, `hardware`, `gguf`.

use std::fs;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::chat::{model_weights, ChatError, Engine, PreparedModel};
use crate::engine::context::choose_parallel;
use crate::engine::protocol::DeviceUse;
use crate::engine::supervisor::{EngineConfig, Supervisor};
use crate::gguf::{self, MetaValue};
use crate::hardware::{self, FitEstimate, HardwareReport};
use crate::store::manifest::{self, Manifest};
use crate::store::{ModelEntry, Store, StoreError};

pub struct Core {
    pub store: Store,
    engine_config: EngineConfig,
    /// Started on first use: listing or importing models needs no engine.
    engine: OnceLock<Engine>,
}

impl Core {
    pub fn from_env() -> Result<Self, StoreError> {
        Ok(Core::new(Store::from_env()?, EngineConfig::from_env()))
    }

    pub fn new(store: Store, engine: EngineConfig) -> Self {
        Core { store, engine_config: engine, engine: OnceLock::new() }
    }

    /// Runners use the devices of these llama.cpp RPC workers (`HOST:PORT`) instead of those
    /// `AIRLOCK_RPC` names; only before the engine starts.
    pub fn with_rpc_workers(mut self, rpc: Vec<String>) -> Self {
        self.engine_config.rpc = rpc;
        self
    }

    pub fn engine(&self) -> &Engine {
        self.engine.get_or_init(|| Engine::new(Supervisor::new(self.engine_config.clone()), Store::at(self.store.root())))
    }

    /// Stops every model process; starts no engine when none was ever used.
    pub fn shutdown(&self) {
        if let Some(engine) = self.engine.get() {
            engine.supervisor.unload_all();
        }
    }

    /// Deletes a model from the store, first stopping its model process if one runs and no
    /// other name shares its weights (an alias's removal must not cut off the original's replies).
    pub fn remove_model(&self, name: &str) -> Result<(), StoreError> {
        let entry = self.store.resolve(name)?;
        if let (Some(engine), Some(weights)) = (self.engine.get(), entry.manifest.layer(manifest::MEDIA_MODEL)) {
            let shared = self.store.list().map(|(all, _)| all.iter().any(|e| e.manifest_path != entry.manifest_path && e.manifest.layer(manifest::MEDIA_MODEL).is_some_and(|l| l.digest == weights.digest))).unwrap_or(false);
            if !shared {
                engine.supervisor.unload(&self.store.blob_path(&weights.digest));
            }
        }
        self.store.remove(name)?;
        Ok(())
    }

    /// Everything needed to prompt `name`.
    pub fn prepare(&self, name: &str) -> Result<PreparedModel, ChatError> {
        Ok(self.engine().with_default_context(PreparedModel::from_store(&self.store, name)?))
    }

    pub fn details(&self, entry: &ModelEntry) -> ModelDetails {
        ModelDetails::read(&self.store, entry)
    }

    /// The context model `name` runs with: its loaded runner's, else what a load with no
    /// `num_ctx` would give it.
    pub fn context_in_use(&self, name: &str) -> Result<ContextInUse, ChatError> {
        let model = self.prepare(name)?;
        let loaded = self.engine().supervisor.loaded().into_iter().find(|m| m.spec.model_path == model.model_path);
        if let Some(m) = loaded {
            return Ok(ContextInUse { tokens: m.info.n_ctx, why: "loaded now".into() });
        }
        let tokens = model.context_length(None);
        let mut why = match model.params_num_ctx {
            Some(n) => format!("the model's num_ctx parameter {n}"),
            None => self.engine().default_context().why.clone(),
        };
        if model.n_ctx_train.is_some_and(|t| tokens == t && model.params_num_ctx.unwrap_or(model.default_num_ctx) > t) {
            why.push_str(", capped at the trained context");
        }
        Ok(ContextInUse { tokens, why })
    }

    /// The model's GGUF metadata as JSON (Ollama's `model_info`): the huge tokenizer arrays are
    /// `null`, the chat template is left out (it is shown on its own).
    pub fn model_info(&self, entry: &ModelEntry) -> Map<String, Value> {
        let mut model_info = Map::new();
        let Some(layer) = entry.manifest.layer(manifest::MEDIA_MODEL) else { return model_info };
        let Ok(info) = self.store.gguf_info(&layer.digest) else { return model_info };
        for (k, v) in &info.metadata {
            if matches!(v, MetaValue::Array(a) if a.values.is_none()) {
                model_info.insert(k.clone(), Value::Null);
            } else if !k.starts_with("tokenizer.chat_template") {
                model_info.insert(k.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
            }
        }
        model_info.insert("general.parameter_count".into(), Value::from(info.parameter_count()));
        model_info
    }

    /// Probes the machine (see [`hardware::probe`]) and estimates every model's fit on it.
    pub fn machine_overview(&self) -> Result<MachineOverview, StoreError> {
        let hardware = hardware::probe(&self.engine_config.rpc);
        let (models, unreadable) = self.model_fits(&hardware)?;
        Ok(MachineOverview { hardware, models, loaded: self.loaded_models(), unreadable })
    }

    /// The models this process has loaded and what each holds where (none before the engine
    /// is first used).
    pub fn loaded_models(&self) -> Vec<LoadedModelUse> {
        let Some(engine) = self.engine.get() else { return Vec::new() };
        engine
            .supervisor
            .loaded()
            .iter()
            .map(|m| LoadedModelUse { name: m.spec.name.clone(), runs_on: m.runs_on(), devices: m.info.placement.devices.clone(), ram_bytes: m.info.placement.ram_bytes })
            .collect()
    }

    /// Where every model in the store would run on `hw`, with the context and slots the engine
    /// would load it with. Unreadable manifests are skipped and returned apart.
    pub fn model_fits(&self, hw: &HardwareReport) -> Result<(Vec<ModelFit>, Vec<StoreError>), StoreError> {
        let (models, problems) = self.store.list()?;
        let fits = models
            .iter()
            .map(|entry| {
                let name = entry.name.display_shortest();
                let prepared = match self.prepare(&name) {
                    Ok(p) => p,
                    Err(e) => return ModelFit { name, num_ctx: None, parallel: None, layers: None, fit: None, error: Some(e.to_string()) },
                };
                let num_ctx = prepared.context_length(None);
                // The KV cache at the size of the type it would be built with.
                let kv_cache = prepared.attention.1.unwrap_or(self.engine().supervisor.config().kv_cache_type);
                let size = prepared.size(num_ctx, kv_cache, self.engine().supervisor.config().checkpoints);
                let parallel = choose_parallel(size.weights_bytes, size.slot_bytes(num_ctx));
                let layers = prepared.block_count;
                let fit = hardware::estimate_fit(hw, size.weights_bytes, size.kv_bytes_per_token, size.checkpoint_bytes, layers, num_ctx, parallel);
                ModelFit { name, num_ctx: Some(num_ctx), parallel: Some(parallel), layers: Some(layers), fit: Some(fit), error: None }
            })
            .collect();
        Ok((fits, problems))
    }
}

/// This machine and where each model in the store would run on it (`airlock hardware`, the
/// Hardware page).
#[derive(Debug, Serialize)]
pub struct MachineOverview {
    #[serde(flatten)]
    pub hardware: HardwareReport,
    pub models: Vec<ModelFit>,
    pub loaded: Vec<LoadedModelUse>,
    /// Manifests that could not be read (their models are left out).
    #[serde(skip)]
    pub unreadable: Vec<StoreError>,
}

/// A loaded model's memory, per GPU device and in RAM, as llama.cpp allocated it.
#[derive(Debug, Serialize)]
pub struct LoadedModelUse {
    pub name: String,
    /// e.g. "100% GPU (Vulkan0, 19/19 layers)".
    pub runs_on: String,
    pub devices: Vec<DeviceUse>,
    pub ram_bytes: u64,
}

/// One model's fit, or why it cannot be estimated (not runnable here, unreadable).
#[derive(Debug, Serialize)]
pub struct ModelFit {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_ctx: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit: Option<FitEstimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// RFC 3339 in UTC, as Ollama prints times.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The context a model runs with, and why that size.
#[derive(Clone, Debug, Serialize)]
pub struct ContextInUse {
    pub tokens: u32,
    pub why: String,
}

/// What `airlock show` (and later `/api/show` and the Models page) tell about a model.
#[derive(Clone, Debug, Serialize)]
pub struct ModelDetails {
    pub name: String,
    pub id: String,
    pub size: u64,
    pub architecture: Option<String>,
    pub parameters: Option<String>,
    pub parameter_count: Option<u64>,
    pub quantization: Option<String>,
    /// The trained context (GGUF metadata).
    pub context_length: Option<u64>,
    /// The context the engine runs the model with here, and why (`airlock show` fills it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_in_use: Option<ContextInUse>,
    pub embedding_length: Option<u64>,
    pub block_count: Option<u64>,
    /// The GGUF carries a Jinja chat template, or the manifest an Ollama template layer.
    pub chat_template: bool,
    pub license: Option<String>,
    pub layers: Vec<LayerInfo>,
    pub runnable: bool,
    /// Why the model cannot run here, when it cannot.
    pub not_runnable_reason: Option<String>,
    /// When the manifest was last written (RFC 3339).
    pub modified: String,
}

impl ModelDetails {
    pub fn read(store: &Store, entry: &ModelEntry) -> Self {
        let m = &entry.manifest;
        let gguf = model_weights(store, m).map(|(_, info)| info);
        let info = gguf.as_ref().ok();
        let license = small_text_layer(store, m, manifest::MEDIA_LICENSE).or_else(|| info.and_then(|i| i.license().map(str::to_string)));
        let has_template_layer = m.layer(manifest::MEDIA_TEMPLATE).is_some();
        ModelDetails {
            name: entry.name.display_shortest(),
            id: entry.id.hex(),
            size: entry.size(),
            architecture: info.and_then(|i| i.architecture().map(str::to_string)),
            parameters: info.map(|i| gguf::format_parameter_count(i.parameter_count())),
            parameter_count: info.map(|i| i.parameter_count()),
            quantization: info.map(|i| i.quantization()),
            context_length: info.and_then(|i| i.context_length()),
            context_in_use: None,
            embedding_length: info.and_then(|i| i.embedding_length()),
            block_count: info.and_then(|i| i.block_count()),
            chat_template: has_template_layer || info.is_some_and(|i| i.chat_template().is_some()),
            license,
            layers: m.blobs().map(|l| LayerInfo { media_type: l.media_type.clone(), digest: l.digest.to_string(), size: l.size }).collect(),
            runnable: gguf.is_ok(),
            not_runnable_reason: gguf.err(),
            modified: rfc3339(entry.modified),
        }
    }
}

/// A text layer (license, system prompt), capped so a hostile store cannot make us read gigabytes.
fn small_text_layer(store: &Store, m: &Manifest, media_type: &str) -> Option<String> {
    let layer = m.layer(media_type)?;
    if layer.size > 1 << 20 {
        return None;
    }
    fs::read(store.blob_path(&layer.digest)).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}
