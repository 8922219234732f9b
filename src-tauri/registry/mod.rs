//! The site's own OCI registry (Docker Distribution, Harbor, zot, Nexus, Artifactory): `airlock
//! push` / `pull` and the API's `/api/pull` / `/api/push` speak the OCI Distribution API to it.
//!
//! Ollama's manifests are Docker v2 manifests already, so a model is pushed as exactly the store's
//! manifest bytes (same model ID everywhere; `ollama pull --insecure` of the same reference works
//! too) and pulled with the same guarantees as `airlock import`: every blob is hashed while it
//! streams into the store's staging, GGUF layers are validated, and the manifest is published last
//! through [`crate::store::Staging::publish`]. An interrupted blob resumes with `Range` from
//! `<store>/.airlock-pull/`.
//!
//! Signatures travel with the model under the cosign-style tag `sha256-<manifest hex>.sig` in the
//! same repository: a manifest whose one layer is a minisign signature of the model's manifest
//! bytes (see [`signature`]).
//!
//! This module talks to the network only when a command or request names a registry (or
//! `AIRLOCK_REGISTRY` does); it never logs credentials, and never sends them over plain HTTP
//! unless `--insecure` (or an `http://` registry address) asked for plain HTTP.
//!
//! Uses: `store`, `bundle`, `gguf`.

pub mod auth;
pub mod client;
pub mod pull;
pub mod push;
pub mod reference;
pub mod signature;

use crate::gguf::GgufError;
use crate::store::{Digest, StoreError};

pub use client::{Client, ClientOptions};
pub use pull::{pull, PullOptions, PullReport};
pub use push::{push, PushOptions, PushReport};
pub use reference::{Reference, Registry};

/// One progress event, shaped like Ollama's `/api/pull` and `/api/push` stream lines: the API
/// serialises it as is, the CLI draws bars from it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed: Option<u64>,
}

impl Status {
    pub fn phase(status: &str) -> Self {
        Status { status: status.to_string(), digest: None, total: None, completed: None }
    }
    /// `pulling 6a0746a1ec1a` / `pushing 6a0746a1ec1a`, as Ollama names a blob's progress.
    pub fn blob(verb: &str, digest: &Digest, total: u64, completed: u64) -> Self {
        Status { status: format!("{verb} {}", &digest.hex()[..12]), digest: Some(*digest), total: Some(total), completed: Some(completed) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A setting is missing or wrong (no registry named, unreadable CA file, malformed credentials).
    #[error("{0}")]
    Config(String),
    /// The registry could not be reached or the connection broke.
    #[error("{url}: {problem}")]
    Transport { url: String, problem: String },
    /// The registry answered something other than what the protocol promises.
    #[error("{what}: the registry answered {status}{detail}")]
    Status { what: String, status: u16, detail: String },
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    NotFound(String),
    /// A blob or manifest from the registry is not what its digest says.
    #[error("{0}")]
    Integrity(String),
    #[error("{file}: not a valid GGUF model: {source}")]
    Gguf { file: String, source: GgufError },
    #[error("{0}")]
    Signature(String),
    /// The model does not fit in the store's free disk space.
    #[error("{0}")]
    NoSpace(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cancelled; nothing was published")]
    Cancelled,
}

impl RegistryError {
    pub(crate) fn transport(url: &str, problem: impl std::fmt::Display) -> Self {
        RegistryError::Transport { url: url.to_string(), problem: problem.to_string() }
    }
}
