//! The data a Go template sees: Go's basic kinds, slices and string-keyed maps.

use std::collections::BTreeMap;
use std::rc::Rc;

/// A template value. Containers are reference-counted so `range` and variables copy cheaply.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// Go's `nil` (and what a missing map key yields, as with Ollama's `missingkey=zero`).
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    List(Rc<Vec<Value>>),
    /// Struct-like records and maps; keys iterate sorted, like Go's `range` over a map.
    Map(Rc<BTreeMap<String, Value>>),
}

/// Key under which a record carries its own JSON text: Ollama's tool types are Go structs whose
/// fields templates read by Go name (`.Function.Name`) while `{{ . }}` and `json` print their
/// JSON (lowercase names, declaration order).
pub(crate) const JSON_KEY: &str = "\u{0}json";

impl Value {
    /// A struct-like record: fields by Go name, printed as `json`.
    pub(crate) fn record<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>, json: String) -> Value {
        let mut map: BTreeMap<String, Value> = fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        map.insert(JSON_KEY.to_string(), Value::Str(Rc::from(json)));
        Value::Map(Rc::new(map))
    }

    pub(crate) fn str(s: &str) -> Value {
        Value::Str(Rc::from(s))
    }

    pub(crate) fn list(items: Vec<Value>) -> Value {
        Value::List(Rc::new(items))
    }

    pub(crate) fn map<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Map(Rc::new(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        ))
    }

    /// Go's truth: false, 0, "", nil and empty containers are false.
    pub(crate) fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "slice",
            Value::Map(_) => "map",
        }
    }

    /// How `{{ . }}` prints a value. Containers print as JSON, which is what Ollama's template
    /// types (`.Tools`, `.Function.Arguments`) print through their `String()` methods; `nil`
    /// prints nothing.
    pub(crate) fn to_output(&self) -> String {
        match self {
            Value::Nil => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => go_float(*f),
            Value::Str(s) => s.to_string(),
            Value::List(_) | Value::Map(_) => self.to_json(),
        }
    }

    /// Go's `json.Marshal`: compact, map keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Value::Nil => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) if f.is_finite() => out.push_str(&go_float(*f)),
            Value::Float(_) => out.push_str("null"),
            Value::Str(s) => json_string(out, s),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Map(entries) if entries.contains_key(JSON_KEY) => {
                if let Some(Value::Str(json)) = entries.get(JSON_KEY) {
                    out.push_str(json);
                }
            }
            Value::Map(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

/// A string as Go's `encoding/json` writes it (HTML escaping on, the default; `\b` and `\f` as
/// Go 1.22 and later write them): for templates' `json` and for Ollama's layer files.
pub(crate) fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `%v` for float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): shortest digits, exponent
/// form when the exponent is < -4 or >= 21.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let sci = format!("{f:e}");
    let exp: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    if f != 0.0 && !(-4..21).contains(&exp) {
        let (mantissa, _) = sci.split_once('e').unwrap_or((&sci, ""));
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}
