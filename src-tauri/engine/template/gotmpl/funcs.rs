//! Go's built-in template functions that model templates use, plus Ollama's additions
//! (`json`, `currentDate`, `yesterdayDate`, `toTypeScriptType`). `and`/`or` short-circuit and
//! live in the executor.

use std::cmp::Ordering;
use std::rc::Rc;

use time::{Duration, OffsetDateTime};

use super::value::Value;

const NAMES: &[&str] = &[
    "and",
    "or",
    "not",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "len",
    "index",
    "slice",
    "print",
    "printf",
    "println",
    "json",
    "currentDate",
    "yesterdayDate",
    "toTypeScriptType",
];

/// Caps on printf width and precision: real templates use a few; Rust panics above u16::MAX.
const MAX_PRECISION: usize = 1000;
const MAX_WIDTH: usize = 1 << 16;

pub(super) fn is_known(name: &str) -> bool {
    NAMES.contains(&name)
}

pub(super) fn call(name: &str, args: &[Value], now: OffsetDateTime) -> Result<Value, String> {
    let exactly = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    match name {
        "not" => {
            exactly(1)?;
            Ok(Value::Bool(!args[0].is_true()))
        }
        "eq" => {
            if args.len() < 2 {
                return Err("missing argument for comparison".into());
            }
            for other in &args[1..] {
                if compare(&args[0], other)? == Some(Ordering::Equal) {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" => {
            exactly(2)?;
            Ok(Value::Bool(
                compare(&args[0], &args[1])? != Some(Ordering::Equal),
            ))
        }
        "lt" | "le" | "gt" | "ge" => {
            exactly(2)?;
            let ord = compare(&args[0], &args[1])?
                .ok_or_else(|| format!("invalid type for comparison: {}", args[0].type_name()))?;
            Ok(Value::Bool(match name {
                "lt" => ord == Ordering::Less,
                "le" => ord != Ordering::Greater,
                "gt" => ord == Ordering::Greater,
                _ => ord != Ordering::Less,
            }))
        }
        "len" => {
            exactly(1)?;
            match &args[0] {
                Value::Str(s) => Ok(Value::Int(s.len() as i64)),
                Value::List(l) => Ok(Value::Int(l.len() as i64)),
                Value::Map(m) => Ok(Value::Int(m.keys().filter(|k| *k != super::value::JSON_KEY).count() as i64)),
                other => Err(format!("len of type {}", other.type_name())),
            }
        }
        "index" => index(args),
        "slice" => slice(args),
        "print" => Ok(Value::str(&sprint(args))),
        "println" => {
            let parts: Vec<String> = args.iter().map(Value::to_output).collect();
            Ok(Value::str(&(parts.join(" ") + "\n")))
        }
        "printf" => match args.first() {
            Some(Value::Str(format)) => Ok(Value::str(&sprintf(format, &args[1..]))),
            _ => Err("printf: the format must be a string".into()),
        },
        "json" => {
            exactly(1)?;
            Ok(Value::str(&args[0].to_json()))
        }
        "currentDate" => Ok(Value::str(&ymd(now))),
        "yesterdayDate" => Ok(Value::str(&ymd(now - Duration::days(1)))),
        // Ollama's `ToolProperty.ToTypeScriptType`, as a function of the property.
        "toTypeScriptType" => Ok(Value::str(&typescript_type(args.first().unwrap_or(&Value::Nil)))),
        _ => Err(format!("function {name:?} not defined")),
    }
}

/// A property's JSON-schema type as TypeScript (`string`, `number`, `string | number`, `any`).
fn typescript_type(prop: &Value) -> String {
    let ty = match prop {
        Value::Map(m) => m.get("Type").cloned().unwrap_or(Value::Nil),
        other => other.clone(),
    };
    let one = |t: &str| match t {
        "integer" => "number".to_string(),
        "array" => "any[]".to_string(),
        "object" => "Record<string, any>".to_string(),
        "" => "any".to_string(),
        t => t.to_string(),
    };
    match ty {
        Value::Str(s) => one(&s),
        Value::List(l) if !l.is_empty() => l.iter().map(|t| one(&t.to_output())).collect::<Vec<_>>().join(" | "),
        _ => "any".into(),
    }
}

fn ymd(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// Go's comparison of basic kinds: `None` when equal-comparable but unordered (bools, nil).
fn compare(a: &Value, b: &Value) -> Result<Option<Ordering>, String> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Value::Bool(x), Value::Bool(y)) => (x == y).then_some(Ordering::Equal),
        (Value::Nil, Value::Nil) => Some(Ordering::Equal),
        (Value::Nil, _) | (_, Value::Nil) => None,
        (Value::List(_) | Value::Map(_), _) | (_, Value::List(_) | Value::Map(_)) => {
            return Err(format!(
                "non-comparable type {}",
                if matches!(a, Value::List(_) | Value::Map(_)) {
                    a.type_name()
                } else {
                    b.type_name()
                }
            ))
        }
        _ => {
            return Err(format!(
                "incompatible types for comparison: {} and {}",
                a.type_name(),
                b.type_name()
            ))
        }
    })
}

fn int_arg(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(format!(
            "cannot index slice/array with type {}",
            other.type_name()
        )),
    }
}

fn index(args: &[Value]) -> Result<Value, String> {
    let mut item = args
        .first()
        .cloned()
        .ok_or("wrong number of args for index: want at least 1 got 0")?;
    for key in &args[1..] {
        item = match &item {
            Value::List(l) => {
                let i = int_arg(key)?;
                usize::try_from(i)
                    .ok()
                    .and_then(|i| l.get(i))
                    .cloned()
                    .ok_or(format!("index out of range: {i}"))?
            }
            Value::Str(s) => {
                let i = int_arg(key)?;
                let byte = usize::try_from(i).ok().and_then(|i| s.as_bytes().get(i));
                Value::Int(i64::from(*byte.ok_or(format!("index out of range: {i}"))?))
            }
            Value::Map(m) => match key {
                Value::Str(k) => m.get(&**k).cloned().unwrap_or(Value::Nil),
                other => {
                    return Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    ))
                }
            },
            Value::Nil => return Err("index of untyped nil".into()),
            other => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(item)
}

fn slice(args: &[Value]) -> Result<Value, String> {
    let item = args
        .first()
        .ok_or("wrong number of args for slice: want at least 1 got 0")?;
    let idx: Vec<i64> = args[1..].iter().map(int_arg).collect::<Result<_, _>>()?;
    if idx.len() > 3 {
        return Err(format!("too many slice indexes: {}", idx.len()));
    }
    let len = match item {
        Value::Str(s) if idx.len() == 3 => {
            return Err(format!("cannot 3-index slice a string: {s:?}"))
        }
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let to_usize = |i: i64| {
        usize::try_from(i)
            .ok()
            .filter(|&i| i <= len)
            .ok_or(format!("index out of range: {i}"))
    };
    let start = idx.first().map_or(Ok(0), |&i| to_usize(i))?;
    let end = idx.get(1).map_or(Ok(len), |&i| to_usize(i))?;
    if start > end {
        return Err(format!("invalid slice index: {start} > {end}"));
    }
    match item {
        Value::Str(s) => s
            .get(start..end)
            .map(Value::str)
            .ok_or_else(|| "index splits a UTF-8 character".to_string()),
        Value::List(l) => Ok(Value::List(Rc::new(l[start..end].to_vec()))),
        _ => unreachable!("checked above"),
    }
}

/// `fmt.Sprint`: a space between operands when neither side is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&a.to_output());
    }
    out
}

/// `fmt.Sprintf` for the verbs templates use: `%s %v %d %t %q %f %x %c %%` with width, `-` and
/// precision; mismatches print Go's `%!verb(type=value)` markers instead of failing.
fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' | ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(*d);
            chars.next();
        }
        let mut precision: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(*d);
                chars.next();
            }
            precision = Some(p.parse().unwrap_or(0).min(MAX_PRECISION));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            out.push_str(&format!("%!{verb}(MISSING)"));
            continue;
        };
        next += 1;
        let text = format_verb(verb, arg, precision);
        let width: usize = width.parse().unwrap_or(0).min(MAX_WIDTH);
        let pad = width.saturating_sub(text.chars().count());
        if left {
            out.push_str(&text);
            out.push_str(&" ".repeat(pad));
        } else {
            out.push_str(&(if zero { "0" } else { " " }).repeat(pad));
            out.push_str(&text);
        }
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.to_output()))
            .collect();
        out.push_str(&format!("%!(EXTRA {})", extra.join(", ")));
    }
    out
}

fn format_verb(verb: char, arg: &Value, precision: Option<usize>) -> String {
    let bad = || format!("%!{verb}({}={})", arg.type_name(), arg.to_output());
    match (verb, arg) {
        ('v' | 's', Value::Str(s)) => match precision {
            Some(p) => s.chars().take(p).collect(),
            None => s.to_string(),
        },
        ('v', _) => arg.to_output(),
        ('d', Value::Int(i)) => i.to_string(),
        ('t', Value::Bool(b)) => b.to_string(),
        ('q', Value::Str(s)) => format!("{s:?}"),
        ('x', Value::Int(i)) => format!("{i:x}"),
        ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
        ('c', Value::Int(i)) => u32::try_from(*i)
            .ok()
            .and_then(char::from_u32)
            .map_or_else(bad, String::from),
        ('f' | 'F', Value::Float(f)) => format!("{:.*}", precision.unwrap_or(6), f),
        ('f' | 'F', Value::Int(_)) => bad(),
        ('g', Value::Float(_)) => arg.to_output(),
        _ => bad(),
    }
}
