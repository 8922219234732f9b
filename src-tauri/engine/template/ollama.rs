//! Ollama's template semantics (`template/template.go`) on top of [`gotmpl`]: message collation,
//! the `.Messages` mode and the legacy `.System`/`.Prompt`/`.Response` mode that renders one
//! template run per user/assistant turn and cuts the last run right after `.Response`.

use time::OffsetDateTime;

use super::gotmpl::value::json_string;
use super::gotmpl::{GoError, GoErrorKind, Limits, Template, Value};
use super::{Budget, ChatMessage, PromptExtras, PromptFormat, TemplateError};

const FORMAT: PromptFormat = PromptFormat::GoTemplate;

pub(crate) fn render_chat(
    source: &str,
    messages: &[ChatMessage],
    extras: &PromptExtras,
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
        let mut data = values(&system, Some(Value::list(list)), "", "", extras);
        if let (Value::Map(map), Some(tools)) = (&mut data, extras.tools) {
            std::rc::Rc::make_mut(map).insert("Tools".into(), Value::list(tools.iter().map(go_struct).collect()));
        }
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
            let data = values(&system, None, &prompt, &response, extras);
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
    let data = values(&system, None, &prompt, &response, extras);
    template
        .cut_after_response()
        .execute(&data, &mut limits, &mut out)
        .map_err(|e| to_error(e, budget))?;
    Ok(out)
}

/// The template's data: `.System .Messages .Tools .Response` in messages mode, `.System .Prompt
/// .Response` in legacy mode, plus the thinking flags (absent keys read as nil, as in Ollama).
fn values(system: &str, messages: Option<Value>, prompt: &str, response: &str, extras: &PromptExtras) -> Value {
    let mut entries = vec![
        ("System", Value::str(system)),
        ("Response", Value::str(response)),
        ("Think", Value::Bool(extras.think.is_some_and(|t| t.enabled()))),
        ("ThinkLevel", Value::str(extras.think.and_then(|t| t.level()).unwrap_or(""))),
        ("IsThinkSet", Value::Bool(extras.think.is_some())),
    ];
    match messages {
        Some(list) => entries.extend([("Messages", list), ("Tools", Value::Nil)]),
        None => entries.push(("Prompt", Value::str(prompt))),
    }
    Value::map(entries)
}

fn message_value(m: &ChatMessage) -> Value {
    let calls = if m.tool_calls.is_empty() {
        Value::Nil
    } else {
        Value::list(m.tool_calls.iter().map(|c| go_struct(&serde_json::to_value(c).unwrap_or_default())).collect())
    };
    Value::map([
        ("Role", Value::str(&m.role)),
        ("Content", Value::str(&m.content)),
        ("Thinking", Value::str(m.thinking.as_deref().unwrap_or(""))),
        ("Images", Value::Nil),
        ("ToolCalls", calls),
        ("ToolName", Value::str(m.tool_name.as_deref().unwrap_or(""))),
        ("ToolCallID", Value::str(m.tool_call_id.as_deref().unwrap_or(""))),
    ])
}

/// A JSON object as one of Ollama's Go structs (`api.Tool`, `api.ToolCall`, `ToolProperty`…):
/// fields under their Go names (`type` → `.Type`, `id` → `.ID`), printed as the JSON itself.
/// `properties` and `arguments` are Go maps keyed by the client's names.
fn go_struct(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Object(o) => {
            let fields: Vec<(String, Value)> = o
                .iter()
                .map(|(k, x)| {
                    let value = match (k.as_str(), x) {
                        ("properties", serde_json::Value::Object(props)) => {
                            Value::map(props.iter().map(|(name, p)| (name.as_str(), go_struct(p))))
                        }
                        ("arguments", x) => go_value(x),
                        _ => go_struct(x),
                    };
                    (go_field_name(k), value)
                })
                .collect();
            Value::record(fields.iter().map(|(k, v)| (k.as_str(), v.clone())), go_json(v))
        }
        serde_json::Value::Array(items) => Value::list(items.iter().map(go_struct).collect()),
        other => go_value(other),
    }
}

/// Plain data (a Go `map[string]any`): keys as they are.
fn go_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => n.as_i64().map(Value::Int).unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(0.0))),
        serde_json::Value::String(s) => Value::str(s),
        serde_json::Value::Array(items) => Value::list(items.iter().map(go_value).collect()),
        serde_json::Value::Object(o) => Value::map(o.iter().map(|(k, x)| (k.as_str(), go_value(x)))),
    }
}

fn go_field_name(json_name: &str) -> String {
    match json_name {
        "id" => "ID".into(),
        "$defs" => "Defs".into(),
        name => {
            let mut c = name.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
        }
    }
}

/// Go's `json.Marshal` of the value, keeping the client's key order (struct fields print in
/// declaration order, which clients send in).
fn go_json(v: &serde_json::Value) -> String {
    let mut out = String::new();
    write_go_json(v, &mut out);
    out
}

fn write_go_json(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => json_string(out, s),
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(x, out);
            }
            out.push(']');
        }
        serde_json::Value::Object(o) => {
            out.push('{');
            for (i, (k, x)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(out, k);
                out.push(':');
                write_go_json(x, out);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
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
    Template::parse(&source).map(|_| ()).map_err(|e| to_error(e, Budget::for_messages(&[], None)))
}
