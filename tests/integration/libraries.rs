//! Models people already have: the real test model split in 3 parts by the project's own GGUF
//! writer and imported as one (tensors byte for byte, greedy replies identical; a missing,
//! mixed-up or foreign part refused with the store unchanged), a folder laid out as LM Studio,
//! Jan and a Hugging Face cache imported through the CLI with names from metadata, `--dry-run`
//! writing nothing, and a kit imported by its folder.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use airlock::core::Core;
use airlock::engine::chat::RequestSettings;
use airlock::engine::protocol::SamplingOptions;
use airlock::engine::supervisor::StreamEvent;
use airlock::engine::template::ChatMessage;
use airlock::gguf::writer::GgufBuilder;
use airlock::gguf::{self, split, GgufInfo, GGML_TYPE_F32};
use airlock::store::manifest::{MEDIA_MODEL, MEDIA_PROJECTOR};
use airlock::store::Store;
use serde_json::Value;
use tempfile::TempDir;

use crate::common::*;

const PREFIX: &str = "gemma-3-270m-it-Q4_K_M";

fn split_real_model(dir: &Path, prefix: &str, parts: u32) -> Vec<PathBuf> {
    let model = real_model();
    let info = gguf::read_file(&model).unwrap();
    split::write_split(&model, &info, parts, dir, prefix).unwrap()
}

/// Whether every tensor of `a` holds the same bytes as the tensor of that name in `b`.
fn same_tensors(a: (&Path, &GgufInfo), b: (&Path, &GgufInfo)) -> bool {
    let (mut fa, mut fb) = (File::open(a.0).unwrap(), File::open(b.0).unwrap());
    a.1.tensors.len() == b.1.tensors.len()
        && a.1.tensors.iter().all(|ta| {
            let Some(tb) = b.1.tensors.iter().find(|t| t.name == ta.name) else { return false };
            let read = |f: &mut File, at: u64, len: u64| {
                let mut buf = vec![0; len as usize];
                f.seek(SeekFrom::Start(at)).unwrap();
                f.read_exact(&mut buf).unwrap();
                buf
            };
            ta.dims == tb.dims && ta.ggml_type == tb.ggml_type && read(&mut fa, a.1.data_offset + ta.offset, ta.size_bytes) == read(&mut fb, b.1.data_offset + tb.offset, tb.size_bytes)
        })
}

fn greedy_reply(core: &Core, name: &str) -> String {
    let model = core.prepare(name).unwrap();
    let settings = RequestSettings { options: SamplingOptions { temperature: Some(0.0), num_predict: Some(24), ..Default::default() }, num_ctx: Some(1024), ..Default::default() };
    let stream = core.engine().chat(&model, &[ChatMessage::new("user", "Name three colours.")], settings).unwrap();
    let mut text = String::new();
    for ev in stream.generation {
        match ev {
            StreamEvent::Piece(p) => text.push_str(&p),
            StreamEvent::Done(_) => return text,
            other => panic!("{other:?}"),
        }
    }
    panic!("no end")
}

#[test]
fn a_split_model_imports_as_one_model_with_the_same_tensors_and_replies() {
    let base = TempDir::new().unwrap();
    let (parts_dir, store_dir) = (base.path().join("parts"), base.path().join("store"));
    fs::create_dir_all(&parts_dir).unwrap();
    let parts = split_real_model(&parts_dir, PREFIX, 3);
    for p in &parts {
        println!("part {} ({} bytes)", p.file_name().unwrap().to_string_lossy(), fs::metadata(p).unwrap().len());
    }

    let out = airlock(&store_dir, &["import", parts[0].to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let name = report["models"][0]["name"].as_str().unwrap().to_string();
    println!("imported the 3 parts as {name}: {}", report["models"][0]);
    assert_eq!(name, "gemma-3:270m-q4_K_M", "named from the metadata");

    let store = Store::at(&store_dir);
    let blob = store.blob_path(&store.resolve(&name).unwrap().manifest.layer(MEDIA_MODEL).unwrap().digest);
    let (merged, original) = (gguf::read_file(&blob).unwrap(), gguf::read_file(&real_model()).unwrap());
    assert!(merged.get(split::KEY_COUNT).is_none(), "the split keys are gone");
    assert!(same_tensors((&blob, &merged), (&real_model(), &original)), "every tensor is byte for byte the original's");
    println!("merged blob: {} tensors, {} bytes; the original: {} bytes", merged.tensors.len(), merged.file_len, original.file_len);

    let out = airlock(&store_dir, &["import", real_model().to_str().unwrap(), "--name", "original:latest", "--link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let core = Core::new(Store::at(&store_dir), crate::engine::config());
    let (from_parts, from_original) = (greedy_reply(&core, &name), greedy_reply(&core, "original:latest"));
    println!("greedy reply from the merged parts: {from_parts:?}");
    assert_eq!(from_parts, from_original, "the merged model replies exactly as the original");
}

#[test]
fn a_missing_mixed_up_or_foreign_part_is_refused_naming_it_and_the_store_is_unchanged() {
    let base = TempDir::new().unwrap();
    let store_dir = base.path().join("store");
    let out = airlock(&store_dir, &["import", real_model().to_str().unwrap(), "--name", "keep:latest", "--link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = store_files(&store_dir);
    let refused = |dir: &Path, expect: &str| {
        let first = dir.join(split::part_file_name(PREFIX, 1, 3));
        let out = airlock(&store_dir, &["import", first.to_str().unwrap()]);
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains(expect), "expected {expect:?} in: {err}");
        println!("refused: {}", err.trim().lines().last().unwrap_or_default());
        assert_eq!(store_files(&store_dir), before, "the store changed");
    };
    let case = |name: &str| {
        let dir = base.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        (split_real_model(&dir, PREFIX, 3), dir)
    };

    let (parts, missing) = case("missing");
    fs::remove_file(&parts[1]).unwrap();
    refused(&missing, &format!("1 of its 3 parts missing: {PREFIX}-00002-of-00003.gguf"));

    let (parts, mixed) = case("mixed");
    fs::copy(&parts[1], &parts[2]).unwrap();
    refused(&mixed, &format!("{PREFIX}-00003-of-00003.gguf is named as part 3 but its metadata says part 2"));

    let (parts, foreign) = case("foreign");
    let other = base.path().join("other");
    fs::create_dir_all(&other).unwrap();
    let two = split_real_model(&other, "x", 2);
    fs::copy(&two[1], &parts[1]).unwrap();
    refused(&foreign, &format!("{PREFIX}-00002-of-00003.gguf says the model has 2 parts, but 3 were found"));
}

fn tiny(basename: &str, size: &str, file_type: u32) -> GgufBuilder {
    GgufBuilder::new()
        .kv_str("general.architecture", "llama")
        .kv_str("general.basename", basename)
        .kv_str("general.size_label", size)
        .kv_u32("general.file_type", file_type)
        .kv_u32("llama.embedding_length", 8)
        .tensor("token_embd.weight", &[8, 4], GGML_TYPE_F32)
}

#[test]
fn folders_of_lm_studio_jan_and_hugging_face_import_with_names_from_metadata() {
    let base = TempDir::new().unwrap();
    let (lib, store_dir) = (base.path().join("models"), base.path().join("store"));
    let lms = lib.join("lmstudio-community/tiny-vision-GGUF");
    fs::create_dir_all(&lms).unwrap();
    tiny("Tiny-Vision", "1B", 15).write_to(&lms.join("tiny-vision-1b-Q4_K_M.gguf")).unwrap();
    tiny("Tiny-Vision", "1B", 7).write_to(&lms.join("tiny-vision-1b-Q8_0.gguf")).unwrap();
    GgufBuilder::new().kv_str("general.architecture", "clip").kv_u32("clip.vision.projection_dim", 8).tensor("v.w", &[8], GGML_TYPE_F32).write_to(&lms.join("mmproj-tiny-vision-f16.gguf")).unwrap();
    let jan = lib.join("llamacpp/models/my-helper");
    fs::create_dir_all(&jan).unwrap();
    GgufBuilder::new().kv_str("general.architecture", "llama").kv_u32("general.file_type", 1).tensor("t", &[8], GGML_TYPE_F32).write_to(&jan.join("model.gguf")).unwrap();
    fs::write(jan.join("model.yml"), "name: my helper\n").unwrap();
    let hf = lib.join("hub/models--acme--Coder-GGUF");
    fs::create_dir_all(hf.join("blobs")).unwrap();
    fs::create_dir_all(hf.join("snapshots/0123abc")).unwrap();
    tiny("Coder", "7B", 2).write_to(&hf.join("blobs/5f1e")).unwrap();
    symlink("../../blobs/5f1e", hf.join("snapshots/0123abc/coder-7b-q4_0.gguf")).unwrap();
    fs::write(lib.join("notes.gguf"), "not a model").unwrap();

    let out = airlock(&store_dir, &["import", lib.to_str().unwrap(), "--dry-run", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan: Value = serde_json::from_str(&stdout(&out)).unwrap();
    println!("{}", airlock(&store_dir, &["import", lib.to_str().unwrap(), "--dry-run"]).stdout.iter().map(|&b| b as char).collect::<String>());
    let names: Vec<&str> = plan["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["coder:7b-q4_0", "my-helper:fp16", "tiny-vision:1b-q4_K_M", "tiny-vision:1b-q8_0"]);
    assert_eq!(plan["models"][2]["projector"], "lmstudio-community/tiny-vision-GGUF/mmproj-tiny-vision-f16.gguf");
    assert_eq!(plan["models"][0]["layout"], "Hugging Face cache");
    assert_eq!(plan["models"][1]["layout"], "Jan");
    assert!(plan["skipped"][0]["reason"].as_str().unwrap().contains("not a GGUF file"), "{}", plan["skipped"]);
    assert!(!store_dir.join("manifests").exists(), "--dry-run wrote nothing");

    let out = airlock(&store_dir, &["import", lib.to_str().unwrap(), "--link", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["models"].as_array().unwrap().len(), 4);
    let (copied, cloned) = (report["bytes_copied"].as_u64().unwrap(), report["bytes_linked"].as_u64().unwrap());
    println!("--link: {copied} bytes copied, {cloned} cloned copy-on-write");
    assert!(copied + cloned > 0);
    assert!(stderr(&out).contains("left out notes.gguf: not a GGUF file"), "{}", stderr(&out));
    let store = Store::at(&store_dir);
    let vision = store.resolve("tiny-vision:1b-q8_0").unwrap();
    assert!(vision.manifest.layer(MEDIA_PROJECTOR).is_some(), "the projector went with the model");
    assert_store_consistent(&store_dir);

    // Again: every name is taken now, so each gets a suffix, and says so.
    let out = airlock(&store_dir, &["import", lib.to_str().unwrap(), "--dry-run"]);
    assert!(stdout(&out).contains("coder:7b-q4_0-2") && stderr(&out).contains("coder:7b-q4_0 is already in the store; named coder:7b-q4_0-2"), "{}{}", stdout(&out), stderr(&out));
}

#[test]
fn a_kit_imports_by_its_folder_and_a_folder_with_nothing_says_what_it_looked_for() {
    let base = TempDir::new().unwrap();
    let (src, kit, dst) = (base.path().join("src"), base.path().join("kit"), base.path().join("dst"));
    write_folder(&src, &[FixtureModel::new("registry.ollama.ai/library/kitted/latest", 3)]);
    fs::create_dir_all(kit.join("models")).unwrap();
    let out = airlock(&src, &["export", "kitted:latest", "--out", kit.join("models/models.zip").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for folder in [kit.clone(), kit.join("models")] {
        let out = airlock(&dst, &["import", folder.to_str().unwrap()]);
        assert!(out.status.success() && stdout(&out).contains("imported kitted:latest"), "{}: {}", folder.display(), stderr(&out));
    }
    let empty = base.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    fs::write(empty.join("readme.txt"), "hi").unwrap();
    let out = airlock(&dst, &["import", empty.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("no models found. Looked for GGUF model files"), "{}", stderr(&out));
}
