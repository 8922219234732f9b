//! The supervisor ↔ runner protocol: one JSON object per line over the runner's stdin (requests)
//! and stdout (events). The runner announces itself with one [`Event::Ready`] line (or an
//! [`Event::Error`] and a non-zero exit when the model cannot load), answers requests, and exits
//! when its stdin closes. Its stderr is llama.cpp's log, kept by the supervisor for crash reports.

use serde::{Deserialize, Serialize};

/// Sampling and length options, Ollama's names. `None` means the runner's default
/// (temperature 0.8, top_k 40, top_p 0.9, min_p 0, repeat_penalty 1.1, repeat_last_n 64).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_last_n: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u32>,
    /// Maximum tokens to generate; `None` or negative: until a stop or the context is full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_predict: Option<i32>,
    /// Stop sequences, detected across token boundaries and never emitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Generate a completion of `prompt` (already rendered through the chat template). The runner
    /// tokenises it with special tokens parsed, adding BOS when the model wants one (and dropping
    /// a BOS the template already wrote as text), and reuses the KV cache of the longest prefix
    /// it still holds.
    Generate {
        id: u64,
        prompt: String,
        #[serde(default)]
        options: SamplingOptions,
        /// GBNF grammar constraining the output (from `format: "json"` or a JSON schema).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grammar: Option<String>,
    },
    /// Stop request `id` at the next token; the runner answers with its `Done` (reason "cancel").
    Cancel { id: u64 },
    /// Count the tokens `text` would take as a prompt (for fitting conversations into the context).
    Tokenize { id: u64, text: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    Ready {
        /// Context size the runner allocated, per parallel sequence.
        n_ctx: u32,
        /// The model's trained context length.
        n_ctx_train: u32,
        n_parallel: u32,
        threads: u32,
        /// Text of the BOS/EOS tokens, for templates' `bos_token`/`eos_token`.
        bos_token: String,
        eos_token: String,
        load_ms: u64,
    },
    /// The next piece of text of request `id`: always whole UTF-8 characters, never part of a stop.
    Piece { id: u64, text: String },
    Done { id: u64, stats: GenerationStats },
    Tokens { id: u64, count: u32 },
    /// A failed request (`id` set) or a runner that cannot go on (`id` none).
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Machine-readable kind: "context_overflow", "grammar", "load", "decode", …
        code: String,
        message: String,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// "stop" (EOS or a stop sequence), "length" (num_predict or context full), "cancel".
    pub done_reason: String,
    pub prompt_tokens: u32,
    /// Prompt tokens whose KV cache was reused from the previous request.
    pub prompt_cached_tokens: u32,
    pub prompt_eval_ns: u64,
    pub eval_tokens: u32,
    pub eval_ns: u64,
}

pub fn encode<T: Serialize>(msg: &T) -> String {
    let mut line = serde_json::to_string(msg).expect("protocol messages serialise");
    line.push('\n');
    line
}
