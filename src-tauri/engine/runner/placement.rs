//! Where llama.cpp really put a model: it logs every buffer it allocates ("Vulkan0 model buffer
//! size = 153.82 MiB", "CPU_Mapped …", "… KV buffer size …", "… compute buffer size …") and how
//! many layers it offloaded. This module owns a log callback that keeps writing llama.cpp's log
//! to stderr (the supervisor keeps its tail for crash reports) and adds those figures up. It must
//! never change what llama.cpp does.

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

use crate::engine::protocol::{DeviceUse, Placement};

static LOG: Mutex<Collected> = Mutex::new(Collected { line: String::new(), placement: None });

struct Collected {
    /// The line being assembled (llama.cpp may log a line in pieces).
    line: String,
    placement: Option<Placement>,
}

/// Sends llama.cpp's and ggml's log through [`on_log`]. Call before loading anything.
pub fn capture_log() {
    // SAFETY: registers a plain function with no user data; it lives for the whole process.
    unsafe {
        llama_cpp_sys_2::llama_log_set(Some(on_log), std::ptr::null_mut());
        llama_cpp_sys_2::ggml_log_set(Some(on_log), std::ptr::null_mut());
    }
}

/// What the log said so far, with `layers` (the model's offloadable layers) as the fallback when
/// llama.cpp did not print its "offloaded" line.
pub fn collected(layers: u32) -> Placement {
    let mut p = LOG.lock().unwrap_or_else(|e| e.into_inner()).placement.clone().unwrap_or_default();
    if p.layers == 0 {
        p.layers = layers;
    }
    p
}

unsafe extern "C" fn on_log(_level: llama_cpp_sys_2::ggml_log_level, text: *const c_char, _user: *mut c_void) {
    if text.is_null() {
        return;
    }
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    eprint!("{text}");
    let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    log.line.push_str(&text);
    while let Some(end) = log.line.find('\n') {
        let line: String = log.line.drain(..=end).collect();
        let placement = log.placement.get_or_insert_with(Placement::default);
        read_line(placement, line.trim());
    }
}

/// Adds what one log line says to `p`.
pub fn read_line(p: &mut Placement, line: &str) {
    // "load_tensors: offloaded 19/19 layers to GPU"
    if let Some(rest) = line.split("offloaded ").nth(1).and_then(|r| r.strip_suffix(" layers to GPU")) {
        if let Some((done, of)) = rest.split_once('/') {
            if let (Ok(done), Ok(of)) = (done.trim().parse(), of.trim().parse()) {
                p.gpu_layers = done;
                p.layers = of;
            }
        }
        return;
    }
    // "<fn>: <buffer> <kind> buffer size = <n> MiB"
    let Some((left, size)) = line.split_once(" buffer size =") else { return };
    let Some(mib) = size.trim().strip_suffix("MiB").and_then(|n| n.trim().parse::<f64>().ok()) else { return };
    let bytes = (mib * 1024.0 * 1024.0) as u64;
    let words: Vec<&str> = left.split_whitespace().collect();
    // The buffer's name comes after the function name and before the kind ("model", "KV", …).
    let Some(name) = words.iter().skip(1).find(|w| !matches!(**w, "model" | "KV" | "compute" | "output" | "RS" | "LoRA")) else { return };
    if !is_gpu_buffer(name) {
        p.ram_bytes += bytes;
    } else if let Some(d) = p.devices.iter_mut().find(|d| d.name == *name) {
        d.bytes += bytes;
    } else {
        p.devices.push(DeviceUse { name: name.to_string(), bytes });
    }
}

/// A GPU device's own memory ("Vulkan0", "CUDA1", "ROCm0", "Metal"). Everything else is host
/// memory: the CPU backend's buffers ("CPU", "CPU_Mapped", "CPU_REPACK", "AMX") and GPU
/// backends' pinned host buffers ("Vulkan_Host", "CUDA_Host").
fn is_gpu_buffer(name: &str) -> bool {
    const GPU_BACKENDS: [&str; 10] = ["Vulkan", "CUDA", "ROCm", "HIP", "Metal", "MTL", "SYCL", "OpenCL", "MUSA", "CANN"];
    GPU_BACKENDS.iter().any(|b| name.starts_with(b)) && !name.ends_with("_Host")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_llama_cpp_buffers_by_device() {
        let log = "load_tensors: offloading 18 repeating layers to GPU
load_tensors: offloaded 19/19 layers to GPU
load_tensors:      Vulkan0 model buffer size =   153.82 MiB
load_tensors:   CPU_Mapped model buffer size =    80.00 MiB
load_tensors:          AMX model buffer size =     5.00 MiB
llama_kv_cache:    Vulkan0 KV buffer size =    36.00 MiB
llama_context:  Vulkan_Host  output buffer size =     1.00 MiB
llama_context:    Vulkan0 compute buffer size =    10.00 MiB
llama_context: Vulkan_Host compute buffer size =     2.00 MiB";
        let mut p = Placement::default();
        for line in log.lines() {
            read_line(&mut p, line);
        }
        assert_eq!((p.gpu_layers, p.layers), (19, 19));
        let mib = 1024 * 1024;
        assert_eq!(p.devices, vec![DeviceUse { name: "Vulkan0".into(), bytes: (153.82 * mib as f64) as u64 + 36 * mib + 10 * mib }]);
        assert_eq!(p.ram_bytes, 88 * mib);
    }

    #[test]
    fn a_cpu_run_has_no_devices() {
        let mut p = Placement::default();
        for line in ["load_tensors: offloaded 0/19 layers to GPU", "load_tensors:   CPU_Mapped model buffer size =   241.05 MiB", "llama_kv_cache:        CPU KV buffer size =    72.00 MiB", "unrelated line = 3 MiB"] {
            read_line(&mut p, line);
        }
        assert_eq!((p.gpu_layers, p.layers, p.devices.len()), (0, 19, 0));
        assert_eq!(p.ram_bytes, (241.05 * 1024.0 * 1024.0) as u64 + 72 * 1024 * 1024);
    }
}
