//! Request fields shared by routes: Ollama `options` (unknown ones ignored, wrong types refused),
//! `keep_alive` (seconds or a duration string; negative = forever), and `format`.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::engine::attention::FlashAttention;
use crate::engine::chat::{gpu_layers, RequestSettings, JSON_GRAMMAR};
use crate::engine::limits::{self, PARAM_LIMITS};
use crate::engine::protocol::SamplingOptions;

/// Builds the engine settings from an Ollama request's `options`, `keep_alive` and `format`.
pub fn settings(options: Option<&Value>, keep_alive: Option<&Value>, format: Option<&Value>) -> Result<RequestSettings, String> {
    let mut s = RequestSettings::default();
    if let Some(opts) = options {
        let map = opts.as_object().ok_or("options must be an object")?;
        apply_options(&mut s, map)?;
    }
    s.keep_alive = keep_alive.map(parse_keep_alive).transpose()?;
    s.grammar = format.map(grammar_for).transpose()?.flatten();
    Ok(s)
}

fn num(map: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(format!("option {key:?} must be a number")),
    }
}

fn int(map: &Map<String, Value>, key: &str) -> Result<Option<i64>, String> {
    match num(map, key)? {
        Some(v) if v.fract() == 0.0 => Ok(Some(v as i64)),
        Some(_) => Err(format!("option {key:?} must be an integer")),
        None => Ok(None),
    }
}

pub fn apply_options(s: &mut RequestSettings, map: &Map<String, Value>) -> Result<(), String> {
    for l in PARAM_LIMITS {
        if let Some(v) = num(map, l.key)? {
            limits::check(l.key, v)?;
        }
    }
    let o: &mut SamplingOptions = &mut s.options;
    o.temperature = num(map, "temperature")?.map(|v| v as f32).or(o.temperature);
    o.top_p = num(map, "top_p")?.map(|v| v as f32).or(o.top_p);
    o.min_p = num(map, "min_p")?.map(|v| v as f32).or(o.min_p);
    o.repeat_penalty = num(map, "repeat_penalty")?.map(|v| v as f32).or(o.repeat_penalty);
    o.presence_penalty = num(map, "presence_penalty")?.map(|v| v as f32).or(o.presence_penalty);
    o.frequency_penalty = num(map, "frequency_penalty")?.map(|v| v as f32).or(o.frequency_penalty);
    o.top_k = int(map, "top_k")?.map(|v| v as i32).or(o.top_k);
    o.repeat_last_n = int(map, "repeat_last_n")?.map(|v| v as i32).or(o.repeat_last_n);
    o.num_predict = int(map, "num_predict")?.map(|v| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32).or(o.num_predict);
    o.seed = int(map, "seed")?.map(|v| v as u32).or(o.seed);
    if let Some(n) = int(map, "num_ctx")? {
        s.num_ctx = Some(n as u32);
    }
    // Layers on GPUs; Ollama's -1 (any negative) means as many as fit.
    if let Some(n) = int(map, "num_gpu")? {
        s.num_gpu = gpu_layers(n);
    }
    // `true`/`false` or "auto"/"on"/"off".
    match map.get("flash_attention") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(on)) => s.flash_attention = Some(if *on { FlashAttention::On } else { FlashAttention::Off }),
        Some(Value::String(text)) => s.flash_attention = Some(FlashAttention::parse(text)?),
        Some(_) => return Err("option \"flash_attention\" must be true, false, \"auto\", \"on\" or \"off\"".into()),
    }
    // A draft model for speculative decoding; "" turns the model's own off.
    match map.get("draft") {
        None | Some(Value::Null) => {}
        Some(Value::String(name)) => s.draft = Some(name.clone()),
        Some(_) => return Err("option \"draft\" must be a model name (or \"\" for none)".into()),
    }
    for key in ["draft_max", "draft_num_predict"] {
        if let Some(n) = int(map, key)? {
            o.draft_max = Some(n.clamp(0, 256) as u32);
        }
    }
    match map.get("stop") {
        None | Some(Value::Null) => {}
        Some(Value::String(one)) => o.stop = vec![one.clone()],
        Some(Value::Array(list)) => {
            o.stop = list.iter().map(|v| v.as_str().map(str::to_string).ok_or("option \"stop\" must be a string or a list of strings")).collect::<Result<_, _>>()?;
        }
        Some(_) => return Err("option \"stop\" must be a string or a list of strings".into()),
    }
    Ok(())
}

/// `300`, `"5m"`, `"30s"`, `"1h30m"`, `0`; negative means "keep loaded" (a year here).
pub fn parse_keep_alive(v: &Value) -> Result<Duration, String> {
    const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);
    let secs = match v {
        Value::Number(n) => n.as_f64().ok_or("keep_alive must be a number of seconds or a duration like \"5m\"")?,
        Value::String(s) => parse_go_duration(s).ok_or_else(|| format!("invalid keep_alive {s:?}: use a duration like \"5m\" or a number of seconds"))?,
        _ => return Err("keep_alive must be a number of seconds or a duration like \"5m\"".into()),
    };
    Ok(if secs < 0.0 { FOREVER } else { Duration::from_secs_f64(secs.min(FOREVER.as_secs_f64())) })
}

/// Go's duration syntax (`1h30m`, `-1m`, `250ms`), or a bare number of seconds.
fn parse_go_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return Some(n);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut total = 0.0;
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (n, tail) = rest.split_at(split);
        let unit_len = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n.parse::<f64>().ok()? * scale;
        rest = next;
    }
    Some(if neg { -total } else { total })
}

/// `"json"` → any JSON value; a JSON schema object → a grammar for exactly that schema
/// (llama.cpp's converter); `""`/null → unconstrained.
pub fn grammar_for(format: &Value) -> Result<Option<String>, String> {
    match format {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if s == "json" => Ok(Some(JSON_GRAMMAR.to_string())),
        Value::Object(_) => schema_grammar(format).map(Some),
        _ => Err("format must be \"json\" or a JSON schema object".into()),
    }
}

/// A GBNF grammar accepting exactly the JSON documents `schema` describes.
pub fn schema_grammar(schema: &Value) -> Result<String, String> {
    llama_cpp_2::json_schema_to_grammar(&schema.to_string()).map_err(|e| format!("unsupported JSON schema in format: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_options_are_ignored_and_wrong_types_refused() {
        let s = settings(Some(&json!({"temperature": 0.2, "num_ctx": 2048, "mirostat": 2, "stop": ["x"], "num_gpu": 7})), None, None).unwrap();
        assert_eq!((s.options.temperature, s.num_ctx, s.options.stop.clone(), s.num_gpu), (Some(0.2), Some(2048), vec!["x".to_string()], Some(7)));
        assert_eq!(settings(Some(&json!({"num_gpu": -1})), None, None).unwrap().num_gpu, None);
        let flash = |v: Value| settings(Some(&json!({ "flash_attention": v })), None, None).map(|s| s.flash_attention);
        assert_eq!((flash(json!(true)), flash(json!("auto")), flash(json!(false))), (Ok(Some(FlashAttention::On)), Ok(Some(FlashAttention::Auto)), Ok(Some(FlashAttention::Off))));
        assert!(flash(json!(3)).is_err() && flash(json!("sometimes")).is_err());
        assert!(settings(Some(&json!({"temperature": "hot"})), None, None).unwrap_err().contains("temperature"));
        assert!(settings(Some(&json!({"top_k": 1.5})), None, None).is_err());
        assert!(settings(Some(&json!([1])), None, None).is_err());
    }

    #[test]
    fn keep_alive_forms() {
        assert_eq!(parse_keep_alive(&json!(0)).unwrap(), Duration::ZERO);
        assert_eq!(parse_keep_alive(&json!("5m")).unwrap(), Duration::from_secs(300));
        assert_eq!(parse_keep_alive(&json!("1h30m")).unwrap(), Duration::from_secs(5400));
        assert!(parse_keep_alive(&json!(-1)).unwrap() > Duration::from_secs(1 << 20));
        assert!(parse_keep_alive(&json!("soon")).is_err());
    }

    #[test]
    fn json_schemas_become_grammars() {
        let g = grammar_for(&json!({"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]})).unwrap().unwrap();
        assert!(g.contains("root") && g.contains("age"), "{g}");
        assert_eq!(grammar_for(&json!("json")).unwrap().as_deref(), Some(JSON_GRAMMAR));
        assert!(grammar_for(&json!(42)).is_err());
    }
}
