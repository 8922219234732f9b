//! The devices of llama.cpp RPC workers, added to this runner's ggml before the model loads, as
//! llama.cpp's own `--rpc` does: the RPC backend module (`libggml-rpc.so`) hands out a registry
//! per worker, and registering it makes its devices take layers like local GPUs. The supervisor
//! passes only workers that answered a moment ago; one that has gone since makes ggml abort this
//! process, which the supervisor reports as the worker's failure.

use std::ffi::{c_char, CStr, CString};

use llama_cpp_sys_2::{
    ggml_backend_dev_name, ggml_backend_reg_by_name, ggml_backend_reg_dev_count,
    ggml_backend_reg_dev_get, ggml_backend_reg_get_proc_address, ggml_backend_reg_t,
    ggml_backend_register,
};

use crate::hardware::remote::device_name;

type AddServer = unsafe extern "C" fn(endpoint: *const c_char) -> ggml_backend_reg_t;

/// Registers every worker's devices; call after the backend modules are loaded.
pub fn add_workers(endpoints: &[String]) -> Result<(), String> {
    // SAFETY: looks up a registry and one of its functions by name; both outlive the process.
    let add: AddServer = unsafe {
        let reg = ggml_backend_reg_by_name(c"RPC".as_ptr());
        if reg.is_null() {
            return Err(format!("this build has no RPC backend (libggml-rpc.so is not among the ggml modules), so the RPC workers {} cannot be used", endpoints.join(", ")));
        }
        let f = ggml_backend_reg_get_proc_address(reg, c"ggml_backend_rpc_add_server".as_ptr());
        if f.is_null() {
            return Err("the RPC backend module has no ggml_backend_rpc_add_server".into());
        }
        std::mem::transmute::<*mut std::ffi::c_void, AddServer>(f)
    };
    for endpoint in endpoints {
        let c = CString::new(endpoint.as_str())
            .map_err(|_| format!("RPC worker {endpoint:?} is not a valid address"))?;
        // SAFETY: `c` is a valid C string; the registry returned lives for the whole process.
        unsafe {
            let reg = add(c.as_ptr());
            if reg.is_null() {
                return Err(format!("the RPC worker {endpoint} offers no device"));
            }
            ggml_backend_register(reg);
            // llama.cpp logs layers by device name ("RPC3") and buffers as "RPC0[host:port]".
            for i in 0..ggml_backend_reg_dev_count(reg) {
                let dev = ggml_backend_reg_dev_get(reg, i);
                let name = CStr::from_ptr(ggml_backend_dev_name(dev))
                    .to_string_lossy()
                    .into_owned();
                super::placement::alias(&name, &device_name(i as u32, endpoint));
            }
        }
    }
    Ok(())
}
