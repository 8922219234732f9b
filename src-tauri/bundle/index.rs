//! `airlock-bundle.json`, the bundle index (DESIGN.md "Bundle format v1").

use serde::{Deserialize, Serialize};

use crate::store::Digest;

pub const INDEX_FILE: &str = "airlock-bundle.json";
pub const SIGNATURE_FILE: &str = "airlock-bundle.json.minisig";
pub const FORMAT: &str = "airlock-bundle";
pub const MAX_INDEX_BYTES: u64 = 16 << 20;

/// The `created_by` of what Airlock writes (bundle indexes, inventories, kits' signatures).
pub fn created_by() -> String {
    format!("airlock {}", env!("CARGO_PKG_VERSION"))
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BundleIndex {
    pub format: String,
    pub version: u32,
    pub created: String,
    pub created_by: String,
    pub models: Vec<IndexModel>,
    pub blobs: Vec<IndexBlob>,
    /// For delta bundles: the digest of the inventory the bundle was cut against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_inventory: Option<Digest>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexModel {
    pub name: String,
    /// Path of the manifest inside the bundle, `manifests/<host>/<namespace>/<model>/<tag>`.
    pub manifest: String,
    pub manifest_sha256: Digest,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndexBlob {
    pub digest: Digest,
    pub size: u64,
}

impl BundleIndex {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let index: BundleIndex = serde_json::from_slice(bytes).map_err(|e| format!("unparsable bundle index: {e}"))?;
        if index.format != FORMAT {
            return Err(format!("not an Airlock bundle index (format {:?})", index.format));
        }
        if index.version != 1 {
            return Err(format!("bundle format version {} is newer than this Airlock understands (1); update Airlock", index.version));
        }
        Ok(index)
    }
}
