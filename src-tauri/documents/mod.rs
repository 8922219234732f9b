//! Local documents for conversations: text extracted from the files people keep ([`extract`]),
//! cut into overlapping chunks ([`chunk`]), embedded by a model in the store and kept in a
//! SQLite index with FTS5 ([`index`]), retrieved by BM25 and vector similarity together.
//! Everything stays on the machine: no network, the index is one file beside the data it serves.
//! It never changes a document; it only reads them.
//!
//! Uses: `core`, `engine` (embeddings), `child` and `backends` (the reader child process).

pub mod catalog;
pub mod chunk;
pub mod extract;
pub mod index;
pub mod retrieve;

pub use catalog::{Attachment, Catalog, Library};
pub use index::{Embedder, Hit, Index, IndexError, SyncProgress, SyncReport};
pub use retrieve::{Retrieved, Source};

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

/// The context for a question in `conversation`: its documents searched (hybrid) with the
/// embedding model of Settings, else `chat_model`; the best chunks that fit a third of the
/// context `chat_model` runs with (`num_ctx`, else its default). Empty when the conversation
/// has no documents (no model is loaded for nothing). Indexing is not done here (see
/// [`Catalog::sync`]).
pub fn retrieve_for(core: &Core, catalog: &Catalog, conversation: &str, chat_model: &str, question: &str, num_ctx: Option<u32>) -> Result<Retrieved, String> {
    if !catalog.has_documents(conversation).map_err(|e| e.to_string())? {
        return Ok(Retrieved::default());
    }
    let embedding_model = catalog.embedding_model(chat_model).map_err(|e| e.to_string())?;
    let embedder = ModelEmbedder::new(core, &embedding_model).map_err(|e| format!("the embedding model {embedding_model} cannot be used: {e}"))?;
    let hits = catalog.retrieve(conversation, question, &embedder, retrieve::CANDIDATE_CHUNKS).map_err(|e| e.to_string())?;
    let chat = core.prepare(chat_model).map_err(|e| e.to_string())?;
    let budget = retrieve::context_budget(chat.context_length(num_ctx));
    let (count, counted_by) = retrieve::token_counter(core, &chat);
    let (context, sources, tokens) = retrieve::context_block(&hits, question, budget, &*count);
    Ok(Retrieved { context, sources, tokens, budget, counted_by })
}
