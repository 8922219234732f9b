//! Tool calling and thinking: what a request asks for (`tools`, `tool_choice`, `think`), how a
//! model writes tool calls and reasoning (decided from its prompt template, per family), the
//! streaming parser that splits a reply into content, thinking and whole tool calls, and the
//! grammar that forces a valid call when the request requires one.
//!
//! Families (the formats llama.cpp's `common/chat` and Ollama's `tools` package recognise):
//! - Hermes / Qwen 2.5+ (`<tool_call>{"name": …, "arguments": …}</tool_call>`), also the format
//!   Airlock's plain prompt teaches models without a template;
//! - Mistral (`[TOOL_CALLS][{"name": …, "arguments": …}]`, and the newer `[TOOL_CALLS]name[ARGS]{…}`);
//! - Llama 3.x (a bare `{"name": …, "parameters": …}` object, optionally after `<|python_tag|>`);
//! - Ollama Go templates: the text the template writes before `.ToolCalls` is the tag (Ollama's
//!   `parseTag`), and a template that writes a bare `{` means JSON objects naming a tool.
//!
//! Must never: lose model text (anything that is not a valid call is passed on as content),
//! emit half a tool call, or mix thinking into the content.

mod grammar;
mod parse;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use super::conversation::{Think, ToolCall, ToolCallFunction};
pub use grammar::tool_grammar;
pub use parse::{ReplyParser, ReplyPart};

use super::template::PromptFormat;

/// OpenAI's `tool_choice` (Ollama always behaves as `Auto`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides; calls are parsed out of its reply.
    #[default]
    Auto,
    /// The tools are not shown to the model and its reply is text.
    None,
    /// The reply is one or more calls, enforced by a grammar.
    Required,
    /// The reply is a call of this function, enforced by a grammar.
    Function(String),
}

/// The tools part of a chat request.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolRequest {
    /// OpenAI/Ollama tool objects (`{"type": "function", "function": {"name", "description", "parameters"}}`), as sent.
    pub tools: Vec<Value>,
    pub choice: ToolChoice,
    /// More than one call in a reply (OpenAI's `parallel_tool_calls`, default true).
    pub parallel: bool,
}

impl Default for ToolRequest {
    fn default() -> Self {
        ToolRequest { tools: Vec::new(), choice: ToolChoice::Auto, parallel: true }
    }
}

impl ToolRequest {
    /// Whether the model gets to see and call tools at all.
    pub fn active(&self) -> bool {
        !self.tools.is_empty() && self.choice != ToolChoice::None
    }

    /// Names of the declared functions.
    pub fn names(&self) -> Vec<String> {
        self.tools.iter().filter_map(tool_name).map(str::to_string).collect()
    }

    /// Each declared function's name and the JSON schema of its arguments.
    pub fn schemas(&self) -> Vec<(String, Value)> {
        self.tools.iter().filter_map(|t| Some((tool_name(t)?.to_string(), tool_parameters(t)))).collect()
    }

    /// Checks the tool objects and the choice: every tool names its function, a named choice
    /// names one of them. The message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        for (i, t) in self.tools.iter().enumerate() {
            if tool_name(t).is_none_or(str::is_empty) {
                return Err(format!("tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": …, \"parameters\": {{…}}}}}}"));
            }
        }
        match &self.choice {
            ToolChoice::Required if self.tools.is_empty() => Err("tool_choice \"required\" needs at least one tool in tools".into()),
            ToolChoice::Function(name) if !self.names().contains(name) => Err(format!("tool_choice names the function {name:?}, which is not among the tools")),
            _ => Ok(()),
        }
    }
}

/// The function name of a tool object (`function.name`, or a bare `name`).
pub fn tool_name(tool: &Value) -> Option<&str> {
    tool.pointer("/function/name").or_else(|| tool.get("name")).and_then(Value::as_str)
}

/// The JSON schema of a tool's arguments (an empty object schema when it has none).
pub fn tool_parameters(tool: &Value) -> Value {
    tool.pointer("/function/parameters").or_else(|| tool.get("parameters")).cloned().unwrap_or_else(|| serde_json::json!({"type": "object"}))
}

/// Where a tool call starts in a model's reply, and what may close it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opener {
    pub tag: String,
    /// Text after the call's JSON that belongs to the call (`</tool_call>`).
    pub close: Option<String>,
    /// The tag is the first character of the JSON itself (`{`): only objects naming a declared
    /// tool are calls, anything else is content.
    pub tag_is_json: bool,
}

/// How a model family writes tool calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSyntax {
    pub family: Family,
    pub openers: Vec<Opener>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `<tool_call>…</tool_call>` (Hermes, Qwen, Airlock's plain format).
    Hermes,
    /// `[TOOL_CALLS][…]`.
    Mistral,
    /// Bare JSON with `"parameters"` (Llama 3.x), optionally after `<|python_tag|>`.
    Llama3,
    /// An Ollama Go template's own tag (or bare JSON when it has none).
    GoTemplate,
}

impl ToolSyntax {
    fn tagged(family: Family, tag: &str, close: Option<&str>) -> Self {
        ToolSyntax { family, openers: vec![Opener { tag: tag.into(), close: close.map(str::to_string), tag_is_json: false }] }
    }

    fn bare_json(family: Family) -> Self {
        ToolSyntax { family, openers: vec![Opener { tag: "{".into(), close: None, tag_is_json: true }] }
    }

    pub fn hermes() -> Self {
        Self::tagged(Family::Hermes, "<tool_call>", Some("</tool_call>"))
    }

    /// The syntax a template (of `format`, with source `source`) teaches its model.
    pub fn for_template(format: PromptFormat, source: Option<&str>) -> Self {
        let src = source.unwrap_or("");
        match format {
            PromptFormat::Plain => Self::hermes(),
            PromptFormat::Jinja if src.contains("<tool_call>") => Self::hermes(),
            PromptFormat::Jinja if src.contains("[TOOL_CALLS]") => Self::tagged(Family::Mistral, "[TOOL_CALLS]", None),
            PromptFormat::Jinja if src.contains("<|python_tag|>") || src.contains("ipython") => {
                let mut s = Self::bare_json(Family::Llama3);
                s.openers.push(Opener { tag: "<|python_tag|>".into(), close: None, tag_is_json: false });
                s
            }
            PromptFormat::Jinja => {
                // Unknown family: bare JSON objects naming a tool, and Hermes tags, the two most common.
                let mut s = Self::bare_json(Family::GoTemplate);
                s.openers.extend(Self::hermes().openers);
                s
            }
            PromptFormat::GoTemplate => match go_template_tag(src) {
                Some(tag) if tag != "{" => {
                    let close = closing_tag(&tag);
                    let family = if tag == "[TOOL_CALLS]" { Family::Mistral } else if tag == "<tool_call>" { Family::Hermes } else { Family::GoTemplate };
                    Self::tagged(family, &tag, close.as_deref())
                }
                _ => Self::bare_json(Family::GoTemplate),
            },
        }
    }

    /// The key the family writes arguments under.
    pub fn arguments_key(&self) -> &'static str {
        match self.family {
            Family::Llama3 => "parameters",
            _ => "arguments",
        }
    }
}

/// Ollama's `parseTag`: the first text inside `{{ range .ToolCalls }}`, cut before any `{` and
/// trimmed; `"{"` when that leaves nothing. `None` when the template never ranges over tool calls.
pub fn go_template_tag(source: &str) -> Option<String> {
    let at = [".ToolCalls"].iter().filter_map(|needle| {
        let mut from = 0;
        while let Some(i) = source[from..].find(needle) {
            let abs = from + i;
            // Only inside a `range` action.
            let action_start = source[..abs].rfind("{{")?;
            if source[action_start..abs].contains("range") {
                return Some(abs);
            }
            from = abs + needle.len();
        }
        None
    }).next()?;
    let after = &source[at..];
    let body = &after[after.find("}}")? + 2..];
    let text = &body[..body.find("{{").unwrap_or(body.len())];
    let text = text.split('{').next().unwrap_or("").trim();
    Some(if text.is_empty() { "{".into() } else { text.to_string() })
}

/// `<x>` closes with `</x>`; other tags have no closing text.
fn closing_tag(tag: &str) -> Option<String> {
    let inner = tag.strip_prefix('<')?.strip_suffix('>')?;
    (!inner.starts_with('/')).then(|| format!("</{inner}>"))
}

/// Whether a template shows tools to the model (it reads `tools` / `.Tools`).
pub fn template_supports_tools(format: PromptFormat, source: Option<&str>) -> bool {
    let src = source.unwrap_or("");
    match format {
        PromptFormat::Plain => true,
        PromptFormat::Jinja => src.contains("tools"),
        PromptFormat::GoTemplate => src.contains(".Tools"),
    }
}

/// The tags a thinking template wraps reasoning in, when the template supports thinking.
pub fn thinking_tags(format: PromptFormat, source: Option<&str>) -> Option<(&'static str, &'static str)> {
    let src = source.unwrap_or("");
    let supports = match format {
        PromptFormat::Plain => false,
        PromptFormat::Jinja => src.contains("<think>") || src.contains("enable_thinking") || src.contains("reasoning_content"),
        PromptFormat::GoTemplate => src.contains(".Think") || src.contains("<think>"),
    };
    supports.then_some(("<think>", "</think>"))
}

/// A prompt that ends inside an open `<think>` (templates that force thinking on).
pub fn thinking_forced_open(prompt: &str, open: &str) -> bool {
    prompt.trim_end().ends_with(open)
}

/// A fresh call id (`call_` + 24 hex), unique within the process.
pub fn new_call_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    format!("call_{:016x}{:08x}", t ^ n.rotate_left(40), (n as u32).wrapping_mul(2_654_435_761))
}
