//! Saved conversations: one JSON file each, written to a temporary file, synced and renamed over
//! the old one, so the app being killed mid-save leaves the previous version, never a torn file.
//! (tauri-plugin-store rewrites its one file in place, which a kill can truncate: every
//! conversation at once. Settings stay there; conversations are written far more often.) The
//! commands that list, save and delete them are here too; they take IDs, never paths.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;
use tauri::State;

use super::access::blocking;
use super::error::{CommandError, CommandResult};
use super::AppState;

type AppStateRef<'a> = State<'a, AppState>;

/// A conversation larger than this is refused rather than written (a runaway bug, not a chat).
const MAX_CONVERSATION_BYTES: usize = 64 << 20;

#[derive(Clone)]
pub struct Conversations {
    dir: PathBuf,
}

impl Conversations {
    pub fn new(dir: PathBuf) -> Self {
        Conversations { dir }
    }

    /// Every readable conversation, most recently updated first. A file that does not parse
    /// is skipped (and left alone for the user to inspect), not fatal.
    pub fn list(&self) -> CommandResult<Vec<Value>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CommandError::new("io", format!("cannot read {}: {e}", self.dir.display()))),
        };
        let mut out: Vec<Value> = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            match fs::read(&path).map_err(|e| e.to_string()).and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string())) {
                Ok(v) if v.get("id").and_then(Value::as_str).is_some() => out.push(v),
                Ok(_) => eprintln!("warning: {} is not a conversation; skipped", path.display()),
                Err(e) => eprintln!("warning: cannot read the conversation {}: {e}; skipped", path.display()),
            }
        }
        let updated = |v: &Value| v.get("updated").and_then(Value::as_str).unwrap_or_default().to_string();
        out.sort_by_key(|v| std::cmp::Reverse(updated(v)));
        Ok(out)
    }

    pub fn save(&self, conversation: &Value) -> CommandResult<()> {
        let id = conversation.get("id").and_then(Value::as_str).ok_or_else(|| CommandError::invalid("a conversation needs an id"))?;
        let path = self.path(id)?;
        let bytes = serde_json::to_vec(conversation).map_err(|e| CommandError::invalid(e.to_string()))?;
        if bytes.len() > MAX_CONVERSATION_BYTES {
            return Err(CommandError::invalid(format!("the conversation is larger than {} MiB; start a new one", MAX_CONVERSATION_BYTES >> 20)));
        }
        fs::create_dir_all(&self.dir).map_err(|e| CommandError::new("io", format!("cannot create {}: {e}", self.dir.display())))?;
        crate::durable::write_atomic(&path, &bytes).map_err(|e| CommandError::new("io", format!("cannot save the conversation to {}: {e}", path.display())))
    }

    pub fn delete(&self, id: &str) -> CommandResult<()> {
        match fs::remove_file(self.path(id)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// IDs come from the web view: letters, digits, `-` and `_` only, so one can never name a
    /// path outside the folder.
    fn path(&self, id: &str) -> CommandResult<PathBuf> {
        let ok = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(CommandError::invalid(format!("invalid conversation id {id:?}")));
        }
        Ok(self.dir.join(format!("{id}.json")))
    }
}

// ---- Commands ----------------------------------------------------------------------------------

// Disk work with fsyncs: off the async runtime's threads.

#[tauri::command]
pub async fn list_conversations(state: AppStateRef<'_>) -> CommandResult<Vec<Value>> {
    let conversations = state.conversations.clone();
    blocking(move || conversations.list()).await
}

#[tauri::command]
pub async fn save_conversation(state: AppStateRef<'_>, conversation: Value) -> CommandResult<()> {
    let conversations = state.conversations.clone();
    blocking(move || conversations.save(&conversation)).await
}

#[tauri::command]
pub async fn delete_conversation(state: AppStateRef<'_>, id: String) -> CommandResult<()> {
    let conversations = state.conversations.clone();
    let documents = state.documents.clone();
    // Its attached documents go with it (libraries stay).
    blocking(move || conversations.delete(&id).and_then(|_| documents.forget_conversation(&id))).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn saves_lists_newest_first_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let convs = Conversations::new(dir.path().join("c"));
        assert!(convs.list().unwrap().is_empty());
        convs.save(&json!({"id": "a", "updated": "2026-01-01T00:00:00Z"})).unwrap();
        convs.save(&json!({"id": "b", "updated": "2026-02-01T00:00:00Z"})).unwrap();
        convs.save(&json!({"id": "a", "updated": "2026-03-01T00:00:00Z", "title": "x"})).unwrap();
        let ids: Vec<_> = convs.list().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids, ["a", "b"]);
        convs.delete("a").unwrap();
        assert_eq!(convs.list().unwrap().len(), 1);
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("c")).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
        assert!(leftovers.is_empty(), "no temporary file is left behind");
    }

    #[test]
    fn refuses_ids_that_could_name_other_paths() {
        let dir = tempfile::tempdir().unwrap();
        let convs = Conversations::new(dir.path().to_path_buf());
        for id in ["../x", "a/b", "", ".", "a.json", &"x".repeat(65)] {
            assert_eq!(convs.save(&json!({ "id": id })).unwrap_err().code, "invalid_argument", "{id}");
        }
        assert!(convs.save(&json!({ "title": "no id" })).is_err());
    }

    #[test]
    fn skips_a_broken_file_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let convs = Conversations::new(dir.path().to_path_buf());
        fs::write(dir.path().join("torn.json"), b"{\"id\": \"torn\", \"mess").unwrap();
        convs.save(&json!({"id": "ok"})).unwrap();
        assert_eq!(convs.list().unwrap().len(), 1);
        assert!(dir.path().join("torn.json").exists());
    }
}
