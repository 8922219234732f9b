//! The embedding routes: Ollama's `/api/embed` and older `/api/embeddings`, OpenAI's
//! `/v1/embeddings`. Field for field as those APIs document them; the work is the engine's
//! ([`crate::engine::embed`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::{OllamaJson, OpenAiJson};
use super::options::settings;
use super::stream::{ApiError, OpenAiError};
use crate::core::Core;
use crate::engine::embed::{EmbedSettings, Embedded};
use crate::engine::protocol::EmbedInput;

type CoreState = State<Arc<Core>>;

#[derive(Deserialize)]
pub struct EmbedBody {
    model: Option<String>,
    #[serde(default)]
    input: Value,
    /// `/api/embeddings`' field.
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    dimensions: Option<i64>,
    options: Option<Value>,
    keep_alive: Option<Value>,
}

fn model_name(model: Option<String>) -> Result<String, ApiError> {
    model.filter(|m| !m.is_empty()).ok_or_else(|| ApiError::bad_request("model is required"))
}

/// `dimensions`: a positive count (0 or absent: all of the model's).
fn dimensions(d: Option<i64>) -> Result<Option<usize>, ApiError> {
    match d {
        None | Some(0) => Ok(None),
        Some(n) if n > 0 => Ok(Some(n as usize)),
        Some(n) => Err(ApiError::bad_request(format!("dimensions must be a positive number, not {n}"))),
    }
}

fn embed_settings(options: Option<&Value>, keep_alive: Option<&Value>) -> Result<EmbedSettings, ApiError> {
    let s = settings(options, keep_alive, None).map_err(ApiError::bad_request)?;
    Ok(EmbedSettings { num_ctx: s.num_ctx, num_gpu: s.num_gpu, keep_alive: s.keep_alive, ..EmbedSettings::default() })
}

/// Runs the embedding on a blocking thread (the engine waits on the runner).
async fn run(core: Arc<Core>, name: String, inputs: Vec<EmbedInput>, settings: EmbedSettings) -> Result<Embedded, ApiError> {
    // keep_alive 0 needs no unload here: the runner's hold ends with that keep-alive.
    tokio::task::spawn_blocking(move || -> Result<Embedded, ApiError> {
        let model = core.prepare(&name)?;
        Ok(core.engine().embed(&model, inputs, &settings)?)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// `POST /api/embed`: `input` is a string or a list of strings; an empty one loads the model.
pub async fn ollama_embed(State(core): CoreState, OllamaJson(req): OllamaJson<EmbedBody>) -> Result<Response, ApiError> {
    let name = model_name(req.model)?;
    let inputs = match req.input {
        Value::Null => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![EmbedInput::Text(s)],
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(EmbedInput::Text(s)),
                _ => Err(ApiError::bad_request("input must be a string or a list of strings")),
            })
            .collect::<Result<_, _>>()?,
        _ => return Err(ApiError::bad_request("input must be a string or a list of strings")),
    };
    let mut settings = embed_settings(req.options.as_ref(), req.keep_alive.as_ref())?;
    settings.truncate = req.truncate.unwrap_or(true);
    settings.dimensions = dimensions(req.dimensions)?;
    let out = run(core, name.clone(), inputs, settings).await?;
    Ok(Json(json!({
        "model": name,
        "embeddings": out.embeddings,
        "total_duration": out.total_duration.as_nanos() as u64,
        "load_duration": out.load_duration.as_nanos() as u64,
        "prompt_eval_count": out.prompt_tokens,
    }))
    .into_response())
}

/// `POST /api/embeddings` (Ollama's older route): one `prompt`, one `embedding`, not normalised.
pub async fn ollama_embeddings(State(core): CoreState, OllamaJson(req): OllamaJson<EmbedBody>) -> Result<Response, ApiError> {
    let name = model_name(req.model)?;
    let inputs = match req.prompt {
        Some(p) if !p.is_empty() => vec![EmbedInput::Text(p)],
        _ => Vec::new(),
    };
    let mut settings = embed_settings(req.options.as_ref(), req.keep_alive.as_ref())?;
    settings.normalize = false;
    let mut out = run(core, name, inputs, settings).await?;
    let embedding = out.embeddings.pop().unwrap_or_default();
    Ok(Json(json!({ "embedding": embedding })).into_response())
}

#[derive(Deserialize)]
pub struct OpenAiEmbedBody {
    model: Option<String>,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<i64>,
}

/// OpenAI's `input`: a string, a list of strings, a list of token ids, or a list of such lists.
fn openai_inputs(input: Value) -> Result<Vec<EmbedInput>, ApiError> {
    let bad = || ApiError::bad_request("input must be a non-empty string, a list of strings, a list of token ids, or a list of lists of token ids");
    let tokens = |items: &[Value]| -> Result<Vec<i64>, ApiError> { items.iter().map(|t| t.as_i64().ok_or_else(bad)).collect() };
    let inputs = match input {
        Value::String(s) => vec![EmbedInput::Text(s)],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_number) => vec![EmbedInput::Tokens(tokens(&items)?)],
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(EmbedInput::Text(s)),
                Value::Array(t) => Ok(EmbedInput::Tokens(tokens(&t)?)),
                _ => Err(bad()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(bad()),
    };
    let empty = |i: &EmbedInput| match i {
        EmbedInput::Text(s) => s.is_empty(),
        EmbedInput::Tokens(t) => t.is_empty(),
    };
    if inputs.is_empty() || inputs.iter().any(empty) {
        return Err(bad());
    }
    Ok(inputs)
}

/// Little-endian `f32`s in base64, as OpenAI's `encoding_format: "base64"` (the official
/// Python client's default) returns them.
pub fn base64_floats(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `POST /v1/embeddings`.
pub async fn openai_embeddings(State(core): CoreState, OpenAiJson(req): OpenAiJson<OpenAiEmbedBody>) -> Result<Response, OpenAiError> {
    let name = model_name(req.model)?;
    let inputs = openai_inputs(req.input)?;
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(ApiError::bad_request(format!("encoding_format must be \"float\" or \"base64\", not {other:?}")).into()),
    };
    let settings = EmbedSettings { dimensions: dimensions(req.dimensions)?, ..EmbedSettings::default() };
    let out = run(core, name.clone(), inputs, settings).await?;
    let data: Vec<Value> = out
        .embeddings
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 { json!(base64_floats(v)) } else { json!(v) };
            json!({ "object": "embedding", "embedding": embedding, "index": index })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": name,
        "usage": { "prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens },
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_input_forms() {
        assert_eq!(openai_inputs(json!("a")).unwrap(), vec![EmbedInput::Text("a".into())]);
        assert_eq!(openai_inputs(json!(["a", "b"])).unwrap().len(), 2);
        assert_eq!(openai_inputs(json!([1, 2, 3])).unwrap(), vec![EmbedInput::Tokens(vec![1, 2, 3])]);
        assert_eq!(openai_inputs(json!([[1, 2], [3]])).unwrap(), vec![EmbedInput::Tokens(vec![1, 2]), EmbedInput::Tokens(vec![3])]);
        for bad in [json!(""), json!([]), json!([""]), json!([[]]), json!({"a": 1}), json!([1.5]), json!([true])] {
            assert!(openai_inputs(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let s = base64_floats(&[1.0, -2.5]);
        let bytes = base64::engine::general_purpose::STANDARD.decode(s).unwrap();
        assert_eq!(bytes, [1.0f32.to_le_bytes(), (-2.5f32).to_le_bytes()].concat());
    }

    #[test]
    fn dimensions_must_be_positive() {
        assert_eq!(dimensions(None).unwrap(), None);
        assert_eq!(dimensions(Some(0)).unwrap(), None);
        assert_eq!(dimensions(Some(8)).unwrap(), Some(8));
        assert!(dimensions(Some(-1)).is_err());
    }
}
