//! The plain prompt format for models without any template (specified in the module docs).

use super::{ChatMessage, PromptFormat, RenderedPrompt};

/// The stop string that keeps a base model from writing the user's next turn itself.
pub(crate) const USER_TURN_STOP: &str = "\nUser:";

pub(crate) fn render_chat(messages: &[ChatMessage], add_generation_prompt: bool) -> RenderedPrompt {
    let mut text = String::new();
    let mut turns: Vec<String> = Vec::new();
    for m in messages {
        match m.role.as_str() {
            "system" => {
                text.push_str(&m.content);
                text.push_str("\n\n");
            }
            "user" => turns.push(format!("User: {}", m.content)),
            "assistant" => turns.push(format!("Assistant: {}", m.content)),
            "tool" => turns.push(format!("Tool: {}", m.content)),
            other => turns.push(format!("{other}: {}", m.content)),
        }
    }
    text.push_str(&turns.join("\n"));
    if add_generation_prompt {
        if !turns.is_empty() {
            text.push('\n');
        }
        text.push_str("Assistant:");
    }
    RenderedPrompt {
        text,
        format: PromptFormat::Plain,
        stop: vec![USER_TURN_STOP.to_string()],
    }
}

pub(crate) fn render_generate(system: Option<&str>, prompt: &str) -> RenderedPrompt {
    let text = match system.filter(|s| !s.is_empty()) {
        Some(system) => format!("{system}\n\n{prompt}"),
        None => prompt.to_string(),
    };
    RenderedPrompt {
        text,
        format: PromptFormat::Plain,
        stop: Vec::new(),
    }
}
