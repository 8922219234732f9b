//! CPU and RAM of this machine through `sysinfo` (Linux, macOS, Windows alike). The one place
//! that answers "how much memory is available now" ([`available_memory`]: the engine's slot
//! count, the fit estimate and the Hardware page all ask it) and "how many physical cores"
//! ([`physical_cores`]: the runner's thread count and the Hardware page). Only reads what the
//! operating system reports; must never call into ggml.

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

/// What the calling process can learn without ggml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub cpu_model: String,
    pub physical_cores: u32,
    pub logical_cores: u32,
    pub mem_total: u64,
    pub mem_available: u64,
}

pub fn probe_host() -> HostInfo {
    let mut sys = System::new();
    sys.refresh_cpu_list(CpuRefreshKind::nothing());
    let brand = sys.cpus().iter().map(|c| c.brand().trim()).find(|b| !b.is_empty()).map(str::to_string);
    let logical = match sys.cpus().len() as u32 {
        0 => usable_cpus(),
        n => n,
    };
    let (mem_total, mem_available) = memory_of(&mut sys);
    HostInfo {
        cpu_model: brand.unwrap_or_else(|| format!("unknown {} CPU", std::env::consts::ARCH)),
        physical_cores: physical_cores().min(logical),
        logical_cores: logical,
        mem_total,
        mem_available,
    }
}

/// Memory that can be allocated now without swapping, in bytes (within a container's memory
/// limit when there is one); `None` when the system does not say.
pub fn available_memory() -> Option<u64> {
    let (_, available) = memory_of(&mut System::new());
    (available > 0).then_some(available)
}

/// (total, available) bytes; 0 for what is unknown.
fn memory_of(sys: &mut System) -> (u64, u64) {
    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    let (mut total, mut available) = (sys.total_memory(), sys.available_memory());
    // A container's limit is the machine the engine really has.
    if let Some(limits) = sys.cgroup_limits().filter(|l| l.total_memory > 0) {
        total = total.min(limits.total_memory);
        available = available.min(limits.free_memory);
    }
    (total, available.min(total))
}

/// Physical cores this process may use: llama.cpp decodes fastest with one thread per core
/// (hyper-threads share the core's vector units and slow it down). Never more than the CPUs the
/// affinity mask allows (containers, `taskset`); the CPU count when the cores are unknown.
pub fn physical_cores() -> u32 {
    let usable = usable_cpus();
    match System::physical_core_count() {
        Some(n) if n > 0 => (n as u32).min(usable),
        _ => usable,
    }
}

fn usable_cpus() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine() {
        let h = probe_host();
        assert!(!h.cpu_model.is_empty() && !h.cpu_model.starts_with("unknown"), "{h:?}");
        assert!(h.physical_cores >= 1 && h.logical_cores >= h.physical_cores, "{h:?}");
        assert!(h.mem_total > 0 && h.mem_available > 0 && h.mem_available <= h.mem_total, "{h:?}");
        assert!(physical_cores() >= 1 && physical_cores() <= usable_cpus());
    }

    #[test]
    fn available_memory_is_what_the_hardware_page_shows() {
        // One source for both: they may differ only by what was allocated between the calls.
        let page = probe_host().mem_available;
        let engine = available_memory().expect("this machine reports its memory");
        assert!(engine.abs_diff(page) < page / 4 + (256 << 20), "engine {engine}, page {page}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cpu_model_matches_proc_cpuinfo() {
        // x86 Linux names the CPU in /proc/cpuinfo's "model name"; the page shows the same words.
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if let Some(name) = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|v| v.trim_start_matches([' ', '\t', ':']).trim()) {
            assert_eq!(probe_host().cpu_model, name);
        }
    }
}
