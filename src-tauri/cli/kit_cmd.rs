//! `airlock kit MODEL… --out DIR` (connected side: the portable app, the models, INSTALL.txt and
//! SHA256SUMS in one folder), `airlock kit verify DIR` (far side: check it before anything in it
//! runs) and `airlock kit portable --out DIR` (the app tarball alone, for packaging).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::bundle_cmds::{load_signing_key, source_date_epoch};
use super::format::human_bytes;
use super::progress::CliProgress;
use crate::bundle::volumes::{parse_volume_size, FAT32_MAX};
use crate::core::Core;
use crate::kit::{self, KitOptions, VerifyOptions};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct KitArgs {
    #[command(subcommand)]
    command: Option<KitCommand>,
    /// The models to carry
    #[arg(required = true)]
    models: Vec<String>,
    /// The kit folder to create (an existing one must be empty), e.g. /media/usb/airlock-kit
    #[arg(long, value_name = "DIR", required = true)]
    out: Option<PathBuf>,
    /// Sign SHA256SUMS and the model bundle with this minisign secret key (password from
    /// AIRLOCK_KEY_PASSWORD or a prompt)
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
    /// Cut the model bundle into volumes of at most SIZE (e.g. 100M, 4G)
    #[arg(long, value_name = "SIZE", value_parser = parse_volume_size)]
    split_size: Option<u64>,
    /// Volumes for FAT32 media (4 GiB − 1 each)
    #[arg(long, conflicts_with = "split_size")]
    fat32: bool,
    /// Also carry this .deb of Airlock (in app/, beside the portable tarball)
    #[arg(long, value_name = "PATH.deb")]
    deb: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum KitCommand {
    /// Write only the portable app tarball (airlock-<version>-linux-<arch>.tar.gz) into DIR, from
    /// this installation's own files
    Portable {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check a kit before using it: SHA256SUMS line by line, every file's SHA-256, nothing
    /// unlisted, and the signature. Unpacks and runs nothing.
    Verify {
        /// The kit folder (the one holding SHA256SUMS)
        dir: PathBuf,
        /// Check the signature against this public key instead of the trusted keys (implies
        /// --require-signature)
        #[arg(long, value_name = "FILE.pub")]
        key: Option<PathBuf>,
        /// Refuse a kit without a signature, even when no key is trusted here (a signature is
        /// always required once a key is trusted)
        #[arg(long)]
        require_signature: bool,
        /// Check a kit that has no signature although keys are trusted here (it then catches
        /// damage, not a deliberate change)
        #[arg(long, conflicts_with_all = ["key", "require_signature"])]
        allow_unsigned: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(core: &Core, args: KitArgs) -> Result<ExitCode> {
    match args.command {
        Some(KitCommand::Verify { dir, key, require_signature, allow_unsigned, json }) => {
            return verify(dir, VerifyOptions { key, require_signature, allow_unsigned, ..Default::default() }, json)
        }
        Some(KitCommand::Portable { out }) => {
            let mtime = source_date_epoch().map_or(kit::portable::DEFAULT_MTIME, |t| t.unix_timestamp().max(0) as u64);
            let progress = CliProgress::new();
            let result = kit::PortableSource::locate().and_then(|src| kit::portable::write_portable_with(&src, &out, mtime, None, &progress));
            progress.finish();
            let path = result.with_context(|| format!("cannot write the portable app into {}", out.display()))?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            println!("wrote {} ({})", path.display(), human_bytes(size));
            return Ok(ExitCode::SUCCESS);
        }
        None => {}
    }
    let out = args.out.context("--out DIR is required")?;
    let opts =
        KitOptions { split_size: if args.fat32 { Some(FAT32_MAX) } else { args.split_size }, sign: load_signing_key(args.sign.as_deref())?, deb: args.deb, cancel: None, created: source_date_epoch() };
    let progress = CliProgress::new();
    let result = kit::write_kit(&core.store, &args.models, &out, &opts, &progress);
    progress.finish();
    let report = result.with_context(|| format!("cannot write the kit {}", out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in &report.models {
        println!("packed {} (id {}, {})", m.name, m.id, human_bytes(m.size));
    }
    for f in &report.files {
        println!("wrote {} ({})", out.join(&f.path).display(), human_bytes(f.size));
    }
    println!("wrote {}{}", out.join(kit::sums::SUMS_FILE).display(), if report.signed_by.is_some() { " and its .minisig" } else { "" });
    let signed = report.signed_by.as_ref().map_or_else(|| "unsigned".to_string(), |id| format!("signed with key {id}"));
    eprintln!("kit ready: {} file(s), {}, {signed}; INSTALL.txt says what to do on the other side", report.files.len(), human_bytes(report.total_bytes));
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: PathBuf, opts: VerifyOptions, json: bool) -> Result<ExitCode> {
    let progress = CliProgress::new();
    let result = kit::verify_kit(&dir, &opts, &progress);
    progress.finish();
    let v = result.with_context(|| format!("the kit {} is refused", dir.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    for f in &v.files {
        println!("ok  {} ({})", f.path, human_bytes(f.size));
    }
    match &v.signer {
        Some(s) => {
            println!("ok  {} (key {}: {})", kit::sums::SUMS_SIG_FILE, s.key_id, s.trusted_comment);
            println!("kit verified: {} files, signed by {}", v.files.len(), s.key_id);
        }
        None => {
            if v.unsigned_although_trusted > 0 {
                eprintln!("warning: the kit is unsigned, and --allow-unsigned accepted it although {} key(s) are trusted here: SHA256SUMS catches damage, not a deliberate change", v.unsigned_although_trusted);
            }
            println!("kit verified: {} files, unsigned", v.files.len())
        }
    }
    Ok(ExitCode::SUCCESS)
}
