//! Tests of prompt rendering against real model templates.

mod jinja;
mod ollama;
mod plain;
mod tools;

use time::macros::datetime;
use time::OffsetDateTime;

use super::*;

/// The clock `testdata/jinja/gen_expected.py` uses.
pub(super) const NOW: OffsetDateTime = datetime!(2025-01-15 12:00 UTC);

/// The conversation of Ollama's template tests: system, user, assistant, user.
pub(super) fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "You are a helpful assistant."),
        ChatMessage::new("user", "Hello, how are you?"),
        ChatMessage::new("assistant", "I'm doing great. How can I help you today?"),
        ChatMessage::new("user", "I'd like to show off how chat templating works!"),
    ]
}

pub(super) fn jinja_spec<'a>(template: &'a str, bos: &'a str, eos: &'a str) -> TemplateSpec<'a> {
    TemplateSpec {
        gguf_chat_template: Some(template),
        bos_token: Some(bos),
        eos_token: Some(eos),
        ..Default::default()
    }
}

pub(super) fn go_spec(template: &str) -> TemplateSpec<'_> {
    TemplateSpec {
        ollama_template: Some(template),
        ..Default::default()
    }
}
