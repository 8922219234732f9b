//! How a runner's context holds its attention: flash attention (auto, on, off) and the KV
//! cache's element type (f16, q8_0, q4_0). A quantized cache is about half (q8_0) or a quarter
//! (q4_0) of the f16 cache's bytes; llama.cpp quantizes the V cache only with flash attention.
//! Defaults: `AIRLOCK_FLASH_ATTENTION` / `AIRLOCK_KV_CACHE_TYPE`, else Ollama's
//! `OLLAMA_FLASH_ATTENTION` / `OLLAMA_KV_CACHE_TYPE`, else auto and f16.

use serde::Serialize;

use crate::engine::protocol::DEFAULT_BATCH;
use crate::gguf;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttention {
    /// On where llama.cpp's backend supports it for the model.
    #[default]
    Auto,
    On,
    Off,
}

impl FlashAttention {
    /// `auto`, or a yes/no (`on`, `true`, `1` / `off`, `false`, `0`), as Ollama's variable takes.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(FlashAttention::Auto),
            "on" | "true" | "1" | "yes" | "enabled" => Ok(FlashAttention::On),
            "off" | "false" | "0" | "no" | "disabled" => Ok(FlashAttention::Off),
            other => Err(format!("invalid flash attention setting {other:?}: use auto, on or off")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlashAttention::Auto => "auto",
            FlashAttention::On => "on",
            FlashAttention::Off => "off",
        }
    }

    /// The default: `AIRLOCK_FLASH_ATTENTION`, else `OLLAMA_FLASH_ATTENTION`, else auto (an
    /// unreadable value counts as unset).
    pub fn from_env() -> Self {
        first_env(&["AIRLOCK_FLASH_ATTENTION", "OLLAMA_FLASH_ATTENTION"]).and_then(|v| Self::parse(&v).ok()).unwrap_or_default()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KvCacheType {
    #[default]
    F16,
    #[serde(rename = "q8_0")]
    Q8_0,
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl KvCacheType {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "f16" | "" => Ok(KvCacheType::F16),
            "q8_0" => Ok(KvCacheType::Q8_0),
            "q4_0" => Ok(KvCacheType::Q4_0),
            other => Err(format!("invalid KV cache type {other:?}: use f16, q8_0 or q4_0")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheType::F16 => "f16",
            KvCacheType::Q8_0 => "q8_0",
            KvCacheType::Q4_0 => "q4_0",
        }
    }

    /// The default: `AIRLOCK_KV_CACHE_TYPE`, else `OLLAMA_KV_CACHE_TYPE`, else f16 (an
    /// unreadable value counts as unset).
    pub fn from_env() -> Self {
        first_env(&["AIRLOCK_KV_CACHE_TYPE", "OLLAMA_KV_CACHE_TYPE"]).and_then(|v| Self::parse(&v).ok()).unwrap_or_default()
    }

    /// The bytes `f16_bytes` of f16 cache take in this type: ggml's blocks of 32 elements are
    /// 64 bytes in f16, 34 in q8_0 and 18 in q4_0.
    pub fn bytes_of(self, f16_bytes: u64) -> u64 {
        match self {
            KvCacheType::F16 => f16_bytes,
            KvCacheType::Q8_0 => f16_bytes / 64 * 34 + f16_bytes % 64 * 34 / 64,
            KvCacheType::Q4_0 => f16_bytes / 64 * 18 + f16_bytes % 64 * 18 / 64,
        }
    }
}

/// A quantized cache with flash attention off cannot be built (llama.cpp quantizes the V cache
/// only inside flash attention): refused before a runner starts, saying what to change.
pub fn check(flash_attention: FlashAttention, kv_cache: KvCacheType) -> Result<(), String> {
    if kv_cache != KvCacheType::F16 && flash_attention == FlashAttention::Off {
        return Err(format!("a {} KV cache needs flash attention, which is off: set flash_attention to auto or on, or use an f16 cache", kv_cache.as_str()));
    }
    Ok(())
}

/// The model's own settings from its `params` layer (Modelfile `PARAMETER flash_attention` and
/// `PARAMETER kv_cache_type`); unreadable values are left unset.
pub fn from_params(text: &str) -> (Option<FlashAttention>, Option<KvCacheType>) {
    let Ok(map) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) else { return (None, None) };
    let flash = map.get("flash_attention").and_then(|v| match v {
        serde_json::Value::Bool(on) => Some(if *on { FlashAttention::On } else { FlashAttention::Off }),
        serde_json::Value::String(s) => FlashAttention::parse(s).ok(),
        _ => None,
    });
    (flash, map.get("kv_cache_type").and_then(|v| v.as_str()).and_then(|s| KvCacheType::parse(s).ok()))
}

/// What a runner is built with: the request's flash attention, else the model's, else the
/// engine's default; the model's cache type, else the default. A combination that cannot be
/// built is refused with what to change.
pub fn resolve(request: Option<FlashAttention>, model: (Option<FlashAttention>, Option<KvCacheType>), defaults: (FlashAttention, KvCacheType)) -> Result<(FlashAttention, KvCacheType), String> {
    let flash = request.or(model.0).unwrap_or(defaults.0);
    let cache = model.1.unwrap_or(defaults.1);
    check(flash, cache)?;
    Ok((flash, cache))
}

/// Checkpoints of a sliding-window cache each slot keeps (`runner/window.rs`) unless
/// `AIRLOCK_CONTEXT_CHECKPOINTS` says otherwise (0 keeps none).
pub const DEFAULT_CHECKPOINTS: u32 = 3;

/// `AIRLOCK_CONTEXT_CHECKPOINTS`, at most 32; an unreadable value counts as unset.
pub fn checkpoints_from_env() -> u32 {
    first_env(&["AIRLOCK_CONTEXT_CHECKPOINTS"]).and_then(|v| v.trim().parse::<u32>().ok()).map_or(DEFAULT_CHECKPOINTS, |n| n.min(32))
}

fn first_env(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
}

/// The KV cache's shape, from the GGUF's attention metadata: what one token takes in one layer,
/// and how many layers keep only a sliding window (as the runner builds the cache: see
/// `runner/window.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvShape {
    /// K and V of one token in one layer, at f16: 2 × KV heads × head size × 2 bytes.
    pub layer_token_bytes: u64,
    pub layers: u64,
    /// Layers that keep the last `window` tokens and one batch, not the whole context.
    pub window_layers: u64,
    pub window: u64,
}

impl KvShape {
    pub fn from_gguf(info: &gguf::GgufInfo) -> Self {
        let arch = info.architecture().unwrap_or_default();
        let key = |k: &str| info.get_u64(&format!("{arch}.{k}"));
        let layers = info.block_count().unwrap_or(32);
        let embd = info.embedding_length().unwrap_or(4096);
        let heads = key("attention.head_count").unwrap_or(1).max(1);
        let kv_heads = key("attention.head_count_kv").unwrap_or(heads);
        let head_dim = key("attention.key_length").unwrap_or(embd / heads);
        let window = key("attention.sliding_window").unwrap_or(0);
        let window_layers = if window == 0 { 0 } else { window_layer_count(info, arch, layers) };
        KvShape { layer_token_bytes: 2 * kv_heads * head_dim * 2, layers, window_layers, window }
    }

    /// f16 bytes per token of a `num_ctx`-token context (one sequence): the window layers hold
    /// at most their window and a batch, rounded up to 256 cells as llama.cpp does.
    pub fn bytes_per_token(&self, num_ctx: u32) -> u64 {
        let n = (num_ctx as u64).max(1);
        let window_cells = (self.window + DEFAULT_BATCH as u64).next_multiple_of(256).min(n.next_multiple_of(256));
        let cells = (self.layers - self.window_layers) * n + self.window_layers * window_cells;
        (cells * self.layer_token_bytes).div_ceil(n)
    }

    /// f16 bytes of one checkpoint of a `num_ctx`-token sequence (`runner/window.rs`): the window
    /// layers' last `window` tokens, which is all llama.cpp keeps of them between batches. Host
    /// memory, wherever the cache is.
    pub fn checkpoint_bytes(&self, num_ctx: u32) -> u64 {
        self.window_layers * self.window.min(num_ctx as u64) * self.layer_token_bytes
    }
}

/// Layers with a sliding window: the GGUF's `attention.sliding_window_pattern` (every Nth layer
/// attends to everything, or one flag per layer), else llama.cpp's pattern for the architecture,
/// else none (the estimate is then high, never low).
fn window_layer_count(info: &gguf::GgufInfo, arch: &str, layers: u64) -> u64 {
    let every = match info.get(&format!("{arch}.attention.sliding_window_pattern")) {
        Some(gguf::MetaValue::Array(a)) => {
            return a.values().map_or(0, |v| v.iter().filter(|f| matches!(f, gguf::MetaValue::Bool(true))).count() as u64);
        }
        Some(v) => v.as_u64(),
        None => None,
    };
    let every = every.or(match arch {
        "gemma2" | "gpt-oss" => Some(2),
        "gemma3" | "gemma-embedding" => Some(6),
        "gemma3n" => Some(5),
        "cohere2" | "exaone4" | "olmo2" => Some(4),
        _ => None,
    });
    match every {
        Some(0) => layers,
        Some(n) => layers - layers / n,
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_read_as_ollama_writes_them() {
        assert_eq!(["1", "true", "on", "AUTO", "0", "false"].map(|s| FlashAttention::parse(s).unwrap()), [FlashAttention::On, FlashAttention::On, FlashAttention::On, FlashAttention::Auto, FlashAttention::Off, FlashAttention::Off]);
        assert!(FlashAttention::parse("maybe").unwrap_err().contains("auto, on or off"));
        assert_eq!(["f16", "Q8_0", "q4_0"].map(|s| KvCacheType::parse(s).unwrap()), [KvCacheType::F16, KvCacheType::Q8_0, KvCacheType::Q4_0]);
        assert!(KvCacheType::parse("q5_1").unwrap_err().contains("f16, q8_0 or q4_0"));
    }

    #[test]
    fn quantized_caches_are_smaller_and_need_flash_attention() {
        assert_eq!([KvCacheType::F16, KvCacheType::Q8_0, KvCacheType::Q4_0].map(|t| t.bytes_of(6400)), [6400, 3400, 1800]);
        assert!(check(FlashAttention::Off, KvCacheType::Q8_0).unwrap_err().contains("needs flash attention"));
        assert!(check(FlashAttention::Auto, KvCacheType::Q4_0).is_ok() && check(FlashAttention::Off, KvCacheType::F16).is_ok());
    }

    #[test]
    fn window_layers_hold_their_window_and_a_batch() {
        // Gemma 3 270M: 18 layers, one KV head of 256, a 512-token window on 5 layers in 6.
        let gemma = KvShape { layer_token_bytes: 2 * 256 * 2, layers: 18, window_layers: 15, window: 512 };
        // llama.cpp at 32k: 96 MiB for the 3 full layers, 15 MiB for 1,024 cells of 15 layers.
        assert_eq!(gemma.bytes_per_token(32768) * 32768, (96 + 15) << 20);
        // A context shorter than window and batch: every layer holds all of it.
        assert_eq!(gemma.bytes_per_token(512), 18 * 1024);
        let whole = KvShape { window_layers: 0, window: 0, ..gemma };
        assert_eq!(whole.bytes_per_token(32768), 18 * 1024);
        // A checkpoint holds the window: llama.cpp's state of a 1,141-token prompt measured
        // 7,870,856 bytes, these and 6.5 kB of cell positions and headers.
        assert_eq!(gemma.checkpoint_bytes(32768), 7_864_320);
        assert_eq!(whole.checkpoint_bytes(32768), 0);
    }
}
