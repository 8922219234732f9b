//! What this machine can run: CPU (model, cores, the threads the runner uses, the CPU-variant
//! module ggml picks), RAM, the ggml backend devices (GPUs, with NVML details for NVIDIA when
//! `libnvidia-ml.so.1` is present), the GPU backends this build contains and, when no GPU is
//! usable, why — the devices of llama.cpp RPC workers on other machines ([`remote`]) — plus
//! the per-model fit estimate ([`estimate_fit`]).
//!
//! It owns probing and the fit arithmetic only; it must never load a model, change what the
//! engine does, or load ggml backends into the calling process: the device part runs in a child
//! (`airlock hardware --probe-devices`, [`devices`]), like the runner, because a GPU driver may
//! hang or abort on initialisation, backends load only once per process (a Refresh would
//! register them again), and the desktop app and the server must never hold llama.cpp or driver
//! libraries themselves. CPU and RAM come from `sysinfo` in the calling process (cheap and safe).
//!
//! Uses: `backends`, `units`. The engine uses it, never the other way round.

mod build_info;
pub mod devices;
mod fit;
mod host;
pub mod remote;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::child;

pub use build_info::BuildInfo;
pub use devices::DeviceProbe;
pub use fit::{estimate_fit, human, overhead_bytes, FitEstimate, FitVerdict, FIXED_OVERHEAD_BYTES};
pub use host::{available_memory, physical_cores, probe_host, HostInfo};
pub use remote::RpcWorker;

/// Environment variable overriding the runner's thread count (read by the engine's supervisor).
pub const THREADS_ENV: &str = "AIRLOCK_THREADS";
/// `AIRLOCK_GPU=off` keeps every model on the CPU.
pub const GPU_ENV: &str = "AIRLOCK_GPU";
/// Caps the VRAM Airlock counts as free on each GPU (e.g. `2G`), for a GPU shared with others.
pub const GPU_MEMORY_ENV: &str = "AIRLOCK_GPU_MEMORY";
/// How long the device probe child may take (GPU drivers can be slow to initialise).
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HardwareReport {
    pub cpu: CpuInfo,
    pub memory: MemoryInfo,
    /// Usable GPUs (ggml GPU and integrated-GPU devices), then the devices of the RPC workers
    /// that answered (backend `RPC`); empty on a CPU-only machine or build without workers.
    pub gpus: Vec<GpuDevice>,
    /// GPU backends this build contains (ggml modules other than the CPU ones), e.g. `["Vulkan"]`.
    pub gpu_backends_built: Vec<String>,
    /// Why no GPU is usable, in words; `None` when `gpus` is not empty.
    pub no_gpu_reason: Option<String>,
    /// The configured RPC workers, answering or not (see [`remote`]).
    #[serde(default)]
    pub rpc_workers: Vec<RpcWorker>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub model: String,
    pub physical_cores: u32,
    pub logical_cores: u32,
    /// Threads the runner decodes with: `AIRLOCK_THREADS`, else its physical-core count.
    pub threads_used: u32,
    /// The CPU-variant module ggml loads (`libggml-cpu-<variant>.so`), e.g. `zen4`.
    pub cpu_variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryInfo {
    pub total_bytes: u64,
    /// What can be allocated without swapping (`MemAvailable`).
    pub available_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuDevice {
    /// What the device is, e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// ggml's device name, e.g. `CUDA0`, `Vulkan0`.
    #[serde(default)]
    pub device: String,
    /// ggml backend, e.g. `CUDA`, `Vulkan`, `Metal`.
    pub backend: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
    /// Driver version (from NVML for NVIDIA GPUs), e.g. `NVIDIA 550.54.15`.
    pub driver: Option<String>,
}

/// Probes this machine and the RPC workers at `rpc`: CPU and RAM here, ggml devices in a child
/// process (see the module doc), the workers over the network. Never fails: what could not be
/// found is said in `no_gpu_reason` and the workers' `error` / left empty.
pub fn probe(rpc: &[String]) -> HardwareReport {
    match crate::child::own_exe() {
        Some(exe) => probe_with(&exe, rpc),
        None => assemble(host::probe_host(), DeviceProbe::failed("no airlock executable to run the device probe in"), remote::probe(rpc)),
    }
}

/// [`probe`], with `exe` answering the device probe (the engine passes its runner executable).
pub fn probe_with(exe: &Path, rpc: &[String]) -> HardwareReport {
    let (devices, workers) = std::thread::scope(|s| {
        let workers = s.spawn(|| remote::probe(rpc));
        (run_device_probe(exe), workers.join().unwrap_or_default())
    });
    assemble(host::probe_host(), devices, workers)
}

/// Whether `AIRLOCK_GPU` turns GPUs off.
pub fn gpu_disabled() -> bool {
    std::env::var(GPU_ENV).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "off" | "0" | "false" | "no" | "cpu"))
}

/// `AIRLOCK_GPU_MEMORY` in bytes, when set and valid.
pub fn vram_budget() -> Option<u64> {
    std::env::var(GPU_MEMORY_ENV).ok().and_then(|v| crate::units::parse_size(v.trim()).ok())
}

/// Combines the host facts with a device probe and the workers' answers, deciding
/// `no_gpu_reason`. The GPU settings (`AIRLOCK_GPU`, `AIRLOCK_GPU_MEMORY`) apply here, to this
/// machine's GPUs only, so every fit estimate matches what a load does.
pub fn assemble(host: HostInfo, mut d: DeviceProbe, rpc_workers: Vec<RpcWorker>) -> HardwareReport {
    let off = gpu_disabled();
    if off {
        d.gpus.clear();
    }
    if let Some(budget) = vram_budget() {
        for g in &mut d.gpus {
            g.memory_free_bytes = g.memory_free_bytes.min(budget);
        }
    }
    let threads_used = std::env::var(THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(host::physical_cores);
    d.gpus.extend(rpc_workers.iter().flat_map(|w| w.devices.iter().cloned()));
    let no_gpu_reason = match (off, d.gpus.is_empty()) {
        (_, false) => None,
        (true, true) => Some(format!("GPU use is off ({GPU_ENV}=off)")),
        (false, true) => Some(no_gpu_reason(&d)),
    };
    let no_gpu_reason = no_gpu_reason.map(|reason| {
        let silent: Vec<String> = rpc_workers.iter().filter_map(|w| w.error.clone()).collect();
        if silent.is_empty() { reason } else { format!("{reason}; no RPC worker answered: {}", silent.join("; ")) }
    });
    HardwareReport {
        cpu: CpuInfo {
            model: host.cpu_model,
            physical_cores: host.physical_cores,
            logical_cores: host.logical_cores,
            threads_used,
            cpu_variant: d.cpu_variant.clone(),
        },
        memory: MemoryInfo { total_bytes: host.mem_total, available_bytes: host.mem_available },
        gpus: d.gpus,
        gpu_backends_built: d.gpu_backends_built,
        no_gpu_reason,
        rpc_workers,
    }
}

/// Why `d` found no usable GPU, in words.
fn no_gpu_reason(d: &DeviceProbe) -> String {
    let mut reason = if let Some(e) = &d.error {
        format!("could not probe GPU devices: {e}")
    } else if d.gpu_backends_built.is_empty() {
        "this build has no GPU backend (CPU only)".to_string()
    } else {
        d.gpu_backends_built.iter().map(|b| format!("the {b} backend found no GPU")).collect::<Vec<_>>().join("; ")
    };
    if !d.nvidia.is_empty() {
        let names: Vec<&str> = d.nvidia.iter().map(|g| g.name.as_str()).collect();
        reason.push_str(&format!(" (NVML sees {}, which this build cannot use)", names.join(", ")));
    }
    reason
}

/// Runs `exe hardware --probe-devices` and reads its one JSON document; a crash, a hang past
/// [`PROBE_TIMEOUT`] or bad output becomes [`DeviceProbe::error`].
pub fn run_device_probe(exe: &Path) -> DeviceProbe {
    let mut command = Command::new(exe);
    // Driver code runs there: it gets no credential or key.
    crate::backends::restrict_child_environment(&mut command);
    command.args(["hardware", "--probe-devices"]);
    // ggml logs every module it loads on stderr: only the last line is kept, for errors.
    let limits = child::Limits { memory: None, cpu: None, wall: PROBE_TIMEOUT, output: 16 << 20 };
    let done = match child::run_limited(command, limits) {
        Ok(done) => done,
        Err(child::ChildError::WallClock(_)) => return DeviceProbe::failed(&format!("the device probe did not finish within {} s (a GPU driver hanging?)", PROBE_TIMEOUT.as_secs())),
        Err(e) => return DeviceProbe::failed(&format!("the device probe failed: {e}")),
    };
    match serde_json::from_slice::<DeviceProbe>(&done.stdout) {
        Ok(p) if done.status.success() => p,
        _ => {
            let tail = &done.stderr_tail;
            DeviceProbe::failed(&format!("the device probe exited with {}{}", done.status, if tail.is_empty() { String::new() } else { format!(": {tail}") }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use devices::NvidiaGpu;

    fn host() -> host::HostInfo {
        host::HostInfo { cpu_model: "X".into(), physical_cores: 2, logical_cores: 4, mem_total: 8 << 30, mem_available: 4 << 30 }
    }

    #[test]
    fn reason_without_gpu_backend() {
        let r = assemble(host(), DeviceProbe::default(), Vec::new());
        assert_eq!(r.no_gpu_reason.as_deref(), Some("this build has no GPU backend (CPU only)"));
        assert!(r.gpus.is_empty() && r.cpu.threads_used >= 1);
        assert_eq!(r.memory.total_bytes, 8 << 30);
    }

    #[test]
    fn reason_with_backend_but_no_device_and_nvml() {
        let d = DeviceProbe {
            gpu_backends_built: vec!["Vulkan".into(), "CUDA".into()],
            nvidia: vec![NvidiaGpu { name: "NVIDIA T4".into(), memory_total_bytes: 1, memory_free_bytes: 1 }],
            ..Default::default()
        };
        let r = assemble(host(), d, Vec::new());
        assert_eq!(r.no_gpu_reason.as_deref(), Some("the Vulkan backend found no GPU; the CUDA backend found no GPU (NVML sees NVIDIA T4, which this build cannot use)"));
    }

    #[test]
    fn no_reason_with_a_gpu_and_reason_on_probe_failure() {
        let d = DeviceProbe {
            gpus: vec![GpuDevice { name: "llvmpipe".into(), device: "Vulkan0".into(), backend: "Vulkan".into(), memory_total_bytes: 1, memory_free_bytes: 1, driver: None }],
            gpu_backends_built: vec!["Vulkan".into()],
            ..Default::default()
        };
        assert_eq!(assemble(host(), d, Vec::new()).no_gpu_reason, None);
        let r = assemble(host(), DeviceProbe::failed("boom"), Vec::new());
        assert_eq!(r.no_gpu_reason.as_deref(), Some("could not probe GPU devices: boom"));
    }

    #[test]
    fn remote_devices_count_as_gpus_and_silent_workers_are_named() {
        let remote = GpuDevice { name: "device 0 of RPC worker h:1".into(), device: "RPC0[h:1]".into(), backend: "RPC".into(), memory_total_bytes: 8, memory_free_bytes: 4, driver: None };
        let worker = RpcWorker { endpoint: "h:1".into(), devices: vec![remote.clone()], error: None };
        let silent = RpcWorker { endpoint: "h:2".into(), devices: Vec::new(), error: Some("nothing listens on h:2".into()) };
        let with = assemble(host(), DeviceProbe::default(), vec![worker, silent.clone()]);
        let without = assemble(host(), DeviceProbe::default(), vec![silent]);
        assert_eq!((with.gpus, with.no_gpu_reason), (vec![remote], None));
        assert_eq!(without.no_gpu_reason.as_deref(), Some("this build has no GPU backend (CPU only); no RPC worker answered: nothing listens on h:2"));
    }

    #[test]
    fn probe_of_a_missing_executable_says_why() {
        let p = run_device_probe(Path::new("/nonexistent/airlock"));
        assert!(p.error.unwrap().contains("cannot start"));
    }

    #[test]
    fn report_round_trips_through_json() {
        let r = assemble(host(), DeviceProbe::default(), Vec::new());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["cpu"]["physical_cores"], 2);
        assert_eq!(v["gpus"], serde_json::json!([]));
        assert_eq!(serde_json::from_value::<HardwareReport>(v).unwrap(), r);
    }
}
