//! GGUF metadata of the store's weights, parsed once per blob digest. `/api/tags`, `/api/show`,
//! `/api/ps`, the hardware page and every chat request need a model's metadata; a blob never
//! changes behind its digest, so its parse is kept (the few most recently used ones, since
//! metadata with a tokenizer can take megabytes).
//!
//! A blob whose length no longer matches the cached parse (replaced or damaged) is parsed again;
//! `airlock verify` is what checks contents.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Digest;
use crate::gguf::{self, GgufError, GgufInfo};

/// How many parsed blobs are kept.
pub const CAPACITY: usize = 16;

#[derive(Debug, Default)]
pub struct GgufCache {
    /// Least recently used first: (digest, blob length, parse).
    entries: Mutex<VecDeque<(Digest, u64, Arc<GgufInfo>)>>,
    parses: AtomicU64,
}

impl GgufCache {
    /// The parse of the blob `digest` at `path`, from the cache or read now. The lock is held
    /// while parsing, so requests arriving together for a model parse it once.
    pub fn get(&self, digest: &Digest, path: &Path) -> Result<Arc<GgufInfo>, GgufError> {
        let len = fs::metadata(path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?.len();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = entries.iter().position(|(d, l, _)| d == digest && *l == len) {
            let hit = entries.remove(i).expect("index from position");
            let info = hit.2.clone();
            entries.push_back(hit);
            return Ok(info);
        }
        let info = Arc::new(gguf::read_file(path)?);
        self.parses.fetch_add(1, Ordering::Relaxed);
        entries.retain(|(d, _, _)| d != digest);
        if entries.len() >= CAPACITY {
            entries.pop_front();
        }
        entries.push_back((*digest, len, info.clone()));
        Ok(info)
    }

    /// How many times a blob was parsed (not served from the cache) since the store was opened.
    pub fn parses(&self) -> u64 {
        self.parses.load(Ordering::Relaxed)
    }
}
