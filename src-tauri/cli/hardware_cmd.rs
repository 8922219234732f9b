//! `airlock hardware [--json]`: this machine's CPU, RAM, GPUs (or why there is none), the GPU
//! backends of this build, and per model in the store where it would run ([`crate::hardware`]).
//! Also the hidden `airlock hardware --probe-devices`, the child that [`crate::hardware::probe`]
//! runs to list ggml devices; it prints one JSON document and needs no store.

use std::process::ExitCode;

use anyhow::Result;

use super::format::{human_bytes, table};
use crate::core::{Core, ModelFit};
use crate::hardware::{self, FitVerdict, HardwareReport};

/// The child side of the device probe: JSON on stdout, nothing else.
pub fn probe_devices_main() -> ExitCode {
    let probe = hardware::devices::probe_in_process();
    match serde_json::to_string(&probe) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

pub fn run(core: &Core, json: bool) -> Result<ExitCode> {
    let overview = core.machine_overview()?;
    for p in &overview.unreadable {
        eprintln!("warning: skipped an unreadable manifest: {p}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&overview)?);
    } else {
        print!("{}", render(&overview.hardware, &overview.models));
    }
    Ok(ExitCode::SUCCESS)
}

fn verdict_label(v: &FitVerdict) -> String {
    match v {
        FitVerdict::FullGpu => "full GPU".into(),
        FitVerdict::PartialOffload { layers, of } => format!("partial offload ({layers}/{of} layers)"),
        FitVerdict::CpuOnly => "CPU only".into(),
        FitVerdict::DoesNotFit => "does not fit".into(),
    }
}

pub fn render(hw: &HardwareReport, models: &[ModelFit]) -> String {
    let c = &hw.cpu;
    let mut rows = vec![
        vec!["    model".into(), c.model.clone()],
        vec!["    cores".into(), format!("{} physical, {} logical", c.physical_cores, c.logical_cores)],
        vec!["    threads used".into(), c.threads_used.to_string()],
    ];
    if let Some(v) = &c.cpu_variant {
        rows.push(vec!["    ggml CPU module".into(), v.clone()]);
    }
    let mut out = format!("  CPU\n{}", table(&rows));
    out.push_str(&format!(
        "\n  Memory\n{}",
        table(&[vec!["    total".into(), human_bytes(hw.memory.total_bytes)], vec!["    available".into(), human_bytes(hw.memory.available_bytes)]])
    ));
    out.push_str("\n  GPU\n");
    if hw.gpus.is_empty() {
        out.push_str(&format!("    none: {}\n", hw.no_gpu_reason.as_deref().unwrap_or("no GPU device found")));
    } else {
        let mut rows = vec![vec!["    NAME".into(), "BACKEND".into(), "FREE".into(), "TOTAL".into(), "DRIVER".into()]];
        rows.extend(hw.gpus.iter().map(|g| {
            vec![format!("    {}", g.name), g.backend.clone(), human_bytes(g.memory_free_bytes), human_bytes(g.memory_total_bytes), g.driver.clone().unwrap_or_default()]
        }));
        out.push_str(&table(&rows));
    }
    for w in &hw.rpc_workers {
        match &w.error {
            Some(e) => out.push_str(&format!("    RPC worker {}: left out ({e})\n", w.endpoint)),
            None => out.push_str(&format!("    RPC worker {}: {} device(s)\n", w.endpoint, w.devices.len())),
        }
    }
    let built = if hw.gpu_backends_built.is_empty() { "none (CPU only)".to_string() } else { hw.gpu_backends_built.join(", ") };
    out.push_str(&format!("    GPU backends built: {built}\n"));
    out.push_str("\n  Models\n");
    if models.is_empty() {
        out.push_str("    (no models in the store)\n");
        return out;
    }
    let mut rows = vec![vec!["    NAME".into(), "FIT".into(), "NEEDS".into(), "CONTEXT".into()]];
    let mut notes = Vec::new();
    for m in models {
        match (&m.fit, &m.error) {
            (Some(f), _) => {
                rows.push(vec![
                    format!("    {}", m.name),
                    verdict_label(&f.verdict),
                    human_bytes(f.need_bytes),
                    format!("{} × {}", m.num_ctx.unwrap_or(0), m.parallel.unwrap_or(1)),
                ]);
                notes.push(format!("    {}: {}", m.name, f.explanation));
            }
            (None, e) => rows.push(vec![format!("    {}", m.name), "unknown".into(), "-".into(), e.clone().unwrap_or_default()]),
        }
    }
    out.push_str(&table(&rows));
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::{CpuInfo, MemoryInfo};

    #[test]
    fn renders_cpu_memory_reason_and_fits() {
        let hw = HardwareReport {
            cpu: CpuInfo { model: "Test CPU".into(), physical_cores: 4, logical_cores: 8, threads_used: 4, cpu_variant: Some("zen4".into()) },
            memory: MemoryInfo { total_bytes: 16_000_000_000, available_bytes: 8_000_000_000 },
            gpus: vec![],
            gpu_backends_built: vec![],
            no_gpu_reason: Some("this build has no GPU backend (CPU only)".into()),
            rpc_workers: vec![hardware::RpcWorker { endpoint: "10.0.0.5:50052".into(), devices: vec![], error: Some("nothing listens on 10.0.0.5:50052".into()) }],
        };
        let fit = hardware::estimate_fit(&hw, 1_000_000_000, 1000, 0, 10, 4096, 2);
        let models = vec![
            ModelFit { name: "a:latest".into(), num_ctx: Some(4096), parallel: Some(2), layers: Some(10), fit: Some(fit), error: None },
            ModelFit { name: "mlx:latest".into(), num_ctx: None, parallel: None, layers: None, fit: None, error: Some("not runnable".into()) },
        ];
        let text = render(&hw, &models);
        for want in ["Test CPU", "4 physical, 8 logical", "threads used", "zen4", "16 GB", "none: this build has no GPU backend", "GPU backends built: none", "RPC worker 10.0.0.5:50052: left out (nothing listens", "a:latest", "CPU only", "4096 × 2", "mlx:latest"] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
