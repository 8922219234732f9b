//! Placement: how many layers a runner gets on GPUs (`GpuPlan`: all when the model fits in free
//! VRAM by [`crate::hardware`]'s estimate, the most that fit otherwise, none without a usable GPU;
//! `AIRLOCK_GPU=off` and a request's `num_gpu` override it), which RPC workers' devices join this
//! machine's (those that answer now; with `AIRLOCK_GPU=off`, only theirs), and the retries of a
//! load that failed there (half the layers, then the CPU; without the CPU's AMX kernels after they
//! crashed). It must never fall back silently — every change of plan goes into the runner's
//! placement reason — and never touches the model table.

use std::sync::atomic::Ordering;

use super::process::LoadedModel;
use super::{EngineError, GpuPlan, LoadSpec, Supervisor};
use crate::hardware::{self, FitVerdict};

impl Supervisor {
    /// Starts a runner with the planned GPU layers. A load that fails with layers on a GPU (out
    /// of VRAM, a driver error) is retried with half of them, then on the CPU, and the reason is
    /// kept with the runner: never a silent CPU fallback. A runner killed by an illegal
    /// instruction in the CPU's AMX kernels (its warm-up decode runs them) is retried without them.
    pub(super) fn start(&self, spec: &LoadSpec) -> Result<LoadedModel, EngineError> {
        let mut plan = self.plan_gpu(spec);
        let (mut layers, mut reason) = (plan.layers, std::mem::take(&mut plan.why));
        let mut halved = false;
        loop {
            let avoid_amx = self.avoid_amx.load(Ordering::SeqCst);
            match self.spawn(spec, &GpuPlan { layers, ..plan.clone() }, avoid_amx) {
                Ok(mut model) => {
                    if avoid_amx {
                        reason.push_str("; the CPU kernels using Intel AMX crash on this machine (illegal instruction), so the next best ones run");
                    }
                    model.info.placement_reason = reason;
                    return Ok(model);
                }
                Err(EngineError::Load { message, .. }) if !avoid_amx && message.contains("SIGILL") => {
                    // The same runner again without AMX, not a second one: it does not count.
                    self.runner_starts.fetch_sub(1, Ordering::SeqCst);
                    self.avoid_amx.store(true, Ordering::SeqCst);
                }
                Err(EngineError::Load { message, .. }) if layers > 0 => {
                    let next = if halved || layers < 2 { 0 } else { layers / 2 };
                    halved = true;
                    let then = if next > 0 { format!("retried with {next} layers") } else { "it runs on the CPU".to_string() };
                    reason = format!("{reason}; loading {layers} layers on the GPU failed ({message}), so {then}");
                    layers = next;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// All layers when the model fits in free VRAM (this machine's and the answering RPC
    /// workers'), the most that fit otherwise, none without a usable GPU; `AIRLOCK_GPU=off` and a
    /// request's `num_gpu` override the estimate.
    fn plan_gpu(&self, spec: &LoadSpec) -> GpuPlan {
        let hide_local_gpus = hardware::gpu_disabled();
        let plan = |layers: u32, why: String, workers: &[hardware::RpcWorker]| {
            let rpc: Vec<String> = workers.iter().filter(|w| w.answered()).map(|w| w.endpoint.clone()).collect();
            let left_out: Vec<String> = workers.iter().filter_map(|w| w.error.as_ref().map(|e| format!("RPC worker {} left out: {e}", w.endpoint))).collect();
            let why = if left_out.is_empty() { why } else { format!("{why}; {}", left_out.join("; ")) };
            let rpc = if layers > 0 { rpc } else { Vec::new() };
            GpuPlan { layers, why, rpc, hide_local_gpus }
        };
        if hide_local_gpus && self.cfg.rpc.is_empty() {
            return plan(0, format!("GPU use is off ({}=off)", hardware::GPU_ENV), &[]);
        }
        if let Some(n) = spec.num_gpu {
            // More than the model has means all of them (the blocks and the output layer).
            let layers = if spec.size.layers > 0 { n.min(spec.size.layers + 1) } else { n };
            return plan(layers, format!("num_gpu {n} was requested"), &hardware::remote::probe(&self.cfg.rpc));
        }
        let hw = hardware::probe_with(&self.cfg.runner_exe, &self.cfg.rpc);
        if hw.gpus.is_empty() {
            // The reason already names the workers that did not answer.
            return GpuPlan { layers: 0, why: hw.no_gpu_reason.unwrap_or_else(|| "no usable GPU".into()), rpc: Vec::new(), hide_local_gpus };
        }
        let size = spec.size;
        let fit = hardware::estimate_fit(&hw, size.weights_bytes, size.kv_bytes_per_token, size.checkpoint_bytes, size.layers, spec.num_ctx, spec.parallel.max(1));
        let layers = match fit.verdict {
            // The repeating layers and the output layer.
            FitVerdict::FullGpu => size.layers.max(1) + 1,
            FitVerdict::PartialOffload { layers, .. } => layers,
            FitVerdict::CpuOnly | FitVerdict::DoesNotFit => 0,
        };
        plan(layers, fit.explanation, &hw.rpc_workers)
    }
}
