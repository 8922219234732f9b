//! The small text layers of a stored model that the engine reads at run time and the Modelfile
//! writer writes: `system`, `template`, `params`, `license` and `messages`. This module reads
//! their text (bounded: a text layer over 1 MiB is not read) and owns the `messages` layer's type;
//! what a `params` layer means for sampling is the engine's business, its Modelfile spelling the
//! Modelfile module's.

use std::fs;

use serde::{Deserialize, Serialize};

use super::manifest::{Layer, Manifest};
use super::Store;

/// Text layers are small; anything bigger is not read.
pub const MAX_TEXT_LAYER: u64 = 1 << 20;

/// The text of `layer` (lossy UTF-8), or none when it is too big or cannot be read.
pub fn read_text(store: &Store, layer: &Layer) -> Option<String> {
    if layer.size > MAX_TEXT_LAYER {
        return None;
    }
    fs::read(store.blob_path(&layer.digest)).ok().map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The text of the manifest's first layer of `media_type`.
pub fn text_layer(store: &Store, manifest: &Manifest, media_type: &str) -> Option<String> {
    read_text(store, manifest.layer(media_type)?)
}

/// One turn of a `messages` layer (Modelfile `MESSAGE`): Ollama keeps only role and content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMessage {
    pub role: String,
    #[serde(default)]
    pub content: String,
}

impl LayerMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        LayerMessage { role: role.into(), content: content.into() }
    }
}

/// Reads a `messages` layer (`[{"role": …, "content": …}, …]`, roles lower-cased); unreadable → none.
pub fn parse_messages(text: &str) -> Vec<LayerMessage> {
    serde_json::from_str::<Vec<LayerMessage>>(text).map(|v| v.into_iter().map(|m| LayerMessage { role: m.role.to_lowercase(), ..m }).collect()).unwrap_or_default()
}
