//! `airlock import PATH [--dry-run] [--json]`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::format::{human_bytes, table};
use super::progress::CliProgress;
use crate::bundle::{self, ImportOptions};
use crate::core::Core;

pub fn import(core: &Core, path: &Path, opts: &ImportOptions, json: bool) -> Result<ExitCode> {
    let progress = CliProgress::new();
    let result = bundle::import(&core.store, path, opts, &progress);
    progress.finish();
    let report = result.with_context(|| format!("cannot import {}", path.display()))?;
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in &report.models {
        println!("imported {} (id {}, {})", m.name, m.id, human_bytes(m.size));
    }
    if let Some(s) = &report.signer {
        println!("signed by trusted key {} ({})", s.key_id, s.trusted_comment);
    }
    let linked = if report.blobs_linked > 0 { format!(", {} cloned copy-on-write ({})", report.blobs_linked, human_bytes(report.bytes_linked)) } else { String::new() };
    eprintln!("{} blob(s) copied and verified ({}){linked}, {} already present", report.blobs_copied, human_bytes(report.bytes_copied), report.blobs_already_present);
    Ok(ExitCode::SUCCESS)
}

pub fn dry_run(core: &Core, path: &Path, opts: &ImportOptions, json: bool) -> Result<ExitCode> {
    let scan = bundle::dry_run(&core.store, path, opts.projector.as_deref()).with_context(|| format!("cannot read {}", path.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&scan)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![vec!["NAME".to_string(), "SIZE".into(), "QUANT".into(), "LAYOUT".into(), "FILES".into(), "PROJECTOR".into()]];
    for m in &scan.models {
        let files = if m.files.len() > 1 { format!("{} ({} parts)", m.files[0], m.files.len()) } else { m.files[0].clone() };
        let layout = serde_json::to_value(m.layout)?.as_str().unwrap_or_default().to_string();
        rows.push(vec![m.name.clone(), human_bytes(m.size), m.quantization.clone(), layout, files, m.projector.clone().unwrap_or_else(|| "-".into())]);
    }
    print!("{}", table(&rows));
    for m in scan.models.iter().filter_map(|m| m.note.as_ref()) {
        eprintln!("note: {m}");
    }
    for s in &scan.skipped {
        eprintln!("left out {}: {}", s.path, s.reason);
    }
    if scan.skipped_more > 0 {
        eprintln!("… and {} more files left out", scan.skipped_more);
    }
    if scan.truncated {
        eprintln!("stopped after {} entries; choose a smaller folder to see the rest", scan.entries);
    }
    let total: u64 = scan.models.iter().map(|m| m.size).sum();
    eprintln!("{} model(s), {} in all; nothing was written (--dry-run)", scan.models.len(), human_bytes(total));
    Ok(ExitCode::SUCCESS)
}
