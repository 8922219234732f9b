//! The supervisor ↔ runner protocol: one JSON object per line over the runner's stdin (requests)
//! and stdout (events). The runner announces itself with one [`Event::Ready`] line (or an
//! [`Event::Error`] and a non-zero exit when the model cannot load), answers requests, and exits
//! when its stdin closes. Its stderr is llama.cpp's log, kept by the supervisor for crash reports.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a runner has to exit once its stdin closes before the supervisor kills it. The
/// runner spends at most [`STOP_SAVE_BUDGET`] of it saving prompt-cache prefixes: a prefix
/// takes well under a second alone, but several seconds where other runners share the cores.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// The part of [`STOP_GRACE`] a stopping runner may spend saving prefixes it has not saved yet.
pub const STOP_SAVE_BUDGET: Duration = Duration::from_secs(8);

/// Prompt tokens per decode call, unless the runner is told otherwise (`--batch`). A
/// sliding-window layer's cache holds one batch beyond its window.
pub const DEFAULT_BATCH: u32 = 512;

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
    /// With a draft model: at most this many tokens drafted per step (Ollama's parameter name
    /// `draft_num_predict` is read too); 0 turns drafting off for the request.
    #[serde(default, alias = "draft_num_predict", skip_serializing_if = "Option::is_none")]
    pub draft_max: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Generate a completion of `prompt` (already rendered through the chat template). The runner
    /// tokenises it with special tokens parsed, except in the byte ranges `plain` (text from
    /// outside, which must not become control tokens), adding BOS when the model wants one (and
    /// dropping a BOS the template already wrote as text), and reuses the KV cache of the longest
    /// prefix it still holds.
    Generate {
        id: u64,
        prompt: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        plain: Vec<(usize, usize)>,
        #[serde(default)]
        options: SamplingOptions,
        /// GBNF grammar constraining the output (from `format: "json"` or a JSON schema).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grammar: Option<String>,
        /// Images (base64 file bytes: PNG, JPEG, …) for a runner started with a projector; the
        /// prompt holds one image marker (llama.cpp's `<__media__>`) per image.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        images: Vec<String>,
        /// Bytes of `prompt` that are its fixed prefix (system prompt, the model's messages,
        /// tool definitions): a runner with a prompt cache keeps their KV state across restarts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fixed_prefix: Option<usize>,
    },
    /// Stop request `id` at the next token; the runner answers with its `Done` (reason "cancel").
    Cancel { id: u64 },
    /// Count the tokens `text` would take as a prompt (for fitting conversations into the context),
    /// tokenised as `Generate` does; with `ids`, the `Tokens` answer lists them.
    Tokenize {
        id: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        plain: Vec<(usize, usize)>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ids: bool,
    },
    /// Embed `inputs` (an embedding runner only): answered by one `Embeddings` event, vectors in
    /// input order, pooled but not normalised. Inputs longer than the context are cut to it when
    /// `truncate`, else the request fails with "context_overflow".
    Embed {
        id: u64,
        inputs: Vec<EmbedInput>,
        #[serde(default = "yes")]
        truncate: bool,
    },
}

fn yes() -> bool {
    true
}

/// One input to embed: text (tokenised with the model's special tokens) or token ids as given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbedInput {
    Text(String),
    Tokens(Vec<i64>),
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
        /// The text of every token the tokenizer turns text into when it parses special tokens
        /// (control and user-defined tokens): text from outside that contains one is sent in
        /// `plain` ranges.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        special_tokens: Vec<String>,
        load_ms: u64,
        /// Where llama.cpp put the model (layers and bytes per device).
        #[serde(default)]
        placement: Placement,
    },
    /// The next piece of text of request `id`: always whole UTF-8 characters, never part of a stop.
    Piece { id: u64, text: String },
    Done { id: u64, stats: GenerationStats },
    Tokens {
        id: u64,
        count: u32,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ids: Vec<i32>,
    },
    /// The vectors of an `Embed` request, in input order, and the tokens they took in all.
    Embeddings { id: u64, embeddings: Vec<Vec<f32>>, prompt_tokens: u32 },
    /// A failed request (`id` set) or a runner that cannot go on (`id` none).
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// Machine-readable kind: "context_overflow", "grammar", "load", "decode", …
        code: String,
        message: String,
    },
}

/// Where a runner's model lives, as llama.cpp reported it while loading.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// Layers on GPUs, of `layers` that llama.cpp could offload (the repeating blocks and the output).
    pub gpu_layers: u32,
    pub layers: u32,
    /// Bytes per GPU device (model, KV cache and compute buffers), by ggml's device name.
    pub devices: Vec<DeviceUse>,
    /// Bytes in host memory: CPU buffers, memory-mapped weights, GPU backends' host buffers.
    pub ram_bytes: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUse {
    /// ggml's device name, e.g. `Vulkan0`, `CUDA0`, `RPC0[10.0.0.5:50052]` (an RPC worker's).
    pub name: String,
    pub bytes: u64,
    /// Layers placed on it (the repeating blocks and the output layer).
    #[serde(default)]
    pub layers: u32,
}

impl Placement {
    pub fn vram_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.bytes).sum()
    }

    /// Ollama's `ps` sizes: (`size`, `size_vram`). With every layer on a GPU the whole model
    /// counts as in VRAM, as Ollama reports it (small host buffers remain either way).
    pub fn ps_sizes(&self) -> (u64, u64) {
        let vram = self.vram_bytes();
        let size = vram + self.ram_bytes;
        if vram > 0 && self.layers > 0 && self.gpu_layers >= self.layers {
            (size, size)
        } else {
            (size, vram)
        }
    }
}

/// Ollama's PROCESSOR column from `ps` sizes: "100% GPU", "48%/52% CPU/GPU" or "100% CPU".
pub fn processor(size: u64, size_vram: u64) -> String {
    if size_vram == 0 || size == 0 {
        "100% CPU".into()
    } else if size_vram >= size {
        "100% GPU".into()
    } else {
        let cpu = ((size - size_vram) as f64 / size as f64 * 100.0).round() as u64;
        format!("{cpu}%/{}% CPU/GPU", 100 - cpu)
    }
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
    /// Tokens a draft model proposed, and how many of them the model accepted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub draft_tokens: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub draft_accepted: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl GenerationStats {
    /// The share of drafted tokens the model accepted, when a draft model proposed any.
    pub fn draft_acceptance(&self) -> Option<f64> {
        (self.draft_tokens > 0).then(|| self.draft_accepted as f64 / self.draft_tokens as f64)
    }
}

pub fn encode<T: Serialize>(msg: &T) -> String {
    let mut line = serde_json::to_string(msg).expect("protocol messages serialise");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processor_column_reads_like_ollamas() {
        assert_eq!(processor(100, 0), "100% CPU");
        assert_eq!(processor(100, 100), "100% GPU");
        assert_eq!(processor(100, 52), "48%/52% CPU/GPU");
        let full = Placement { gpu_layers: 19, layers: 19, devices: vec![DeviceUse { name: "Vulkan0".into(), bytes: 90, layers: 19 }], ram_bytes: 10 };
        assert_eq!(full.ps_sizes(), (100, 100));
        let part = Placement { gpu_layers: 9, ..full };
        assert_eq!(part.ps_sizes(), (100, 90));
    }
}
