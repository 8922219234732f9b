//! Names for models found on disk, from what the model says about itself: `general.basename`,
//! `general.size_label`, `general.finetune` and the file type, as Ollama's library names them
//! (`qwen2.5-coder:0.5b-instruct-q4_K_M`). A file name is the last resort, never `model.gguf`.

use crate::gguf::{self, GgufInfo};
use crate::store::ModelName;

/// Words in a finetune label that name how the file was packed, not what the model is.
const PACKING_WORDS: &[&str] = &["gguf", "ggml", "awq", "gptq", "exl2", "mlx", "imatrix"];

/// File stems that say nothing about the model (Jan's `model.gguf`, llama.cpp's `ggml-model-…`).
const GENERIC_STEMS: &[&str] = &["model", "ggml-model", "consolidated", "pytorch_model", "weights"];

/// The name proposed for a model whose first (or only) file is described by `info`. `hint` is a
/// name from where the file sits (a Hugging Face repository, an LM Studio or Jan folder, the file
/// name), used only when the metadata names nothing.
pub fn proposed_name(info: &GgufInfo, hint: &str) -> String {
    let from_metadata = info.get_str("general.basename").or_else(|| info.get_str("general.name")).map(slug).filter(|s| !s.is_empty());
    let model = from_metadata.clone().or_else(|| Some(slug(hint)).filter(|s| !s.is_empty())).unwrap_or_else(|| "model".to_string());
    let mut tag: Vec<String> = Vec::new();
    if from_metadata.is_some() {
        tag.extend(info.get_str("general.size_label").map(slug).filter(|s| !s.is_empty()));
        if let Some(finetune) = info.get_str("general.finetune") {
            let words: Vec<String> = slug(finetune).split('-').filter(|w| !w.is_empty() && !PACKING_WORDS.contains(w)).map(str::to_string).collect();
            tag.extend((!words.is_empty()).then(|| words.join("-")));
        }
    }
    tag.extend(quantization_tag(info));
    let tag: String = tag.join("-").chars().take(80).collect();
    let tag = tag.trim_matches(['-', '.']);
    let name = if tag.is_empty() { model.clone() } else { format!("{model}:{tag}") };
    match ModelName::parse(&name) {
        Ok(_) => name,
        Err(_) => model,
    }
}

/// A name hint from a file's stem: the stem, unless it is generic, then `folder` (the folder
/// holding it), with a split part's `-00001-of-00003` suffix removed.
pub fn hint_from_file(stem: &str, folder: &str) -> String {
    let stem = gguf::split::part_name(&format!("{stem}.gguf")).map_or(stem.to_string(), |(prefix, _, _)| prefix.to_string());
    let lower = stem.to_ascii_lowercase();
    if GENERIC_STEMS.iter().any(|g| lower == *g || lower.starts_with(&format!("{g}-"))) && !folder.is_empty() {
        return folder.to_string();
    }
    stem
}

/// Ollama's tag spelling of a file type: `q4_K_M`, `q8_0`, `fp16`, `bf16`, `fp32`.
fn quantization_tag(info: &GgufInfo) -> Option<String> {
    let q = info.quantization();
    match q.as_str() {
        "unknown" => None,
        "F16" => Some("fp16".into()),
        "F32" => Some("fp32".into()),
        "BF16" => Some("bf16".into()),
        _ => {
            let mut chars = q.chars();
            chars.next().map(|first| first.to_ascii_lowercase().to_string() + chars.as_str())
        }
    }
}

/// Lower case, runs of anything but letters, digits, `.` and `_` made one `-`, at most 80
/// characters, no leading or trailing punctuation: a valid model name part.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.contains("..") {
        out = out.replace("..", ".");
    }
    let out: String = out.trim_matches(['-', '.', '_']).chars().take(80).collect();
    out.trim_end_matches(['-', '.']).to_string()
}

/// Makes `proposed` names unique among themselves and against `taken` (names already in the
/// store): a clash gets `-2`, `-3`, … on its tag. Returns each final name and, for a renamed one,
/// why.
pub fn settle_clashes(proposed: &[String], taken: &[ModelName]) -> Vec<(String, Option<String>)> {
    let parse = |n: &str| ModelName::parse(n).ok();
    let mut used: Vec<ModelName> = Vec::new();
    let mut out = Vec::with_capacity(proposed.len());
    for name in proposed {
        let Some(parsed) = parse(name) else {
            out.push((name.clone(), None));
            continue;
        };
        let clashes = |n: &ModelName, used: &[ModelName]| used.iter().chain(taken).any(|u| u.matches(n));
        if !clashes(&parsed, &used) {
            used.push(parsed);
            out.push((name.clone(), None));
            continue;
        }
        let why = if taken.iter().any(|t| t.matches(&parsed)) { "is already in the store" } else { "is proposed for another file too" };
        let (model, tag) = (parsed.display_shortest(), parsed.tag.clone());
        let base = model.strip_suffix(&format!(":{tag}")).unwrap_or(&model).to_string();
        let renamed = (2..).map(|i| format!("{base}:{}-{i}", tag.chars().take(76).collect::<String>())).find(|n| parse(n).is_some_and(|p| !clashes(&p, &used))).expect("a free suffix exists");
        used.push(parse(&renamed).expect("checked above"));
        out.push((renamed.clone(), Some(format!("{name} {why}; named {renamed}"))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::writer::GgufBuilder;
    use crate::gguf::GGML_TYPE_F32;

    fn info(kvs: &[(&str, &str)], file_type: Option<u32>) -> GgufInfo {
        let mut b = GgufBuilder::new().kv_str("general.architecture", "qwen2");
        for (k, v) in kvs {
            b = b.kv_str(k, v);
        }
        if let Some(ft) = file_type {
            b = b.kv_u32("general.file_type", ft);
        }
        let bytes = b.tensor("t", &[32], GGML_TYPE_F32).build();
        gguf::read(std::io::Cursor::new(&bytes), bytes.len() as u64).unwrap()
    }

    #[test]
    fn names_come_from_the_metadata_as_ollama_spells_them() {
        let qwen = info(&[("general.basename", "Qwen2.5-Coder"), ("general.size_label", "0.5B"), ("general.finetune", "Instruct-AWQ"), ("general.name", "Qwen2.5 Coder 0.5B Instruct AWQ")], Some(15));
        assert_eq!(proposed_name(&qwen, "model"), "qwen2.5-coder:0.5b-instruct-q4_K_M");
        let gemma = info(&[("general.basename", "gemma-3"), ("general.size_label", "270M")], Some(15));
        assert_eq!(proposed_name(&gemma, "x"), "gemma-3:270m-q4_K_M");
        let f16 = info(&[("general.basename", "Llama 3.1"), ("general.size_label", "8B"), ("general.finetune", "Instruct-GGUF")], Some(1));
        assert_eq!(proposed_name(&f16, "x"), "llama-3.1:8b-instruct-fp16");
        let named_only = info(&[("general.name", "Phi 3 Mini")], Some(7));
        assert_eq!(proposed_name(&named_only, "x"), "phi-3-mini:q8_0");
    }

    #[test]
    fn without_metadata_the_hint_names_it_never_model_gguf() {
        let bare = info(&[], None);
        assert_eq!(proposed_name(&bare, &hint_from_file("model", "qwen-tiny")), "qwen-tiny:fp32");
        assert_eq!(proposed_name(&bare, &hint_from_file("Mistral-7B-v0.3", "models")), "mistral-7b-v0.3:fp32");
        assert_eq!(hint_from_file("big-00001-of-00003", "d"), "big");
        assert_eq!(hint_from_file("ggml-model-q4_0", "llama-folder"), "llama-folder");
        assert_eq!(proposed_name(&bare, "!!!"), "model:fp32");
    }

    #[test]
    fn clashes_get_a_suffix_and_a_reason() {
        let taken = vec![ModelName::parse("gemma-3:270m-q4_K_M").unwrap()];
        let names = vec!["gemma-3:270m-q4_K_M".to_string(), "qwen:1b".into(), "QWEN:1b".into(), "qwen:1b-2".into()];
        let settled = settle_clashes(&names, &taken);
        assert_eq!(settled[0].0, "gemma-3:270m-q4_K_M-2");
        assert!(settled[0].1.as_deref().unwrap().contains("already in the store"), "{:?}", settled[0]);
        assert_eq!(settled[1], ("qwen:1b".to_string(), None));
        assert!(settled[2].0.eq_ignore_ascii_case("qwen:1b-2"), "{:?}", settled[2]);
        assert!(settled[2].1.as_deref().unwrap().contains("another file"), "{:?}", settled[2]);
        assert_eq!(settled[3].0, "qwen:1b-2-2");
    }
}
