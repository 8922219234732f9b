//! Commands for the connected side: `export`, `keygen`, `sign`, `trust`, `inventory`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Subcommand;

use super::format::human_bytes;
use super::progress::CliProgress;
use crate::bundle::export::{export, ExportOptions};
use crate::bundle::inventory::Inventory;
use crate::bundle::sign::{self, SigningKey};
use crate::bundle::volumes::{parse_volume_size, FAT32_MAX};
use crate::core::Core;

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Export models to a bundle: a folder, a .zip, or a .zip split into volumes (PATH.001, …)
    Export {
        #[arg(required = true)]
        models: Vec<String>,
        /// Output path: ending in .zip writes a zip, otherwise a bundle folder. Never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Cut the zip into volumes of at most SIZE (e.g. 100M, 4G, or bytes); `cat` rejoins them
        #[arg(long, value_name = "SIZE", value_parser = parse_volume_size)]
        split_size: Option<u64>,
        /// Volumes for FAT32 media (4 GiB − 1 each)
        #[arg(long, conflicts_with = "split_size")]
        fat32: bool,
        /// Sign the bundle with this minisign secret key (password from AIRLOCK_KEY_PASSWORD or a prompt)
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
        /// Write a delta bundle: leave out the blobs listed in this inventory (`airlock inventory`)
        #[arg(long, value_name = "FILE.json")]
        exclude_from: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Create a minisign key pair PREFIX.key / PREFIX.pub for signing bundles
    Keygen {
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
        /// Leave the secret key without a password (otherwise AIRLOCK_KEY_PASSWORD or a prompt)
        #[arg(long)]
        unencrypted: bool,
    },
    /// Sign FILE with a minisign secret key: writes FILE.minisig (e.g. a SHA256SUMS list)
    Sign {
        file: PathBuf,
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
    },
    /// Manage the public keys whose signatures `import --require-signature` accepts
    Trust {
        #[command(subcommand)]
        action: TrustAction,
    },
    /// Write the list of models and blobs this store holds, for `export --exclude-from`
    Inventory {
        #[arg(long, value_name = "FILE.json")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum TrustAction {
    /// Trust the key in a minisign .pub file
    Add { file: PathBuf },
    /// List trusted keys
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a key (by the ID `trust list` shows)
    Remove { key_id: String },
}

pub fn run(core: &Core, cmd: BundleCommand) -> Result<ExitCode> {
    match cmd {
        BundleCommand::Export { models, out, split_size, fat32, sign, exclude_from, json } => {
            let split_size = if fat32 { Some(FAT32_MAX) } else { split_size };
            let opts = ExportOptions { split_size, sign: load_signing_key(sign.as_deref())?, exclude_from, cancel: None, created: source_date_epoch() };
            let progress = CliProgress::new();
            let result = export(&core.store, &models, &out, &opts, &progress);
            progress.finish();
            let report = result.with_context(|| format!("cannot export to {}", out.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(ExitCode::SUCCESS);
            }
            for m in &report.models {
                println!("exported {} (id {}, {})", m.name, m.id, human_bytes(m.size));
            }
            for p in &report.outputs {
                println!("wrote {}", p.display());
            }
            let excluded = if report.blobs_excluded > 0 { format!(", {} left out (the other side has them)", report.blobs_excluded) } else { String::new() };
            eprintln!("{} blob(s) copied and verified ({}){excluded}", report.blobs_written, human_bytes(report.bytes_written));
            if let Some(id) = &report.signed_by {
                eprintln!("signed with key {id}");
            }
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Keygen { out, unencrypted } => {
            let password = if unencrypted {
                None
            } else {
                match key_password() {
                    Some(p) => Some(p),
                    None => Some(prompt_new_password()?),
                }
            };
            let id = sign::keygen(&out, password)?;
            println!("wrote {}.key (secret: keep it safe) and {}.pub (give it to the air-gapped side)", out.display(), out.display());
            println!("key id {id}");
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Trust { action } => {
            let dir = sign::trust_dir(&sign::config_dir()?);
            match action {
                TrustAction::Add { file } => {
                    let id = sign::trust_add(&dir, &file)?;
                    println!("trusted key {id}");
                }
                TrustAction::List { json } => {
                    let keys = sign::trust_list(&dir)?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&keys)?);
                    } else if keys.is_empty() {
                        eprintln!("no trusted keys; `airlock trust add FILE.pub` adds one");
                    } else {
                        for k in keys {
                            println!("{}    {}", k.key_id, k.comment);
                        }
                    }
                }
                TrustAction::Remove { key_id } => {
                    sign::trust_remove(&dir, &key_id)?;
                    println!("removed key {}", key_id.to_ascii_uppercase());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Sign { file, key } => {
            let key = load_signing_key(Some(&key))?.expect("a key path was given");
            let data = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let sig = key.sign(&data, &format!("timestamp:{now}\tfile:{name}"))?;
            let mut out = file.clone().into_os_string();
            out.push(".minisig");
            std::fs::write(&out, sig).with_context(|| format!("cannot write {}", PathBuf::from(&out).display()))?;
            println!("wrote {} (key {})", PathBuf::from(&out).display(), key.key_id);
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Inventory { out } => {
            let inv = Inventory::of_store(&core.store)?;
            inv.write(&out).with_context(|| format!("cannot write {}", out.display()))?;
            println!("wrote {} ({} models, {} blobs)", out.display(), inv.models.len(), inv.blobs.len());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `--sign` key; an encrypted one opens with AIRLOCK_KEY_PASSWORD, or a password prompted
/// when stdin is a terminal (never a prompt nobody can answer: a script gets a clear error).
pub(super) fn load_signing_key(path: Option<&Path>) -> Result<Option<SigningKey>> {
    use std::io::IsTerminal;
    let Some(p) = path else { return Ok(None) };
    let context = || format!("cannot use the signing key {}", p.display());
    let mut password = key_password();
    if password.is_none() && SigningKey::is_encrypted(p).with_context(context)? {
        if !std::io::stdin().is_terminal() {
            bail!("the signing key {} is encrypted: set AIRLOCK_KEY_PASSWORD to its password, or run on a terminal to be asked for it", p.display());
        }
        password = Some(rpassword::prompt_password(format!("Password for {}: ", p.display()))?);
    }
    Ok(Some(SigningKey::load(p, password).with_context(context)?))
}

/// The creation time for reproducible output: a fixed `SOURCE_DATE_EPOCH` gives identical bytes.
pub(super) fn source_date_epoch() -> Option<time::OffsetDateTime> {
    std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<i64>().ok()).and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
}

fn key_password() -> Option<String> {
    std::env::var("AIRLOCK_KEY_PASSWORD").ok().filter(|p| !p.is_empty())
}

fn prompt_new_password() -> Result<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("a password is needed for the secret key: set AIRLOCK_KEY_PASSWORD, or pass --unencrypted for a key without one");
    }
    let a = rpassword::prompt_password("Password for the new secret key: ")?;
    let b = rpassword::prompt_password("Password again: ")?;
    if a != b {
        bail!("the passwords differ; nothing was written");
    }
    if a.is_empty() {
        bail!("an empty password protects nothing; pass --unencrypted if you want a key without one");
    }
    Ok(a)
}
