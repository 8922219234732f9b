//! Where the runner finds llama.cpp's CPU-variant modules, and how many threads it uses. Owns
//! only discovery; it must never load a model or decide anything per request.

use std::path::{Path, PathBuf};

/// Environment variable naming the directory holding `libggml-cpu-<variant>.so` (packaging may
/// put the modules elsewhere than next to the executable).
pub const LIB_DIR_ENV: &str = "AIRLOCK_LIB_DIR";

/// The directory to load ggml backend modules from: `$AIRLOCK_LIB_DIR`, else the executable's
/// directory (where the build script puts them in `target/<profile>/`), else `../lib/airlock`
/// beside it (the `.deb`'s `/usr/lib/airlock`, the portable folder's `lib/airlock`), else its
/// parent (for binaries in `target/<profile>/examples` or `deps`), else the directory llama.cpp's
/// build installed them to (a development build that was never copied). `None` when no directory
/// holds a CPU module.
pub fn backend_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(LIB_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let candidates = exe_dir
        .iter()
        .flat_map(|d| [Some(d.clone()), d.parent().map(|p| p.join("lib").join("airlock")), d.parent().map(Path::to_path_buf)])
        .flatten()
        .chain(llama_cpp_sys_2::BACKENDS_DIR.map(PathBuf::from));
    for dir in candidates {
        if has_cpu_module(&dir) {
            return Some(dir);
        }
    }
    None
}

/// CPU-variant modules whose kernels use Intel AMX tiles.
const AMX_VARIANTS: [&str; 1] = ["sapphirerapids"];

/// Loads ggml's backend modules from `dir`: ggml scores the CPU variants against this CPU and
/// keeps the best, and loads every GPU module whose own libraries are present. With
/// `avoid_amx`, the AMX variants are not offered (ggml sees a folder of links to the others).
pub fn load_backends(dir: &Path, avoid_amx: bool) -> std::io::Result<()> {
    if !avoid_amx {
        llama_cpp_2::llama_backend::load_backends_from_path(dir);
        return Ok(());
    }
    let offered = private_temp_dir()?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_module = name.starts_with("libggml-") && name.ends_with(".so");
        if is_module && !AMX_VARIANTS.iter().any(|v| name == format!("libggml-cpu-{v}.so")) {
            std::os::unix::fs::symlink(entry.path(), offered.join(&name))?;
        }
    }
    llama_cpp_2::llama_backend::load_backends_from_path(&offered);
    // The modules are mapped now; the links are no longer needed.
    let _ = std::fs::remove_dir_all(&offered);
    Ok(())
}

/// A fresh private folder under the temp dir.
fn private_temp_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let dir = base.join(format!("airlock-modules-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary folder name"))
}

fn has_cpu_module(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        name.starts_with("libggml-cpu") || name.starts_with("ggml-cpu")
    })
}

/// Physical cores: llama.cpp decodes fastest with one thread per core (hyper-threads share the
/// core's vector units and slow it down). Counts distinct (package, core) pairs of
/// `/proc/cpuinfo`; elsewhere, or when that file says nothing, the logical CPU count.
pub fn physical_cores() -> u32 {
    let logical = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else { return logical };
    let cores = parse_physical_cores(&info);
    if cores == 0 {
        logical
    } else {
        // A CPU affinity mask (containers, taskset) may allow fewer CPUs than the machine has.
        cores.min(logical)
    }
}

fn parse_physical_cores(cpuinfo: &str) -> u32 {
    let mut seen = std::collections::BTreeSet::new();
    let (mut package, mut core) = (None::<String>, None::<String>);
    for line in cpuinfo.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(c) = core.take() {
                seen.insert((package.take().unwrap_or_default(), c));
            }
            package = None;
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "physical id" => package = Some(v.trim().to_owned()),
                "core id" => core = Some(v.trim().to_owned()),
                _ => {}
            }
        }
    }
    seen.len() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_distinct_cores_not_hyperthreads() {
        let info = "processor: 0\nphysical id: 0\ncore id: 0\n\nprocessor: 1\nphysical id: 0\ncore id: 0\n\n\
                    processor: 2\nphysical id: 0\ncore id: 1\n\nprocessor: 3\nphysical id: 1\ncore id: 0\n";
        assert_eq!(parse_physical_cores(info), 3);
        assert_eq!(parse_physical_cores("processor: 0\nmodel name: x\n"), 0);
    }

    #[test]
    fn physical_cores_is_positive() {
        assert!(physical_cores() >= 1);
    }
}
