//! Which conversation reads which documents: files attached to one conversation, and
//! **libraries** (folders) that any conversation may use. Kept in the index's own database
//! (tables `attachments`, `libraries`, `conversation_libraries`), so one file holds everything
//! and an attachment can never point at chunks that are gone.
//!
//! A conversation's attachments go with it ([`Catalog::forget_conversation`]); a file's chunks
//! are dropped once no conversation and no library uses it. Libraries stay until removed.
//! [`Catalog::sync`] brings a conversation's files up to date by size and modification time
//! (cheap when nothing changed), so it runs before every question.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::index::{Embedder, Hit, Index, IndexError, SyncProgress, SyncReport};

/// A file attached to a conversation, as the window shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Attachment {
    pub id: i64,
    /// The file name, for the chip.
    pub name: String,
    pub path: String,
    /// Chunks indexed; 0 with `error` when it cannot be read, 0 without it while not indexed yet.
    pub chunks: usize,
    pub error: Option<String>,
    pub indexed: bool,
}

/// A folder several conversations may use.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Library {
    pub id: i64,
    pub name: String,
    pub path: String,
    /// Documents indexed under it, their chunks, and the ones that cannot be read (path, why).
    pub files: usize,
    pub chunks: usize,
    pub failed: Vec<(String, String)>,
}

pub struct Catalog {
    index: Index,
}

impl Catalog {
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        Self::init(Index::open(path)?)
    }

    pub fn open_in_memory() -> Result<Self, IndexError> {
        Self::init(Index::open_in_memory()?)
    }

    fn init(index: Index) -> Result<Self, IndexError> {
        index
            .conn()
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS attachments (
                     id INTEGER PRIMARY KEY, conversation TEXT NOT NULL, path TEXT NOT NULL, UNIQUE(conversation, path));
                 CREATE TABLE IF NOT EXISTS libraries (id INTEGER PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL UNIQUE);
                 CREATE TABLE IF NOT EXISTS conversation_libraries (
                     conversation TEXT NOT NULL, library INTEGER NOT NULL REFERENCES libraries(id) ON DELETE CASCADE,
                     PRIMARY KEY(conversation, library));",
            )
            .map_err(|e| index.error(e))?;
        Ok(Catalog { index })
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    fn exec(&self, sql: &str, p: impl rusqlite::Params) -> Result<usize, IndexError> {
        self.index.conn().execute(sql, p).map_err(|e| self.index.error(e))
    }

    // ---- Settings ---------------------------------------------------------------------------

    /// The embedding model chosen in Settings; `None`: each conversation's chat model embeds.
    pub fn chosen_model(&self) -> Result<Option<String>, IndexError> {
        self.index.conn().query_row("SELECT value FROM meta WHERE key = 'chosen_embedding_model'", [], |r| r.get(0)).optional().map_err(|e| self.index.error(e))
    }

    pub fn set_chosen_model(&self, model: Option<&str>) -> Result<(), IndexError> {
        match model {
            Some(m) => self.exec("INSERT OR REPLACE INTO meta(key, value) VALUES ('chosen_embedding_model', ?1)", [m])?,
            None => self.exec("DELETE FROM meta WHERE key = 'chosen_embedding_model'", [])?,
        };
        Ok(())
    }

    /// The model that embeds for a conversation chatting with `chat_model`.
    pub fn embedding_model(&self, chat_model: &str) -> Result<String, IndexError> {
        Ok(self.chosen_model()?.unwrap_or_else(|| chat_model.to_string()))
    }

    // ---- Attachments ------------------------------------------------------------------------

    /// Attaches `path` to `conversation` (again is a no-op). Indexing is [`Self::sync`]'s job.
    pub fn attach(&self, conversation: &str, path: &Path) -> Result<(), IndexError> {
        self.exec("INSERT OR IGNORE INTO attachments(conversation, path) VALUES (?1, ?2)", params![conversation, path.display().to_string()])?;
        Ok(())
    }

    /// Removes attachment `id` from `conversation`; its chunks go when nothing else uses the file.
    pub fn detach(&mut self, conversation: &str, id: i64) -> Result<(), IndexError> {
        let path: Option<String> = self.index.conn().query_row("SELECT path FROM attachments WHERE id = ?1 AND conversation = ?2", params![id, conversation], |r| r.get(0)).optional().map_err(|e| self.index.error(e))?;
        if let Some(path) = path {
            self.exec("DELETE FROM attachments WHERE id = ?1", [id])?;
            self.drop_if_unused(Path::new(&path))?;
        }
        Ok(())
    }

    pub fn attachments(&self, conversation: &str) -> Result<Vec<Attachment>, IndexError> {
        let mut stmt = self
            .index
            .conn()
            .prepare(
                "SELECT a.id, a.path, (SELECT count(*) FROM chunks c WHERE c.file_id = f.id), f.error, f.id IS NOT NULL
                 FROM attachments a LEFT JOIN files f ON f.path = a.path WHERE a.conversation = ?1 ORDER BY a.id",
            )
            .map_err(|e| self.index.error(e))?;
        let rows = stmt
            .query_map([conversation], |r| {
                let path: String = r.get(1)?;
                Ok(Attachment { id: r.get(0)?, name: file_name(&path), path, chunks: r.get::<_, Option<i64>>(2)?.unwrap_or(0) as usize, error: r.get(3)?, indexed: r.get(4)? })
            })
            .map_err(|e| self.index.error(e))?;
        Ok(rows.flatten().collect())
    }

    /// The conversation was deleted: its attachments and library choices go, and the chunks of
    /// files nothing else uses.
    pub fn forget_conversation(&mut self, conversation: &str) -> Result<(), IndexError> {
        let paths: Vec<String> = {
            let mut stmt = self.index.conn().prepare("SELECT path FROM attachments WHERE conversation = ?1").map_err(|e| self.index.error(e))?;
            let rows = stmt.query_map([conversation], |r| r.get(0)).map_err(|e| self.index.error(e))?;
            rows.flatten().collect()
        };
        self.exec("DELETE FROM attachments WHERE conversation = ?1", [conversation])?;
        self.exec("DELETE FROM conversation_libraries WHERE conversation = ?1", [conversation])?;
        for p in paths {
            self.drop_if_unused(Path::new(&p))?;
        }
        Ok(())
    }

    /// Drops `path`'s chunks unless a conversation has it attached or it lies in a library.
    fn drop_if_unused(&mut self, path: &Path) -> Result<(), IndexError> {
        let key = path.display().to_string();
        let attached: bool = self.index.conn().query_row("SELECT EXISTS(SELECT 1 FROM attachments WHERE path = ?1)", [&key], |r| r.get(0)).map_err(|e| self.index.error(e))?;
        if !attached && !self.libraries()?.iter().any(|l| path.starts_with(&l.path)) {
            self.index.remove_file(path)?;
        }
        Ok(())
    }

    // ---- Libraries --------------------------------------------------------------------------

    /// Adds `dir` as a library (an existing one is returned as it is).
    pub fn add_library(&self, dir: &Path) -> Result<Library, IndexError> {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
        self.exec("INSERT OR IGNORE INTO libraries(name, path) VALUES (?1, ?2)", params![name, dir.display().to_string()])?;
        let id: i64 = self.index.conn().query_row("SELECT id FROM libraries WHERE path = ?1", [dir.display().to_string()], |r| r.get(0)).map_err(|e| self.index.error(e))?;
        Ok(self.libraries()?.into_iter().find(|l| l.id == id).expect("the library just added"))
    }

    /// Removes library `id` from every conversation and drops the chunks of its files that no
    /// conversation has attached and no other library holds.
    pub fn remove_library(&mut self, id: i64) -> Result<(), IndexError> {
        let Some(library) = self.libraries()?.into_iter().find(|l| l.id == id) else { return Ok(()) };
        self.exec("DELETE FROM conversation_libraries WHERE library = ?1", [id])?;
        self.exec("DELETE FROM libraries WHERE id = ?1", [id])?;
        for (path, _, _) in self.index.files()? {
            if path.starts_with(&library.path) {
                self.drop_if_unused(&path)?;
            }
        }
        Ok(())
    }

    pub fn libraries(&self) -> Result<Vec<Library>, IndexError> {
        let libs: Vec<(i64, String, String)> = {
            let mut stmt = self.index.conn().prepare("SELECT id, name, path FROM libraries ORDER BY name, id").map_err(|e| self.index.error(e))?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).map_err(|e| self.index.error(e))?;
            rows.flatten().collect()
        };
        let files = self.index.files()?;
        Ok(libs
            .into_iter()
            .map(|(id, name, path)| {
                let under: Vec<_> = files.iter().filter(|(p, _, _)| p.starts_with(&path)).collect();
                Library {
                    id,
                    name,
                    files: under.iter().filter(|(_, _, e)| e.is_none()).count(),
                    chunks: under.iter().map(|(_, n, _)| n).sum(),
                    failed: under.iter().filter_map(|(p, _, e)| e.as_ref().map(|e| (p.display().to_string(), e.clone()))).collect(),
                    path,
                }
            })
            .collect())
    }

    /// The libraries `conversation` uses (ids).
    pub fn libraries_of(&self, conversation: &str) -> Result<Vec<i64>, IndexError> {
        let mut stmt = self.index.conn().prepare("SELECT library FROM conversation_libraries WHERE conversation = ?1 ORDER BY library").map_err(|e| self.index.error(e))?;
        let rows = stmt.query_map([conversation], |r| r.get(0)).map_err(|e| self.index.error(e))?;
        Ok(rows.flatten().collect())
    }

    /// `conversation` uses exactly the libraries `ids` (unknown ids are left out).
    pub fn use_libraries(&mut self, conversation: &str, ids: &[i64]) -> Result<(), IndexError> {
        let tx = self.index.conn_mut().transaction().map_err(|e| IndexError::Database { path: String::new(), message: e.to_string() })?;
        let write = || -> rusqlite::Result<()> {
            tx.execute("DELETE FROM conversation_libraries WHERE conversation = ?1", [conversation])?;
            for id in ids {
                tx.execute("INSERT OR IGNORE INTO conversation_libraries(conversation, library) SELECT ?1, id FROM libraries WHERE id = ?2", params![conversation, id])?;
            }
            Ok(())
        };
        write().and_then(|_| tx.commit()).map_err(|e| IndexError::Database { path: String::new(), message: e.to_string() })
    }

    // ---- Indexing and retrieval -------------------------------------------------------------

    /// Whether `conversation` has any document to search (attachments or libraries).
    pub fn has_documents(&self, conversation: &str) -> Result<bool, IndexError> {
        self.index
            .conn()
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM attachments WHERE conversation = ?1) OR EXISTS(SELECT 1 FROM conversation_libraries WHERE conversation = ?1)",
                [conversation],
                |r| r.get(0),
            )
            .map_err(|e| self.index.error(e))
    }

    /// Whether anything of `conversation`'s would be read by [`Self::sync`] with `model`.
    pub fn needs_sync(&self, conversation: &str, model: &str) -> Result<bool, IndexError> {
        for a in self.attachments(conversation)? {
            if !self.index.is_current(Path::new(&a.path), model)? {
                return Ok(true);
            }
        }
        let libraries = self.libraries()?;
        for id in self.libraries_of(conversation)? {
            let Some(l) = libraries.iter().find(|l| l.id == id) else { continue };
            let on_disk = super::index::documents_under(Path::new(&l.path));
            let known = self.index.files()?.into_iter().filter(|(p, _, _)| p.starts_with(&l.path)).count();
            if on_disk.len() != known {
                return Ok(true);
            }
            for p in on_disk {
                if !self.index.is_current(&p, model)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Brings `conversation`'s attachments and libraries up to date: new and changed files are
    /// read, unchanged ones skipped (size and modification time), a file that cannot be read is
    /// reported with why and the rest go on. `cancel` is checked between files.
    pub fn sync(&mut self, conversation: &str, embedder: &dyn Embedder, progress: &mut dyn FnMut(SyncProgress), cancel: &AtomicBool) -> Result<SyncReport, IndexError> {
        let model = embedder.model();
        let mut report = SyncReport::default();
        let attached: Vec<PathBuf> = self.attachments(conversation)?.into_iter().map(|a| PathBuf::from(a.path)).collect();
        for (i, path) in attached.iter().enumerate() {
            if cancel.load(Ordering::SeqCst) {
                return Err(IndexError::Cancelled);
            }
            progress(SyncProgress { done: i, total: attached.len(), current: path });
            if self.index.is_current(path, &model)? {
                report.unchanged += 1;
                continue;
            }
            match self.index.index_file(path, embedder)? {
                Ok(n) => {
                    report.chunks += n;
                    report.indexed.push(path.clone());
                }
                Err(why) => report.failed.push((path.clone(), why)),
            }
        }
        let libraries = self.libraries()?;
        for id in self.libraries_of(conversation)? {
            if let Some(l) = libraries.iter().find(|l| l.id == id) {
                merge(&mut report, self.sync_folder(Path::new(&l.path), embedder, progress, cancel)?);
            }
        }
        Ok(report)
    }

    /// Indexes library `id` (new and changed files; vanished ones removed).
    pub fn sync_library(&mut self, id: i64, embedder: &dyn Embedder, progress: &mut dyn FnMut(SyncProgress), cancel: &AtomicBool) -> Result<SyncReport, IndexError> {
        let Some(l) = self.libraries()?.into_iter().find(|l| l.id == id) else { return Ok(SyncReport::default()) };
        self.sync_folder(Path::new(&l.path), embedder, progress, cancel)
    }

    fn sync_folder(&mut self, dir: &Path, embedder: &dyn Embedder, progress: &mut dyn FnMut(SyncProgress), cancel: &AtomicBool) -> Result<SyncReport, IndexError> {
        let mut report = self.index.sync_folder(dir, embedder, progress, cancel)?;
        // Files that stayed unreadable are still reported, so the window can say why.
        for (path, _, error) in self.index.files()? {
            if let Some(why) = error.filter(|_| path.starts_with(dir) && !report.failed.iter().any(|(p, _)| *p == path)) {
                report.failed.push((path, why));
            }
        }
        Ok(report)
    }

    /// The ids of the indexed files `conversation` may read.
    fn scope(&self, conversation: &str) -> Result<Vec<i64>, IndexError> {
        let mut stmt = self
            .index
            .conn()
            .prepare(
                "SELECT f.id FROM files f WHERE f.path IN (SELECT path FROM attachments WHERE conversation = ?1)
                 OR EXISTS (SELECT 1 FROM conversation_libraries cl JOIN libraries l ON l.id = cl.library
                            WHERE cl.conversation = ?1 AND substr(f.path, 1, length(l.path) + 1) = l.path || '/')",
            )
            .map_err(|e| self.index.error(e))?;
        let rows = stmt.query_map([conversation], |r| r.get(0)).map_err(|e| self.index.error(e))?;
        Ok(rows.flatten().collect())
    }

    /// The best `k` chunks for `question` among `conversation`'s documents (hybrid search).
    pub fn retrieve(&self, conversation: &str, question: &str, embedder: &dyn Embedder, k: usize) -> Result<Vec<Hit>, IndexError> {
        let scope = self.scope(conversation)?;
        if scope.is_empty() {
            return Ok(Vec::new());
        }
        self.index.search_in(question, embedder, k, Some(&scope))
    }
}

fn merge(into: &mut SyncReport, r: SyncReport) {
    into.indexed.extend(r.indexed);
    into.unchanged += r.unchanged;
    into.removed.extend(r.removed);
    into.failed.extend(r.failed);
    into.chunks += r.chunks;
}

pub fn file_name(path: &str) -> String {
    Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.to_string())
}
