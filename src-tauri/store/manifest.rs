//! Docker v2 manifests as Ollama writes them. The bytes are kept as read: the model ID is the
//! SHA-256 of exactly those bytes, and they are copied byte for byte between stores.

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_MODEL: &str = "application/vnd.ollama.image.model";
pub const MEDIA_TEMPLATE: &str = "application/vnd.ollama.image.template";
pub const MEDIA_SYSTEM: &str = "application/vnd.ollama.image.system";
pub const MEDIA_PARAMS: &str = "application/vnd.ollama.image.params";
pub const MEDIA_LICENSE: &str = "application/vnd.ollama.image.license";
pub const MEDIA_MESSAGES: &str = "application/vnd.ollama.image.messages";
pub const MEDIA_PROJECTOR: &str = "application/vnd.ollama.image.projector";
pub const MEDIA_ADAPTER: &str = "application/vnd.ollama.image.adapter";
/// Airlock's own: a draft model's GGUF weights for speculative decoding (Modelfile `DRAFT`).
/// Ollama skips layers it does not know.
pub const MEDIA_DRAFT: &str = "application/vnd.airlock.image.draft";
/// MLX safetensors weights: listed, never run.
pub const MEDIA_TENSOR: &str = "application/vnd.ollama.image.tensor";

/// Manifests are small JSON files; anything bigger is not one.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
const MAX_LAYERS: usize = 4096;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Layer {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub config: Layer,
    pub layers: Vec<Layer>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is {0} bytes; a manifest is at most 1 MiB")]
    TooLarge(u64),
    #[error("unparsable manifest: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("unsupported manifest schemaVersion {0} (expected 2)")]
    Schema(u32),
    #[error("manifest has {0} layers (at most {MAX_LAYERS})")]
    TooManyLayers(usize),
}

impl Manifest {
    /// Parses and validates manifest bytes; every digest in it is checked by [`Digest`].
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge(bytes.len() as u64));
        }
        let m: Manifest = serde_json::from_slice(bytes)?;
        if m.schema_version != 2 {
            return Err(ManifestError::Schema(m.schema_version));
        }
        if m.layers.len() > MAX_LAYERS {
            return Err(ManifestError::TooManyLayers(m.layers.len()));
        }
        Ok(m)
    }

    /// The config blob followed by every layer.
    pub fn blobs(&self) -> impl Iterator<Item = &Layer> {
        std::iter::once(&self.config).chain(self.layers.iter())
    }

    /// Total size as Ollama reports it: config + layers.
    pub fn total_size(&self) -> u64 {
        self.blobs().map(|l| l.size).fold(0u64, u64::saturating_add)
    }

    pub fn layer(&self, media_type: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.media_type == media_type)
    }

    /// Builds the manifest for a single GGUF file plus its config blob, as `ollama create` does.
    pub fn for_gguf(config: Layer, model: Layer) -> Self {
        Manifest { schema_version: 2, media_type: MANIFEST_MEDIA_TYPE.into(), config, layers: vec![model] }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }
}

/// Layers whose blobs are GGUF files and are validated before import.
pub fn is_gguf_layer(media_type: &str) -> bool {
    matches!(media_type, MEDIA_MODEL | MEDIA_PROJECTOR | MEDIA_ADAPTER | MEDIA_DRAFT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_manifest_with_traversal_digest() {
        let bad = br#"{"schemaVersion":2,"mediaType":"x","config":{"mediaType":"c","digest":"sha256:../../x","size":1},"layers":[]}"#;
        let err = Manifest::parse(bad).unwrap_err().to_string();
        assert!(err.contains("invalid digest"), "{err}");
    }

    #[test]
    fn round_trips_and_sums_sizes() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let json = format!(r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_MEDIA_TYPE}","config":{{"mediaType":"{CONFIG_MEDIA_TYPE}","digest":"{d}","size":10}},"layers":[{{"mediaType":"{MEDIA_MODEL}","digest":"{d}","size":90}}]}}"#);
        let m = Manifest::parse(json.as_bytes()).unwrap();
        assert_eq!(m.total_size(), 100);
        assert_eq!(m.layer(MEDIA_MODEL).unwrap().size, 90);
        assert_eq!(m.to_bytes(), json.as_bytes());
    }
}
