//! Will a model fit? Pure arithmetic over a [`HardwareReport`]: the weights plus the KV cache
//! for the chosen context (`kv_bytes_per_token × num_ctx × parallel`) plus a fixed allowance for
//! compute buffers ([`overhead_bytes`]) against free VRAM, then available RAM; the checkpoints of
//! a sliding-window cache are in RAM wherever the cache is. It must never probe anything itself,
//! so it is cheap, deterministic and testable with made-up hardware.

use serde::{Deserialize, Serialize};

use super::HardwareReport;

/// Compute buffers, scratch and the backend's own context beyond weights and KV cache: a fixed
/// 256 MiB plus 5 % of weights + KV cache (llama.cpp's graph buffers grow with the model and
/// the batch; this is an estimate, not a measurement).
pub const FIXED_OVERHEAD_BYTES: u64 = 256 << 20;

/// The allowance described in [`FIXED_OVERHEAD_BYTES`].
pub fn overhead_bytes(weights_bytes: u64, kv_bytes: u64) -> u64 {
    FIXED_OVERHEAD_BYTES.saturating_add(weights_bytes.saturating_add(kv_bytes) / 20)
}

/// Where a model would run. Serialised flattened into [`FitEstimate`] as
/// `"verdict": "full_gpu" | "partial_offload" | "cpu_only" | "does_not_fit"`, with `layers` and
/// `of` next to it for a partial offload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum FitVerdict {
    /// Everything in free VRAM.
    FullGpu,
    /// `layers` of the model's `of` layers in VRAM, the rest in RAM.
    PartialOffload { layers: u32, of: u32 },
    /// No usable GPU (or not even one layer fits there), but it fits in available RAM.
    CpuOnly,
    /// Not even RAM holds it (it would page from disk, if it loads at all).
    DoesNotFit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FitEstimate {
    #[serde(flatten)]
    pub verdict: FitVerdict,
    /// weights + KV cache + checkpoints + overhead.
    pub need_bytes: u64,
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    /// Every slot's sliding-window checkpoints, in RAM.
    pub checkpoint_bytes: u64,
    pub overhead_bytes: u64,
    /// Free VRAM over every usable GPU (0 without one).
    pub vram_free_bytes: u64,
    pub ram_available_bytes: u64,
    /// The numbers behind the verdict, in words with human units.
    pub explanation: String,
}

/// Estimates where a model with these sizes runs on `hw`. `layers` is the model's block count
/// (0 if unknown: then there is no partial offload); `parallel` slots each hold `num_ctx` tokens
/// and `checkpoint_bytes_per_slot` of checkpoints.
pub fn estimate_fit(hw: &HardwareReport, weights_bytes: u64, kv_bytes_per_token: u64, checkpoint_bytes_per_slot: u64, layers: u32, num_ctx: u32, parallel: u32) -> FitEstimate {
    let kv_bytes = kv_bytes_per_token.saturating_mul(num_ctx as u64).saturating_mul(parallel.max(1) as u64);
    let checkpoint_bytes = checkpoint_bytes_per_slot.saturating_mul(parallel.max(1) as u64);
    let overhead = overhead_bytes(weights_bytes, kv_bytes);
    let model_bytes = weights_bytes.saturating_add(kv_bytes);
    // What a GPU would hold if it took the whole model; the checkpoints stay in RAM.
    let gpu_need = model_bytes.saturating_add(overhead);
    let need = gpu_need.saturating_add(checkpoint_bytes);
    let vram: u64 = hw.gpus.iter().map(|g| g.memory_free_bytes).fold(0, u64::saturating_add);
    let ram = hw.memory.available_bytes;
    let has_gpu = !hw.gpus.is_empty();
    let h = human;
    let checkpoints = if checkpoint_bytes > 0 { format!(" + checkpoints {}", h(checkpoint_bytes)) } else { String::new() };
    let sizes = format!(
        "needs {} (weights {} + KV cache {} for {num_ctx} tokens × {} slot(s){checkpoints} + overhead {})",
        h(need),
        h(weights_bytes),
        h(kv_bytes),
        parallel.max(1),
        h(overhead)
    );

    let (verdict, explanation) = if has_gpu && gpu_need <= vram {
        (FitVerdict::FullGpu, format!("{sizes}; fits in {} of free VRAM", h(vram)))
    } else {
        // Layers hold weights and KV cache in proportion; the GPU also needs the overhead.
        let offload = if has_gpu && layers > 1 {
            let per_layer = (model_bytes / layers as u64).max(1);
            let n = (vram.saturating_sub(overhead) / per_layer).min(layers as u64 - 1) as u32;
            Some(n).filter(|&n| n >= 1)
        } else {
            None
        };
        match offload {
            Some(n) => {
                let host = model_bytes / layers as u64 * (layers - n) as u64 + overhead + checkpoint_bytes;
                if host <= ram {
                    (
                        FitVerdict::PartialOffload { layers: n, of: layers },
                        format!(
                            "{sizes}; only {} of VRAM is free, so {n} of {layers} layers go to the GPU and the rest ({}) to RAM ({} available)",
                            h(vram),
                            h(host),
                            h(ram)
                        ),
                    )
                } else {
                    (
                        FitVerdict::DoesNotFit,
                        format!("{sizes}; with {n} of {layers} layers on the GPU ({} VRAM free) the rest still needs {}, more than the {} of RAM available", h(vram), h(host), h(ram)),
                    )
                }
            }
            None if need <= ram => {
                let why = if has_gpu { format!("more than the {} of free VRAM", h(vram)) } else { "no usable GPU".into() };
                (FitVerdict::CpuOnly, format!("{sizes}; {why}; fits in the {} of RAM available", h(ram)))
            }
            None => {
                let gpu = if has_gpu { format!(" or the {} of free VRAM", h(vram)) } else { String::new() };
                (FitVerdict::DoesNotFit, format!("{sizes}; more than the {} of RAM available{gpu}", h(ram)))
            }
        }
    };
    FitEstimate { verdict, need_bytes: need, weights_bytes, kv_bytes, checkpoint_bytes, overhead_bytes: overhead, vram_free_bytes: vram, ram_available_bytes: ram, explanation }
}

/// Decimal sizes as Ollama prints them (`815 B`, `253 MB`, `1.5 GB`, `2 GB`): the one byte format
/// of the CLI (`human_bytes` in the CLI's format module), the API's messages and the desktop window (`formatBytes`).
pub fn human(b: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(1_000_000_000_000, "TB"), (1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "KB")];
    let Some((scale, unit)) = UNITS.iter().find(|(s, _)| b >= *s) else { return format!("{b} B") };
    let value = b as f64 / *scale as f64;
    if value >= 10.0 || value.fract() == 0.0 {
        format!("{} {unit}", value as u64)
    } else {
        format!("{value:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::{CpuInfo, GpuDevice, MemoryInfo};

    const GB: u64 = 1 << 30;

    fn hw(ram_available: u64, vram_free: &[u64]) -> HardwareReport {
        HardwareReport {
            cpu: CpuInfo { model: "Test CPU".into(), physical_cores: 4, logical_cores: 8, threads_used: 4, cpu_variant: None },
            memory: MemoryInfo { total_bytes: 64 * GB, available_bytes: ram_available },
            gpus: vram_free
                .iter()
                .enumerate()
                .map(|(i, &free)| GpuDevice { name: format!("GPU {i}"), device: format!("Vulkan{i}"), backend: "Vulkan".into(), memory_total_bytes: free * 2, memory_free_bytes: free, driver: None })
                .collect(),
            gpu_backends_built: if vram_free.is_empty() { vec![] } else { vec!["Vulkan".into()] },
            no_gpu_reason: None,
            rpc_workers: Vec::new(),
        }
    }

    #[test]
    fn overhead_is_fixed_plus_five_percent() {
        assert_eq!(overhead_bytes(0, 0), 256 << 20);
        assert_eq!(overhead_bytes(10 * GB, 10 * GB), (256 << 20) + GB);
    }

    #[test]
    fn kv_cache_scales_with_context_and_slots() {
        let f = estimate_fit(&hw(64 * GB, &[]), GB, 1000, 0, 10, 4096, 4);
        assert_eq!(f.kv_bytes, 1000 * 4096 * 4);
        assert_eq!(f.need_bytes, GB + f.kv_bytes + overhead_bytes(GB, f.kv_bytes));
        // parallel 0 counts as one slot
        assert_eq!(estimate_fit(&hw(64 * GB, &[]), GB, 1000, 0, 10, 4096, 0).kv_bytes, 1000 * 4096);
    }

    #[test]
    fn full_gpu_when_everything_fits_in_free_vram() {
        let f = estimate_fit(&hw(16 * GB, &[24 * GB]), 4 * GB, 100_000, 0, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::FullGpu, "{}", f.explanation);
        assert!(f.explanation.contains("free VRAM"), "{}", f.explanation);
        // two GPUs' free memory adds up
        let f = estimate_fit(&hw(16 * GB, &[3 * GB, 3 * GB]), 4 * GB, 100_000, 0, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::FullGpu, "{}", f.explanation);
    }

    #[test]
    fn partial_offload_is_proportional_to_free_vram() {
        // 8 GiB weights, no KV cache, 32 layers = 256 MiB a layer; 4 GiB free VRAM less overhead
        // (256 MiB + 5 % of 8 GiB ≈ 665.6 MiB) holds 13 layers.
        let f = estimate_fit(&hw(32 * GB, &[4 * GB]), 8 * GB, 0, 0, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::PartialOffload { layers: 13, of: 32 }, "{}", f.explanation);
        assert!(f.explanation.contains("13 of 32 layers"), "{}", f.explanation);
        // never all layers as "partial"
        let f = estimate_fit(&hw(32 * GB, &[8 * GB + GB / 2]), 8 * GB, 0, 0, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::PartialOffload { layers: 31, of: 32 }, "{}", f.explanation);
    }

    #[test]
    fn cpu_only_without_a_gpu_or_when_no_layer_fits() {
        let f = estimate_fit(&hw(16 * GB, &[]), 4 * GB, 100_000, 0, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::CpuOnly, "{}", f.explanation);
        assert!(f.explanation.contains("no usable GPU"), "{}", f.explanation);
        // a GPU whose free memory is less than the overhead takes no layer
        let f = estimate_fit(&hw(16 * GB, &[100 << 20]), 4 * GB, 0, 0, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::CpuOnly, "{}", f.explanation);
        // unknown layer count: no partial offload
        let f = estimate_fit(&hw(16 * GB, &[2 * GB]), 4 * GB, 0, 0, 0, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::CpuOnly, "{}", f.explanation);
    }

    #[test]
    fn checkpoints_count_in_ram_wherever_the_cache_is() {
        // The GPU holds weights, KV cache and overhead; 2 slots' checkpoints (2 GiB each) are in RAM.
        let f = estimate_fit(&hw(16 * GB, &[24 * GB]), 4 * GB, 100_000, 2 * GB, 32, 4096, 2);
        assert_eq!((f.verdict, f.checkpoint_bytes), (FitVerdict::FullGpu, 4 * GB), "{}", f.explanation);
        assert!(f.explanation.contains("× 2 slot(s) + checkpoints 4.3 GB + overhead"), "{}", f.explanation);
        let without = estimate_fit(&hw(16 * GB, &[]), 4 * GB, 100_000, 0, 32, 4096, 2);
        assert_eq!(estimate_fit(&hw(16 * GB, &[]), 4 * GB, 100_000, 2 * GB, 32, 4096, 2).need_bytes, without.need_bytes + 4 * GB);
        // A partial offload puts as many layers on the GPU; RAM holds the rest and the checkpoints
        // (19 layers of 256 MiB, 665.6 MiB of overhead and 8 GiB: 13.4 GiB).
        let f = estimate_fit(&hw(14 * GB, &[4 * GB]), 8 * GB, 0, 8 * GB, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::PartialOffload { layers: 13, of: 32 }, "{}", f.explanation);
        let f = estimate_fit(&hw(13 * GB, &[4 * GB]), 8 * GB, 0, 8 * GB, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::DoesNotFit, "{}", f.explanation);
    }

    #[test]
    fn does_not_fit_when_ram_is_too_small() {
        let f = estimate_fit(&hw(2 * GB, &[]), 4 * GB, 0, 0, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::DoesNotFit);
        assert!(f.explanation.contains("more than the 2.1 GB of RAM available"), "{}", f.explanation);
        // partial offload whose remainder does not fit in RAM
        let f = estimate_fit(&hw(GB, &[2 * GB]), 8 * GB, 0, 0, 32, 4096, 1);
        assert_eq!(f.verdict, FitVerdict::DoesNotFit, "{}", f.explanation);
    }

    #[test]
    fn serialises_flat_and_tagged() {
        let f = estimate_fit(&hw(32 * GB, &[4 * GB]), 8 * GB, 0, 0, 32, 4096, 1);
        let v = serde_json::to_value(&f).unwrap();
        assert_eq!(v["verdict"], "partial_offload");
        assert_eq!(v["layers"], 13);
        assert_eq!(v["of"], 32);
        assert_eq!(serde_json::to_value(estimate_fit(&hw(64 * GB, &[]), GB, 0, 0, 1, 1, 1)).unwrap()["verdict"], "cpu_only");
        let back: FitEstimate = serde_json::from_value(v).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn human_units() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(1_500_000_000), "1.5 GB");
        // Ollama's rules, as the window's formatBytes: whole numbers (truncated) from 10 up.
        assert_eq!((human(851_300_000), human(851_900_000), human(2_000_000_000), human((4 << 30) - 1)), ("851 MB".into(), "851 MB".into(), "2 GB".into(), "4.3 GB".into()));
    }
}
