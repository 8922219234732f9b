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
