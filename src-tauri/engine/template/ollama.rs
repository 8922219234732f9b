//! Ollama's template semantics (`template/template.go`) on top of [`gotmpl`]: message collation,
//! the `.Messages` mode and the legacy `.System`/`.Prompt`/`.Response` mode that renders one
//! template run per user/assistant turn and cuts the last run right after `.Response`.

use time::OffsetDateTime;

use super::gotmpl::{GoError, GoErrorKind, Limits, Template, Value};
use super::{Budget, ChatMessage, PromptFormat, TemplateError};

const FORMAT: PromptFormat = PromptFormat::GoTemplate;

pub(crate) fn render_chat(
    source: &str,
    messages: &[ChatMessage],
    now: OffsetDateTime,
    budget: Budget,
) -> Result<String, TemplateError> {
    // Ollama normalises line endings when it loads templates.
    let source = source.replace("\r\n", "\n");
    let mut template = Template::parse(&source).map_err(|e| to_error(e, budget))?;
    let vars = template.identifiers();
    if !vars.contains("messages") && !vars.contains("response") {
        template.append_response();
    }
    let (system, messages) = collate(messages);
    let mut limits = Limits {
        fuel: budget.fuel,
        max_output: budget.output_bytes,
        now,
    };
    let mut out = String::new();

    if vars.contains("messages") {
        let list = messages.iter().map(message_value).collect();
        let data = values(&system, Some(Value::list(list)), "", "");
        template
            .execute(&data, &mut limits, &mut out)
            .map_err(|e| to_error(e, budget))?;
        return Ok(out);
    }

    // Legacy templates see one exchange at a time; the system text comes from the messages.
    let (mut system, mut prompt, mut response) = (String::new(), String::new(), String::new());
    for m in &messages {
        let flush = match m.role.as_str() {
            "system" => !prompt.is_empty() || !response.is_empty(),
            "user" => !response.is_empty(),
            _ => false,
        };
        if flush {
            let data = values(&system, None, &prompt, &response);
            template
                .execute(&data, &mut limits, &mut out)
                .map_err(|e| to_error(e, budget))?;
            system.clear();
            prompt.clear();
            response.clear();
        }
        match m.role.as_str() {
            "system" => system = m.content.clone(),
            "user" => prompt = m.content.clone(),
            "assistant" => response = m.content.clone(),
            _ => {}
        }
    }
    let data = values(&system, None, &prompt, &response);
    template
        .cut_after_response()
        .execute(&data, &mut limits, &mut out)
        .map_err(|e| to_error(e, budget))?;
    Ok(out)
}

/// The template's data: `.System .Messages .Tools .Response` in messages mode, `.System .Prompt
/// .Response` in legacy mode, plus the thinking flags (absent keys read as nil, as in Ollama).
fn values(system: &str, messages: Option<Value>, prompt: &str, response: &str) -> Value {
    let mut entries = vec![
        ("System", Value::str(system)),
        ("Response", Value::str(response)),
        ("Think", Value::Bool(false)),
        ("ThinkLevel", Value::str("")),
        ("IsThinkSet", Value::Bool(false)),
    ];
    match messages {
        Some(list) => entries.extend([("Messages", list), ("Tools", Value::Nil)]),
        None => entries.push(("Prompt", Value::str(prompt))),
    }
    Value::map(entries)
}

fn message_value(m: &ChatMessage) -> Value {
    Value::map([
        ("Role", Value::str(&m.role)),
        ("Content", Value::str(&m.content)),
        ("Thinking", Value::str("")),
        ("Images", Value::Nil),
        ("ToolCalls", Value::Nil),
        ("ToolName", Value::str("")),
        ("ToolCallID", Value::str("")),
    ])
}

/// Ollama's `collate`: consecutive messages of one role merge with a blank line (tool results
/// stay separate); all system texts, joined with a blank line, become `.System`.
pub(crate) fn collate(messages: &[ChatMessage]) -> (String, Vec<ChatMessage>) {
    let mut system: Vec<&str> = Vec::new();
    let mut collated: Vec<ChatMessage> = Vec::new();
    for m in messages {
        if m.role == "system" {
            system.push(&m.content);
        }
        match collated.last_mut() {
            Some(last) if last.role == m.role && m.role != "tool" => {
                last.content.push_str("\n\n");
                last.content.push_str(&m.content);
            }
            _ => collated.push(m.clone()),
        }
    }
    (system.join("\n\n"), collated)
}

fn to_error(e: GoError, budget: Budget) -> TemplateError {
    match e.kind {
        GoErrorKind::Syntax => TemplateError::Syntax {
            format: FORMAT,
            line: e.line,
            message: e.message,
        },
        GoErrorKind::Exec => TemplateError::Render {
            format: FORMAT,
            line: e.line,
            message: e.message,
        },
        GoErrorKind::Fuel => TemplateError::FuelExhausted { format: FORMAT },
        GoErrorKind::Output => TemplateError::OutputTooLarge {
            format: FORMAT,
            limit: budget.output_bytes,
        },
    }
}

/// Parses `source` as Ollama loads a template, without rendering it.
pub(crate) fn check(source: &str) -> Result<(), TemplateError> {
    let source = source.replace("\r\n", "\n");
    Template::parse(&source).map(|_| ()).map_err(|e| to_error(e, Budget::for_messages(&[])))
}
