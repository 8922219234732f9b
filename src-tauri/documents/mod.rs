//! Local documents for conversations: text extracted from the files people keep ([`extract`]),
//! cut into overlapping chunks ([`chunk`]), embedded by a model in the store and kept in a
//! SQLite index with FTS5 ([`index`]), retrieved by BM25 and vector similarity together.
//! Everything stays on the machine: no network, the index is one file beside the data it serves.
//! It never changes a document; it only reads them.

pub mod chunk;
pub mod extract;
pub mod index;

pub use index::{Embedder, Hit, Index, IndexError, SyncProgress, SyncReport};

use crate::core::Core;
use crate::engine::chat::{ChatError, PreparedModel};
use crate::engine::embed::EmbedSettings;
use crate::engine::protocol::EmbedInput;

/// Embeds with a model from the store through the engine (its embedding runner).
pub struct ModelEmbedder<'a> {
    core: &'a Core,
    model: PreparedModel,
}

impl<'a> ModelEmbedder<'a> {
    pub fn new(core: &'a Core, model: &str) -> Result<Self, ChatError> {
        Ok(ModelEmbedder { core, model: core.prepare(model)? })
    }
}

impl Embedder for ModelEmbedder<'_> {
    fn model(&self) -> String {
        self.model.name.clone()
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let inputs = texts.iter().cloned().map(EmbedInput::Text).collect();
        self.core.engine().embed(&self.model, inputs, &EmbedSettings::default()).map(|e| e.embeddings).map_err(|e| e.to_string())
    }
}
