//! Where llama.cpp really put a model: it logs every buffer it allocates ("Vulkan0 model buffer
//! size = 153.82 MiB", "CPU_Mapped …", "… KV buffer size …", "… compute buffer size …"), the
//! device of every layer ("layer 3 assigned to device Vulkan0") and how many layers it offloaded. This module owns a log callback that keeps writing llama.cpp's log
//! to stderr (the supervisor keeps its tail for crash reports) and adds those figures up. It must
//! never change what llama.cpp does.

use std::ffi::{c_char, c_void, CStr};
use std::sync::Mutex;

use crate::engine::protocol::{DeviceUse, Placement};

static LOG: Mutex<Collected> = Mutex::new(Collected { line: String::new(), placement: None, aliases: Vec::new() });

struct Collected {
    /// The line being assembled (llama.cpp may log a line in pieces).
    line: String,
    placement: Option<Placement>,
    /// Device names as layers are logged → as buffers are (an RPC worker's "RPC2" → "RPC0[host:port]").
    aliases: Vec<(String, String)>,
}

/// Layers logged on `device` are counted under `buffers`, the name its buffers are logged with.
pub fn alias(device: &str, buffers: &str) {
    LOG.lock().unwrap_or_else(|e| e.into_inner()).aliases.push((device.to_string(), buffers.to_string()));
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
    let log = &mut *log;
    log.line.push_str(&text);
    while let Some(end) = log.line.find('\n') {
        let line: String = log.line.drain(..=end).collect();
        let placement = log.placement.get_or_insert_with(Placement::default);
        read_line(placement, line.trim(), &log.aliases);
    }
}

/// Adds what one log line says to `p`.
pub fn read_line(p: &mut Placement, line: &str, aliases: &[(String, String)]) {
    // "load_tensors: layer   3 assigned to device Vulkan0, is_swa = 0"
    if let Some(rest) = line.split(" assigned to device ").nth(1) {
        let device = rest.split(',').next().unwrap_or("").trim();
        let device = aliases.iter().find(|(d, _)| d == device).map_or(device, |(_, b)| b.as_str());
        if is_gpu_buffer(device) {
            device_use(p, device).layers += 1;
        }
        return;
    }
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
    if is_gpu_buffer(name) {
        device_use(p, name).bytes += bytes;
    } else {
        p.ram_bytes += bytes;
    }
}

fn device_use<'a>(p: &'a mut Placement, name: &str) -> &'a mut DeviceUse {
    match p.devices.iter().position(|d| d.name == name) {
        Some(i) => &mut p.devices[i],
        None => {
            p.devices.push(DeviceUse { name: name.to_string(), ..Default::default() });
            p.devices.last_mut().expect("just pushed")
        }
    }
}

/// A GPU device's own memory ("Vulkan0", "CUDA1", "ROCm0", "Metal") or an RPC worker's device
/// ("RPC0[10.0.0.5:50052]"). Everything else is host memory: the CPU backend's buffers ("CPU",
/// "CPU_Mapped", "CPU_REPACK", "AMX") and GPU backends' pinned host buffers ("Vulkan_Host", "CUDA_Host").
fn is_gpu_buffer(name: &str) -> bool {
    const GPU_BACKENDS: [&str; 11] = ["Vulkan", "CUDA", "ROCm", "HIP", "Metal", "MTL", "SYCL", "OpenCL", "MUSA", "CANN", "RPC"];
    GPU_BACKENDS.iter().any(|b| name.starts_with(b)) && !name.ends_with("_Host")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_up_llama_cpp_buffers_by_device() {
        let log = "load_tensors: layer   0 assigned to device Vulkan0, is_swa = 1
load_tensors: layer   1 assigned to device Vulkan0, is_swa = 0
load_tensors: offloading 18 repeating layers to GPU
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
            read_line(&mut p, line, &[]);
        }
        assert_eq!((p.gpu_layers, p.layers), (19, 19));
        let mib = 1024 * 1024;
        assert_eq!(p.devices, vec![DeviceUse { name: "Vulkan0".into(), bytes: (153.82 * mib as f64) as u64 + 36 * mib + 10 * mib, layers: 2 }]);
        assert_eq!(p.ram_bytes, 88 * mib);
    }

    #[test]
    fn a_cpu_run_has_no_devices() {
        let mut p = Placement::default();
        for line in ["load_tensors: layer   0 assigned to device CPU, is_swa = 0", "load_tensors: offloaded 0/19 layers to GPU", "load_tensors:   CPU_Mapped model buffer size =   241.05 MiB", "llama_kv_cache:        CPU KV buffer size =    72.00 MiB", "unrelated line = 3 MiB"] {
            read_line(&mut p, line, &[]);
        }
        assert_eq!((p.gpu_layers, p.layers, p.devices.len()), (0, 19, 0));
        assert_eq!(p.ram_bytes, (241.05 * 1024.0 * 1024.0) as u64 + 72 * 1024 * 1024);
    }

    #[test]
    fn rpc_workers_layers_and_buffers_meet_under_one_name() {
        let aliases = [("RPC0".to_string(), "RPC0[127.0.0.1:50052]".to_string()), ("RPC1".to_string(), "RPC0[127.0.0.1:50053]".to_string())];
        let log = "load_tensors: layer   0 assigned to device CPU, is_swa = 0
load_tensors: layer   1 assigned to device RPC0, is_swa = 0
load_tensors: layer   2 assigned to device RPC1, is_swa = 0
load_tensors: layer   3 assigned to device RPC1, is_swa = 0
load_tensors: RPC0[127.0.0.1:50052] model buffer size =    10.00 MiB
load_tensors: RPC0[127.0.0.1:50053] model buffer size =    20.00 MiB";
        let mut p = Placement::default();
        for line in log.lines() {
            read_line(&mut p, line, &aliases);
        }
        let mib = 1024 * 1024;
        assert_eq!(
            p.devices,
            vec![DeviceUse { name: "RPC0[127.0.0.1:50052]".into(), bytes: 10 * mib, layers: 1 }, DeviceUse { name: "RPC0[127.0.0.1:50053]".into(), bytes: 20 * mib, layers: 2 }]
        );
    }
}
