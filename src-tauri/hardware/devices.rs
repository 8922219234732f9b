//! The device half of the probe, run only inside the child `airlock hardware --probe-devices`:
//! loads ggml's backend modules from the runner's directory exactly as the runner does, lists
//! the backend devices and registries, finds which CPU-variant module ggml kept, and asks NVML
//! (`libnvidia-ml.so.1`, opened at run time, optional) for NVIDIA driver details. It must never
//! be called in a long-lived process (see the parent module's doc), and it must never write to
//! stdout except the one JSON document the parent reads.

use serde::{Deserialize, Serialize};

use super::GpuDevice;

/// What the child reports.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceProbe {
    pub gpus: Vec<GpuDevice>,
    pub gpu_backends_built: Vec<String>,
    /// Every registered ggml backend (`CPU`, `Vulkan`, …).
    #[serde(default)]
    pub backends: Vec<String>,
    pub cpu_variant: Option<String>,
    #[serde(default)]
    pub backend_dir: Option<String>,
    /// NVIDIA GPUs NVML sees, whether or not this build can use them.
    #[serde(default)]
    pub nvidia: Vec<NvidiaGpu>,
    #[serde(default)]
    pub nvidia_driver: Option<String>,
    /// Set when the probe itself failed (no modules, crash, timeout).
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvidiaGpu {
    pub name: String,
    pub memory_total_bytes: u64,
    pub memory_free_bytes: u64,
}

impl DeviceProbe {
    pub fn failed(message: &str) -> Self {
        DeviceProbe { error: Some(message.to_string()), ..Default::default() }
    }
}

/// ggml module file stems (`libggml-<stem>.so`) of GPU backends → the name their registry uses.
const GPU_MODULES: [(&str, &str); 9] = [
    ("cuda", "CUDA"),
    ("hip", "ROCm"),
    ("vulkan", "Vulkan"),
    ("metal", "Metal"),
    ("sycl", "SYCL"),
    ("opencl", "OpenCL"),
    ("musa", "MUSA"),
    ("cann", "CANN"),
    ("webgpu", "WebGPU"),
];

/// Loads the backends and lists what they offer. Call once, in the probe child only.
pub fn probe_in_process() -> DeviceProbe {
    let (nvidia, nvidia_driver) = nvml::query();
    let Some(dir) = crate::backends::backend_dir() else {
        return DeviceProbe {
            nvidia,
            nvidia_driver,
            ..DeviceProbe::failed(&format!(
                "no ggml backend modules (libggml-cpu-*.so) next to the executable; set {} to their directory",
                crate::backends::LIB_DIR_ENV
            ))
        };
    };
    if dir.to_str().is_none() {
        return DeviceProbe { nvidia, nvidia_driver, ..DeviceProbe::failed(&format!("the backend directory {} is not UTF-8", dir.display())) };
    }
    // As the runner does (session.rs): modules first, then the backend.
    llama_cpp_2::llama_backend::load_backends_from_path(&dir);
    let _backend = llama_cpp_2::llama_backend::LlamaBackend::init();

    let mut backends = Vec::new();
    for i in 0..unsafe { llama_cpp_sys_2::ggml_backend_reg_count() } {
        let reg = unsafe { llama_cpp_sys_2::ggml_backend_reg_get(i) };
        let name = unsafe { llama_cpp_sys_2::ggml_backend_reg_name(reg) };
        if !name.is_null() {
            backends.push(unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned());
        }
    }
    use llama_cpp_2::LlamaBackendDeviceType as T;
    let gpus: Vec<GpuDevice> = llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| matches!(d.device_type, T::Gpu | T::IntegratedGpu))
        .map(|d| {
            let nvidia_device = d.backend.eq_ignore_ascii_case("cuda") || d.description.to_ascii_uppercase().contains("NVIDIA");
            GpuDevice {
                name: if d.description.is_empty() { d.name.clone() } else { d.description },
                device: d.name,
                backend: d.backend,
                memory_total_bytes: d.memory_total as u64,
                memory_free_bytes: d.memory_free as u64,
                driver: nvidia_driver.as_ref().filter(|_| nvidia_device).map(|v| format!("NVIDIA {v}")),
            }
        })
        .collect();

    let files: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let gpu_backends_built = gpu_backends_built(&files, &backends, &gpus);
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    DeviceProbe {
        gpus,
        gpu_backends_built,
        backends,
        cpu_variant: cpu_variant_from_maps(&maps),
        backend_dir: Some(dir.display().to_string()),
        nvidia,
        nvidia_driver,
        error: None,
    }
}

/// GPU backends this build has: GPU module files in the backend directory (even one that failed
/// to load, e.g. CUDA without a driver), registries known to be GPU backends, and the backends
/// of GPU devices found. Registry spelling, no duplicates, in that order.
pub fn gpu_backends_built(files: &[String], registries: &[String], gpus: &[GpuDevice]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !out.iter().any(|b| b.eq_ignore_ascii_case(name)) {
            out.push(name.to_string());
        }
    };
    for f in files {
        let stem = f.strip_prefix("lib").unwrap_or(f);
        let Some(stem) = stem.strip_prefix("ggml-") else { continue };
        let stem = stem.split('.').next().unwrap_or("");
        if let Some((_, name)) = GPU_MODULES.iter().find(|(s, _)| *s == stem) {
            add(name);
        }
    }
    for r in registries {
        if GPU_MODULES.iter().any(|(s, n)| n.eq_ignore_ascii_case(r) || s.eq_ignore_ascii_case(r)) {
            add(r);
        }
    }
    for g in gpus {
        add(&g.backend);
    }
    out
}

/// The CPU-variant module mapped into this process (`…/libggml-cpu-zen4.so` → `zen4`). ggml
/// scores every variant and keeps only the best loaded; if several remain mapped, the last
/// mapped one is reported (the one ggml loaded after scoring).
pub fn cpu_variant_from_maps(maps: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in maps.lines() {
        let Some(path) = line.split_whitespace().nth(5) else { continue };
        let file = path.rsplit('/').next().unwrap_or(path);
        let Some(rest) = file.strip_prefix("libggml-cpu") else { continue };
        let variant = rest.split(".so").next().unwrap_or("").trim_start_matches('-');
        let variant = if variant.is_empty() { "generic" } else { variant };
        if found.as_deref() != Some(variant) {
            found = Some(variant.to_string());
        }
    }
    found
}

#[cfg(target_os = "linux")]
mod nvml {
    //! NVML through `dlopen`: no build-time dependency on NVIDIA's libraries, nothing when the
    //! library is absent. Only the stable `_v2` entry points and plain structs are used.
    use std::ffi::{c_char, c_uint, c_void, CStr, CString};

    use super::NvidiaGpu;

    #[repr(C)]
    struct NvmlMemory {
        total: u64,
        free: u64,
        used: u64,
    }

    type Init = unsafe extern "C" fn() -> i32;
    type DriverVersion = unsafe extern "C" fn(*mut c_char, c_uint) -> i32;
    type Count = unsafe extern "C" fn(*mut c_uint) -> i32;
    type Handle = unsafe extern "C" fn(c_uint, *mut *mut c_void) -> i32;
    type Name = unsafe extern "C" fn(*mut c_void, *mut c_char, c_uint) -> i32;
    type Memory = unsafe extern "C" fn(*mut c_void, *mut NvmlMemory) -> i32;

    unsafe fn sym<F: Copy>(lib: *mut c_void, name: &str) -> Option<F> {
        let c = CString::new(name).ok()?;
        let p = libc::dlsym(lib, c.as_ptr());
        if p.is_null() {
            None
        } else {
            Some(std::mem::transmute_copy::<*mut c_void, F>(&p))
        }
    }

    /// NVIDIA GPUs and the driver version, or nothing without NVML or a driver.
    pub fn query() -> (Vec<NvidiaGpu>, Option<String>) {
        unsafe {
            let lib = libc::dlopen(c"libnvidia-ml.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
            if lib.is_null() {
                return (Vec::new(), None);
            }
            let result = query_lib(lib);
            // NVML stays loaded: unloading a driver library is not worth the risk in a process
            // that exits right after.
            result.unwrap_or_default()
        }
    }

    unsafe fn query_lib(lib: *mut c_void) -> Option<(Vec<NvidiaGpu>, Option<String>)> {
        let init: Init = sym(lib, "nvmlInit_v2")?;
        let shutdown: Option<Init> = sym(lib, "nvmlShutdown");
        if init() != 0 {
            return None;
        }
        let mut buf = [0 as c_char; 96];
        let driver = sym::<DriverVersion>(lib, "nvmlSystemGetDriverVersion")
            .filter(|f| f(buf.as_mut_ptr(), buf.len() as c_uint) == 0)
            .map(|_| CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned());
        let mut gpus = Vec::new();
        if let (Some(count), Some(handle), Some(name), Some(memory)) = (
            sym::<Count>(lib, "nvmlDeviceGetCount_v2"),
            sym::<Handle>(lib, "nvmlDeviceGetHandleByIndex_v2"),
            sym::<Name>(lib, "nvmlDeviceGetName"),
            sym::<Memory>(lib, "nvmlDeviceGetMemoryInfo"),
        ) {
            let mut n: c_uint = 0;
            if count(&mut n) == 0 {
                for i in 0..n.min(64) {
                    let mut dev: *mut c_void = std::ptr::null_mut();
                    if handle(i, &mut dev) != 0 {
                        continue;
                    }
                    let mut nb = [0 as c_char; 96];
                    let gpu_name = if name(dev, nb.as_mut_ptr(), nb.len() as c_uint) == 0 {
                        CStr::from_ptr(nb.as_ptr()).to_string_lossy().into_owned()
                    } else {
                        format!("NVIDIA GPU {i}")
                    };
                    let mut mem = NvmlMemory { total: 0, free: 0, used: 0 };
                    let _ = memory(dev, &mut mem);
                    gpus.push(NvidiaGpu { name: gpu_name, memory_total_bytes: mem.total, memory_free_bytes: mem.free });
                }
            }
        }
        if let Some(shutdown) = shutdown {
            shutdown();
        }
        Some((gpus, driver))
    }
}

#[cfg(not(target_os = "linux"))]
mod nvml {
    pub fn query() -> (Vec<super::NvidiaGpu>, Option<String>) {
        (Vec::new(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_from_maps() {
        let maps = "7f00-7f10 r-xp 00000000 08:01 123 /opt/airlock/libggml-base.so.0.26.0\n\
                    7f10-7f20 r-xp 00000000 08:01 124 /opt/airlock/libggml-cpu-zen4.so\n\
                    7f20-7f30 r--p 00000000 08:01 124 /opt/airlock/libggml-cpu-zen4.so\n\
                    7f30-7f40 rw-p 00000000 00:00 0\n";
        assert_eq!(cpu_variant_from_maps(maps).as_deref(), Some("zen4"));
        assert_eq!(cpu_variant_from_maps("1-2 r-xp 0 0:0 1 /x/libggml-cpu.so\n").as_deref(), Some("generic"));
        assert_eq!(cpu_variant_from_maps("1-2 r-xp 0 0:0 1 /x/libllama.so\n"), None);
    }

    #[test]
    fn built_backends_from_files_registries_and_devices() {
        let files: Vec<String> = ["libggml-base.so", "libggml-cpu-zen4.so", "libggml.so", "libggml-cpu-x64.so", "libllama.so"].map(String::from).into();
        assert!(gpu_backends_built(&files, &["CPU".into()], &[]).is_empty());
        let files: Vec<String> = vec!["libggml-vulkan.so".into(), "libggml-cuda.so".into(), "ggml-metal.dll".into()];
        assert_eq!(gpu_backends_built(&files, &["CPU".into(), "Vulkan".into(), "BLAS".into()], &[]), ["Vulkan", "CUDA", "Metal"]);
        let gpu = GpuDevice { name: "x".into(), device: "Foo0".into(), backend: "Foo".into(), memory_total_bytes: 0, memory_free_bytes: 0, driver: None };
        assert_eq!(gpu_backends_built(&[], &["Foo".into()], &[gpu]), ["Foo"]);
    }

    #[test]
    fn nvml_absent_or_present_never_panics() {
        let (gpus, driver) = nvml::query();
        if driver.is_none() {
            assert!(gpus.is_empty());
        }
    }
}
