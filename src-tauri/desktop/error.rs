//! The one error shape every command rejects with: a machine-readable `code` and a `message`
//! written for the user (the modules' errors already say what is wrong and what to do).

use serde::Serialize;

use crate::bundle::export::ExportError;
use crate::bundle::sign::SignError;
use crate::bundle::ImportError;
use crate::engine::chat::ChatError;
use crate::kit::KitError;
use crate::store::StoreError;

#[derive(Debug, Serialize)]
pub struct CommandError {
    pub code: &'static str,
    pub message: String,
}

pub type CommandResult<T> = Result<T, CommandError>;

impl CommandError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        CommandError { code, message: message.into() }
    }
    /// An argument the web view should never have sent.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid_argument", message)
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        let code = if matches!(e, StoreError::NotFound(_)) { "not_found" } else { "store" };
        CommandError::new(code, e.to_string())
    }
}

impl From<ImportError> for CommandError {
    fn from(e: ImportError) -> Self {
        let code = match e {
            ImportError::Cancelled => "cancelled",
            ImportError::Signature(_) => "signature",
            _ => "import",
        };
        CommandError::new(code, e.to_string())
    }
}

impl From<ExportError> for CommandError {
    fn from(e: ExportError) -> Self {
        let code = if matches!(e, ExportError::Cancelled) { "cancelled" } else { "export" };
        CommandError::new(code, e.to_string())
    }
}

impl From<KitError> for CommandError {
    fn from(e: KitError) -> Self {
        let code = if matches!(e, KitError::Cancelled) { "cancelled" } else { "export" };
        CommandError::new(code, e.to_string())
    }
}

impl From<SignError> for CommandError {
    fn from(e: SignError) -> Self {
        CommandError::new("signature", e.to_string())
    }
}

impl From<ChatError> for CommandError {
    fn from(e: ChatError) -> Self {
        CommandError::new("engine", e.to_string())
    }
}

impl From<std::io::Error> for CommandError {
    fn from(e: std::io::Error) -> Self {
        CommandError::new("io", e.to_string())
    }
}

impl From<tauri::Error> for CommandError {
    fn from(e: tauri::Error) -> Self {
        CommandError::new("app", e.to_string())
    }
}
