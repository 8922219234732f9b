//! Checking a kit on the far side: the signature of `SHA256SUMS` (when there is one), every line
//! of it, every listed file's type and SHA-256, and that nothing unlisted was added. Reads only;
//! nothing is unpacked, imported or run.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::sums::{self, SUMS_FILE, SUMS_SIG_FILE};
use super::{io_at, KitError, KitFile};
use crate::bundle::sign::{self, Signer, Verdict};
use crate::progress::{Progress, ProgressSink};

/// The largest `.minisig` read: real ones are a few hundred bytes.
const MAX_SIG_BYTES: u64 = 64 << 10;

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Check the signature against this minisign `.pub` alone, not the trusted keys (an unsigned
    /// kit is then refused).
    pub key: Option<PathBuf>,
    /// Refuse an unsigned kit, even when no key is trusted here.
    pub require_signature: bool,
    /// Accept an unsigned kit although keys are trusted here (which otherwise makes a signature
    /// required: a kit whose signature was deleted looks exactly like an unsigned one).
    pub allow_unsigned: bool,
    /// The trusted-keys folder (default: the configured one, see `bundle::sign::config_dir`).
    pub trust_dir: Option<PathBuf>,
    pub cancel: Option<Arc<AtomicBool>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KitVerification {
    pub dir: PathBuf,
    /// Every file `SHA256SUMS` lists, checked, in its order.
    pub files: Vec<KitFile>,
    /// Who signed `SHA256SUMS`; `None` for an unsigned kit.
    pub signer: Option<Signer>,
    /// The keys trusted here when an unsigned kit was accepted anyway (`allow_unsigned`); else 0.
    pub unsigned_although_trusted: usize,
    pub total_bytes: u64,
}

/// Verifies the kit in `dir`; an `Err` names the file and what to do.
pub fn verify_kit(dir: &Path, opts: &VerifyOptions, progress: &dyn ProgressSink) -> Result<KitVerification, KitError> {
    if !dir.is_dir() {
        return Err(KitError::Invalid(format!("{} is not a folder; give the kit folder (the one holding SHA256SUMS)", dir.display())));
    }
    let sums_path = dir.join(SUMS_FILE);
    let sig_path = dir.join(SUMS_SIG_FILE);
    let text = read_small(&sums_path, sums::MAX_SUMS_BYTES)?
        .ok_or_else(|| KitError::Invalid(format!("{} is missing: this is not an Airlock kit, or it was not copied completely; copy the kit folder again", sums_path.display())))?;
    let signature = read_small(&sig_path, MAX_SIG_BYTES)?;

    // The signature before a byte of SHA256SUMS is parsed.
    let (signer, unsigned_although_trusted) = check_signature(&text, signature.as_deref(), &sig_path, dir, opts)?;
    let lines = sums::parse(&text).map_err(|e| KitError::Sums { path: sums_path.clone(), line: e.line, problem: e.problem })?;

    // Structure: each listed path a regular file, and no file that is not listed.
    let mut found = BTreeSet::new();
    let mut problems = Vec::new();
    walk(dir, "", &mut found, &mut problems)?;
    let listed: BTreeSet<&str> = lines.iter().map(|l| l.path.as_str()).collect();
    for l in &lines {
        if !found.contains(&l.path) {
            let problem = match fs::symlink_metadata(dir.join(&l.path)) {
                Err(_) => "listed in SHA256SUMS but missing",
                Ok(m) if m.file_type().is_symlink() => continue, // the walk named it
                Ok(m) if m.is_dir() => "a folder where SHA256SUMS lists a file",
                Ok(_) => "not a regular file inside the kit (a link on its path?)",
            };
            problems.push(format!("{}: {problem}", l.path));
        }
    }
    for f in &found {
        if f != SUMS_FILE && f != SUMS_SIG_FILE && !listed.contains(f.as_str()) {
            problems.push(format!("{f}: not listed in SHA256SUMS (added after the kit was made?); remove it or copy the kit again"));
        }
    }
    if !problems.is_empty() {
        return Err(KitError::Mismatch { dir: dir.to_path_buf(), problems });
    }

    // Content: hash every listed file, reporting every mismatch, not only the first.
    let mut sizes = Vec::new();
    for l in &lines {
        let p = dir.join(&l.path);
        sizes.push(fs::symlink_metadata(&p).map_err(io_at(&p))?.len());
    }
    let total: u64 = sizes.iter().sum();
    let cancelled = || opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
    let mut done = 0u64;
    let mut files = Vec::new();
    for l in &lines {
        let path = dir.join(&l.path);
        let hashed = sums::hash_file(&path, |n| {
            if cancelled() {
                return Err(io::Error::other("cancelled"));
            }
            done += n;
            progress.report(&Progress { phase: "verifying", item: l.path.clone(), done_bytes: done, total_bytes: total });
            Ok(())
        });
        match hashed {
            Err(_) if cancelled() => return Err(KitError::Cancelled),
            Err(e) => problems.push(format!("{}: cannot be read: {e}", l.path)),
            Ok((sha256, _)) if sha256 != l.sha256 => problems.push(format!("{}: content differs from SHA256SUMS (SHA-256 {sha256}): the file is damaged or was changed", l.path)),
            Ok((sha256, size)) => files.push(KitFile { path: l.path.clone(), size, sha256 }),
        }
    }
    if !problems.is_empty() {
        return Err(KitError::Mismatch { dir: dir.to_path_buf(), problems });
    }
    Ok(KitVerification { dir: dir.to_path_buf(), total_bytes: files.iter().map(|f| f.size).sum(), files, signer, unsigned_although_trusted })
}

/// Who signed, or for an unsigned kit that is accepted, how many keys are trusted here.
fn check_signature(text: &[u8], signature: Option<&[u8]>, sig_path: &Path, dir: &Path, opts: &VerifyOptions) -> Result<(Option<Signer>, usize), KitError> {
    if signature.is_none() {
        // A key to check against means a signature is expected.
        if opts.require_signature || opts.key.is_some() {
            return Err(KitError::Signature(format!("{}: the kit is not signed (no {SUMS_SIG_FILE}) and a signature is required; ask for a kit made with `airlock kit --sign KEY`", dir.display())));
        }
        let trusted = trust_dir(opts).map_or(0, |d| sign::trusted_key_count(&d));
        if trusted > 0 && !opts.allow_unsigned {
            return Err(KitError::Signature(format!(
                "{}: the kit is not signed (no {SUMS_SIG_FILE}), and {trusted} key(s) are trusted here, so a signature is required: a signed kit whose {SUMS_SIG_FILE} was deleted looks exactly like this. Ask its maker for the signed kit; if it was made unsigned on purpose, --allow-unsigned checks it without a signature (which catches damage, not a deliberate change)",
                dir.display()
            )));
        }
        return Ok((None, trusted));
    }
    let bad_file = |e: sign::SignError| KitError::Signature(format!("{}: {e}; copy the kit again from the original", sig_path.display()));
    let verdict = match &opts.key {
        Some(key) => sign::check_with_key(text, signature, key).map_err(bad_file)?,
        None => sign::check(text, signature, &trust_dir(opts)?).map_err(bad_file)?,
    };
    match verdict {
        Verdict::Signed(s) => Ok((Some(s), 0)),
        Verdict::Unsigned => Ok((None, 0)),
        Verdict::UnknownKey(id) => Err(KitError::Signature(match &opts.key {
            Some(key) => {
                format!("{}: the kit is signed by key {id}, not by the key in {}; pass --key with key {id}'s .pub file, or get the kit again from its maker", sig_path.display(), key.display())
            }
            None => format!(
                "{}: the kit is signed by key {id}, which is not trusted here; run `airlock trust add KEY.pub` with key {id}'s .pub file (carried separately), or pass --key KEY.pub",
                sig_path.display()
            ),
        })),
        Verdict::Bad(_) => {
            let id = signature_key_id(signature).unwrap_or_else(|| "?".into());
            Err(KitError::Signature(format!(
                "{}: the signature by key {id} does not match {SUMS_FILE}: the kit was changed after it was signed; do not use it, copy it again from the original",
                sig_path.display()
            )))
        }
    }
}

fn trust_dir(opts: &VerifyOptions) -> Result<PathBuf, KitError> {
    match &opts.trust_dir {
        Some(d) => Ok(d.clone()),
        None => Ok(sign::trust_dir(&sign::config_dir().map_err(|e| KitError::Signature(e.to_string()))?)),
    }
}

fn signature_key_id(signature: Option<&[u8]>) -> Option<String> {
    let text = std::str::from_utf8(signature?).ok()?;
    let sig = minisign::SignatureBox::from_string(text).ok()?;
    Some(sign::key_id(sig.keynum()))
}

/// Reads a small regular file; `None` when it does not exist. Refuses links and oversize files.
fn read_small(path: &Path, max: u64) -> Result<Option<Vec<u8>>, KitError> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(KitError::Io { path: path.to_path_buf(), source: e }),
        Ok(m) => m,
    };
    if !meta.is_file() {
        return Err(KitError::Invalid(format!("{} is not a regular file (a link or a folder); copy the kit again from the original", path.display())));
    }
    if meta.len() > max {
        return Err(KitError::Invalid(format!("{} is {} bytes, more than a kit ever writes ({max}); copy the kit again from the original", path.display(), meta.len())));
    }
    let mut bytes = Vec::new();
    fs::File::open(path).and_then(|f| f.take(max + 1).read_to_end(&mut bytes)).map_err(io_at(path))?;
    if bytes.len() as u64 > max {
        return Err(KitError::Invalid(format!("{} grew while it was read", path.display())));
    }
    Ok(Some(bytes))
}

/// Collects the regular files under `dir` (relative, `/`-separated) without following links;
/// anything else that is not a folder is a problem.
fn walk(dir: &Path, prefix: &str, found: &mut BTreeSet<String>, problems: &mut Vec<String>) -> Result<(), KitError> {
    for e in fs::read_dir(dir).map_err(io_at(dir))? {
        let e = e.map_err(io_at(dir))?;
        let name = e.file_name();
        let rel = format!("{prefix}{}", name.to_string_lossy());
        let Some(_) = name.to_str() else {
            problems.push(format!("{rel}: a file name that is not UTF-8 text, which a kit never holds; remove it or copy the kit again"));
            continue;
        };
        let ty = e.file_type().map_err(io_at(&e.path()))?;
        if ty.is_dir() {
            if found.len() + problems.len() > sums::MAX_ENTRIES {
                return Err(KitError::Invalid(format!("{} holds more than {} files; it is not an Airlock kit", dir.display(), sums::MAX_ENTRIES)));
            }
            walk(&e.path(), &format!("{rel}/"), found, problems)?;
        } else if ty.is_file() {
            found.insert(rel);
        } else if ty.is_symlink() {
            problems.push(format!("{rel}: a symbolic link, which a kit never holds; remove it or copy the kit again"));
        } else {
            problems.push(format!("{rel}: not a regular file (a device, socket or pipe); remove it or copy the kit again"));
        }
    }
    Ok(())
}
