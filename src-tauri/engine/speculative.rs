//! Which draft model a request runs with, for speculative decoding: the request's `draft` option
//! (a model name; `""` turns drafting off), else the model's own (a Modelfile `DRAFT`, stored as
//! a layer holding the draft's weights). A draft must share the model's vocabulary, checked on
//! the GGUF files before any runner starts (and again by the runner on the loaded vocabularies).
//! The drafting itself is the runner's (`runner/draft.rs`).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::gguf::GgufInfo;
use crate::store::manifest::{self, Manifest};
use crate::store::Store;

/// A draft model's weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftModel {
    pub path: PathBuf,
    pub bytes: u64,
}

/// The model's own draft: its `DRAFT` layer.
pub fn from_manifest(store: &Store, m: &Manifest) -> Option<DraftModel> {
    m.layer(manifest::MEDIA_DRAFT).map(|l| DraftModel { path: store.blob_path(&l.digest), bytes: l.size })
}

/// The draft for a request: `requested` (a model name, or `""` for none) when given, else the
/// model's own. A named draft is checked against the model's vocabulary.
pub fn choose(store: &Store, model_path: &Path, own: Option<&DraftModel>, requested: Option<&str>) -> Result<Option<DraftModel>, String> {
    let name = match requested.map(str::trim) {
        None => return Ok(own.cloned()),
        Some("") => return Ok(None),
        Some(name) => name,
    };
    let entry = store.resolve(name).map_err(|e| format!("draft model {name}: {e}"))?;
    let layer = entry.manifest.layer(manifest::MEDIA_MODEL).ok_or_else(|| format!("draft model {name} has no GGUF weights"))?;
    let draft = store.blob_path(&layer.digest);
    let info = |path: &Path| crate::gguf::read_file(path).map_err(|e| format!("{}: {e}", path.display()));
    same_vocabulary(model_path, &info(model_path)?, &draft, &info(&draft)?).map_err(|why| format!("{name} cannot draft for this model: {why}"))?;
    Ok(Some(DraftModel { path: draft, bytes: layer.size }))
}

/// Whether `draft` tokenises text exactly as `model`: the same tokenizer, the same token list
/// byte for byte, the same BOS and EOS; else why not, in words.
pub fn same_vocabulary(model_path: &Path, model: &GgufInfo, draft_path: &Path, draft: &GgufInfo) -> Result<(), String> {
    let word = |i: &GgufInfo, k: &str| i.get_str(k).map(str::to_string);
    let count = |i: &GgufInfo| match i.get("tokenizer.ggml.tokens") {
        Some(crate::gguf::MetaValue::Array(a)) => Some(a.len),
        _ => None,
    };
    let (Some(m), Some(d)) = (count(model), count(draft)) else {
        return Err("one of the two GGUF files has no token list (tokenizer.ggml.tokens)".into());
    };
    if word(model, "tokenizer.ggml.model") != word(draft, "tokenizer.ggml.model") {
        return Err(format!("the tokenizers differ ({} and {})", word(model, "tokenizer.ggml.model").unwrap_or_default(), word(draft, "tokenizer.ggml.model").unwrap_or_default()));
    }
    if m != d {
        return Err(format!("the vocabularies differ: {m} tokens and {d} tokens"));
    }
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"] {
        if model.get_u64(key) != draft.get_u64(key) {
            return Err(format!("{key} differs"));
        }
    }
    if tokens_digest(model_path, model)? != tokens_digest(draft_path, draft)? {
        return Err("the vocabularies have the same size but different tokens".into());
    }
    Ok(())
}

/// SHA-256 of the token list's bytes as the file stores them.
fn tokens_digest(path: &Path, info: &GgufInfo) -> Result<[u8; 32], String> {
    let span = info.kv_spans.iter().find(|s| s.key == "tokenizer.ggml.tokens").ok_or("no token list in the GGUF file")?;
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.seek(SeekFrom::Start(span.start)).map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file.take(span.end - span.start), &mut hasher).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(hasher.finalize().into())
}
