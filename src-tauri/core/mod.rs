//! `Core`: the one value the CLI, the HTTP API and the desktop app share (the store today; the
//! engine supervisor and hardware probe join it as they arrive), so the three faces cannot drift.
//! It also turns a store entry plus its GGUF metadata into the details users see.

use std::fs;
use std::sync::OnceLock;

use serde::Serialize;

use crate::engine::chat::{model_weights, ChatError, Engine, PreparedModel};
use crate::engine::supervisor::{EngineConfig, Supervisor};
use crate::gguf;
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

    pub fn engine(&self) -> &Engine {
        self.engine.get_or_init(|| Engine::new(Supervisor::new(self.engine_config.clone())))
    }

    /// Everything needed to prompt `name`.
    pub fn prepare(&self, name: &str) -> Result<PreparedModel, ChatError> {
        PreparedModel::from_store(&self.store, name)
    }

    pub fn details(&self, entry: &ModelEntry) -> ModelDetails {
        ModelDetails::read(&self.store, entry)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerInfo {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
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
    pub context_length: Option<u64>,
    pub embedding_length: Option<u64>,
    pub block_count: Option<u64>,
    /// The GGUF carries a Jinja chat template, or the manifest an Ollama template layer.
    pub chat_template: bool,
    pub license: Option<String>,
    pub layers: Vec<LayerInfo>,
    pub runnable: bool,
    /// Why the model cannot run here, when it cannot.
    pub not_runnable_reason: Option<String>,
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
            embedding_length: info.and_then(|i| i.embedding_length()),
            block_count: info.and_then(|i| i.block_count()),
            chat_template: has_template_layer || info.is_some_and(|i| i.chat_template().is_some()),
            license,
            layers: m.blobs().map(|l| LayerInfo { media_type: l.media_type.clone(), digest: l.digest.to_string(), size: l.size }).collect(),
            runnable: gguf.is_ok(),
            not_runnable_reason: gguf.err(),
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
