//! The plain prompt format for models without any template (specified in the module docs).

use super::{ChatMessage, PromptFormat, RenderedPrompt};

/// The stop string that keeps a base model from writing the user's next turn itself.
pub(crate) const USER_TURN_STOP: &str = "\nUser:";

/// How the plain format introduces tools (followed by one tool JSON per line and a blank line).
pub(crate) const TOOLS_INTRO: &str = "You can call these tools (JSON schemas, one per line):\n";
/// How the plain format asks for a call (Hermes' syntax, which the reply parser reads).
pub(crate) const TOOLS_CALL_HOWTO: &str = "To call a tool, answer with <tool_call>\n{\"name\": \"<tool name>\", \"arguments\": {<arguments>}}\n</tool_call>\n\n";

/// With tools: the tool's answer is not the model's to write.
pub(crate) const TOOL_TURN_STOP: &str = "\nTool:";

pub(crate) fn render_chat(messages: &[ChatMessage], add_generation_prompt: bool, tools: Option<&[serde_json::Value]>) -> RenderedPrompt {
    let mut text = String::new();
    let mut turns: Vec<String> = Vec::new();
    for m in messages {
        match m.role.as_str() {
            "system" => {
                text.push_str(&m.content);
                text.push_str("\n\n");
            }
            "user" => turns.push(format!("User: {}", m.content)),
            "assistant" if !m.tool_calls.is_empty() => {
                let mut turn = format!("Assistant: {}", m.content);
                for c in &m.tool_calls {
                    let call = serde_json::json!({ "name": c.function.name, "arguments": c.function.arguments });
                    turn.push_str(&format!("<tool_call>\n{call}\n</tool_call>"));
                }
                turns.push(turn);
            }
            "assistant" => turns.push(format!("Assistant: {}", m.content)),
            "tool" => turns.push(format!("Tool: {}", m.content)),
            other => turns.push(format!("{other}: {}", m.content)),
        }
    }
    let mut stop = vec![USER_TURN_STOP.to_string()];
    if let Some(tools) = tools.filter(|t| !t.is_empty()) {
        // After a call the model must wait for the tool, not invent its answer.
        stop.push(TOOL_TURN_STOP.to_string());
        text.push_str(TOOLS_INTRO);
        for t in tools {
            text.push_str(&t.to_string());
            text.push('\n');
        }
        text.push_str(TOOLS_CALL_HOWTO);
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
        stop,
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
