//! Bundles: verified import of Ollama `models/` folders, Airlock bundle folders, zips of either,
//! transfer kits, GGUF files (split ones merged) and the folders [`crate::library`] reads; export to bundle folders, zips and split volumes, signatures and
//! inventories for delta bundles.
//!
//! Everything read from a bundle is hostile until proven otherwise: names and digests are
//! validated before they become paths, every blob is hashed while it is copied, GGUF layers are
//! validated before llama.cpp can see them, and nothing becomes visible in the store until every
//! blob of a model is in place (see [`crate::store::Staging`]).
//!
//! Uses: `store`, `gguf`, `library`, `durable`, `progress`, `units`.

pub mod export;
mod from_path;
mod gguf_import;
pub mod import;
pub mod index;
pub mod inventory;
pub mod sign;
pub mod source;
pub mod volumes;

use std::path::Path;

pub use export::{export, ExportError, ExportOptions, ExportReport};
pub use gguf_import::{import_picked, scan_folder};
pub use from_path::{dry_run, import, is_bundle};
pub use import::{ImportOptions, ImportReport, ImportedModel};

/// The bundle's file name in a transfer kit's `models/` folder (`models.zip`, or its volumes).
pub const KIT_BUNDLE: &str = "models.zip";
pub use sign::{SignaturePolicy, Signer};

use crate::gguf::GgufError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The bundle itself is malformed or unsafe; `path` names the offending file.
    #[error("{path}: {problem}")]
    Source { path: String, problem: String },
    /// A file's content is not what the bundle says it is.
    #[error("{path}: {problem}; the bundle is damaged or was changed — copy it again from the original")]
    Integrity { path: String, problem: String },
    #[error("the bundle is missing {} blob(s) that its models need and this store does not have:\n  {}", .0.len(), .0.join("\n  "))]
    MissingBlobs(Vec<String>),
    #[error("{file}: not a valid GGUF model: {source}")]
    Gguf { file: String, source: GgufError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("import cancelled; the store is unchanged")]
    Cancelled,
    /// The signature policy refused the bundle (unsigned, unknown key, or changed after signing).
    #[error("{0}")]
    Signature(String),
}

impl ImportError {
    pub fn source(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        ImportError::Source { path: path.as_ref().display().to_string(), problem: problem.into() }
    }
    pub fn integrity(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        ImportError::Integrity { path: path.as_ref().display().to_string(), problem: problem.into() }
    }
}
