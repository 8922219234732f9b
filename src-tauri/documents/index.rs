//! The document index: one SQLite database (rusqlite, SQLite compiled in) holding each file's
//! chunks with their location, their embedding vectors (little-endian `f32` blobs) and an FTS5
//! full-text index over the chunk text, kept in step by triggers. Retrieval is hybrid: BM25 from
//! FTS5 and cosine similarity of the vectors, fused by reciprocal rank, which finds names, codes
//! and numbers that vectors alone blur, and paraphrases that words alone miss.
//!
//! A file is replaced in one transaction (never half-indexed); a file that cannot be read is
//! recorded with the reason and no chunks, and the rest go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::UNIX_EPOCH;

use rusqlite::{params, Connection, OptionalExtension};

use super::chunk::{chunk_sections, CHUNK_CHARS, OVERLAP_CHARS};
use super::extract::{extract, kind_of};

/// Turns texts into vectors (the engine with an embedding model; anything in tests).
pub trait Embedder {
    /// Names the model, so vectors of another model are never compared with these.
    fn model(&self) -> String;
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String>;
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the document index {path} cannot be used: {message}")]
    Database { path: String, message: String },
    #[error("embedding failed: {0}")]
    Embedding(String),
    #[error("indexing was cancelled")]
    Cancelled,
}

/// One retrieved chunk.
#[derive(Clone, Debug)]
pub struct Hit {
    pub chunk_id: i64,
    pub path: PathBuf,
    /// "page 2", "# Install", or empty.
    pub location: String,
    pub text: String,
    /// Fused score (reciprocal ranks); for one-sided searches, that side's own score.
    pub score: f64,
}

/// What a folder sync did.
#[derive(Clone, Debug, Default)]
pub struct SyncReport {
    pub indexed: Vec<PathBuf>,
    pub unchanged: usize,
    pub removed: Vec<PathBuf>,
    /// Files that could not be read, and why.
    pub failed: Vec<(PathBuf, String)>,
    pub chunks: usize,
}

/// Progress of a sync: files done of total, and the one being read.
#[derive(Clone, Debug)]
pub struct SyncProgress<'a> {
    pub done: usize,
    pub total: usize,
    pub current: &'a Path,
}

/// Inputs per embedding request while indexing.
const EMBED_BATCH: usize = 32;
/// Candidates each side contributes to the fusion.
const CANDIDATES: usize = 50;
/// Reciprocal rank fusion's constant (the usual 60).
const RRF_K: f64 = 60.0;

pub struct Index {
    conn: Connection,
    path: String,
}

impl Index {
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| IndexError::Database { path: path.display().to_string(), message: e.to_string() })?;
        }
        let conn = Connection::open(path).map_err(|e| IndexError::Database { path: path.display().to_string(), message: e.to_string() })?;
        Self::init(conn, path.display().to_string())
    }

    pub fn open_in_memory() -> Result<Self, IndexError> {
        let conn = Connection::open_in_memory().map_err(|e| IndexError::Database { path: ":memory:".into(), message: e.to_string() })?;
        Self::init(conn, ":memory:".into())
    }

    fn init(conn: Connection, path: String) -> Result<Self, IndexError> {
        // The window searches while a background job indexes (WAL: readers do not wait for the
        // writer); a write that meets another waits for it instead of failing.
        let _ = conn.busy_timeout(std::time::Duration::from_secs(30));
        let index = Index { conn, path };
        index
            .conn
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 PRAGMA journal_mode = WAL;
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS files (
                     id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
                     mtime_ns INTEGER NOT NULL, error TEXT);
                 CREATE TABLE IF NOT EXISTS chunks (
                     id INTEGER PRIMARY KEY, file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
                     ordinal INTEGER NOT NULL, location TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL);
                 CREATE INDEX IF NOT EXISTS chunks_by_file ON chunks(file_id);
                 CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
                     text, content='chunks', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
                 CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
                     INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;
                 CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
                     INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END;",
            )
            .map_err(|e| index.db_error(e))?;
        Ok(index)
    }

    fn db_error(&self, e: rusqlite::Error) -> IndexError {
        IndexError::Database { path: self.path.clone(), message: e.to_string() }
    }

    /// The embedding model the stored vectors come from; another model's vectors are dropped
    /// (every file is read again) before anything is compared.
    fn use_model(&mut self, model: &str) -> Result<(), IndexError> {
        let stored: Option<String> = self.conn.query_row("SELECT value FROM meta WHERE key = 'embedding_model'", [], |r| r.get(0)).optional().map_err(|e| self.db_error(e))?;
        if stored.as_deref() != Some(model) {
            let tx = self.conn.transaction().map_err(|e| IndexError::Database { path: self.path.clone(), message: e.to_string() })?;
            tx.execute("DELETE FROM chunks", []).and_then(|_| tx.execute("DELETE FROM files", [])).and_then(|_| tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('embedding_model', ?1)", [model])).and_then(|_| tx.commit()).map_err(|e| IndexError::Database { path: self.path.clone(), message: e.to_string() })?;
        }
        Ok(())
    }

    /// Reads `path` and replaces its chunks (in one transaction). Returns the chunk count, or
    /// why the file cannot be read (then it is recorded with that reason and no chunks).
    pub fn index_file(&mut self, path: &Path, embedder: &dyn Embedder) -> Result<Result<usize, String>, IndexError> {
        self.use_model(&embedder.model())?;
        let (size, mtime_ns) = file_stamp(path);
        let extracted = extract(path).map(|sections| chunk_sections(&sections, CHUNK_CHARS, OVERLAP_CHARS));
        let (chunks, vectors, error) = match extracted {
            Ok(chunks) if chunks.is_empty() => (Vec::new(), Vec::new(), Some("it holds no text".to_string())),
            Ok(chunks) => {
                let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
                let mut vectors = Vec::with_capacity(texts.len());
                for part in texts.chunks(EMBED_BATCH) {
                    vectors.extend(embedder.embed(part).map_err(IndexError::Embedding)?);
                }
                if vectors.len() != chunks.len() {
                    return Err(IndexError::Embedding(format!("{} vectors for {} chunks", vectors.len(), chunks.len())));
                }
                (chunks, vectors, None)
            }
            Err(e) => (Vec::new(), Vec::new(), Some(e)),
        };
        let key = path.display().to_string();
        let tx = self.conn.transaction().map_err(|e| IndexError::Database { path: self.path.clone(), message: e.to_string() })?;
        let write = || -> rusqlite::Result<()> {
            tx.execute("DELETE FROM chunks WHERE file_id = (SELECT id FROM files WHERE path = ?1)", [&key])?;
            tx.execute(
                "INSERT INTO files(path, size, mtime_ns, error) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, error = excluded.error",
                params![key, size as i64, mtime_ns, error],
            )?;
            let file_id: i64 = tx.query_row("SELECT id FROM files WHERE path = ?1", [&key], |r| r.get(0))?;
            let mut insert = tx.prepare("INSERT INTO chunks(file_id, ordinal, location, text, vector) VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for (i, (c, v)) in chunks.iter().zip(&vectors).enumerate() {
                insert.execute(params![file_id, i as i64, c.location, c.text, vector_blob(v)])?;
            }
            Ok(())
        };
        write().and_then(|_| tx.commit()).map_err(|e| IndexError::Database { path: self.path.clone(), message: e.to_string() })?;
        Ok(match error {
            Some(e) => Err(e),
            None => Ok(chunks.len()),
        })
    }

    /// Forgets `path` and its chunks; returns whether it was indexed.
    pub fn remove_file(&mut self, path: &Path) -> Result<bool, IndexError> {
        let key = path.display().to_string();
        let tx = self.conn.transaction().map_err(|e| IndexError::Database { path: self.path.clone(), message: e.to_string() })?;
        let n = tx
            .execute("DELETE FROM chunks WHERE file_id = (SELECT id FROM files WHERE path = ?1)", [&key])
            .and_then(|_| tx.execute("DELETE FROM files WHERE path = ?1", [&key]))
            .map_err(|e| IndexError::Database { path: self.path.clone(), message: e.to_string() })?;
        tx.commit().map_err(|e| IndexError::Database { path: self.path.clone(), message: e.to_string() })?;
        Ok(n > 0)
    }

    /// Brings the index in step with the documents under `dir`: new and changed files are read,
    /// unchanged ones skipped, vanished ones removed. `cancel` is checked between files.
    pub fn sync_folder(&mut self, dir: &Path, embedder: &dyn Embedder, progress: &mut dyn FnMut(SyncProgress), cancel: &AtomicBool) -> Result<SyncReport, IndexError> {
        self.use_model(&embedder.model())?;
        let mut report = SyncReport::default();
        let on_disk = documents_under(dir);
        let known = self.files_under(dir)?;
        for (path, _) in &known {
            if !on_disk.contains(path) {
                self.remove_file(path)?;
                report.removed.push(path.clone());
            }
        }
        for (i, path) in on_disk.iter().enumerate() {
            if cancel.load(Ordering::SeqCst) {
                return Err(IndexError::Cancelled);
            }
            progress(SyncProgress { done: i, total: on_disk.len(), current: path });
            if known.get(path) == Some(&file_stamp(path)) {
                report.unchanged += 1;
                continue;
            }
            match self.index_file(path, embedder)? {
                Ok(n) => {
                    report.chunks += n;
                    report.indexed.push(path.clone());
                }
                Err(why) => report.failed.push((path.clone(), why)),
            }
        }
        Ok(report)
    }

    /// Indexed files under `dir` with their (size, mtime) stamps.
    fn files_under(&self, dir: &Path) -> Result<HashMap<PathBuf, (u64, i64)>, IndexError> {
        let mut stmt = self.conn.prepare("SELECT path, size, mtime_ns FROM files").map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map([], |r| Ok((PathBuf::from(r.get::<_, String>(0)?), (r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)?))))
            .map_err(|e| self.db_error(e))?;
        Ok(rows.flatten().filter(|(p, _)| p.starts_with(dir)).collect())
    }

    /// Every indexed file with its chunk count and, for one that could not be read, why.
    pub fn files(&self) -> Result<Vec<(PathBuf, usize, Option<String>)>, IndexError> {
        let mut stmt = self
            .conn
            .prepare("SELECT f.path, (SELECT count(*) FROM chunks c WHERE c.file_id = f.id), f.error FROM files f ORDER BY f.path")
            .map_err(|e| self.db_error(e))?;
        let rows = stmt.query_map([], |r| Ok((PathBuf::from(r.get::<_, String>(0)?), r.get::<_, i64>(1)? as usize, r.get(2)?))).map_err(|e| self.db_error(e))?;
        Ok(rows.flatten().collect())
    }

    pub fn chunk_count(&self) -> Result<usize, IndexError> {
        self.conn.query_row("SELECT count(*) FROM chunks", [], |r| r.get::<_, i64>(0)).map(|n| n as usize).map_err(|e| self.db_error(e))
    }

    /// Full-text search: the best `k` chunks by BM25 (score: higher is better).
    pub fn search_text(&self, query: &str, k: usize) -> Result<Vec<Hit>, IndexError> {
        self.search_text_in(query, k, None)
    }

    /// [`Self::search_text`] among the files `scope` (file ids); `None`: all.
    pub fn search_text_in(&self, query: &str, k: usize, scope: Option<&[i64]>) -> Result<Vec<Hit>, IndexError> {
        let Some(fts) = fts_query(query) else { return Ok(Vec::new()) };
        let mut stmt = self
            .conn
            .prepare(
                "SELECT c.id, f.path, c.location, c.text, bm25(chunks_fts) FROM chunks_fts
                 JOIN chunks c ON c.id = chunks_fts.rowid JOIN files f ON f.id = c.file_id
                 WHERE chunks_fts MATCH ?1 AND (?3 IS NULL OR c.file_id IN (SELECT value FROM json_each(?3)))
                 ORDER BY bm25(chunks_fts) LIMIT ?2",
            )
            .map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map(params![fts, k as i64, scope_json(scope)], |r| {
                Ok(Hit { chunk_id: r.get(0)?, path: PathBuf::from(r.get::<_, String>(1)?), location: r.get(2)?, text: r.get(3)?, score: -r.get::<_, f64>(4)? })
            })
            .map_err(|e| self.db_error(e))?;
        Ok(rows.flatten().collect())
    }

    /// Vector search: the `k` chunks most similar (cosine) to `query`.
    pub fn search_vector(&self, query: &[f32], k: usize) -> Result<Vec<Hit>, IndexError> {
        self.search_vector_in(query, k, None)
    }

    /// [`Self::search_vector`] among the files `scope`; `None`: all.
    pub fn search_vector_in(&self, query: &[f32], k: usize, scope: Option<&[i64]>) -> Result<Vec<Hit>, IndexError> {
        let mut stmt = self
            .conn
            .prepare("SELECT c.id, f.path, c.location, c.text, c.vector FROM chunks c JOIN files f ON f.id = c.file_id WHERE ?1 IS NULL OR c.file_id IN (SELECT value FROM json_each(?1))")
            .map_err(|e| self.db_error(e))?;
        let rows = stmt
            .query_map([scope_json(scope)], |r| {
                let v = blob_vector(&r.get::<_, Vec<u8>>(4)?);
                Ok(Hit { chunk_id: r.get(0)?, path: PathBuf::from(r.get::<_, String>(1)?), location: r.get(2)?, text: r.get(3)?, score: crate::engine::embed::cosine(query, &v) as f64 })
            })
            .map_err(|e| self.db_error(e))?;
        let mut hits: Vec<Hit> = rows.flatten().collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k);
        Ok(hits)
    }

    /// Hybrid retrieval: BM25 and vector candidates fused by reciprocal rank; the best `k`.
    pub fn search(&self, query: &str, embedder: &dyn Embedder, k: usize) -> Result<Vec<Hit>, IndexError> {
        self.search_in(query, embedder, k, None)
    }

    /// [`Self::search`] among the files `scope`; `None`: all. While the stored vectors come
    /// from another model than `embedder`'s (not indexed again yet), only the words count.
    pub fn search_in(&self, query: &str, embedder: &dyn Embedder, k: usize, scope: Option<&[i64]>) -> Result<Vec<Hit>, IndexError> {
        let by_text = self.search_text_in(query, CANDIDATES, scope)?;
        if self.model()?.as_deref() != Some(embedder.model().as_str()) {
            return Ok(fuse(&[by_text], k));
        }
        let vector = embedder.embed(&[query.to_string()]).map_err(IndexError::Embedding)?.pop().unwrap_or_default();
        let by_vector = self.search_vector_in(&vector, CANDIDATES, scope)?;
        Ok(fuse(&[by_text, by_vector], k))
    }

    /// The embedding model of the stored vectors (none before anything was indexed).
    pub fn model(&self) -> Result<Option<String>, IndexError> {
        self.conn.query_row("SELECT value FROM meta WHERE key = 'embedding_model'", [], |r| r.get(0)).optional().map_err(|e| self.db_error(e))
    }

    /// Whether `path` is indexed as it is on disk now (same size and modification time) with
    /// the vectors of `model`.
    pub fn is_current(&self, path: &Path, model: &str) -> Result<bool, IndexError> {
        if self.model()?.as_deref() != Some(model) {
            return Ok(false);
        }
        let stamp: Option<(i64, i64)> = self.conn.query_row("SELECT size, mtime_ns FROM files WHERE path = ?1", [path.display().to_string()], |r| Ok((r.get(0)?, r.get(1)?))).optional().map_err(|e| self.db_error(e))?;
        Ok(stamp.map(|(size, mtime)| (size as u64, mtime)) == Some(file_stamp(path)))
    }

    /// The connection, for the catalog's tables that say which conversation uses which file
    /// (the catalog sits above the index): they live in the same database.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub(crate) fn error(&self, e: rusqlite::Error) -> IndexError {
        self.db_error(e)
    }
}

/// A scope of file ids as the JSON array SQLite's `json_each` reads; NULL for no scope.
fn scope_json(scope: Option<&[i64]>) -> Option<String> {
    scope.map(|ids| format!("[{}]", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")))
}

/// Reciprocal rank fusion: each list adds 1 / (60 + rank) to a chunk's score.
pub fn fuse(lists: &[Vec<Hit>], k: usize) -> Vec<Hit> {
    let mut fused: HashMap<i64, Hit> = HashMap::new();
    for list in lists {
        for (rank, hit) in list.iter().enumerate() {
            let add = 1.0 / (RRF_K + rank as f64 + 1.0);
            fused.entry(hit.chunk_id).and_modify(|h| h.score += add).or_insert_with(|| Hit { score: add, ..hit.clone() });
        }
    }
    let mut out: Vec<Hit> = fused.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk_id.cmp(&b.chunk_id)));
    out.truncate(k);
    out
}

/// The question's words as an FTS5 query (each quoted, any may match), so punctuation in a
/// question is never FTS5 syntax. Very common English words are left out.
pub fn fts_query(question: &str) -> Option<String> {
    const STOP: &[&str] = &["a", "an", "and", "are", "as", "at", "be", "by", "do", "does", "for", "from", "how", "in", "is", "it", "of", "on", "or", "the", "to", "was", "what", "when", "where", "which", "who", "why", "with"];
    let terms: Vec<String> = question
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !STOP.contains(&w.to_lowercase().as_str()))
        .map(|w| format!("\"{w}\""))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

/// The documents under `dir` (hidden folders and files left out), sorted.
pub fn documents_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() && kind_of(&path).is_some() => out.push(path),
                _ => {}
            }
        }
    }
    out.sort();
    out
}

/// (size, modification time in ns): a file whose stamp is unchanged is not read again.
fn file_stamp(path: &Path) -> (u64, i64) {
    let Ok(meta) = std::fs::metadata(path) else { return (0, 0) };
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos() as i64);
    (meta.len(), mtime)
}

fn vector_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn blob_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_become_safe_fts_queries() {
        assert_eq!(fts_query("What is P-101's code?").unwrap(), "\"P\" OR \"101\" OR \"s\" OR \"code\"");
        assert_eq!(fts_query("the? a!"), None);
    }

    #[test]
    fn vectors_round_trip_through_blobs() {
        let v = vec![0.5, -1.25, 3.0];
        assert_eq!(blob_vector(&vector_blob(&v)), v);
    }

    #[test]
    fn fusion_rewards_chunks_both_sides_found() {
        let hit = |id: i64| Hit { chunk_id: id, path: PathBuf::new(), location: String::new(), text: String::new(), score: 0.0 };
        let fused = fuse(&[vec![hit(1), hit(2), hit(3)], vec![hit(3), hit(4), hit(2)]], 10);
        let order: Vec<i64> = fused.iter().map(|h| h.chunk_id).collect();
        assert_eq!(order[..2], [3, 2]);
        assert_eq!(order.len(), 4);
    }
}
