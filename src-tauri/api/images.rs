//! Requests that carry images: Ollama's `images` (base64) and OpenAI's `image_url` content parts
//! (data URLs only: Airlock makes no network requests). A model without a vision projector gets
//! a clear 400 naming it — never an answer that silently ignored the images.

use base64::Engine as _;
use serde_json::Value;

use super::stream::ApiError;
use crate::core::Core;
use crate::store::manifest;

/// Accepts a request with images for `model` only when it has a projector, and only images
/// that are base64 (what the runner decodes them from).
pub fn check_images<'a>(core: &Core, model: &str, images: impl IntoIterator<Item = &'a String>) -> Result<(), ApiError> {
    let entry = core.store.resolve(model)?;
    if entry.manifest.layer(manifest::MEDIA_PROJECTOR).is_none() {
        let name = entry.name.display_shortest();
        return Err(ApiError::bad_request(format!("{name} does not support images: it has no vision projector (an Ollama `projector` layer or an mmproj file); send text only or use a vision model")));
    }
    for (i, image) in images.into_iter().enumerate() {
        if image.trim().is_empty() || decode(image).is_err() {
            return Err(ApiError::bad_request(format!("images[{i}] is not base64-encoded image data")));
        }
    }
    Ok(())
}

fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(compact.trim_end_matches('='))
}

/// An OpenAI message's `content` as text and images: a string, or a list of `text` and
/// `image_url` parts. Each image's place in the text is an `[img]` placeholder (where the engine
/// puts the image), its data the base64 of a `data:` URL.
pub fn openai_content(v: &Value) -> Result<(String, Vec<String>), ApiError> {
    let parts = match v {
        Value::Null => return Ok((String::new(), Vec::new())),
        Value::String(s) => return Ok((s.clone(), Vec::new())),
        Value::Array(parts) => parts,
        _ => return Err(ApiError::bad_request("message content must be a string or a list of parts")),
    };
    let mut text = String::new();
    let mut images = Vec::new();
    for part in parts {
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(image) = part.get("image_url") {
            let url = image.as_str().or_else(|| image.get("url").and_then(Value::as_str)).ok_or_else(|| ApiError::bad_request("an image_url part needs image_url.url"))?;
            images.push(data_url_base64(url)?);
            text.push_str("[img]");
        }
    }
    Ok((text, images))
}

/// The base64 data of a `data:[<type>];base64,<data>` URL.
fn data_url_base64(url: &str) -> Result<String, ApiError> {
    let Some(rest) = url.strip_prefix("data:") else {
        let shown: String = url.chars().take(80).collect();
        return Err(ApiError::bad_request(format!("image_url must be a data: URL (data:image/png;base64,…); Airlock makes no network requests, so it cannot fetch {shown}")));
    };
    let (meta, data) = rest.split_once(',').ok_or_else(|| ApiError::bad_request("image_url data: URL has no ',' before its data"))?;
    if !meta.split(';').any(|p| p.eq_ignore_ascii_case("base64")) {
        return Err(ApiError::bad_request("image_url data: URL must be base64-encoded (data:image/png;base64,…)"));
    }
    if decode(data).is_err() {
        return Err(ApiError::bad_request("image_url data: URL's data is not valid base64"));
    }
    Ok(data.to_string())
}

/// True when an OpenAI message's content has an image part.
pub fn has_openai_image(content: &Value) -> bool {
    content.as_array().is_some_and(|parts| parts.iter().any(|p| p.get("type").and_then(Value::as_str) == Some("image_url") || p.get("image_url").is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn openai_parts_become_text_with_placeholders_and_base64_images() {
        let content = json!([
            { "type": "text", "text": "Compare " },
            { "type": "image_url", "image_url": { "url": "data:image/png;base64,iVBORw0KGgo=" } },
            { "type": "text", "text": " and " },
            { "type": "image_url", "image_url": "data:image/jpeg;base64,/9j/4AAQ" },
        ]);
        let (text, images) = openai_content(&content).unwrap();
        assert_eq!(text, "Compare [img] and [img]");
        assert_eq!(images, ["iVBORw0KGgo=", "/9j/4AAQ"]);
        assert!(has_openai_image(&content));
        assert_eq!(openai_content(&json!("plain")).unwrap(), ("plain".to_string(), vec![]));
    }

    #[test]
    fn remote_or_undecodable_image_urls_are_refused_clearly() {
        let remote = json!([{ "type": "image_url", "image_url": { "url": "https://example.com/cat.png" } }]);
        let err = openai_content(&remote).unwrap_err();
        assert_eq!(err.0, axum::http::StatusCode::BAD_REQUEST);
        assert!(err.1.contains("no network requests") && err.1.contains("https://example.com/cat.png"), "{}", err.1);
        let not_base64 = json!([{ "type": "image_url", "image_url": { "url": "data:image/svg+xml,<svg/>" } }]);
        assert!(openai_content(&not_base64).unwrap_err().1.contains("base64"));
        let garbage = json!([{ "type": "image_url", "image_url": { "url": "data:image/png;base64,@@@" } }]);
        assert!(openai_content(&garbage).unwrap_err().1.contains("not valid base64"));
    }
}
