//! Where ggml's backend modules live and how they are loaded: the CPU-variant modules
//! (`libggml-cpu-<variant>.so`) and the GPU modules sit in one folder that this module finds
//! (`AIRLOCK_LIB_DIR`, beside the executable, or the packages' `lib/airlock`). Both the engine's
//! runner and the hardware probe load them from here, and the kit packs them from here.
//!
//! Processes that load these modules (the runner, the device probe) parse untrusted files and run
//! driver code, so they get only the environment that the modules and the GPU drivers read
//! ([`restrict_child_environment`]): never a credential, an API key or a key password.
//!
//! Uses no other module of Airlock: it sits below the engine and the hardware probe. Owns only
//! discovery and loading; it must never load a model or decide anything per request.

use std::path::{Path, PathBuf};
use std::process::Command;

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
/// `avoid_amx`, the AMX variants are not offered, and with `cpu_only` no GPU or RPC module is
/// (ggml sees a folder of links to the others): a GPU driver's libraries alone take about
/// 60 MiB of a process's memory.
pub fn load_backends(dir: &Path, avoid_amx: bool, cpu_only: bool) -> std::io::Result<()> {
    if !avoid_amx && !cpu_only {
        llama_cpp_2::llama_backend::load_backends_from_path(dir);
        return Ok(());
    }
    let offered = private_temp_dir()?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_module = name.starts_with("libggml-") && name.ends_with(".so");
        let amx = avoid_amx && AMX_VARIANTS.iter().any(|v| name == format!("libggml-cpu-{v}.so"));
        let gpu = cpu_only && !name.starts_with("libggml-cpu-");
        if is_module && !amx && !gpu {
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

/// Variables a child that loads ggml's modules keeps, by exact name: a process's basics, where
/// the modules are, and Airlock's own engine settings (none of them a secret).
const CHILD_VARIABLES: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "DISPLAY", "WAYLAND_DISPLAY",
    "RUST_BACKTRACE", LIB_DIR_ENV, "AIRLOCK_THREADS", "AIRLOCK_GPU", "AIRLOCK_GPU_MEMORY",
];

/// …and by prefix: ggml's and llama.cpp's own switches, the GPU runtimes and drivers (CUDA,
/// NVIDIA, ROCm/HIP, Vulkan, Mesa), OpenMP, the locale and the XDG folders (shader caches).
const CHILD_PREFIXES: &[&str] = &[
    "GGML_", "LLAMA_", "CUDA_", "NVIDIA_", "__NV_", "__GL_", "HIP_", "ROCR_", "HSA_", "VK_", "MESA_", "LIBGL_", "GALLIUM_", "LP_", "OMP_",
    "GOMP_", "KMP_", "LC_", "XDG_",
];

/// Whether a child that loads ggml's modules may see the variable `name`.
pub fn child_may_see(name: &str) -> bool {
    CHILD_VARIABLES.contains(&name) || CHILD_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Starts `cmd` from an empty environment plus the variables of this process that
/// [`child_may_see`] allows: the registry's credentials, API keys and key passwords stay here.
pub fn restrict_child_environment(cmd: &mut Command) {
    cmd.env_clear();
    for (name, value) in std::env::vars_os() {
        if name.to_str().is_some_and(child_may_see) {
            cmd.env(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_see_the_drivers_settings_and_no_secret() {
        for name in ["PATH", "HOME", "AIRLOCK_LIB_DIR", "AIRLOCK_THREADS", "GGML_VK_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES", "VK_ICD_FILENAMES", "LC_ALL"] {
            assert!(child_may_see(name), "{name}");
        }
        for name in ["AIRLOCK_REGISTRY_AUTH", "AIRLOCK_API_KEY", "AIRLOCK_KEY_PASSWORD", "AIRLOCK_REGISTRY", "DOCKER_CONFIG", "AWS_SECRET_ACCESS_KEY", "SSH_AUTH_SOCK"] {
            assert!(!child_may_see(name), "{name}");
        }
    }
}
