//! Import folder… on a folder laid out as LM Studio lays it out: the list of models found, with
//! names from their metadata and the file left out, photographed; one model unchecked, the other
//! renamed, imported.

use std::path::Path;

use fantoccini::{Client, Locator};

use super::*;

/// A tiny valid GGUF file (one F32 tensor of 8) whose metadata names it.
fn tiny_gguf(basename: &str, size_label: &str, file_type: u32) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes());
    out.extend_from_slice(&4u64.to_le_bytes());
    for (key, value) in [("general.architecture", "llama"), ("general.basename", basename), ("general.size_label", size_label)] {
        string(&mut out, key);
        out.extend_from_slice(&8u32.to_le_bytes());
        string(&mut out, value);
    }
    string(&mut out, "general.file_type");
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&file_type.to_le_bytes());
    string(&mut out, "token_embd.weight");
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&8u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.resize(out.len().div_ceil(32) * 32 + 32, 0);
    out
}

/// Then deletes it again, so the rest of the test sees one model.
pub async fn import_folder(c: &Client, home: &Path, store: &Path) {
    let folder = home.join("lmstudio/models/lmstudio-community/Tiny-GGUF");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("Tiny-1B-Q4_K_M.gguf"), tiny_gguf("Tiny", "1B", 15)).unwrap();
    std::fs::write(folder.join("Tiny-1B-Q8_0.gguf"), tiny_gguf("Tiny", "1B", 7)).unwrap();
    std::fs::write(folder.join("broken.gguf"), b"not a model").unwrap();
    let root = home.join("lmstudio");

    click(c, "[data-testid='import-dismiss']").await;
    through_dialog(c, "[data-testid='import-bundle']", "Import a folder", Some(&root)).await;
    wait_for(c, "[data-testid='folder-import-list']").await;
    let name_of = |i: usize| async move { wait_for(c, &format!("[data-testid='found-name-{i}']")).await.prop("value").await.unwrap().unwrap_or_default() };
    assert_eq!((name_of(0).await, name_of(1).await), ("tiny:1b-q4_K_M".to_string(), "tiny:1b-q8_0".to_string()), "names from the models' metadata");
    let skipped = wait_for(c, "[data-testid='folder-import-skipped']").await;
    skipped.click().await.unwrap();
    let skipped = skipped.text().await.unwrap();
    assert!(skipped.contains("broken.gguf") && skipped.contains("not a GGUF file"), "the file left out and why: {skipped}");
    screenshot(c, "folder-import").await;

    click(c, "[data-testid='found-check-1']").await;
    let name = wait_for(c, "[data-testid='found-name-0']").await;
    name.clear().await.unwrap();
    name.send_keys("bad name!").await.unwrap();
    wait_until(c, "Import is disabled for an invalid name", "return document.querySelector(\"[data-testid='folder-import-go']\").disabled;").await;
    name.clear().await.unwrap();
    name.send_keys("tiny:mine").await.unwrap();
    click(c, "[data-testid='folder-import-go']").await;
    wait_until(c, "the summary names the model", "const r = document.querySelector(\"[data-testid='import-result']\"); return !!r && r.textContent.includes('tiny:mine');").await;
    wait_for(c, "[data-testid='model-row'][data-name='tiny:mine']").await;
    assert!(c.find_all(Locator::Css("[data-testid='model-row'][data-name='tiny:1b-q8_0']")).await.unwrap().is_empty(), "the unchecked model was not imported");
    println!("Import folder…: 2 models found, 1 file left out; one imported as tiny:mine");

    click(c, "[data-testid='import-dismiss']").await;
    click(c, "[data-testid='model-row'][data-name='tiny:mine'] [data-testid='model-delete']").await;
    click(c, "[data-testid='confirm-yes']").await;
    wait_until(c, "the model leaves the list", "return !document.querySelector(\"[data-testid='model-row'][data-name='tiny:mine']\");").await;
    assert!(!store.join("manifests/registry.ollama.ai/library/tiny/mine").exists(), "deleted from the store");
}
