//! The GPU path, end to end, on a machine without a GPU: Mesa's software Vulkan driver
//! (lavapipe, Debian's mesa-vulkan-drivers) is a real Vulkan device to ggml once
//! `GGML_VK_VISIBLE_DEVICES=0` lists it (ggml skips CPU-type devices otherwise). Built only with
//! the `vulkan` feature (scripts/test.sh builds with it).
#![cfg(feature = "vulkan")]

use std::process::{Command, Output};

use serde_json::Value;
use tempfile::TempDir;

use crate::api::{get, post, serve};
use crate::common::*;
use crate::engine::store_with_real_model;

const LAVAPIPE: (&str, &str) = ("GGML_VK_VISIBLE_DEVICES", "0");

fn hardware_json(store: &TempDir, env: &[(&str, &str)]) -> Value {
    let out = run_airlock(store, env, &["hardware", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)))
}

fn run_airlock(store: &TempDir, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args).env("AIRLOCK_MODELS", store.path()).env("AIRLOCK_THREADS", "2");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// `airlock run --verbose` of `gemma3:short` (greedy, 24 tokens at most); returns the reply and
/// stderr (the statistics, with the `processor:` line).
fn ask(store: &TempDir, env: &[(&str, &str)]) -> (String, String) {
    let out = run_airlock(store, env, &["run", "gemma3:short", "The capital of France is", "--verbose"]);
    assert!(out.status.success(), "{}", stderr(&out));
    (stdout(&out), stderr(&out))
}

#[test]
fn hardware_lists_the_vulkan_device_and_the_model_fits_on_it() {
    let store = store_with_real_model();
    let v = hardware_json(&store, &[LAVAPIPE]);
    let gpu = &v["gpus"][0];
    assert_eq!(gpu["backend"], "Vulkan", "{v}");
    assert_eq!(gpu["device"], "Vulkan0", "{v}");
    assert!(gpu["name"].as_str().unwrap().contains("llvmpipe"), "{v}");
    assert!(gpu["memory_total_bytes"].as_u64().unwrap() > 0 && gpu["memory_free_bytes"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["models"][0]["fit"]["verdict"], "full_gpu", "{v}");

    // Off by setting, and a VRAM budget that holds only part of the model.
    let off = hardware_json(&store, &[LAVAPIPE, ("AIRLOCK_GPU", "off")]);
    assert_eq!(off["gpus"], serde_json::json!([]));
    assert!(off["no_gpu_reason"].as_str().unwrap().contains("AIRLOCK_GPU=off"), "{off}");
    let small = hardware_json(&store, &[LAVAPIPE, ("AIRLOCK_GPU_MEMORY", "400M")]);
    assert_eq!(small["models"][0]["fit"]["verdict"], "partial_offload", "{small}");
}

/// The first words of a greedy reply on the GPU and on the CPU (the same weights; float
/// rounding differs between the backends, so only the start is compared).
#[test]
fn a_greedy_reply_on_the_gpu_starts_as_on_the_cpu_and_says_where_it_ran() {
    let store = store_with_real_model();
    let (gpu, gpu_log) = ask(&store, &[LAVAPIPE]);
    let (cpu, cpu_log) = ask(&store, &[LAVAPIPE, ("AIRLOCK_GPU", "off")]);
    assert!(gpu_log.contains("processor:            100% GPU (Vulkan0"), "{gpu_log}");
    assert!(cpu_log.contains("processor:            100% CPU (GPU use is off (AIRLOCK_GPU=off)"), "{cpu_log}");
    let words = |s: &str| s.split_whitespace().take(3).map(str::to_owned).collect::<Vec<_>>();
    assert!(!words(&cpu).is_empty(), "the CPU answered nothing");
    assert_eq!(words(&gpu), words(&cpu), "GPU reply {gpu:?} vs CPU reply {cpu:?}");
}

fn loaded(port: u16) -> Value {
    let (status, body) = get(port, "/api/ps", "");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["models"][0].clone()
}

fn load(port: u16) {
    let (status, body) = post(port, "/api/generate", r#"{"model":"gemma3:270m","prompt":"Hi","stream":false,"options":{"num_predict":2,"temperature":0}}"#, "");
    assert_eq!(status, 200, "{body}");
}

fn cli_ps(port: u16) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock")).arg("ps").env("AIRLOCK_HOST", format!("127.0.0.1:{port}")).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn ps_reports_full_and_partial_offload_and_the_cpu_fallback() {
    // All layers fit: everything on the device.
    let s = serve(&[LAVAPIPE], true);
    load(s.port);
    let m = loaded(s.port);
    let (size, vram) = (m["size"].as_u64().unwrap(), m["size_vram"].as_u64().unwrap());
    assert!(size > 0 && vram == size, "{m}");
    assert_eq!(m["placement"]["devices"][0]["name"], "Vulkan0", "{m}");
    assert_eq!(m["placement"]["gpu_layers"], m["placement"]["layers"], "{m}");
    assert!(cli_ps(s.port).contains("100% GPU"));
    drop(s);

    // A VRAM budget smaller than the model: some layers on the device, the rest in RAM.
    let s = serve(&[LAVAPIPE, ("AIRLOCK_GPU_MEMORY", "400M")], true);
    load(s.port);
    let m = loaded(s.port);
    let (size, vram) = (m["size"].as_u64().unwrap(), m["size_vram"].as_u64().unwrap());
    let (on_gpu, layers) = (m["placement"]["gpu_layers"].as_u64().unwrap(), m["placement"]["layers"].as_u64().unwrap());
    assert!(on_gpu > 0 && on_gpu < layers, "{m}");
    assert!(vram > 0 && vram < size, "{m}");
    let listing = cli_ps(s.port);
    assert!(listing.contains("CPU/GPU"), "{listing}");
    drop(s);

    // num_gpu 0 from the request keeps it on the CPU, and ps says so.
    let s = serve(&[LAVAPIPE], true);
    let (status, body) = post(s.port, "/api/generate", r#"{"model":"gemma3:270m","prompt":"Hi","stream":false,"options":{"num_predict":2,"num_gpu":0}}"#, "");
    assert_eq!(status, 200, "{body}");
    let m = loaded(s.port);
    assert_eq!(m["size_vram"], 0, "{m}");
    assert!(m["placement"]["reason"].as_str().unwrap().contains("num_gpu 0"), "{m}");
    assert!(cli_ps(s.port).contains("100% CPU"));
}

#[test]
fn without_the_vulkan_module_it_runs_on_the_cpu_and_says_why() {
    // A copy of the engine libraries without libggml-vulkan.so: a package on a machine whose
    // build has no GPU module behaves the same.
    let libs = TempDir::new().unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_airlock"));
    for entry in std::fs::read_dir(exe.parent().unwrap()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("libggml-cpu") {
            std::fs::copy(entry.path(), libs.path().join(&name)).unwrap();
        }
    }
    let store = store_with_real_model();
    let env = [LAVAPIPE, ("AIRLOCK_LIB_DIR", libs.path().to_str().unwrap())];
    let v = hardware_json(&store, &env);
    assert_eq!(v["gpus"], serde_json::json!([]), "{v}");
    assert!(!v["no_gpu_reason"].as_str().unwrap().is_empty(), "{v}");
    let (reply, log) = ask(&store, &env);
    assert!(!reply.trim().is_empty(), "{log}");
    assert!(log.contains("processor:            100% CPU ("), "{log}");
}
