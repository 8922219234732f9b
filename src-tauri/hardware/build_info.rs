//! What this build of Airlock is: its version and commit, the llama.cpp it runs, and the ggml
//! backend modules it can load (CPU variants, GPU backends) — the line a person pastes into a bug
//! report (`airlock --version`, the app's Settings page). Reads file names only: it must never
//! load a backend module (that is the device probe's job, in a child process).

use serde::Serialize;

use super::devices::gpu_backends_built;

#[derive(Debug, Clone, Serialize)]
pub struct BuildInfo {
    pub version: String,
    /// The git commit this was built from (`unknown` outside a git checkout).
    pub commit: String,
    /// The pinned `llama-cpp-sys-2` crate and the ggml library version it carries.
    pub llama_cpp: String,
    /// `libggml-cpu-<variant>.so` modules found, e.g. `["haswell", "zen4"]`.
    pub cpu_variants: Vec<String>,
    /// GPU backend modules found, by registry name, e.g. `["Vulkan"]`.
    pub gpu_backends: Vec<String>,
    /// Where those modules are, if anywhere.
    pub backend_dir: Option<String>,
}

impl BuildInfo {
    pub fn detect() -> Self {
        let dir = crate::backends::backend_dir();
        let files: Vec<String> = dir
            .as_deref()
            .and_then(|d| std::fs::read_dir(d).ok())
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let mut cpu_variants: Vec<String> = files
            .iter()
            .filter_map(|f| f.strip_prefix("libggml-cpu-")?.strip_suffix(".so").map(str::to_owned))
            .collect();
        cpu_variants.sort();
        BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            commit: env!("AIRLOCK_COMMIT").to_owned(),
            llama_cpp: format!("llama-cpp-sys-2 {}, ggml {}", env!("AIRLOCK_LLAMA_CPP_SYS_VERSION"), ggml_version()),
            cpu_variants,
            gpu_backends: gpu_backends_built(&files, &[], &[]),
            backend_dir: dir.map(|d| d.display().to_string()),
        }
    }

    /// The first line of `airlock --version`.
    pub fn short(&self) -> String {
        format!("{} (commit {})", self.version, self.commit)
    }

    /// Every line of `airlock --version` after the program name.
    pub fn long(&self) -> String {
        let cpu = if self.cpu_variants.is_empty() { "none found (set AIRLOCK_LIB_DIR to the folder of libggml-cpu-*.so)".to_owned() } else { self.cpu_variants.join(", ") };
        let gpu = if self.gpu_backends.is_empty() { "none in this build (CPU only)".to_owned() } else { self.gpu_backends.join(", ") };
        let dir = self.backend_dir.as_deref().map(|d| format!("\nbackend modules in: {d}")).unwrap_or_default();
        format!("{}\nllama.cpp: {}\nCPU variants: {cpu}\nGPU backends: {gpu}{dir}", self.short(), self.llama_cpp)
    }
}

/// ggml's own version string, from the linked library.
fn ggml_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string inside libggml.
    let p = unsafe { llama_cpp_sys_2::ggml_version() };
    if p.is_null() {
        return "unknown".to_owned();
    }
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_version_commit_and_libraries() {
        let info = BuildInfo::detect();
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert!(!info.commit.is_empty());
        assert!(info.llama_cpp.contains("llama-cpp-sys-2 0.") && !info.llama_cpp.ends_with("ggml "), "{}", info.llama_cpp);
        // Tests run from target/<profile>/deps, whose parent holds the CPU modules.
        assert!(!info.cpu_variants.is_empty(), "the build's CPU variants are found: {info:?}");
        let long = info.long();
        assert!(long.starts_with(&info.short()) && long.contains("CPU variants: ") && long.contains("GPU backends: "), "{long}");
    }
}
