//! JSON request bodies whose errors come in each API's own shape: a malformed or mistyped body
//! gets 400 with Ollama's `{"error": "…"}` on `/api/*`, OpenAI's error object on `/v1/*` and
//! Anthropic's on `/v1/messages` (clients parse those), never axum's plain-text rejection.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::Json;
use serde::de::DeserializeOwned;

use super::stream::{AnthropicError, ApiError, OpenAiError};

/// A JSON body for Ollama's routes.
pub struct OllamaJson<T>(pub T);

/// A JSON body for OpenAI's routes.
pub struct OpenAiJson<T>(pub T);

/// A JSON body for Anthropic's routes.
pub struct AnthropicJson<T>(pub T);

fn rejected(r: JsonRejection) -> ApiError {
    // Too large stays 413; every other problem with the body is the client's request.
    let status = if r.status() == StatusCode::PAYLOAD_TOO_LARGE { r.status() } else { StatusCode::BAD_REQUEST };
    ApiError(status, format!("invalid request body: {}", r.body_text()))
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequest<S> for OllamaJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state).await.map(|Json(v)| OllamaJson(v)).map_err(rejected)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequest<S> for OpenAiJson<T> {
    type Rejection = OpenAiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state).await.map(|Json(v)| OpenAiJson(v)).map_err(|r| rejected(r).into())
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequest<S> for AnthropicJson<T> {
    type Rejection = AnthropicError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state).await.map(|Json(v)| AnthropicJson(v)).map_err(|r| rejected(r).into())
    }
}
