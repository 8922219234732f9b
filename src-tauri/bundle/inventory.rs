//! Store inventories for delta bundles: the air-gapped side writes what it holds
//! (`airlock inventory --out inv.json`), carries the small file out, and the connected side
//! exports only the blobs missing there (`airlock export … --exclude-from inv.json`).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::index::IndexBlob;
use crate::store::{Digest, Store, StoreError};

pub const INVENTORY_FORMAT: &str = "airlock-inventory";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inventory {
    pub format: String,
    pub version: u32,
    pub created: String,
    pub created_by: String,
    pub models: Vec<InventoryModel>,
    pub blobs: Vec<IndexBlob>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InventoryModel {
    pub name: String,
    /// SHA-256 of the manifest bytes (the model ID).
    pub manifest_sha256: Digest,
}

impl Inventory {
    /// Lists the store's models and every blob file with a valid digest name. Blob contents are
    /// not re-hashed (`airlock verify` does that); a damaged blob would be refused on import anyway.
    pub fn of_store(store: &Store) -> Result<Self, StoreError> {
        let (models, _) = store.list()?;
        let mut blobs = BTreeMap::new();
        if let Ok(entries) = fs::read_dir(store.blobs_dir()) {
            for e in entries.flatten() {
                let Ok(digest) = Digest::parse(&e.file_name().to_string_lossy()) else { continue };
                // Only regular files count (not symlinks, folders or `-partial` leftovers).
                match fs::symlink_metadata(e.path()) {
                    Ok(m) if m.is_file() => {
                        blobs.insert(digest, m.len());
                    }
                    _ => {}
                }
            }
        }
        Ok(Inventory {
            format: INVENTORY_FORMAT.into(),
            version: 1,
            created: crate::units::now_rfc3339(),
            created_by: super::index::created_by(),
            models: models.iter().map(|m| InventoryModel { name: m.name.display_shortest(), manifest_sha256: m.id }).collect(),
            blobs: blobs.into_iter().map(|(digest, size)| IndexBlob { digest, size }).collect(),
        })
    }

    /// Reads an inventory file; returns it with the SHA-256 of its bytes (the delta's base).
    pub fn read(path: &Path) -> Result<(Self, Digest), String> {
        let bytes = fs::read(path).map_err(|e| format!("cannot read the inventory {}: {e}", path.display()))?;
        let inv: Inventory = serde_json::from_slice(&bytes).map_err(|e| format!("{}: not an Airlock inventory: {e}", path.display()))?;
        if inv.format != INVENTORY_FORMAT || inv.version != 1 {
            return Err(format!("{}: not an Airlock inventory (format {:?} version {}); write one with `airlock inventory --out FILE`", path.display(), inv.format, inv.version));
        }
        Ok((inv, Digest::of_bytes(&bytes)))
    }

    /// Writes the inventory atomically and durably (see [`crate::durable::write_atomic`]).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        crate::durable::write_atomic(path, &serde_json::to_vec_pretty(self).expect("inventory serialises"))
    }
}
