//! `airlock rpc-worker`: offers this machine's GPUs (or its CPU) to a head node through
//! llama.cpp's RPC backend, so one model can take layers on several machines. It is llama.cpp's
//! own server (`ggml_backend_rpc_start_server` in `libggml-rpc.so`) with Airlock's module
//! discovery and one rule of its own: the protocol has no authentication and no encryption, so it
//! listens on loopback unless `--allow-network` says the operator put it on a trusted segment.
//! Like the runner, it is a process of its own that links llama.cpp; it opens no store.

use std::ffi::{c_char, CString};
use std::net::IpAddr;
use std::process::ExitCode;

use llama_cpp_sys_2::{
    ggml_backend_dev_by_name, ggml_backend_dev_count, ggml_backend_dev_get, ggml_backend_dev_name,
    ggml_backend_dev_t, ggml_backend_dev_type, ggml_backend_reg_by_name,
    ggml_backend_reg_get_proc_address,
};

use crate::backends;

#[derive(clap::Args, Debug, Clone)]
pub struct RpcWorkerArgs {
    /// The address to listen on (an IP address). Anything but loopback needs --allow-network
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 50052)]
    pub port: u16,
    /// The ggml devices to offer, e.g. Vulkan0,CUDA1 or CPU (default: every GPU, else the CPU)
    #[arg(long, value_delimiter = ',')]
    pub device: Vec<String>,
    /// Threads for a CPU device (default: physical cores)
    #[arg(long)]
    pub threads: Option<u32>,
    /// Listen on a non-loopback address. llama.cpp's RPC has no authentication or encryption:
    /// whoever reaches the port can run computations on this machine and read what it holds.
    /// Use it on a network segment only the head nodes can reach
    #[arg(long)]
    pub allow_network: bool,
    /// Leave out the CPU kernels that use Intel AMX (they die with an illegal instruction under
    /// some hypervisors)
    #[arg(long)]
    pub avoid_amx: bool,
}

type StartServer = unsafe extern "C" fn(
    endpoint: *const c_char,
    cache_dir: *const c_char,
    n_threads: usize,
    n_devices: usize,
    devices: *mut ggml_backend_dev_t,
);

pub fn main(args: RpcWorkerArgs) -> ExitCode {
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `host` may be listened on: loopback always, anything else only when allowed.
pub fn check_host(host: &str, allow_network: bool) -> Result<(), String> {
    let ip: IpAddr = host.parse().map_err(|_| format!("--host {host:?} is not an IP address; give the address of the interface to listen on, e.g. 127.0.0.1 or 10.0.0.5"))?;
    if !ip.is_ipv4() {
        return Err(format!(
            "--host {host}: llama.cpp's RPC listens on IPv4 addresses only"
        ));
    }
    if !ip.is_loopback() && !allow_network {
        return Err(format!(
            "refusing to listen on {host}: llama.cpp's RPC has no authentication or encryption, so anyone who reaches the port could use this machine. Put the workers and the head on a trusted network segment, then add --allow-network"
        ));
    }
    Ok(())
}

fn serve(args: &RpcWorkerArgs) -> Result<(), String> {
    check_host(&args.host, args.allow_network)?;
    let dir = backends::backend_dir().ok_or_else(|| format!("no ggml backend modules (libggml-cpu-*.so) next to the executable; set {} to their directory", backends::LIB_DIR_ENV))?;
    backends::load_backends(&dir, args.avoid_amx, false)
        .map_err(|e| format!("cannot load the ggml modules from {}: {e}", dir.display()))?;
    let _backend = llama_cpp_2::llama_backend::LlamaBackend::init()
        .map_err(|e| format!("llama.cpp backend: {e}"))?;
    let mut devices = pick_devices(&args.device)?;
    // SAFETY: looks up the RPC registry and its server function by name; both live as long as the process.
    let start: StartServer = unsafe {
        let reg = ggml_backend_reg_by_name(c"RPC".as_ptr());
        if reg.is_null() {
            return Err(format!(
                "this build has no RPC backend: libggml-rpc.so is not in {}",
                dir.display()
            ));
        }
        let f = ggml_backend_reg_get_proc_address(reg, c"ggml_backend_rpc_start_server".as_ptr());
        if f.is_null() {
            return Err("the RPC backend module has no ggml_backend_rpc_start_server".into());
        }
        std::mem::transmute::<*mut std::ffi::c_void, StartServer>(f)
    };
    let endpoint = CString::new(format!("{}:{}", args.host, args.port))
        .map_err(|_| "the address has a NUL byte".to_string())?;
    let threads = args
        .threads
        .unwrap_or_else(crate::hardware::physical_cores)
        .max(1) as usize;
    line_buffered_stdout();
    // SAFETY: the devices come from ggml's registry and outlive the call; it serves until the
    // process ends and returns only when it could not listen.
    unsafe {
        start(
            endpoint.as_ptr(),
            std::ptr::null(),
            threads,
            devices.len(),
            devices.as_mut_ptr(),
        )
    };
    Err(format!(
        "could not listen on {}:{} (is the port in use? its log is above)",
        args.host, args.port
    ))
}

/// The server logs each head's connection with C's `printf`: line-buffered, those lines reach a
/// log (the journal, a file) as they happen rather than when a buffer fills.
fn line_buffered_stdout() {
    extern "C" {
        static mut stdout: *mut libc::FILE;
    }
    // SAFETY: glibc's `stdout` stream, set up before `main`; nothing has written to it yet.
    unsafe {
        libc::setvbuf(stdout, std::ptr::null_mut(), libc::_IOLBF, 0);
    }
}

/// The devices named (by ggml's names), or every GPU, or the CPU when there is none.
fn pick_devices(names: &[String]) -> Result<Vec<ggml_backend_dev_t>, String> {
    // SAFETY: ggml's device registry, filled by the modules loaded above, is read only.
    let all: Vec<(String, ggml_backend_dev_t)> = unsafe {
        (0..ggml_backend_dev_count())
            .map(|i| {
                let dev = ggml_backend_dev_get(i);
                (
                    std::ffi::CStr::from_ptr(ggml_backend_dev_name(dev))
                        .to_string_lossy()
                        .into_owned(),
                    dev,
                )
            })
            .collect()
    };
    let known = || {
        all.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !names.is_empty() {
        return names
            .iter()
            .map(|name| {
                let c = CString::new(name.as_str()).map_err(|_| format!("no device {name:?}"))?;
                // SAFETY: a lookup by name in the registry read above.
                let dev = unsafe { ggml_backend_dev_by_name(c.as_ptr()) };
                if dev.is_null() {
                    Err(format!(
                        "no device {name:?} here; this machine has {}",
                        known()
                    ))
                } else {
                    Ok(dev)
                }
            })
            .collect();
    }
    use llama_cpp_sys_2::{
        GGML_BACKEND_DEVICE_TYPE_CPU as CPU, GGML_BACKEND_DEVICE_TYPE_GPU as GPU,
        GGML_BACKEND_DEVICE_TYPE_IGPU as IGPU,
    };
    // SAFETY: as above.
    let of_type = |types: &[u32]| -> Vec<ggml_backend_dev_t> {
        all.iter()
            .map(|(_, d)| *d)
            .filter(|d| types.contains(&unsafe { ggml_backend_dev_type(*d) }))
            .collect()
    };
    let gpus = of_type(&[GPU, IGPU]);
    let picked = if gpus.is_empty() {
        of_type(&[CPU])
    } else {
        gpus
    };
    if picked.is_empty() {
        return Err(format!("no device to offer; this machine has {}", known()));
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_allow_network() {
        assert!(check_host("127.0.0.1", false).is_ok());
        assert!(check_host("127.0.0.2", false).is_ok());
        let e = check_host("10.0.0.5", false).unwrap_err();
        assert!(
            e.contains("no authentication or encryption") && e.contains("--allow-network"),
            "{e}"
        );
        assert!(check_host("10.0.0.5", true).is_ok() && check_host("0.0.0.0", true).is_ok());
        assert!(check_host("0.0.0.0", false).is_err());
        assert!(check_host("localhost", false)
            .unwrap_err()
            .contains("not an IP address"));
        assert!(check_host("::1", false).unwrap_err().contains("IPv4"));
    }
}
