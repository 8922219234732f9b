//! GGUF `tokenizer.chat_template` rendering with minijinja, set up the way Hugging Face
//! `transformers` renders chat templates (`apply_chat_template`), so prompts match what the
//! model was trained on.

use std::cell::Cell;
use std::io;
use std::rc::Rc;

use minijinja::value::{Kwargs, Value};
use minijinja::{context, AutoEscape, Environment, Error, ErrorKind, State};
use time::OffsetDateTime;

use super::pyjson::{self, DumpOptions, JsonTooLarge};
use super::{Budget, ChatMessage, PromptExtras, PromptFormat, TemplateError, TemplateSpec};

const FORMAT: PromptFormat = PromptFormat::Jinja;
const NAME: &str = "chat_template";

/// Stack for rendering: minijinja recurses per nested block and macro call, and debug frames are
/// large; a hostile template must hit the recursion limit, never the end of the stack (which
/// would abort the whole process). Only touched pages are committed, so this costs nothing.
const RENDER_STACK: usize = 64 << 20;
/// Real chat templates nest a few levels; recursive macros are the only way to go deeper.
const RECURSION_LIMIT: usize = 100;

pub(crate) fn render(
    source: &str,
    spec: &TemplateSpec,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    extras: &PromptExtras,
    now: OffsetDateTime,
    budget: Budget,
) -> Result<String, TemplateError> {
    on_large_stack(|| {
        let env = environment(now, budget);
        let source = strip_generation_tags(source);
        let template = env
            .template_from_named_str(NAME, &source)
            .map_err(|e| compile_error(&e))?;

        let messages: Vec<Value> = messages.iter().map(hf_message).collect();
        let tools = match extras.tools {
            Some(tools) => tools.iter().map(json_value).collect(),
            None => Value::from(()),
        };
        let base = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => spec.bos_token.unwrap_or(""),
            eos_token => spec.eos_token.unwrap_or(""),
            tools => tools,
            date_string => date_string(now),
        };
        // HF passes extra keyword arguments through to the template: Qwen 3 and DeepSeek read
        // `enable_thinking`, gpt-oss reads `reasoning_effort`. Unset stays undefined.
        let ctx = match extras.think {
            Some(think) => {
                let level = think.level().map(Value::from).unwrap_or(Value::UNDEFINED);
                context! { enable_thinking => think.enabled(), reasoning_effort => level, ..base }
            }
            None => base,
        };

        let overflowed = Rc::new(Cell::new(false));
        let mut out = CappedWriter {
            buf: Vec::new(),
            cap: budget.output_bytes,
            overflowed: overflowed.clone(),
        };
        let result = template.render_captured_to(ctx, &mut out).map(drop);
        match result {
            Ok(()) => String::from_utf8(out.buf).map_err(|_| TemplateError::Render {
                format: FORMAT,
                line: None,
                message: "rendered text is not valid UTF-8".into(),
            }),
            Err(_) if overflowed.get() => Err(TemplateError::OutputTooLarge {
                format: FORMAT,
                limit: budget.output_bytes,
            }),
            Err(e) => Err(render_error(&e, budget)),
        }
    })
}

/// A message as Hugging Face templates receive it: `role` and `content`, plus (only when set)
/// `tool_calls` in OpenAI's shape with `arguments` as an object (what HF documents and llama.cpp
/// passes), `tool_call_id` and `name` on tool results, and `reasoning_content` on assistant turns.
fn hf_message(m: &ChatMessage) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("role".into(), m.role.clone().into());
    map.insert("content".into(), m.content.clone().into());
    if !m.tool_calls.is_empty() {
        let calls: Vec<serde_json::Value> = m
            .tool_calls
            .iter()
            .map(|c| {
                let mut call = serde_json::json!({
                    "type": "function",
                    "function": { "name": c.function.name, "arguments": c.function.arguments },
                });
                if let Some(id) = &c.id {
                    call["id"] = id.clone().into();
                }
                call
            })
            .collect();
        map.insert("tool_calls".into(), calls.into());
    }
    if let Some(id) = &m.tool_call_id {
        map.insert("tool_call_id".into(), id.clone().into());
    }
    if let Some(name) = &m.tool_name {
        map.insert("name".into(), name.clone().into());
    }
    if let Some(thinking) = m.thinking.as_ref().filter(|t| !t.is_empty()) {
        map.insert("reasoning_content".into(), thinking.clone().into());
    }
    json_value(&serde_json::Value::Object(map))
}

/// A JSON value as the template sees it (objects keep their key order, as Python dicts do).
fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => items.iter().map(json_value).collect(),
        serde_json::Value::Object(o) => Value::from_pairs(o.iter().map(|(k, x)| (k.as_str(), json_value(x)))),
    }
}

/// Runs `render` on a thread with [`RENDER_STACK`] of stack.
fn on_large_stack(
    render: impl FnOnce() -> Result<String, TemplateError> + Send,
) -> Result<String, TemplateError> {
    let failed = |message: String| TemplateError::Render {
        format: FORMAT,
        line: None,
        message,
    };
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("chat-template".into())
            .stack_size(RENDER_STACK)
            .spawn_scoped(scope, render)
            .map_err(|e| failed(format!("cannot start the template renderer: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(failed("the template renderer failed".into())))
    })
}

/// An HF-compatible environment: trim/lstrip blocks, no autoescape, Python string/dict methods,
/// HF's helper functions and `tojson`, and a fuel budget.
fn environment(now: OffsetDateTime, budget: Budget) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("default delimiters are valid"),
    );
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(budget.fuel));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);

    env.add_function(
        "raise_exception",
        |message: Option<Value>| -> Result<Value, Error> {
            let message = message.map(|m| m.to_string()).unwrap_or_default();
            Err(Error::new(ErrorKind::InvalidOperation, message.clone())
                .with_source(Raised(message)))
        },
    );
    let timestamp = now.unix_timestamp_nanos() as f64 / 1e9;
    env.add_function(
        "strftime_now",
        move |state: &State, format: String| -> Result<String, Error> {
            let kwargs = Kwargs::from_iter([("format", Value::from(format))]);
            minijinja_contrib::filters::datetimeformat(state, Value::from(timestamp), kwargs)
        },
    );
    let max_len = budget.output_bytes;
    env.add_filter(
        "tojson",
        move |value: Value, kwargs: Kwargs| -> Result<String, Error> {
            pyjson::dumps(&value, &DumpOptions::from_kwargs(&kwargs, max_len)?)
        },
    );
    env
}

/// `date_string` as llama.cpp passes it to Llama 3.x templates: `strftime("%d %b %Y")`.
fn date_string(now: OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{:02} {} {}",
        now.day(),
        MONTHS[usize::from(u8::from(now.month())) - 1],
        now.year()
    )
}

/// HF's `{% generation %}…{% endgeneration %}` (it marks assistant text for training masks and
/// renders its body unchanged) becomes `{% if true %}…{% endif %}`, keeping whitespace markers.
pub(super) fn strip_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            // Unterminated tag: leave it for the parser to report.
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let (lead, body) = split_marker_prefix(inner);
        let (body, trail) = split_marker_suffix(body);
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                out.push_str("{%");
                out.push_str(lead);
                out.push(' ');
                out.push_str(r);
                out.push(' ');
                out.push_str(trail);
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

fn split_marker_prefix(s: &str) -> (&str, &str) {
    match s.as_bytes().first() {
        Some(b'-' | b'+') => s.split_at(1),
        _ => ("", s),
    }
}

fn split_marker_suffix(s: &str) -> (&str, &str) {
    match s.as_bytes().last() {
        Some(b'-' | b'+') => s.split_at(s.len() - 1),
        _ => (s, ""),
    }
}

/// Error source marking a `raise_exception` call.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

/// Output sink that refuses to grow past the render's cap.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
    overflowed: Rc<Cell<bool>>,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.cap {
            self.overflowed.set(true);
            return Err(io::Error::other("prompt output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Errors from compiling: all are about the template text.
fn compile_error(err: &Error) -> TemplateError {
    // The variant already says "syntax error"; keep just the detail when there is one.
    let message = match (err.kind(), err.detail()) {
        (ErrorKind::SyntaxError, Some(detail)) => detail.to_string(),
        _ => describe(err),
    };
    TemplateError::Syntax {
        format: FORMAT,
        line: err.line(),
        message,
    }
}

fn render_error(err: &Error, budget: Budget) -> TemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(s) = source {
        if let Some(raised) = s.downcast_ref::<Raised>() {
            return TemplateError::Raised {
                format: FORMAT,
                message: raised.0.clone(),
            };
        }
        if s.downcast_ref::<JsonTooLarge>().is_some() {
            return TemplateError::OutputTooLarge {
                format: FORMAT,
                limit: budget.output_bytes,
            };
        }
        source = s.source();
    }
    match err.kind() {
        ErrorKind::OutOfFuel => TemplateError::FuelExhausted { format: FORMAT },
        ErrorKind::SyntaxError => compile_error(err),
        _ => TemplateError::Render {
            format: FORMAT,
            line: err.line(),
            message: describe(err),
        },
    }
}

fn describe(err: &Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {}", err.kind(), detail),
        None => err.kind().to_string(),
    }
}
