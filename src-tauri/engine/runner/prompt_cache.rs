//! The prompt cache that survives restarts: the KV state of a prompt's fixed prefix (system
//! prompt, the Modelfile's messages, tool definitions; the caller says where it ends) is written
//! to `--prompt-cache DIR` when the runner is next idle or stops, and the next runner of the same
//! model and cache settings loads it instead of decoding the prefix again. A file is named by a
//! hash of the model file, its adapter, the settings that shape the cache and the exact tokens;
//! a checksum beside it is checked before llama.cpp reads it, and the tokens llama.cpp reads back
//! must equal the prefix, so a stale, cut or altered file is deleted, never used. The folder is
//! kept under a size bound, the least recently used files going first. Conversations are never
//! written: only the prefix.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::token::LlamaToken;
use sha2::{Digest as _, Sha256};

use super::RunnerArgs;

/// Prefixes shorter than this are decoded faster than a file is read and checked.
pub const MIN_PREFIX_TOKENS: usize = 64;

pub struct PromptCache {
    dir: PathBuf,
    /// The model file and the settings that shape its cache.
    identity: String,
    max_bytes: u64,
}

impl PromptCache {
    /// The cache `--prompt-cache` names, when the folder can be made (owner-only).
    pub fn open(args: &RunnerArgs) -> Option<Self> {
        let dir = args.prompt_cache.clone()?;
        if let Err(e) = create_private_dir(&dir) {
            eprintln!("airlock runner: prompt cache {} is off: {e}", dir.display());
            return None;
        }
        let file = |path: &Path| format!("{}\n{}", path.display(), fs::metadata(path).map(|m| m.len()).unwrap_or(0));
        // The sequence count shapes the cache too (one stream per sequence). Version 2: the
        // sliding-window layers keep only their window.
        let identity = format!(
            "airlock prompt cache 2\n{}\n{}\n{}\n{}\n{}",
            file(&args.model),
            args.lora.as_deref().map(file).unwrap_or_default(),
            args.kv_cache_type.as_str(),
            args.flash_attention.as_str(),
            args.parallel
        );
        Some(PromptCache { dir, identity, max_bytes: args.prompt_cache_bytes })
    }

    fn paths(&self, tokens: &[LlamaToken]) -> (PathBuf, PathBuf) {
        let mut h = Sha256::new();
        h.update(self.identity.as_bytes());
        for t in tokens {
            h.update(t.0.to_le_bytes());
        }
        let key = hex(&h.finalize());
        (self.dir.join(format!("{key}.kv")), self.dir.join(format!("{key}.sha256")))
    }

    /// Whether a file for exactly `tokens` is there (not yet checked).
    pub fn has(&self, tokens: &[LlamaToken]) -> bool {
        self.paths(tokens).0.is_file()
    }

    /// Loads the saved state of `tokens` into sequence `seq` (which must be empty). False, with
    /// the file deleted, when the file does not match its checksum or holds other tokens.
    pub fn restore(&self, ctx: &mut LlamaContext<'_>, seq: i32, tokens: &[LlamaToken]) -> bool {
        let (data, sum) = self.paths(tokens);
        let Ok(expected) = fs::read_to_string(&sum) else { return false };
        let intact = fs::read(&data).is_ok_and(|bytes| hex(&Sha256::digest(&bytes)) == expected.trim());
        let restored = intact && matches!(ctx.state_seq_load_file(&data, seq, tokens.len()), Ok((read, _)) if read == tokens);
        if restored {
            // Recently used: the last to be evicted.
            let _ = fs::File::options().append(true).open(&data).and_then(|f| f.set_modified(std::time::SystemTime::now()));
        } else {
            let _ = ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            let _ = fs::remove_file(&data);
            let _ = fs::remove_file(&sum);
        }
        restored
    }

    /// Writes sequence `seq`'s state, which holds exactly `tokens`: the data under a temporary
    /// name, then its checksum, then the data's final name, so a reader never sees half a file.
    pub fn save(&self, ctx: &LlamaContext<'_>, seq: i32, tokens: &[LlamaToken]) -> Result<(), String> {
        let (data, sum) = self.paths(tokens);
        let partial = data.with_extension(format!("partial-{}", std::process::id()));
        let result = (|| {
            ctx.state_seq_save_file(&partial, seq, tokens).map_err(|e| format!("llama.cpp could not save the prefix: {e}"))?;
            let bytes = fs::read(&partial).map_err(|e| e.to_string())?;
            write_private(&sum, hex(&Sha256::digest(&bytes)).as_bytes()).map_err(|e| e.to_string())?;
            fs::rename(&partial, &data).map_err(|e| e.to_string())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&partial);
        }
        self.evict();
        result
    }

    /// Deletes the least recently used files until the folder fits its bound, and what a runner
    /// killed while saving left behind.
    fn evict(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        let entries: Vec<fs::DirEntry> = entries.flatten().collect();
        let stale = std::time::SystemTime::now() - std::time::Duration::from_secs(600);
        for e in &entries {
            let partial = e.file_name().to_string_lossy().contains(".partial-");
            if partial && e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < stale) {
                let _ = fs::remove_file(e.path());
            }
        }
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .iter()
            .filter(|e| e.path().extension().is_some_and(|x| x == "kv"))
            .filter_map(|e| e.metadata().ok().map(|m| (m.modified().unwrap_or(std::time::UNIX_EPOCH), m.len(), e.path())))
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(path.with_extension("sha256"));
            total -= len;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = fs::File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}
