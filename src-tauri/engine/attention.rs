//! How a runner's context holds its attention: flash attention (auto, on, off) and the KV
//! cache's element type (f16, q8_0, q4_0). A quantized cache is about half (q8_0) or a quarter
//! (q4_0) of the f16 cache's bytes; llama.cpp quantizes the V cache only with flash attention.
//! Defaults: `AIRLOCK_FLASH_ATTENTION` / `AIRLOCK_KV_CACHE_TYPE`, else Ollama's
//! `OLLAMA_FLASH_ATTENTION` / `OLLAMA_KV_CACHE_TYPE`, else auto and f16.

use serde::Serialize;

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

fn first_env(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
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
}
