//! Ollama's Modelfile grammar (`parser/parser.go`), rune for rune: an instruction name (any
//! case), whitespace, then a value that runs to the end of the line unless it opens a `"` or
//! `"""` quote, in which case it runs (over newlines) to the end of a line that closes it.
//! `#` starts a comment line. Differences kept on purpose: `\r\n` counts as one line in error
//! messages, and characters Go would silently drop (non-printable ones) are kept.

use std::fmt;

/// One instruction of a Modelfile, with the line it starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub line: usize,
    pub instruction: Instruction,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Instruction {
    /// A `.gguf` path, a folder holding one, or a model name.
    From(String),
    /// A parameter name (as written) and its raw value; checked by [`super::params`].
    Parameter { name: String, value: String },
    Template(String),
    System(String),
    Message { role: String, content: String },
    License(String),
    Adapter(String),
    Renderer(String),
    Parser(String),
    Requires(String),
    Draft(String),
}

impl Instruction {
    /// The instruction's keyword as Modelfiles write it.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Parameter { .. } => "PARAMETER",
            Instruction::Template(_) => "TEMPLATE",
            Instruction::System(_) => "SYSTEM",
            Instruction::Message { .. } => "MESSAGE",
            Instruction::License(_) => "LICENSE",
            Instruction::Adapter(_) => "ADAPTER",
            Instruction::Renderer(_) => "RENDERER",
            Instruction::Parser(_) => "PARSER",
            Instruction::Requires(_) => "REQUIRES",
            Instruction::Draft(_) => "DRAFT",
        }
    }
}

/// A parsed Modelfile: its instructions in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modelfile {
    pub commands: Vec<Command>,
}

/// What is wrong with a Modelfile, and on which line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

pub const INSTRUCTIONS: &str = "FROM, PARAMETER, TEMPLATE, SYSTEM, MESSAGE, LICENSE, ADAPTER (and Ollama's RENDERER, PARSER, REQUIRES, DRAFT)";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Nil,
    Name,
    Value,
    Parameter,
    Message,
    Comment,
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}
fn is_newline(c: char) -> bool {
    c == '\r' || c == '\n'
}

/// `"""…"""` or `"…"` around the whole value, else the value itself; `None` while a quote is
/// still open.
fn unquote(s: &str) -> Option<&str> {
    if let Some(rest) = s.strip_prefix("\"\"\"") {
        return (s.len() >= 6 && s.ends_with("\"\"\"")).then(|| &rest[..rest.len() - 3]);
    }
    if let Some(rest) = s.strip_prefix('"') {
        return (s.len() >= 2 && s.ends_with('"')).then(|| &rest[..rest.len() - 1]);
    }
    Some(s)
}

/// Go's `strings.TrimSpace`.
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace())
}

pub fn parse(text: &str) -> Result<Modelfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut commands = Vec::new();
    let mut state = State::Nil;
    let mut buf = String::new();
    let mut line = 1usize;
    let mut start_line = 1usize;
    // The instruction being read: its keyword (lower case) and, for MESSAGE, its role.
    let mut keyword = String::new();
    let mut param_name = String::new();
    let mut role = String::new();
    let mut prev = '\0';

    let err = |line: usize, message: String| ParseError { line, message };
    let mut finish = |keyword: &str, param: &str, role: &str, value: String, line: usize| -> Result<(), ParseError> {
        let instruction = match keyword {
            "from" => Instruction::From(value),
            "parameter" => Instruction::Parameter { name: param.to_string(), value },
            "template" => Instruction::Template(value),
            "system" => Instruction::System(value),
            "message" => Instruction::Message { role: role.to_string(), content: value },
            "license" => Instruction::License(value),
            "adapter" => Instruction::Adapter(value),
            "renderer" => Instruction::Renderer(value),
            "parser" => Instruction::Parser(value),
            "requires" => Instruction::Requires(value),
            "draft" => Instruction::Draft(value),
            other => return Err(err(line, format!("unknown instruction {other:?}"))),
        };
        commands.push(Command { line, instruction });
        Ok(())
    };

    for c in text.chars() {
        // `\r\n` is one line break.
        if c == '\n' && prev != '\r' || c == '\r' {
            line += 1;
        }
        prev = c;
        match state {
            State::Nil => {
                if c == '#' {
                    state = State::Comment;
                } else if !is_space(c) && !is_newline(c) {
                    state = State::Name;
                    start_line = line;
                    buf.clear();
                    buf.push(c);
                }
            }
            State::Comment => {
                if is_newline(c) {
                    state = State::Nil;
                }
            }
            State::Name => {
                if c.is_ascii_alphabetic() {
                    buf.push(c);
                } else if is_space(c) {
                    keyword = buf.to_ascii_lowercase();
                    buf.clear();
                    state = match keyword.as_str() {
                        "from" | "license" | "template" | "system" | "adapter" | "draft" | "renderer" | "parser" | "requires" => State::Value,
                        "parameter" => State::Parameter,
                        "message" => State::Message,
                        _ => return Err(err(start_line, format!("unknown instruction {keyword:?}; a Modelfile's instructions are {INSTRUCTIONS}"))),
                    };
                } else if is_newline(c) {
                    let k = buf.to_ascii_lowercase();
                    return Err(err(start_line, format!("{} needs a value on the same line", if is_known(&k) { buf.to_ascii_uppercase() } else { format!("unknown instruction {buf:?}; a Modelfile's instructions are {INSTRUCTIONS}") })));
                } else {
                    return Err(err(start_line, format!("unexpected {c:?} in instruction name {buf:?}; a Modelfile's instructions are {INSTRUCTIONS}")));
                }
            }
            State::Parameter => {
                if c.is_ascii_alphanumeric() || c == '_' {
                    buf.push(c);
                } else if is_space(c) {
                    if buf.is_empty() {
                        continue; // several spaces before the name
                    }
                    param_name = std::mem::take(&mut buf);
                    state = State::Value;
                } else if is_newline(c) {
                    return Err(err(start_line, if buf.is_empty() { "PARAMETER needs a name and a value, e.g. PARAMETER temperature 0.7".into() } else { format!("PARAMETER {buf} needs a value on the same line") }));
                } else {
                    return Err(err(start_line, format!("unexpected {c:?} in the parameter name {buf:?}: names are letters, digits and _")));
                }
            }
            State::Message => {
                if c.is_ascii_alphabetic() {
                    buf.push(c);
                } else if is_space(c) && buf.is_empty() {
                    continue;
                } else if is_space(c) {
                    if !matches!(buf.as_str(), "system" | "user" | "assistant") {
                        return Err(err(start_line, format!("MESSAGE role {buf:?} must be one of \"system\", \"user\" or \"assistant\"")));
                    }
                    role = std::mem::take(&mut buf);
                    state = State::Value;
                } else {
                    return Err(err(start_line, format!("MESSAGE needs a role (system, user or assistant) and a message, e.g. MESSAGE user Hello; found {c:?}")));
                }
            }
            State::Value => {
                if is_newline(c) {
                    if let Some(value) = unquote(trim(&buf)) {
                        finish(&keyword, &param_name, &role, value.to_string(), start_line)?;
                        buf.clear();
                        state = State::Nil;
                        continue;
                    }
                }
                buf.push(c);
            }
        }
    }
    match state {
        State::Nil | State::Comment => {}
        State::Value => match unquote(trim(&buf)) {
            Some(value) => finish(&keyword, &param_name, &role, value.to_string(), start_line)?,
            None => {
                let quote = if trim(&buf).starts_with("\"\"\"") { "\"\"\"" } else { "\"" };
                return Err(err(start_line, format!("the {quote} opened here is never closed (a quoted value ends with {quote} at the end of a line)")));
            }
        },
        State::Name | State::Parameter | State::Message => return Err(err(start_line, "the Modelfile ends in the middle of an instruction".into())),
    }
    if !commands.iter().any(|c| matches!(c.instruction, Instruction::From(_))) {
        return Err(ParseError { line: 0, message: "no FROM line: a Modelfile names its base with FROM (a .gguf file, a folder holding one, or a model in the store)".into() });
    }
    Ok(Modelfile { commands })
}

fn is_known(k: &str) -> bool {
    matches!(k, "from" | "license" | "template" | "system" | "adapter" | "draft" | "renderer" | "parser" | "requires" | "parameter" | "message")
}

/// Quotes a value so [`parse`] reads it back unchanged: `"…"`, or `"""…"""` when it holds a `"`.
pub fn quote(s: &str) -> String {
    let needs = s.is_empty() || s.contains('\n') || s.contains('\r') || s.starts_with('"') || s != trim(s);
    if !needs {
        return s.to_string();
    }
    if s.contains('"') {
        format!("\"\"\"{s}\"\"\"")
    } else {
        format!("\"{s}\"")
    }
}
