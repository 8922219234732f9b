//! The context a runner is built with when nothing names one, and the slots it holds. Ollama's
//! rule sizes the default from the memory the model runs in: 4k tokens below 24 GiB, 32k below
//! 48 GiB, 256k above — over the GPUs' memory when there is a usable GPU, over free RAM
//! otherwise. `AIRLOCK_CONTEXT_LENGTH` (else `OLLAMA_CONTEXT_LENGTH`) replaces the rule. A
//! request's `num_ctx` and a model's `num_ctx` parameter still come first, and the model's
//! trained context caps them all (`PreparedModel::context_length` in `chat.rs`).

use serde::Serialize;

use crate::hardware::HardwareReport;

/// The variables that set the default context, in the order they are read.
pub const CONTEXT_ENV: [&str; 2] = ["AIRLOCK_CONTEXT_LENGTH", "OLLAMA_CONTEXT_LENGTH"];

/// The smallest context a runner is given.
pub const MIN_CONTEXT: u32 = 256;

const GIB: u64 = 1 << 30;

/// The default context and why it is that.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DefaultContext {
    pub tokens: u32,
    pub why: String,
}

/// Ollama's thresholds: 4k below 24 GiB, 32k below 48 GiB, 256k from 48 GiB.
pub fn for_memory(bytes: u64) -> u32 {
    if bytes < 24 * GIB {
        4096
    } else if bytes < 48 * GIB {
        32 * 1024
    } else {
        256 * 1024
    }
}

/// The first of [`CONTEXT_ENV`] that is set to a whole number (0 and unreadable values count as
/// unset, as Ollama treats them).
pub fn from_env() -> Option<(u32, &'static str)> {
    CONTEXT_ENV.iter().find_map(|&var| {
        let n = std::env::var(var).ok()?.trim().parse::<u32>().ok().filter(|&n| n > 0)?;
        Some((n.max(MIN_CONTEXT), var))
    })
}

/// The default on `hw`: the variable when one is set, else Ollama's rule over the GPUs' total
/// memory (each capped by `AIRLOCK_GPU_MEMORY`), or free RAM when no GPU is usable.
pub fn default_for(hw: &HardwareReport, env: Option<(u32, &'static str)>) -> DefaultContext {
    if let Some((tokens, var)) = env {
        return DefaultContext { tokens, why: format!("set by {var}") };
    }
    let (bytes, what) = if hw.gpus.is_empty() {
        (hw.memory.available_bytes, "free RAM")
    } else {
        let budget = crate::hardware::vram_budget().unwrap_or(u64::MAX);
        (hw.gpus.iter().map(|g| g.memory_total_bytes.min(budget)).sum(), "GPU memory")
    };
    let tokens = for_memory(bytes);
    DefaultContext { tokens, why: format!("{}k for {:.1} GiB of {what}", tokens / 1024, bytes as f64 / GIB as f64) }
}

/// Parallel slots for a model of `weights_bytes` whose every slot takes `slot_bytes` (its KV cache
/// and checkpoints): `AIRLOCK_NUM_PARALLEL`, else up to 4 while the weights and the slots stay
/// within half the memory available now. Asked only when a runner starts: a loaded runner keeps
/// its slots however memory changes.
pub fn choose_parallel(weights_bytes: u64, slot_bytes: u64) -> u32 {
    if let Some(n) = std::env::var("AIRLOCK_NUM_PARALLEL").ok().and_then(|v| v.parse::<u32>().ok()) {
        return n.clamp(1, 64);
    }
    let budget = crate::hardware::available_memory().unwrap_or(8 << 30) / 2;
    let fits = budget.saturating_sub(weights_bytes) / slot_bytes.max(1);
    fits.clamp(1, 4) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::{CpuInfo, GpuDevice, MemoryInfo};

    fn machine(free_ram: u64, gpus: &[u64]) -> HardwareReport {
        HardwareReport {
            cpu: CpuInfo { model: "cpu".into(), physical_cores: 2, logical_cores: 2, threads_used: 2, cpu_variant: None },
            memory: MemoryInfo { total_bytes: free_ram * 2, available_bytes: free_ram },
            gpus: gpus
                .iter()
                .enumerate()
                .map(|(i, &total)| GpuDevice { name: "gpu".into(), device: format!("Vulkan{i}"), backend: "Vulkan".into(), memory_total_bytes: total, memory_free_bytes: total / 2, driver: None })
                .collect(),
            gpu_backends_built: vec!["Vulkan".into()],
            no_gpu_reason: None,
            rpc_workers: Vec::new(),
        }
    }

    #[test]
    fn ollamas_thresholds_over_gpu_memory_else_free_ram() {
        assert_eq!(for_memory(24 * GIB - 1), 4096);
        assert_eq!(for_memory(24 * GIB), 32768);
        assert_eq!(for_memory(48 * GIB - 1), 32768);
        assert_eq!(for_memory(48 * GIB), 262144);
        // GPU memory decides when there is a GPU, whatever the RAM; the GPUs' totals add up.
        assert_eq!(default_for(&machine(200 * GIB, &[16 * GIB]), None).tokens, 4096);
        assert_eq!(default_for(&machine(1 * GIB, &[16 * GIB, 16 * GIB]), None).tokens, 32768);
        let h100 = default_for(&machine(8 * GIB, &[80 * GIB]), None);
        assert_eq!(h100.tokens, 262144);
        assert!(h100.why.contains("GPU memory"), "{}", h100.why);
        // Without a GPU, free RAM.
        let laptop = default_for(&machine(30 * GIB, &[]), None);
        assert_eq!((laptop.tokens, laptop.why.as_str()), (32768, "32k for 30.0 GiB of free RAM"));
        assert_eq!(default_for(&machine(12 * GIB, &[]), None).tokens, 4096);
        // The variable wins.
        let set = default_for(&machine(80 * GIB, &[80 * GIB]), Some((8192, "OLLAMA_CONTEXT_LENGTH")));
        assert_eq!((set.tokens, set.why.as_str()), (8192, "set by OLLAMA_CONTEXT_LENGTH"));
    }
}
