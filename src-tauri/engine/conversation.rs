//! The data of a conversation, as the APIs receive it and the engine renders and answers it:
//! messages (Ollama's fields), the tool calls in them, and the `think` switch. The lowest layer
//! of the engine: prompt templates and the tool-call parser both use it, and it uses neither.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message of a conversation. Roles: `system`, `user`, `assistant`, `tool`. Beyond the
/// text: an assistant's reasoning and tool calls, and which call a `tool` message answers
/// (Ollama's message fields; unset ones are left out when serialised).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub tool_calls: Vec<ToolCall>,
    /// The function a `tool` message reports on (Ollama's `tool_name`; OpenAI's `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Base64 images (Ollama's `images`); only models with a projector can use them.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "null_as_default")]
    pub images: Vec<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn null_as_default<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..Default::default()
        }
    }
}

/// One tool call, Ollama's shape (`{"id", "function": {"index", "name", "arguments"}}`);
/// `arguments` is always a JSON object here (the OpenAI routes turn it into a string).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub function: ToolCallFunction,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallFunction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub name: String,
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// `think`: off, on, or an effort level the template may use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Think {
    Off,
    On,
    /// `"low"`, `"medium"` or `"high"`.
    Level(String),
}

impl Think {
    /// Reads Ollama's `think` (`true`, `false`, `"low"`, `"medium"`, `"high"`; `null` = unset).
    pub fn from_json(v: &Value) -> Result<Option<Think>, String> {
        match v {
            Value::Null => Ok(None),
            Value::Bool(true) => Ok(Some(Think::On)),
            Value::Bool(false) => Ok(Some(Think::Off)),
            Value::String(s) => Think::from_level(s).map(Some),
            _ => Err("think must be true, false, \"low\", \"medium\" or \"high\"".into()),
        }
    }

    pub fn from_level(s: &str) -> Result<Think, String> {
        match s {
            "low" | "medium" | "high" => Ok(Think::Level(s.to_string())),
            "true" => Ok(Think::On),
            "false" | "none" => Ok(Think::Off),
            other => Err(format!("think must be true, false, \"low\", \"medium\" or \"high\", not {other:?}")),
        }
    }

    pub fn enabled(&self) -> bool {
        !matches!(self, Think::Off)
    }

    pub fn level(&self) -> Option<&str> {
        match self {
            Think::Level(l) => Some(l),
            _ => None,
        }
    }
}
