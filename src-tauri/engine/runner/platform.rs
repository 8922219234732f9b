//! Where the runner finds llama.cpp's CPU-variant modules (its thread count comes from
//! [`crate::hardware::physical_cores`]). Owns only discovery; it must never load a model or
//! decide anything per request.

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
