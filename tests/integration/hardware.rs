//! `airlock hardware [--json]` on this (GPU-less) machine against a store with one tiny model.

use tempfile::TempDir;

use crate::common::*;

#[test]
fn hardware_json_reports_cpu_memory_no_gpu_and_fit() {
    let store = TempDir::new().unwrap();
    write_folder(store.path(), &[FixtureModel::new("registry.ollama.ai/library/tiny/latest", 1)]);
    let out = airlock(store.path(), &["hardware", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&out)));
    assert!(!v["cpu"]["model"].as_str().unwrap().is_empty(), "{v}");
    assert!(v["cpu"]["physical_cores"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["cpu"]["logical_cores"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["cpu"]["threads_used"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["memory"]["total_bytes"].as_u64().unwrap() > 0, "{v}");
    // This machine has no GPU (Mesa's software device stays hidden unless listed; see gpu.rs).
    assert_eq!(v["gpus"], serde_json::json!([]), "{v}");
    assert!(!v["no_gpu_reason"].as_str().unwrap().is_empty(), "{v}");
    assert!(!v["no_gpu_reason"].as_str().unwrap().starts_with("could not probe"), "the device probe child failed: {v}");
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 1, "{v}");
    assert_eq!(models[0]["name"], "tiny:latest");
    assert_eq!(models[0]["fit"]["verdict"], "cpu_only", "{v}");
    assert!(models[0]["fit"]["need_bytes"].as_u64().unwrap() > 0, "{v}");
    assert!(models[0]["fit"]["explanation"].as_str().unwrap().contains("no usable GPU"), "{v}");
}

#[test]
fn hardware_text_lists_the_same() {
    let store = TempDir::new().unwrap();
    write_folder(store.path(), &[FixtureModel::new("registry.ollama.ai/library/tiny/latest", 1)]);
    let out = airlock(store.path(), &["hardware"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in ["CPU", "threads used", "Memory", "total", "GPU", "none: ", "GPU backends built", "tiny:latest", "CPU only"] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

/// The real model (Gemma 3, a 512-token window on 15 of its 18 layers) keeps each slot's
/// checkpoints in RAM, and the estimate counts as many as `AIRLOCK_CONTEXT_CHECKPOINTS` asks for.
#[test]
fn hardware_counts_each_slots_window_checkpoints_in_ram() {
    let store = crate::engine::store_with_real_model();
    let fit = |checkpoints: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
        cmd.args(["hardware", "--json"]).env("AIRLOCK_MODELS", store.path()).env("AIRLOCK_CONTEXT_LENGTH", "32768").env("AIRLOCK_NUM_PARALLEL", "2");
        match checkpoints {
            Some(n) => cmd.env("AIRLOCK_CONTEXT_CHECKPOINTS", n),
            None => cmd.env_remove("AIRLOCK_CONTEXT_CHECKPOINTS"),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["models"][0]["fit"].clone()
    };
    // One checkpoint: 15 layers × 512 tokens × 1 KiB of K and V (within 0.1 % of llama.cpp's
    // state, measured for `KvShape::checkpoint_bytes`).
    let one = 15 * 512 * 1024;
    let default = fit(None);
    assert_eq!(default["checkpoint_bytes"], 2 * 3 * one, "{default}");
    assert!(default["explanation"].as_str().unwrap().contains("× 2 slot(s) + checkpoints 47 MB + overhead"), "{default}");
    let none = fit(Some("0"));
    assert_eq!(none["checkpoint_bytes"], 0, "{none}");
    assert!(!none["explanation"].as_str().unwrap().contains("checkpoints"), "{none}");
    assert_eq!(none["need_bytes"].as_u64().unwrap() + 2 * 3 * one, default["need_bytes"].as_u64().unwrap());
    assert_eq!(fit(Some("1"))["checkpoint_bytes"], 2 * one);
    // An unreadable value counts as unset.
    assert_eq!(fit(Some("several"))["checkpoint_bytes"], 2 * 3 * one);
}
