//! Kits: Airlock carries itself across the air gap. A kit is one folder holding the portable app
//! (a tarball of this very installation), optionally a `.deb`, a model bundle, `INSTALL.txt` and
//! `SHA256SUMS` (+ a minisign signature), so one stick carries the program and the models and the
//! far side can check it with plain `sha256sum -c` before running anything from it.
//!
//! Owns writing kits ([`write_kit`]), the portable tarball ([`portable`]), the checksum list
//! ([`sums`]) and checking a kit ([`verify_kit`]). It must never unpack, install or execute
//! anything from a kit, and never act on `SHA256SUMS` before its signature (when present) and
//! every line of it have been checked.
//!
//! Uses: `bundle`, `store`, `backends`, `durable`, `progress`.

pub mod portable;
pub mod sums;
mod verify;
mod write;

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use portable::{write_portable, PortableSource};
pub use verify::{verify_kit, KitVerification, VerifyOptions};
pub use write::{write_kit, KitOptions, KitReport};

use crate::bundle::ExportError;
use crate::store::StoreError;

/// One file of a kit: its path relative to the kit folder (`/`-separated), size and SHA-256.
#[derive(Clone, Debug, Serialize)]
pub struct KitFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{0} exists and is not empty; choose another --out folder, or empty it first")]
    NotEmpty(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// This installation lacks something the portable app is made of.
    #[error("cannot pack the app: {0}")]
    Install(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Export(#[from] ExportError),
    /// `SHA256SUMS` is malformed or names a path outside the kit.
    #[error("{path}, line {line}: {problem}; the checksum list is damaged or was edited — copy the kit again from the original")]
    Sums { path: PathBuf, line: usize, problem: String },
    /// Files missing, unlisted or different from `SHA256SUMS`; one line per file.
    #[error("the kit in {} does not match its SHA256SUMS:\n  {}\nnothing was unpacked or run; copy the kit again from the original", .dir.display(), .problems.join("\n  "))]
    Mismatch { dir: PathBuf, problems: Vec<String> },
    /// Unsigned where a signature is required, signed by an unknown key, or changed after signing.
    #[error("{0}")]
    Signature(String),
    #[error("cancelled; the kit folder was removed")]
    Cancelled,
}

pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> KitError + '_ {
    move |source| KitError::Io { path: path.to_path_buf(), source }
}
