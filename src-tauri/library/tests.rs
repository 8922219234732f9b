//! Scans of folders laid out as each tool lays them out, and of hostile ones.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Instant;

use super::*;
use crate::gguf::writer::GgufBuilder;
use crate::gguf::{GGML_TYPE_F32, GGML_TYPE_Q8_0};

/// A small model file with naming metadata; `embd` is its embedding length.
fn model(basename: &str, size: &str, file_type: u32, embd: u32) -> GgufBuilder {
    GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .kv_str("general.basename", basename)
        .kv_str("general.size_label", size)
        .kv_u32("general.file_type", file_type)
        .kv_u32("llama.embedding_length", embd)
        .tensor("token_embd.weight", &[32, 4], GGML_TYPE_Q8_0)
        .tensor("output_norm.weight", &[8], GGML_TYPE_F32)
        .tensor("output.weight", &[8], GGML_TYPE_F32)
}

fn projector(dim: u32) -> GgufBuilder {
    GgufBuilder::new().kv_str("general.architecture", "clip").kv_u32("clip.vision.projection_dim", dim).tensor("v.patch_embd.weight", &[8], GGML_TYPE_F32)
}

fn write(path: &Path, b: &GgufBuilder) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    b.write_to(path).unwrap();
}

fn names(scan: &Scan) -> Vec<&str> {
    scan.models.iter().map(|m| m.name.as_str()).collect()
}

fn reason<'a>(scan: &'a Scan, file: &str) -> &'a str {
    scan.skipped.iter().find(|s| s.path.ends_with(file)).map(|s| s.reason.as_str()).unwrap_or_else(|| panic!("{file} not skipped: {:?}", scan.skipped))
}

#[test]
fn a_hugging_face_cache_is_read_through_its_links_once_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("hub/models--Qwen--Qwen2.5-0.5B-Instruct-GGUF");
    write(&repo.join("blobs/aaaa"), &model("Qwen2.5", "0.5B", 15, 8).kv_str("general.finetune", "Instruct"));
    write(&repo.join("blobs/bbbb"), &model("Qwen2.5", "0.5B", 7, 8).kv_str("general.finetune", "Instruct"));
    for rev in ["rev1", "rev2"] {
        fs::create_dir_all(repo.join("snapshots").join(rev)).unwrap();
        symlink("../../blobs/aaaa", repo.join("snapshots").join(rev).join("qwen2.5-0.5b-instruct-q4_k_m.gguf")).unwrap();
    }
    symlink("../../blobs/bbbb", repo.join("snapshots/rev2/qwen2.5-0.5b-instruct-q8_0.gguf")).unwrap();
    let scan = scan(&dir.path().join("hub"), &[]).unwrap();
    assert_eq!(names(&scan), ["qwen2.5:0.5b-instruct-q4_K_M", "qwen2.5:0.5b-instruct-q8_0"], "{:?}", scan.skipped);
    assert!(scan.models.iter().all(|m| m.layout == Layout::HuggingFace));
    // A snapshot folder chosen directly still reaches the blobs its links point to.
    let scan = super::scan(&repo.join("snapshots/rev2"), &[]).unwrap();
    assert_eq!(scan.models.len(), 2, "{:?}", scan.skipped);
}

#[test]
fn lm_studio_jan_and_gpt4all_folders_with_projectors_and_quantisations() {
    let dir = tempfile::tempdir().unwrap();
    let lms = dir.path().join(".lmstudio/models/lmstudio-community/gemma-3-4b-it-GGUF");
    write(&lms.join("gemma-3-4b-it-Q4_K_M.gguf"), &model("gemma-3", "4B", 15, 16).kv_str("general.finetune", "it"));
    write(&lms.join("gemma-3-4b-it-Q8_0.gguf"), &model("gemma-3", "4B", 7, 16).kv_str("general.finetune", "it"));
    write(&lms.join("mmproj-model-f16.gguf"), &projector(16));
    let jan = dir.path().join("jan/llamacpp/models/tiny-llama-1.1b");
    write(&jan.join("model.gguf"), &GgufBuilder::new().kv_str("general.architecture", "llama").tensor("t", &[32], GGML_TYPE_F32));
    fs::write(jan.join("model.yml"), "model_path: model.gguf\n").unwrap();
    let g4a = dir.path().join("share/nomic.ai/GPT4All");
    write(&g4a.join("Phi-3-mini-4k-instruct.Q4_0.gguf"), &model("Phi-3-mini", "3.8B", 2, 8));
    write(&dir.path().join("loose/mmproj-unrelated.gguf"), &projector(4096));

    let scan = scan(dir.path(), &[]).unwrap();
    let by_name = |n: &str| scan.models.iter().find(|m| m.name == n).unwrap_or_else(|| panic!("{n} not in {:?}", names(&scan)));
    let q4 = by_name("gemma-3:4b-it-q4_K_M");
    let q8 = by_name("gemma-3:4b-it-q8_0");
    assert_eq!((q4.layout, q4.projector.as_deref()), (Layout::LmStudio, Some(".lmstudio/models/lmstudio-community/gemma-3-4b-it-GGUF/mmproj-model-f16.gguf")));
    assert_eq!(q8.projector, q4.projector, "both quantisations get the projector");
    assert_eq!(q4.size, fs::metadata(&q4.paths[0]).unwrap().len() + fs::metadata(q4.projector_path.as_ref().unwrap()).unwrap().len());
    let tiny = by_name("tiny-llama-1.1b:fp32");
    assert_eq!(tiny.layout, Layout::Jan);
    assert_eq!(by_name("phi-3-mini:3.8b-q4_0").layout, Layout::Gpt4All);
    assert!(reason(&scan, "mmproj-unrelated.gguf").contains("no model beside it that it fits"));
    assert_eq!(scan.models.len(), 4);
}

#[test]
fn a_projector_goes_with_the_model_it_fits_and_is_named_like() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("llava-7b-q4.gguf"), &model("llava", "7B", 15, 32));
    write(&dir.path().join("qwen-vl-3b-q4.gguf"), &model("qwen-vl", "3B", 15, 16));
    write(&dir.path().join("other-3b-q4.gguf"), &model("other", "3B", 15, 16));
    write(&dir.path().join("mmproj-llava-7b-f16.gguf"), &projector(32));
    write(&dir.path().join("qwen-vl-3b-mmproj.gguf"), &projector(16));
    let scan = scan(dir.path(), &[]).unwrap();
    let projector_of = |n: &str| scan.models.iter().find(|m| m.name.starts_with(n)).unwrap().projector.clone();
    assert_eq!(projector_of("llava:").as_deref(), Some("mmproj-llava-7b-f16.gguf"), "by its projection size");
    assert_eq!(projector_of("qwen-vl:").as_deref(), Some("qwen-vl-3b-mmproj.gguf"), "by its name, among models of that size");
    assert_eq!(projector_of("other:"), None);
}

#[test]
fn a_split_model_is_one_entry_and_a_broken_split_is_left_out_with_why() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("src/whole.gguf");
    write(&whole, &model("big", "70B", 15, 8));
    let info = gguf::read_file(&whole).unwrap();
    let good = dir.path().join("lib/good");
    let bad = dir.path().join("lib/bad");
    let mixed = dir.path().join("lib/mixed");
    for d in [&good, &bad, &mixed] {
        fs::create_dir_all(d).unwrap();
    }
    split::write_split(&whole, &info, 3, &good, "big-Q4_K_M").unwrap();
    split::write_split(&whole, &info, 3, &bad, "big-Q4_K_M").unwrap();
    fs::remove_file(bad.join("big-Q4_K_M-00002-of-00003.gguf")).unwrap();
    split::write_split(&whole, &info, 3, &mixed, "big").unwrap();
    fs::rename(mixed.join("big-00002-of-00003.gguf"), mixed.join("tmp")).unwrap();
    fs::rename(mixed.join("big-00003-of-00003.gguf"), mixed.join("big-00002-of-00003.gguf")).unwrap();
    fs::rename(mixed.join("tmp"), mixed.join("big-00003-of-00003.gguf")).unwrap();

    let scan = scan(&dir.path().join("lib"), &[]).unwrap();
    assert_eq!(scan.models.len(), 1, "{:?} {:?}", names(&scan), scan.skipped);
    let m = &scan.models[0];
    assert_eq!(m.name, "big:70b-q4_K_M");
    assert_eq!(m.files, ["good/big-Q4_K_M-00001-of-00003.gguf", "good/big-Q4_K_M-00002-of-00003.gguf", "good/big-Q4_K_M-00003-of-00003.gguf"]);
    assert_eq!(m.parameters, gguf::format_parameter_count(info.parameter_count()));
    assert!(reason(&scan, "bad/big-Q4_K_M-00001-of-00003.gguf").contains("1 of its 3 parts missing: big-Q4_K_M-00002-of-00003.gguf"));
    assert!(reason(&scan, "mixed/big-00001-of-00003.gguf").contains("do not belong together"));
}

#[test]
fn hostile_layouts_are_skipped_quickly_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    write(&root.join("ok/real.gguf"), &model("real", "1B", 15, 8));
    fs::write(root.join("fake.gguf"), b"PK\x03\x04 a zip, not a model").unwrap();
    fs::write(root.join("cut.gguf"), &model("cut", "1B", 15, 8).build()[..100]).unwrap();
    symlink(&root, root.join("ok/loop")).unwrap();
    write(&dir.path().join("outside/secret.gguf"), &model("secret", "1B", 15, 8));
    symlink(dir.path().join("outside"), root.join("escape")).unwrap();
    symlink(dir.path().join("outside/secret.gguf"), root.join("escape.gguf")).unwrap();
    let empties = root.join("empties");
    fs::create_dir_all(&empties).unwrap();
    for i in 0..10_000 {
        fs::write(empties.join(format!("{i}.gguf")), b"").unwrap();
    }
    let mut deep = root.clone();
    for i in 0..MAX_DEPTH + 2 {
        deep = deep.join(format!("d{i}"));
    }
    write(&deep.join("deep.gguf"), &model("deep", "1B", 15, 8));

    let started = Instant::now();
    let scan = scan(&root, &[ModelName::parse("real:1b-q4_K_M").unwrap()]).unwrap();
    let took = started.elapsed();
    assert_eq!(names(&scan), ["real:1b-q4_K_M-2"]);
    assert!(scan.models[0].note.as_deref().unwrap().contains("already in the store"));
    assert!(reason(&scan, "fake.gguf").contains("not a GGUF file"));
    assert!(reason(&scan, "cut.gguf").contains("not a valid GGUF file"));
    assert!(reason(&scan, "ok/loop").contains("loop"));
    assert!(reason(&scan, "escape").contains("outside the folder"));
    assert!(reason(&scan, "escape.gguf").contains("outside the folder"));
    assert!(scan.skipped.iter().any(|s| s.reason.contains("folders deep")), "{:?}", scan.skipped.iter().take(5).collect::<Vec<_>>());
    assert!(scan.skipped.iter().any(|s| s.reason == "an empty file"));
    assert_eq!(scan.skipped.len() + scan.skipped_more, 10_000 + 6, "every empty file counted");
    assert_eq!(scan.skipped.len(), MAX_SKIPPED_LISTED);
    println!("a hostile folder of {} entries read in {took:?}", scan.entries);
}

#[test]
fn an_empty_folder_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    let scan = scan(dir.path(), &[]).unwrap();
    assert!(scan.models.is_empty() && scan.skipped.is_empty());
    assert_eq!(scan.entries, 1);
}
