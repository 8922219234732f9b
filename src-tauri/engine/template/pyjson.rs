//! `tojson` as Hugging Face defines it for chat templates: Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
//!
//! minijinja's built-in `tojson` is Jinja's HTML-safe variant (compact separators, `<` escaped as
//! `\u003c`), which would change the prompt of every template that prints tool schemas or tool
//! results — so it is replaced.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// Nesting deeper than this is refused (Python would hit its recursion limit much later, but no
/// prompt needs it and it keeps the recursion here bounded).
const MAX_DEPTH: usize = 128;

/// Options of `json.dumps` that templates use.
pub(crate) struct DumpOptions {
    pub indent: Option<String>,
    pub item_separator: String,
    pub key_separator: String,
    pub sort_keys: bool,
    /// Stop once the text would exceed this many bytes (the render's output cap).
    pub max_len: usize,
}

impl DumpOptions {
    /// Reads `indent=`, `separators=`, `sort_keys=` and (ignored, always off) `ensure_ascii=`.
    pub(crate) fn from_kwargs(kwargs: &Kwargs, max_len: usize) -> Result<DumpOptions, Error> {
        let indent = match kwargs.get::<Option<Value>>("indent")? {
            None => None,
            Some(v) if v.is_none() || v.is_undefined() => None,
            Some(v) => match v.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    let n = i64::try_from(v)?;
                    Some(" ".repeat(usize::try_from(n.max(0)).unwrap_or(0).min(max_len)))
                }
            },
        };
        let (item_default, key_default) = if indent.is_some() {
            (",", ": ")
        } else {
            (", ", ": ")
        };
        let (item_separator, key_separator) =
            match kwargs.get::<Option<Vec<String>>>("separators")? {
                Some(seps) if seps.len() == 2 => (seps[0].clone(), seps[1].clone()),
                Some(_) => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair",
                    ));
                }
                None => (item_default.to_string(), key_default.to_string()),
            };
        let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
        let _ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?;
        kwargs.assert_all_used()?;
        Ok(DumpOptions {
            indent,
            item_separator,
            key_separator,
            sort_keys,
            max_len,
        })
    }
}

/// Error source marking "the JSON text outgrew the output cap".
#[derive(Debug)]
pub(crate) struct JsonTooLarge;

impl std::fmt::Display for JsonTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tojson output too large")
    }
}

impl std::error::Error for JsonTooLarge {}

pub(crate) fn dumps(value: &Value, opts: &DumpOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, value, opts, 0)?;
    Ok(out)
}

fn write_value(
    out: &mut String,
    value: &Value,
    opts: &DumpOptions,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value nested too deeply",
        ));
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, value),
        ValueKind::String => write_string(out, value.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, '[', ']', items.len(), opts, depth, |out, i| {
                write_value(out, &items[i], opts, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key_string(&key)?, item));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, '{', '}', entries.len(), opts, depth, |out, i| {
                write_string(out, &entries[i].0);
                out.push_str(&opts.key_separator);
                write_value(out, &entries[i].1, opts, depth + 1)
            })?;
        }
        _ => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "tojson: object of type {} is not JSON serializable",
                    value.kind()
                ),
            ));
        }
    }
    if out.len() > opts.max_len {
        return Err(
            Error::new(ErrorKind::InvalidOperation, "tojson output too large")
                .with_source(JsonTooLarge),
        );
    }
    Ok(())
}

fn write_container(
    out: &mut String,
    open: char,
    close: char,
    len: usize,
    opts: &DumpOptions,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    for i in 0..len {
        if i > 0 {
            out.push_str(&opts.item_separator);
        }
        if let Some(indent) = &opts.indent {
            newline_indent(out, indent, depth + 1, opts.max_len)?;
        }
        item(out, i)?;
    }
    if let Some(indent) = &opts.indent {
        newline_indent(out, indent, depth, opts.max_len)?;
    }
    out.push(close);
    Ok(())
}

fn newline_indent(
    out: &mut String,
    indent: &str,
    level: usize,
    max_len: usize,
) -> Result<(), Error> {
    if out.len().saturating_add(indent.len().saturating_mul(level)) > max_len {
        return Err(
            Error::new(ErrorKind::InvalidOperation, "tojson output too large")
                .with_source(JsonTooLarge),
        );
    }
    out.push('\n');
    for _ in 0..level {
        out.push_str(indent);
    }
    Ok(())
}

/// Python turns `None`/bool/number keys into strings and refuses the rest.
fn key_string(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::None | ValueKind::Undefined => Ok("null".into()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(&mut s, key);
            Ok(s)
        }
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: keys must be str, int, float, bool or None",
        )),
    }
}

fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        out.push_str(&value.to_string());
    } else {
        match f64::try_from(value.clone()) {
            Ok(f) => out.push_str(&python_float_repr(f)),
            Err(_) => out.push_str(&value.to_string()),
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, scientific notation outside 1e-4..1e16.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    // `{:e}` gives the shortest round-trip mantissa, e.g. "1.5e16" or "-2e-5".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa
        .strip_prefix('-')
        .map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if (point as usize) >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs())
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
