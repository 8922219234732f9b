//! CPU and RAM from `/proc/cpuinfo` and `/proc/meminfo` (Linux); elsewhere, or when a field is
//! missing, the portable fallbacks (logical CPUs from the standard library, memory 0 = unknown).
//! Only reads files; must never call into ggml.

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
    let logical_fallback = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo").map(|s| parse_cpuinfo(&s)).unwrap_or_default();
    let (mem_total, mem_available) = std::fs::read_to_string("/proc/meminfo").map(|s| parse_meminfo(&s)).unwrap_or((0, 0));
    let logical = if cpu.logical_cores > 0 { cpu.logical_cores } else { logical_fallback };
    let physical = if cpu.physical_cores > 0 { cpu.physical_cores.min(logical) } else { logical };
    HostInfo {
        cpu_model: cpu.model.unwrap_or_else(|| format!("unknown {} CPU", std::env::consts::ARCH)),
        physical_cores: physical,
        logical_cores: logical,
        mem_total,
        mem_available,
    }
}

/// What `/proc/cpuinfo` says; zero / `None` for what it does not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CpuInfoFields {
    pub model: Option<String>,
    /// Distinct (physical id, core id) pairs.
    pub physical_cores: u32,
    /// `processor` entries.
    pub logical_cores: u32,
}

pub fn parse_cpuinfo(text: &str) -> CpuInfoFields {
    let mut model = None;
    let mut logical = 0u32;
    let mut cores = std::collections::BTreeSet::new();
    let (mut package, mut core) = (String::new(), None::<String>);
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(c) = core.take() {
                cores.insert((std::mem::take(&mut package), c));
            }
            package.clear();
            continue;
        }
        let Some((k, v)) = line.split_once(':') else { continue };
        let v = v.trim();
        match k.trim() {
            "processor" => logical += 1,
            "physical id" => package = v.to_owned(),
            "core id" => core = Some(v.to_owned()),
            // x86 "model name"; some ARM kernels say "Hardware" or "Processor", others nothing.
            "model name" | "Hardware" | "Processor" | "cpu model" if model.is_none() && !v.is_empty() => model = Some(v.to_owned()),
            _ => {}
        }
    }
    CpuInfoFields { model, physical_cores: cores.len() as u32, logical_cores: logical }
}

/// (`MemTotal`, `MemAvailable`) in bytes; old kernels without `MemAvailable` get
/// `MemFree + Buffers + Cached`.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.split(':').next() == Some(name))?;
        let kb: u64 = line.split(':').nth(1)?.split_whitespace().next()?.parse().ok()?;
        Some(kb.saturating_mul(1024))
    };
    let total = field("MemTotal").unwrap_or(0);
    let available = field("MemAvailable")
        .unwrap_or_else(|| [field("MemFree"), field("Buffers"), field("Cached")].into_iter().flatten().sum());
    (total, available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_x86_with_hyperthreads() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9454 48-Core Processor\nphysical id\t: 0\ncore id\t\t: 0\n\n\
                    processor\t: 1\nmodel name\t: AMD EPYC 9454 48-Core Processor\nphysical id\t: 0\ncore id\t\t: 0\n\n\
                    processor\t: 2\nmodel name\t: AMD EPYC 9454 48-Core Processor\nphysical id\t: 0\ncore id\t\t: 1\n\n\
                    processor\t: 3\nmodel name\t: AMD EPYC 9454 48-Core Processor\nphysical id\t: 1\ncore id\t\t: 1\n";
        let c = parse_cpuinfo(info);
        assert_eq!(c.model.as_deref(), Some("AMD EPYC 9454 48-Core Processor"));
        assert_eq!((c.physical_cores, c.logical_cores), (3, 4));
    }

    #[test]
    fn cpuinfo_arm_without_core_ids() {
        let c = parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 48.00\n\nprocessor\t: 1\nBogoMIPS\t: 48.00\n\nHardware\t: BCM2835\n");
        assert_eq!(c, CpuInfoFields { model: Some("BCM2835".into()), physical_cores: 0, logical_cores: 2 });
        assert_eq!(parse_cpuinfo(""), CpuInfoFields::default());
    }

    #[test]
    fn meminfo_fields_and_fallback() {
        let m = "MemTotal:       16318412 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\nBuffers: 10 kB\n";
        assert_eq!(parse_meminfo(m), (16318412 * 1024, 8000000 * 1024));
        let old = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\nSwapCached: 5 kB\n";
        assert_eq!(parse_meminfo(old), (1000 * 1024, 150 * 1024));
        assert_eq!(parse_meminfo("garbage"), (0, 0));
    }

    #[test]
    fn this_machine() {
        let h = probe_host();
        assert!(!h.cpu_model.is_empty());
        assert!(h.physical_cores >= 1 && h.logical_cores >= h.physical_cores);
        if cfg!(target_os = "linux") {
            assert!(h.mem_total > 0 && h.mem_available <= h.mem_total);
        }
    }
}
