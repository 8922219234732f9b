//! Chat prompt rendering: turns a conversation into the exact text a model was trained on.
//!
//! Owns: choosing and running the model's prompt template, in this order:
//! 1. **Jinja** — the GGUF `tokenizer.chat_template`, rendered like Hugging Face `transformers`
//!    does (`trim_blocks`, `lstrip_blocks`, Python string methods, `raise_exception`,
//!    `strftime_now`, a Python-`json.dumps`-compatible `tojson`), see `jinja`.
//! 2. **Go template** — an Ollama `template` layer, rendered like Ollama does (message collation,
//!    the legacy `.System/.Prompt/.Response` pairwise mode), see `ollama` and the small
//!    Go `text/template` engine in `gotmpl`. Also used when a Jinja template does not parse or
//!    fails for a reason other than `raise_exception` or a limit, because Ollama itself only
//!    ever uses this template.
//! 3. **Plain** — for models with neither (base models such as the Gemma 3 270M test model).
//!
//! # The plain format
//! For [`render_chat`], exactly:
//! - first the content of every `system` message, wherever it is, each followed by a blank line
//!   (`"{content}\n\n"`);
//! - then the other messages, in order, as turns `"User: {content}"` (`user`), `"Assistant: {content}"`
//!   (`assistant`), `"Tool: {content}"` (`tool`), or `"{role}: {content}"` for any other role,
//!   joined with `"\n"`;
//! - with `add_generation_prompt`, then `"\nAssistant:"` (just `"Assistant:"` when there are no
//!   turns). No space after the colon: the model writes it.
//! - stop strings: `["\nUser:"]`.
//! - with tools: after the system texts, `"You can call these tools (JSON schemas, one per line):\n"`,
//!   each tool object as compact JSON on its own line, then `"To call a tool, answer with
//!   <tool_call>\n{\"name\": \"<tool name>\", \"arguments\": {<arguments>}}\n</tool_call>\n\n"`;
//!   an assistant turn with tool calls is its content followed by
//!   `"<tool_call>\n{\"name\": …, \"arguments\": …}\n</tool_call>"` per call; `"\nTool:"` is
//!   a stop string too.
//!
//! Example: `"Be brief.\n\nUser: Hi\nAssistant: Hello!\nUser: Why?\nAssistant:"`.
//!
//! For [`render_generate`] (Ollama's `/api/generate` on a model without a template renders the raw
//! prompt, which is what completing with a base model needs): `"{system}\n\n{prompt}"` when a
//! system text is given, else `"{prompt}"`; no stop strings.
//!
//! # Globals the Jinja template sees
//! `messages` (list of `{role, content}`, plus `tool_calls` / `tool_call_id` / `name` /
//! `reasoning_content` when set), `add_generation_prompt`, `bos_token`, `eos_token`
//! (empty strings when unknown), `tools` (the request's tool objects, else `none`),
//! `enable_thinking` and `reasoning_effort` (only when the request sets `think`), `date_string` (today, `"%d %b %Y"`, UTC, as
//! llama.cpp passes it), `raise_exception(msg)`, `strftime_now(fmt)` (UTC).
//!
//! Must never: loop forever, allocate without bound or crash the process on a hostile template
//! (every render has a step budget and an output cap, see `Budget`); read files, the network or
//! the environment from a template; change message content beyond what the template (or
//! Ollama's merging of consecutive same-role messages) does; guess a template from the model's
//! name.

mod error;
pub(crate) mod gotmpl;
mod jinja;
mod ollama;
mod plain;
mod pyjson;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use error::TemplateError;

pub use super::conversation::ChatMessage;
use super::conversation::Think;

/// What a chat prompt carries besides the messages: the tools the model may call and the
/// thinking switch, both passed to templates the way Hugging Face / Ollama pass them.
#[derive(Clone, Copy, Debug, Default)]
pub struct PromptExtras<'a> {
    /// Tool objects as the client sent them; `None` renders as `tools = none` / `.Tools` nil.
    pub tools: Option<&'a [serde_json::Value]>,
    pub think: Option<&'a Think>,
}

/// What a model offers to build its prompt from (all optional).
#[derive(Clone, Copy, Debug, Default)]
pub struct TemplateSpec<'a> {
    /// GGUF `tokenizer.chat_template` (Jinja).
    pub gguf_chat_template: Option<&'a str>,
    /// The Ollama `application/vnd.ollama.image.template` layer (Go text/template).
    pub ollama_template: Option<&'a str>,
    /// Text of the BOS token, for templates that print `bos_token`.
    pub bos_token: Option<&'a str>,
    /// Text of the EOS token, for templates that print `eos_token`.
    pub eos_token: Option<&'a str>,
}

/// Which kind of template produced a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptFormat {
    Jinja,
    GoTemplate,
    Plain,
}

impl std::fmt::Display for PromptFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PromptFormat::Jinja => "chat template (Jinja, from the GGUF file)",
            PromptFormat::GoTemplate => "Ollama template (Go text/template)",
            PromptFormat::Plain => "plain prompt format",
        })
    }
}

/// A rendered prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedPrompt {
    pub text: String,
    pub format: PromptFormat,
    /// Extra stop strings implied by the format (the plain format's `"\nUser:"`); the model's
    /// own end-of-generation tokens and `params` stops are the caller's business.
    pub stop: Vec<String>,
}

/// Renders a chat conversation. `add_generation_prompt` asks for the opening of the assistant's
/// turn at the end (Jinja and plain formats; Ollama Go templates always decide this themselves).
pub fn render_chat(
    spec: &TemplateSpec,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<RenderedPrompt, TemplateError> {
    render_chat_with(spec, messages, add_generation_prompt, PromptExtras::default())
}

/// [`render_chat`] with tools and the thinking switch.
pub fn render_chat_with(
    spec: &TemplateSpec,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    extras: PromptExtras,
) -> Result<RenderedPrompt, TemplateError> {
    render_chat_full_at(
        spec,
        messages,
        add_generation_prompt,
        extras,
        OffsetDateTime::now_utc(),
    )
}

/// Renders an Ollama `/api/generate` request: the optional system text and the prompt as a
/// `[system, user]` conversation with the generation prompt, or the raw prompt in the plain format.
pub fn render_generate(
    spec: &TemplateSpec,
    system: Option<&str>,
    prompt: &str,
) -> Result<RenderedPrompt, TemplateError> {
    render_generate_with(spec, system, prompt, PromptExtras::default())
}

/// [`render_generate`] with the thinking switch (tools do not apply to completions).
pub fn render_generate_with(
    spec: &TemplateSpec,
    system: Option<&str>,
    prompt: &str,
    extras: PromptExtras,
) -> Result<RenderedPrompt, TemplateError> {
    render_generate_full_at(spec, system, prompt, extras, OffsetDateTime::now_utc())
}

/// [`render_chat`] with a fixed clock, so tests are deterministic.
#[cfg(test)]
pub(crate) fn render_chat_at(
    spec: &TemplateSpec,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    now: OffsetDateTime,
) -> Result<RenderedPrompt, TemplateError> {
    render_chat_full_at(spec, messages, add_generation_prompt, PromptExtras::default(), now)
}

pub(crate) fn render_chat_full_at(
    spec: &TemplateSpec,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    extras: PromptExtras,
    now: OffsetDateTime,
) -> Result<RenderedPrompt, TemplateError> {
    let budget = Budget::for_messages(messages, extras.tools);
    let go_template = non_empty(spec.ollama_template);
    if let Some(source) = non_empty(spec.gguf_chat_template) {
        match jinja::render(source, spec, messages, add_generation_prompt, &extras, now, budget) {
            Ok(text) => {
                return Ok(RenderedPrompt {
                    text,
                    format: PromptFormat::Jinja,
                    stop: Vec::new(),
                })
            }
            // An incompatible Jinja template falls back to the template Ollama would have used.
            Err(TemplateError::Syntax { .. } | TemplateError::Render { .. })
                if go_template.is_some() => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(source) = go_template {
        let text = ollama::render_chat(source, messages, &extras, now, budget)?;
        return Ok(RenderedPrompt {
            text,
            format: PromptFormat::GoTemplate,
            stop: Vec::new(),
        });
    }
    Ok(plain::render_chat(messages, add_generation_prompt, extras.tools))
}

/// [`render_generate`] with a fixed clock.
#[cfg(test)]
pub(crate) fn render_generate_at(
    spec: &TemplateSpec,
    system: Option<&str>,
    prompt: &str,
    now: OffsetDateTime,
) -> Result<RenderedPrompt, TemplateError> {
    render_generate_full_at(spec, system, prompt, PromptExtras::default(), now)
}

pub(crate) fn render_generate_full_at(
    spec: &TemplateSpec,
    system: Option<&str>,
    prompt: &str,
    extras: PromptExtras,
    now: OffsetDateTime,
) -> Result<RenderedPrompt, TemplateError> {
    if non_empty(spec.gguf_chat_template).is_none() && non_empty(spec.ollama_template).is_none() {
        return Ok(plain::render_generate(system, prompt));
    }
    // Like Ollama: an empty system text is no system message.
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = system.filter(|s| !s.is_empty()) {
        messages.push(ChatMessage::new("system", system));
    }
    messages.push(ChatMessage::new("user", prompt));
    let extras = PromptExtras { tools: None, ..extras };
    render_chat_full_at(spec, &messages, true, extras, now)
}

fn non_empty(template: Option<&str>) -> Option<&str> {
    template.filter(|t| !t.trim().is_empty())
}

/// Per-render limits, scaled by the conversation so long chats still fit while a template that
/// loops or multiplies its input fails fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Most bytes the rendered prompt may have: 1 MiB + 4 × the message bytes.
    pub output_bytes: usize,
    /// Step budget: minijinja fuel for Jinja, node/iteration/function steps for Go templates.
    pub fuel: u64,
}

pub(crate) const BASE_OUTPUT_LIMIT: usize = 1 << 20;
pub(crate) const BASE_FUEL: u64 = 1_000_000;

impl Budget {
    pub(crate) fn for_messages(messages: &[ChatMessage], tools: Option<&[serde_json::Value]>) -> Budget {
        let bytes: usize = messages
            .iter()
            .map(|m| {
                m.role.len()
                    + m.content.len()
                    + m.thinking.as_ref().map_or(0, String::len)
                    + m.tool_calls.iter().map(|c| json_len(c)).sum::<usize>()
            })
            .sum::<usize>()
            + tools.map_or(0, |t| t.iter().map(|v| json_len(v)).sum());
        Budget {
            output_bytes: BASE_OUTPUT_LIMIT.saturating_add(bytes.saturating_mul(4)),
            fuel: BASE_FUEL
                .saturating_add(bytes as u64)
                .saturating_add((messages.len() as u64).saturating_mul(2_000)),
        }
    }
}

/// Checks that `source` parses as an Ollama (Go `text/template`) template, as `create` does
/// before it writes a `template` layer.
pub fn check_go_template(source: &str) -> Result<(), TemplateError> {
    ollama::check(source)
}

/// Serialised size of what a template may print (tools, tool calls), for the budgets.
fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_string(value).map_or(0, |s| s.len())
}
