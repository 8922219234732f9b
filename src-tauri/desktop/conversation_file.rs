//! A conversation leaves the app as Markdown (to read) or JSON (to bring back), and a JSON export
//! comes back in as a new conversation. The format is in docs/conversation-export.md.
//!
//! Only what the window shows is exported: the messages as they stand (the shown version of each
//! reply), each with its thinking. An import is checked whole before anything is written, and is
//! then saved like any conversation (atomically): a bad file changes nothing.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::error::{CommandError, CommandResult};
use super::grants::Purpose;
use crate::engine::limits;

/// The `airlock_conversation` value this version writes and reads.
pub const FORMAT_VERSION: u64 = 1;
/// A file larger than this is not a conversation export.
const MAX_IMPORT_BYTES: u64 = 64 << 20;
const MAX_MESSAGES: usize = 100_000;
const MAX_TITLE_CHARS: usize = 200;

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Markdown,
    Json,
}

/// One message of an export.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ExportedMessage {
    pub role: String,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The MCP tool calls of a reply, step by step, as the window saved them (each step: the
    /// text before its calls, and the calls with their arguments, results and durations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_steps: Vec<Value>,
}

/// The JSON export.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportedConversation {
    pub airlock_conversation: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub system_prompt: String,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
    pub messages: Vec<ExportedMessage>,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn steps_of(m: &Value) -> Vec<Value> {
    m.get("tool_steps").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// A reply's tool calls in Markdown: the step's text, then per call its tool, server, status
/// and duration, arguments and result.
fn steps_markdown(steps: &[Value]) -> String {
    let mut out = String::new();
    for step in steps {
        let before = text(step, "content");
        if !before.trim().is_empty() {
            out.push_str(&format!("{}

", before.trim_end()));
        }
        for call in step.get("calls").and_then(Value::as_array).into_iter().flatten() {
            let ms = call.get("duration_ms").and_then(Value::as_u64).map(|ms| format!(", {ms} ms")).unwrap_or_default();
            let args = serde_json::to_string_pretty(call.get("arguments").unwrap_or(&Value::Null)).unwrap_or_default();
            out.push_str(&format!("**Tool call:** `{}` on `{}` ({}{ms})

```json
{args}
```

", text(call, "tool"), text(call, "server"), text(call, "status")));
            let result = text(call, "result");
            if !result.is_empty() {
                let fence = if result.contains("```") { "~~~~" } else { "```" };
                out.push_str(&format!("Result:

{fence}
{}
{fence}

", result.trim_end()));
            }
        }
    }
    out
}

/// The export of a stored conversation (as the window holds it).
pub fn to_export(conversation: &Value) -> CommandResult<ExportedConversation> {
    let messages = conversation.get("messages").and_then(Value::as_array).ok_or_else(|| CommandError::invalid("the conversation has no messages list"))?;
    let messages = messages
        .iter()
        .filter(|m| matches!(m.get("role").and_then(Value::as_str), Some("user" | "assistant" | "system")))
        // A reply that failed or was cut before any text says nothing.
        .filter(|m| !(text(m, "role") == "assistant" && text(m, "content").is_empty() && text(m, "thinking").is_empty() && steps_of(m).is_empty()))
        .map(|m| ExportedMessage {
            role: text(m, "role"),
            content: text(m, "content"),
            thinking: Some(text(m, "thinking")).filter(|t| !t.is_empty()),
            created: m.get("created").and_then(Value::as_str).map(str::to_string),
            tool_steps: steps_of(m),
        })
        .collect();
    let parameters = conversation.get("parameters").and_then(Value::as_object).map(|p| p.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    Ok(ExportedConversation {
        airlock_conversation: FORMAT_VERSION,
        title: text(conversation, "title"),
        model: conversation.get("model").and_then(Value::as_str).map(str::to_string),
        system_prompt: text(conversation, "system_prompt"),
        parameters,
        created: conversation.get("created").and_then(Value::as_str).map(str::to_string),
        updated: conversation.get("updated").and_then(Value::as_str).map(str::to_string),
        messages,
    })
}

/// The conversation as a Markdown document: a heading per message, thinking folded.
pub fn to_markdown(e: &ExportedConversation) -> String {
    let title = if e.title.trim().is_empty() { "Conversation" } else { e.title.trim() };
    let mut out = format!("# {title}\n\n");
    let mut about = Vec::new();
    if let Some(m) = &e.model {
        about.push(format!("Model: {m}"));
    }
    if let Some(c) = &e.created {
        about.push(format!("started {c}"));
    }
    if !about.is_empty() {
        out.push_str(&format!("_{}_\n\n", about.join(" · ")));
    }
    if !e.system_prompt.trim().is_empty() {
        out.push_str(&format!("**System prompt:**\n\n{}\n\n", e.system_prompt.trim_end()));
    }
    for m in &e.messages {
        let who = match m.role.as_str() {
            "user" => "You",
            "assistant" => "Assistant",
            _ => "System",
        };
        out.push_str(&format!("---\n\n### {who}\n\n"));
        if let Some(t) = &m.thinking {
            out.push_str(&format!("<details><summary>Thinking</summary>\n\n{}\n\n</details>\n\n", t.trim_end()));
        }
        out.push_str(&steps_markdown(&m.tool_steps));
        out.push_str(m.content.trim_end());
        out.push_str("\n\n");
    }
    out
}

/// Writes the export of `conversation` to `path` (atomically: a failed write leaves whatever
/// was there).
pub fn export(conversation: &Value, format: ExportFormat, path: &Path) -> CommandResult<()> {
    let e = to_export(conversation)?;
    let bytes = match format {
        ExportFormat::Markdown => to_markdown(&e).into_bytes(),
        ExportFormat::Json => serde_json::to_vec_pretty(&e).map_err(|e| CommandError::invalid(e.to_string()))?,
    };
    crate::durable::write_atomic(path, &bytes).map_err(|e| CommandError::new("io", format!("cannot write the export: {e}")))
}

/// Reads a JSON export into a new conversation (new IDs, as the window stores conversations),
/// or says what is wrong with the file. Nothing is written here.
pub fn import(path: &Path, id: &str, now: &str) -> CommandResult<Value> {
    let what = path.display();
    let size = std::fs::metadata(path).map_err(|e| CommandError::new("io", format!("cannot read {what}: {e}")))?.len();
    if size > MAX_IMPORT_BYTES {
        return Err(CommandError::invalid(format!("{what} is larger than {} MiB: not a conversation export", MAX_IMPORT_BYTES >> 20)));
    }
    let bytes = std::fs::read(path).map_err(|e| CommandError::new("io", format!("cannot read {what}: {e}")))?;
    parse_import(&bytes, id, now).map_err(|problem| CommandError::invalid(format!("{what} cannot be imported: {problem}. Choose a .json file that Airlock exported (Export → JSON).")))
}

/// [`import`] on the bytes of the file; the error says what is wrong, without the file's name.
pub fn parse_import(bytes: &[u8], id: &str, now: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("it is not valid JSON ({e})"))?;
    match v.get("airlock_conversation") {
        Some(Value::Number(n)) if n.as_u64() == Some(FORMAT_VERSION) => {}
        Some(other) => return Err(format!("it is format version {other}; this Airlock reads version {FORMAT_VERSION}")),
        None => return Err("it is not an Airlock conversation export (it has no \"airlock_conversation\" field)".into()),
    }
    let e: ExportedConversation = serde_json::from_value(v).map_err(|e| format!("a field has the wrong type ({e})"))?;
    if e.messages.len() > MAX_MESSAGES {
        return Err(format!("it has more than {MAX_MESSAGES} messages"));
    }
    let mut messages = Vec::with_capacity(e.messages.len());
    for (i, m) in e.messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "user" | "assistant" | "system") {
            return Err(format!("message {} has the role {:?}; roles are \"user\", \"assistant\" and \"system\"", i + 1, m.role));
        }
        let mut out = json!({ "id": format!("m-{}-{i}", short_id()), "role": m.role, "content": m.content, "created": m.created.clone().unwrap_or_else(|| now.to_string()) });
        if let Some(t) = m.thinking.as_ref().filter(|t| !t.is_empty()) {
            out["thinking"] = json!(t);
        }
        if m.role == "assistant" && !m.tool_steps.is_empty() {
            out["tool_steps"] = json!(m.tool_steps);
        }
        messages.push(out);
    }
    let mut parameters: Map<String, Value> = ["temperature", "top_p", "top_k", "num_predict", "num_ctx", "min_p", "repeat_penalty", "seed", "think"].iter().map(|k| (k.to_string(), Value::Null)).collect();
    for (key, value) in &e.parameters {
        match (key.as_str(), value) {
            (_, Value::Null) => {}
            ("think", Value::Bool(_)) => {
                parameters.insert(key.clone(), value.clone());
            }
            (k, Value::Number(n)) if parameters.contains_key(k) => {
                limits::check(k, n.as_f64().unwrap_or(f64::NAN)).map_err(|e| format!("parameter {e}"))?;
                parameters.insert(key.clone(), value.clone());
            }
            // Settings of a newer version: left out, the model's defaults apply.
            _ => {}
        }
    }
    let title: String = e.title.trim().chars().take(MAX_TITLE_CHARS).collect();
    Ok(json!({
        "id": id,
        "title": title,
        "model": e.model,
        "system_prompt": e.system_prompt,
        "parameters": parameters,
        "messages": messages,
        "draft": "",
        "created": e.created.unwrap_or_else(|| now.to_string()),
        "updated": now,
    }))
}

/// A fresh random ID part (the window's conversation IDs: letters, digits, `-`).
pub fn short_id() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the system's random source is available");
    hex::encode(bytes)
}

// ---- Commands ----------------------------------------------------------------------------------

/// Writes `conversation` (as the window shows it) to the file chosen in the export dialog
/// (`handle`, granted for saving a conversation only).
#[tauri::command]
pub async fn export_conversation(state: tauri::State<'_, super::AppState>, conversation: Value, format: ExportFormat, handle: String) -> CommandResult<String> {
    let path = state.grants.path(&handle, Purpose::SaveConversation)?;
    super::access::blocking(move || {
        export(&conversation, format, &path)?;
        Ok(path.display().to_string())
    })
    .await
}

/// Reads the JSON export chosen in the open dialog (`handle`) and saves it as a new
/// conversation; returns it.
#[tauri::command]
pub async fn import_conversation(state: tauri::State<'_, super::AppState>, handle: String) -> CommandResult<Value> {
    let path = state.grants.path(&handle, Purpose::OpenConversation)?;
    let conversations = state.conversations.clone();
    super::access::blocking(move || {
        let now = crate::units::now_rfc3339();
        let conversation = import(&path, &format!("c-{}", short_id()), &now)?;
        conversations.save(&conversation)?;
        Ok(conversation)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Value {
        json!({
            "id": "c-1", "title": "Sky colour", "model": "gemma3:270m", "system_prompt": "Be brief.",
            "parameters": {"temperature": 0.7, "top_p": null, "seed": 42, "think": true},
            "created": "2026-12-01T10:00:00Z", "updated": "2026-12-01T10:05:00Z", "draft": "unsent",
            "messages": [
                {"id": "m-1", "role": "user", "content": "Why is the sky blue?", "created": "2026-12-01T10:00:00Z"},
                {"id": "m-2", "role": "assistant", "content": "Rayleigh scattering.", "thinking": "Short answer wanted.", "created": "2026-12-01T10:00:01Z",
                 "stats": {"eval_tokens": 3}, "previous_versions": [{"content": "old"}], "version_index": 1},
                {"id": "m-3", "role": "user", "content": "Thanks", "created": "2026-12-01T10:01:00Z"},
                {"id": "m-4", "role": "assistant", "content": "", "error": "the model process exited", "created": "2026-12-01T10:01:01Z"}
            ]
        })
    }

    #[test]
    fn tool_calls_are_in_both_exports_and_come_back() {
        let mut c = stored();
        c["messages"][1]["tool_steps"] = json!([{ "content": "Let me look.", "calls": [{ "id": "call_1", "server": "files", "tool": "read_file", "function_name": "read_file",
            "arguments": { "name": "sky.txt" }, "status": "done", "result": "Blue light scatters most.", "is_error": false, "duration_ms": 12 }] }]);
        let md = to_markdown(&to_export(&c).unwrap());
        assert!(md.contains("Let me look.\n\n**Tool call:** `read_file` on `files` (done, 12 ms)\n\n```json\n{\n  \"name\": \"sky.txt\"\n}\n```\n\nResult:\n\n```\nBlue light scatters most.\n```"), "{md}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.json");
        export(&c, ExportFormat::Json, &path).unwrap();
        let back = import(&path, "c-new", "2026-12-02T00:00:00Z").unwrap();
        assert_eq!(back["messages"][1]["tool_steps"], c["messages"][1]["tool_steps"]);
    }

    #[test]
    fn a_json_export_comes_back_as_the_same_conversation_with_new_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.json");
        export(&stored(), ExportFormat::Json, &path).unwrap();
        let back = import(&path, "c-new", "2026-12-02T00:00:00Z").unwrap();
        assert_eq!(back["id"], "c-new");
        assert_eq!(back["title"], "Sky colour");
        assert_eq!(back["model"], "gemma3:270m");
        assert_eq!(back["system_prompt"], "Be brief.");
        assert_eq!(back["parameters"]["temperature"], 0.7);
        assert_eq!(back["parameters"]["seed"], 42);
        assert_eq!(back["parameters"]["think"], true);
        assert!(back["parameters"]["top_p"].is_null() && back["parameters"]["num_ctx"].is_null());
        assert_eq!(back["draft"], "", "an unsent draft is not exported");
        let messages = back["messages"].as_array().unwrap();
        let shown: Vec<(&str, &str)> = messages.iter().map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
        assert_eq!(shown, [("user", "Why is the sky blue?"), ("assistant", "Rayleigh scattering."), ("user", "Thanks")], "the failed empty reply is left out");
        assert_eq!(messages[1]["thinking"], "Short answer wanted.");
        assert_eq!(messages[0]["created"], "2026-12-01T10:00:00Z");
        assert!(messages.iter().all(|m| m["id"].as_str().unwrap().starts_with("m-") && m["id"] != "m-1"));
        assert!(messages[1].get("previous_versions").is_none() && messages[1].get("stats").is_none());
        // And the export of the import is the export of the original.
        let again = dir.path().join("again.json");
        export(&back, ExportFormat::Json, &again).unwrap();
        let (a, b): (Value, Value) = (serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap(), serde_json::from_slice(&std::fs::read(&again).unwrap()).unwrap());
        assert_eq!(a["messages"], b["messages"]);
        assert_eq!(a["parameters"], b["parameters"]);
    }

    #[test]
    fn markdown_has_a_heading_per_message_and_folds_thinking() {
        let md = to_markdown(&to_export(&stored()).unwrap());
        assert!(md.starts_with("# Sky colour\n\n_Model: gemma3:270m · started 2026-12-01T10:00:00Z_\n\n**System prompt:**\n\nBe brief.\n\n"), "{md}");
        assert!(md.contains("### You\n\nWhy is the sky blue?\n\n"), "{md}");
        assert!(md.contains("### Assistant\n\n<details><summary>Thinking</summary>\n\nShort answer wanted.\n\n</details>\n\nRayleigh scattering.\n\n"), "{md}");
        assert_eq!(md.matches("### ").count(), 3);
    }

    #[test]
    fn malformed_files_are_refused_saying_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"{\"airlock_conversation\": 1, \"messages\": [", "not valid JSON"),
            (b"{\"model\": \"x\", \"messages\": []}", "no \"airlock_conversation\" field"),
            (b"{\"airlock_conversation\": 7, \"messages\": []}", "format version 7"),
            (b"{\"airlock_conversation\": 1}", "wrong type"),
            (b"{\"airlock_conversation\": 1, \"messages\": [{\"role\": \"tool\", \"content\": \"x\"}]}", "message 1 has the role \"tool\""),
            (b"{\"airlock_conversation\": 1, \"messages\": [{\"role\": \"user\", \"content\": 5}]}", "wrong type"),
            (b"{\"airlock_conversation\": 1, \"messages\": [], \"parameters\": {\"temperature\": 9}}", "temperature"),
        ];
        for (bytes, want) in cases {
            let e = parse_import(bytes, "c-x", "now").unwrap_err();
            assert!(e.contains(want), "{} → {e}", String::from_utf8_lossy(bytes));
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.json");
        std::fs::write(&path, b"[1, 2]").unwrap();
        let e = import(&path, "c-x", "now").unwrap_err();
        assert_eq!(e.code, "invalid_argument");
        assert!(e.message.contains("notes.json cannot be imported") && e.message.contains("Airlock exported"), "{}", e.message);
        assert_eq!(import(&dir.path().join("missing.json"), "c-x", "now").unwrap_err().code, "io");
    }

    #[test]
    fn a_failed_export_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.md");
        std::fs::write(&path, "before").unwrap();
        assert!(export(&json!({"id": "c"}), ExportFormat::Markdown, &path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "before");
    }
}
