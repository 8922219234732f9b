//! Requests that carry images. Airlock does not run vision projectors yet, so a request with
//! images gets a clear 400 naming the model — never an answer that silently ignored them.

use super::stream::ApiError;
use crate::core::Core;
use crate::store::manifest;

/// Refuses a request with images: the model has no projector (it cannot see), or it has one
/// that this version cannot run.
pub fn refuse_images(core: &Core, model: &str) -> Result<(), ApiError> {
    let entry = core.store.resolve(model)?;
    let name = entry.name.display_shortest();
    if entry.manifest.layer(manifest::MEDIA_PROJECTOR).is_some() {
        return Err(ApiError::bad_request(format!("{name} has a vision projector, but this version of Airlock cannot run it yet; send the request without images")));
    }
    Err(ApiError::bad_request(format!("{name} does not support images: it has no vision projector (an Ollama `projector` layer or an mmproj file); send text only or use a vision model")))
}
