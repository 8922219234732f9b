//! Errors of prompt rendering, worded for the person who has to act on them.

use super::PromptFormat;

/// Why a prompt could not be rendered.
///
/// `format` says which template failed (the model's Jinja chat template or its Ollama Go
/// template); `line` is the 1-based line in that template when the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text does not parse (or uses a construct this engine does not support).
    #[error("the model's {format} has a syntax error{}: {message}", at_line(*line))]
    Syntax {
        format: PromptFormat,
        line: Option<usize>,
        message: String,
    },

    /// The template itself refused the conversation with `raise_exception(msg)`, e.g.
    /// "Conversation roles must alternate user/assistant/user/assistant/...".
    #[error("the model's {format} rejected this conversation: {message}")]
    Raised {
        format: PromptFormat,
        message: String,
    },

    /// Rendering produced more text than the limit allows: the template loops or duplicates
    /// its input, so it is broken or hostile.
    #[error("the model's {format} produced more than {limit} bytes of prompt; the template is broken or hostile")]
    OutputTooLarge { format: PromptFormat, limit: usize },

    /// Rendering took more steps than the budget allows (an endless or huge loop).
    #[error("the model's {format} did too much work (step budget exhausted); the template is broken or hostile")]
    FuelExhausted { format: PromptFormat },

    /// Any other failure while rendering (wrong types, unknown functions, bad indexes, ...).
    #[error("the model's {format} failed{}: {message}", at_line(*line))]
    Render {
        format: PromptFormat,
        line: Option<usize>,
        message: String,
    },
}

impl TemplateError {
    /// Which template failed.
    pub fn format(&self) -> PromptFormat {
        match self {
            TemplateError::Syntax { format, .. }
            | TemplateError::Raised { format, .. }
            | TemplateError::OutputTooLarge { format, .. }
            | TemplateError::FuelExhausted { format }
            | TemplateError::Render { format, .. } => *format,
        }
    }
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}
