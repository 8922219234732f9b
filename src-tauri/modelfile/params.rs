//! Ollama's model parameters (`api.Options` and `api.Runner`), typed and checked, and the exact
//! bytes of the `params` layer: Go's `json.Encoder` output (keys sorted, `<>&` escaped as
//! `\u003c…`, floats in Go's shortest form, a trailing newline), so a layer Airlock writes has
//! the digest Ollama's would.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::engine::attention::{FlashAttention, KvCacheType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Int,
    Float,
    Bool,
    /// A list of strings; each `PARAMETER stop …` line adds one.
    StringList,
    /// One word from a fixed set (Airlock's own: flash attention, the KV cache type).
    Word,
}

/// Every parameter Ollama accepts, with its type (Ollama's `api/types.go`).
pub const PARAMETERS: &[(&str, ParamKind)] = &[
    ("num_ctx", ParamKind::Int),
    ("num_batch", ParamKind::Int),
    ("num_gpu", ParamKind::Int),
    ("main_gpu", ParamKind::Int),
    ("use_mmap", ParamKind::Bool),
    ("num_thread", ParamKind::Int),
    ("draft_num_predict", ParamKind::Int),
    ("num_keep", ParamKind::Int),
    ("seed", ParamKind::Int),
    ("num_predict", ParamKind::Int),
    ("top_k", ParamKind::Int),
    ("top_p", ParamKind::Float),
    ("min_p", ParamKind::Float),
    ("typical_p", ParamKind::Float),
    ("repeat_last_n", ParamKind::Int),
    ("temperature", ParamKind::Float),
    ("repeat_penalty", ParamKind::Float),
    ("presence_penalty", ParamKind::Float),
    ("frequency_penalty", ParamKind::Float),
    ("stop", ParamKind::StringList),
    // Airlock's own (Ollama sets these only for the whole server).
    ("flash_attention", ParamKind::Word),
    ("kv_cache_type", ParamKind::Word),
];

/// Checks a [`ParamKind::Word`] value.
fn check_word(name: &str, value: &str) -> Result<Value, String> {
    let word = match name {
        "flash_attention" => FlashAttention::parse(value)?.as_str(),
        _ => KvCacheType::parse(value)?.as_str(),
    };
    Ok(Value::String(word.to_string()))
}

/// Parameters older Ollama versions had; Ollama warns and ignores them, and so does Airlock.
pub const DEPRECATED: &[&str] = &["penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock", "mirostat", "mirostat_tau", "mirostat_eta"];

pub fn kind_of(name: &str) -> Option<ParamKind> {
    PARAMETERS.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

fn known_names() -> String {
    PARAMETERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Int(i64),
    Float(f32),
    Bool(bool),
    List(Vec<String>),
    /// A value inherited from a base model's `params` layer, kept as it was.
    Json(Value),
}

/// A model's parameters, by name (sorted, as Go writes map keys).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parameters {
    pub values: BTreeMap<String, ParamValue>,
}

/// What happened to one parameter.
#[derive(Debug)]
pub enum Applied {
    Set,
    /// A deprecated parameter: ignored, with this warning.
    Ignored(String),
}

impl Parameters {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// One `PARAMETER name value` line: the name must be one of Ollama's, the value of its type.
    pub fn set_text(&mut self, name: &str, value: &str) -> Result<Applied, String> {
        let Some(kind) = kind_of(name) else {
            if DEPRECATED.contains(&name) {
                return Ok(Applied::Ignored(format!("parameter {name} is deprecated and ignored")));
            }
            return Err(format!("unknown parameter {name:?}; the parameters are: {}", known_names()));
        };
        let v = value.trim();
        let parsed = match kind {
            ParamKind::Int => ParamValue::Int(v.parse::<i64>().map_err(|_| format!("parameter {name} must be a whole number, not {value:?}"))?),
            ParamKind::Float => {
                let f = v.parse::<f32>().ok().filter(|f| f.is_finite()).ok_or_else(|| format!("parameter {name} must be a number, not {value:?}"))?;
                ParamValue::Float(f)
            }
            ParamKind::Bool => ParamValue::Bool(parse_go_bool(v).ok_or_else(|| format!("parameter {name} must be true or false, not {value:?}"))?),
            ParamKind::StringList => {
                self.push_string(name, value.to_string());
                return Ok(Applied::Set);
            }
            ParamKind::Word => ParamValue::Json(check_word(name, v)?),
        };
        self.values.insert(name.to_string(), parsed);
        Ok(Applied::Set)
    }

    /// One entry of an API request's `parameters` object.
    pub fn set_json(&mut self, name: &str, value: &Value) -> Result<Applied, String> {
        let Some(kind) = kind_of(name) else {
            if DEPRECATED.contains(&name) {
                return Ok(Applied::Ignored(format!("parameter {name} is deprecated and ignored")));
            }
            return Err(format!("unknown parameter {name:?}; the parameters are: {}", known_names()));
        };
        let parsed = match (kind, value) {
            (_, Value::Null) => return Ok(Applied::Set),
            (ParamKind::Int, Value::Number(n)) => match n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9e15).map(|f| f as i64)) {
                Some(i) => ParamValue::Int(i),
                None => return Err(format!("parameter {name} must be a whole number, not {n}")),
            },
            (ParamKind::Float, Value::Number(n)) => ParamValue::Float(n.as_f64().unwrap_or(0.0) as f32),
            (ParamKind::Bool, Value::Bool(b)) => ParamValue::Bool(*b),
            (ParamKind::Word, Value::String(s)) => ParamValue::Json(check_word(name, s)?),
            (ParamKind::Word, Value::Bool(b)) => ParamValue::Json(check_word(name, if *b { "on" } else { "off" })?),
            (ParamKind::StringList, Value::String(s)) => ParamValue::List(vec![s.clone()]),
            (ParamKind::StringList, Value::Array(items)) => {
                let list = items.iter().map(|i| i.as_str().map(str::to_string)).collect::<Option<Vec<_>>>();
                ParamValue::List(list.ok_or_else(|| format!("parameter {name} must be a list of strings"))?)
            }
            (k, v) => return Err(format!("parameter {name} must be {}, not {v}", describe(k))),
        };
        self.values.insert(name.to_string(), parsed);
        Ok(Applied::Set)
    }

    fn push_string(&mut self, name: &str, s: String) {
        match self.values.get_mut(name) {
            Some(ParamValue::List(list)) => list.push(s),
            _ => {
                self.values.insert(name.to_string(), ParamValue::List(vec![s]));
            }
        }
    }

    /// Reads a `params` layer (Ollama's JSON object); values are kept exactly as they were.
    pub fn from_layer(text: &str) -> Result<Self, String> {
        let map: BTreeMap<String, Value> = serde_json::from_str(text).map_err(|e| format!("the model's params layer is not a JSON object: {e}"))?;
        Ok(Parameters { values: map.into_iter().map(|(k, v)| (k, ParamValue::Json(v))).collect() })
    }

    /// `self` over `base`: each name set here wins, the others are inherited (Ollama's
    /// `setParameters`).
    pub fn over(mut self, base: &Parameters) -> Parameters {
        for (k, v) in &base.values {
            self.values.entry(k.clone()).or_insert_with(|| v.clone());
        }
        self
    }

    /// The layer's bytes, as Go's `json.NewEncoder(w).Encode(map)` writes them.
    pub fn to_layer_bytes(&self) -> Vec<u8> {
        let mut out = String::from("{");
        for (i, (k, v)) in self.values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            go_string(&mut out, k);
            out.push(':');
            match v {
                ParamValue::Int(n) => out.push_str(&n.to_string()),
                ParamValue::Float(f) => out.push_str(&go_f32(*f)),
                ParamValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                ParamValue::List(list) => go_value(&mut out, &Value::Array(list.iter().cloned().map(Value::String).collect())),
                ParamValue::Json(v) => go_value(&mut out, v),
            }
        }
        out.push_str("}\n");
        out.into_bytes()
    }

    /// `(name, value)` pairs as `PARAMETER` lines write them: one per list item.
    pub fn lines(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in &self.values {
            match v {
                ParamValue::Int(n) => out.push((k.clone(), n.to_string())),
                ParamValue::Float(f) => out.push((k.clone(), go_f32(*f))),
                ParamValue::Bool(b) => out.push((k.clone(), b.to_string())),
                ParamValue::List(list) => out.extend(list.iter().map(|s| (k.clone(), s.clone()))),
                ParamValue::Json(Value::Array(items)) => out.extend(items.iter().map(|i| (k.clone(), plain(i)))),
                ParamValue::Json(v) => out.push((k.clone(), plain(v))),
            }
        }
        out
    }

    /// Ollama's `show --parameters` text: the name padded to 30 columns, strings quoted.
    pub fn table(&self) -> String {
        let mut rows = Vec::new();
        for (k, v) in self.lines() {
            let quoted = match self.values.get(&k) {
                Some(ParamValue::List(_)) => true,
                Some(ParamValue::Json(j)) => matches!(j, Value::String(_)) || matches!(j, Value::Array(a) if a.iter().any(Value::is_string)),
                _ => false,
            };
            let shown = if quoted { serde_json::to_string(&v).unwrap_or(v) } else { v };
            rows.push(format!("{k:<30} {shown}"));
        }
        rows.join("\n")
    }
}

fn describe(k: ParamKind) -> &'static str {
    match k {
        ParamKind::Int => "a whole number",
        ParamKind::Float => "a number",
        ParamKind::Bool => "true or false",
        ParamKind::StringList => "a string or a list of strings",
        ParamKind::Word => "one of the words it takes",
    }
}

/// A JSON value as Go's `%v` prints it (strings bare, numbers in Go's shortest form).
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => go_f64(n.as_f64().unwrap_or(0.0)),
        },
        other => other.to_string(),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A float as Go's `encoding/json` writes a `float32`: shortest digits, exponent form only
/// below 1e-6 or from 1e21.
pub fn go_f32(f: f32) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        go_exponent(format!("{f:e}"))
    } else {
        format!("{f}")
    }
}

/// The same for a `float64`.
pub fn go_f64(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        go_exponent(format!("{f:e}"))
    } else {
        format!("{f}")
    }
}

/// Rust's `1e21`/`1.5e-7` → Go's `1e+21`/`1.5e-07` cleaned to `1.5e-7` (what `encoding/json` does).
fn go_exponent(rust: String) -> String {
    match rust.split_once('e') {
        Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
        _ => rust,
    }
}

/// A JSON value as Go's `encoding/json` writes it (maps with sorted keys, HTML-safe strings).
pub fn go_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64().map(|i| i.to_string()).or_else(|| n.as_u64().map(|u| u.to_string())) {
            Some(s) => out.push_str(&s),
            None => out.push_str(&go_f64(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => go_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            out.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_string(out, k);
                out.push(':');
                go_value(out, v);
            }
            out.push('}');
        }
    }
}

/// A string as Go's `encoding/json` writes it.
pub(crate) use crate::engine::template::gotmpl::value::json_string as go_string;
