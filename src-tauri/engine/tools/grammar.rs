//! The grammar behind `tool_choice: "required"` or a named function: the model can only write
//! a call, in its family's syntax, whose arguments match the tool's JSON schema. The JSON part
//! comes from llama.cpp's JSON-schema converter (`llama_cpp_2::json_schema_to_grammar`, the
//! same path `format` uses); only the family's tags around it are written here.

use serde_json::{json, Value};

use super::{tool_name, tool_parameters, Family, ToolRequest, ToolSyntax};

/// Most calls one reply may hold when parallel calls are allowed (keeps a small model that
/// cannot stop from looping through calls until the token limit).
const MAX_PARALLEL_CALLS: usize = 4;

/// A GBNF grammar (root rule `root`) for a reply made only of tool calls. `only`: the one
/// function allowed (a named `tool_choice`).
pub fn tool_grammar(syntax: &ToolSyntax, req: &ToolRequest, only: Option<&str>) -> Result<String, String> {
    let key = syntax.arguments_key();
    let schemas: Vec<Value> = req
        .tools
        .iter()
        .filter_map(|t| Some((tool_name(t)?, t)))
        .filter(|(name, _)| only.is_none_or(|o| o == *name))
        .map(|(name, t)| {
            json!({
                "type": "object",
                "properties": { "name": { "const": name }, key: tool_parameters(t) },
                "required": ["name", key],
                "additionalProperties": false,
            })
        })
        .collect();
    if schemas.is_empty() {
        return Err("no tool to call: tools is empty or does not contain the chosen function".into());
    }
    let schema = if schemas.len() == 1 { schemas.into_iter().next().unwrap_or_default() } else { json!({ "anyOf": schemas }) };
    let call = llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|e| format!("a tool's parameters are not a JSON schema Airlock can enforce: {e}"))?;
    let call = rename_root(&call, "tool-call");
    let more = if req.parallel { MAX_PARALLEL_CALLS - 1 } else { 0 };
    let root = match syntax.family {
        Family::Mistral => format!("root ::= {} \"[\" tool-call (\",\" tool-call){{0,{more}}} \"]\"", literal("[TOOL_CALLS]")),
        _ => {
            let opener = syntax.openers.iter().find(|o| !o.tag_is_json);
            let block = match opener {
                Some(o) => format!("{} \"\\n\" tool-call {}", literal(&o.tag), o.close.as_deref().map(|c| format!("\"\\n\" {}", literal(c))).unwrap_or_default()),
                None => "tool-call".to_string(),
            };
            // Llama 3 writes one bare object per line.
            let block = if syntax.family == Family::Llama3 { "tool-call".to_string() } else { block };
            format!("root ::= call-block (\"\\n\" call-block){{0,{more}}}\ncall-block ::= {block}")
        }
    };
    Ok(format!("{root}\n{call}"))
}

/// Renames the converter's `root` rule (its definition and any reference to it).
fn rename_root(grammar: &str, to: &str) -> String {
    grammar
        .lines()
        .map(|line| match line.strip_prefix("root ::=") {
            Some(rest) => format!("{to} ::={}", replace_word(rest, "root", to)),
            None => replace_word(line, "root", to),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replaces `word` where it stands alone as a rule name (outside quoted literals).
fn replace_word(line: &str, word: &str, with: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let (mut in_str, mut escaped) = (false, false);
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < line.len() {
        let c = bytes[i];
        if in_str {
            out.push(c as char);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if line[i..].starts_with(word) && (i == 0 || !is_name(bytes[i - 1])) && bytes.get(i + word.len()).is_none_or(|b| !is_name(*b)) {
            out.push_str(with);
            i += word.len();
            continue;
        }
        if c == b'"' {
            in_str = true;
        }
        // Multi-byte characters only occur inside literals; copy them whole.
        let ch = line[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// A GBNF string literal.
fn literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
