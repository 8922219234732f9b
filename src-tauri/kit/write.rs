//! Writing a kit folder: `app/` (the portable tarball, optionally a `.deb`), `models/` (exactly
//! what `airlock export … --out models/models.zip` writes), `INSTALL.txt`, then `SHA256SUMS` and
//! its signature. `SHA256SUMS` is written last, so a folder without it is not a finished kit; a
//! failed or cancelled kit is removed.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

use super::portable::{self, PortableSource, DEFAULT_MTIME};
use super::sums::{self, SumLine, SUMS_FILE, SUMS_SIG_FILE};
use super::{io_at, KitError, KitFile};
use crate::bundle::export::{export, ExportedModel};
use crate::bundle::index::created_by;
use crate::bundle::sign::SigningKey;
use crate::bundle::{ExportError, ExportOptions};
use crate::progress::{Progress, ProgressSink};
use crate::store::Store;

/// The model bundle's name inside `models/` (`models.zip`, or `models.zip.001`, … when split).
pub const MODELS_ZIP: &str = crate::bundle::KIT_BUNDLE;
pub const INSTALL_FILE: &str = "INSTALL.txt";

#[derive(Clone, Default)]
pub struct KitOptions {
    /// Cut the model bundle into volumes of at most this many bytes (FAT32: 4 GiB − 1).
    pub split_size: Option<u64>,
    /// Sign `SHA256SUMS` and the model bundle's index with this key.
    pub sign: Option<SigningKey>,
    /// A `.deb` of Airlock to carry beside the portable tarball.
    pub deb: Option<PathBuf>,
    pub cancel: Option<Arc<AtomicBool>>,
    /// The creation time written into the bundle, the signature and the tarball's entries
    /// (default: now, and a fixed time for the tarball). Fixing it makes kits reproducible.
    pub created: Option<time::OffsetDateTime>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KitReport {
    /// The kit folder.
    pub out: PathBuf,
    /// Every file `SHA256SUMS` lists, sorted by path.
    pub files: Vec<KitFile>,
    pub models: Vec<ExportedModel>,
    /// The key ID that signed `SHA256SUMS` and the bundle.
    pub signed_by: Option<String>,
    /// The size of the listed files together.
    pub total_bytes: u64,
}

/// Writes a kit of `models` from `store` into the folder `out` (created; refused when it exists
/// and is not empty).
pub fn write_kit(store: &Store, models: &[String], out: &Path, opts: &KitOptions, progress: &dyn ProgressSink) -> Result<KitReport, KitError> {
    // Check everything that can be checked before the long work starts.
    if models.is_empty() {
        return Err(KitError::Invalid("name at least one model to put in the kit; `airlock list` shows them".into()));
    }
    for m in models {
        store.resolve(m)?;
    }
    let deb = opts.deb.as_deref().map(check_deb).transpose()?;
    let src = PortableSource::locate()?;
    let created_dir = prepare_out(out)?;
    let mut guard = Cleanup { dir: out.to_path_buf(), remove_dir: created_dir, armed: true };
    let cancel = opts.cancel.as_deref();
    let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));

    let app = out.join("app");
    fs::create_dir(&app).map_err(io_at(&app))?;
    let mtime = opts.created.map_or(DEFAULT_MTIME, |t| t.unix_timestamp().max(0) as u64);
    let tarball = portable::write_portable_with(&src, &app, mtime, cancel, progress)?;
    let mut listed = vec![format!("app/{}", portable::file_name())];
    if let Some((from, name)) = &deb {
        copy_new(from, &app.join(name), cancel, progress)?;
        listed.push(format!("app/{name}"));
    }
    if cancelled() {
        return Err(KitError::Cancelled);
    }

    let models_dir = out.join("models");
    fs::create_dir(&models_dir).map_err(io_at(&models_dir))?;
    let export_opts = ExportOptions { split_size: opts.split_size, sign: opts.sign.clone(), exclude_from: None, cancel: opts.cancel.clone(), created: opts.created };
    let exported = export(store, models, &models_dir.join(MODELS_ZIP), &export_opts, progress).map_err(|e| match e {
        ExportError::Cancelled => KitError::Cancelled,
        e => KitError::Export(e),
    })?;
    let volumes: Vec<String> = exported.outputs.iter().filter_map(|p| p.file_name()).map(|n| format!("models/{}", n.to_string_lossy())).collect();
    listed.extend(volumes.iter().cloned());

    let now = time::OffsetDateTime::now_utc();
    let created_at = opts.created.unwrap_or_else(|| now.replace_nanosecond(0).unwrap_or(now));
    let created = created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let install = install_text(&InstallFacts {
        kit_name: out.file_name().map_or_else(|| "airlock-kit".into(), |n| n.to_string_lossy().into_owned()),
        tarball: tarball.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        deb: deb.as_ref().map(|(_, n)| n.clone()),
        first_volume: volumes.first().cloned().unwrap_or_default(),
        models: exported.models.iter().map(|m| m.name.clone()).collect(),
        signed_by: opts.sign.as_ref().map(|k| k.key_id.clone()),
        created: created.clone(),
    });
    write_new(&out.join(INSTALL_FILE), install.as_bytes())?;
    listed.push(INSTALL_FILE.into());

    // Hash what was written, from the files themselves.
    let mut sizes = Vec::new();
    for rel in &listed {
        let path = out.join(rel);
        sizes.push(fs::metadata(&path).map_err(io_at(&path))?.len());
    }
    let total: u64 = sizes.iter().sum();
    let mut done = 0u64;
    let mut files = Vec::new();
    for rel in &listed {
        sums::check_path(rel).map_err(|p| KitError::Invalid(format!("cannot list {rel} in {SUMS_FILE}: {p}")))?;
        let path = out.join(rel);
        let (sha256, size) = sums::hash_file(&path, |n| {
            if cancelled() {
                return Err(io::Error::other("cancelled"));
            }
            done += n;
            progress.report(&Progress { phase: "hashing", item: rel.clone(), done_bytes: done, total_bytes: total });
            Ok(())
        })
        .map_err(|e| if cancelled() { KitError::Cancelled } else { KitError::Io { path: path.clone(), source: e } })?;
        files.push(KitFile { path: rel.clone(), size, sha256 });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let lines: Vec<SumLine> = files.iter().map(|f| SumLine { sha256: f.sha256.clone(), path: f.path.clone() }).collect();
    let text = sums::format(&lines);

    // The signature first and SHA256SUMS last: only a finished kit has SHA256SUMS.
    if let Some(key) = &opts.sign {
        let comment = format!("timestamp:{}\tcreated:{created}\ttool:{}\tfile:{SUMS_FILE}", created_at.unix_timestamp(), created_by());
        let sig = key.sign(text.as_bytes(), &comment).map_err(|e| KitError::Signature(format!("cannot sign {SUMS_FILE}: {e}")))?;
        write_new(&out.join(SUMS_SIG_FILE), &sig)?;
    }
    let sums_path = out.join(SUMS_FILE);
    crate::durable::write_atomic(&sums_path, text.as_bytes()).map_err(io_at(&sums_path))?;
    for d in [&app, &models_dir, out] {
        crate::store::sync_dir(d).map_err(io_at(d))?;
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        let _ = crate::store::sync_dir(parent);
    }
    guard.armed = false;
    Ok(KitReport { out: out.to_path_buf(), total_bytes: files.iter().map(|f| f.size).sum(), files, models: exported.models, signed_by: opts.sign.as_ref().map(|k| k.key_id.clone()) })
}

/// A usable `--deb`: an existing file whose name ends in `.deb`. Returns it and its name.
fn check_deb(path: &Path) -> Result<(PathBuf, String), KitError> {
    let meta = fs::metadata(path).map_err(|e| KitError::Invalid(format!("--deb {}: {e}; give the path of Airlock's .deb package", path.display())))?;
    if !meta.is_file() {
        return Err(KitError::Invalid(format!("--deb {} is not a file; give the path of Airlock's .deb package", path.display())));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    if !name.ends_with(".deb") || name.len() <= 4 {
        return Err(KitError::Invalid(format!("--deb {}: the name does not end in .deb; give the path of Airlock's .deb package", path.display())));
    }
    sums::check_path(&format!("app/{name}")).map_err(|p| KitError::Invalid(format!("--deb {}: unusable file name: {p}", path.display())))?;
    Ok((path.to_path_buf(), name))
}

/// Creates `out`, or accepts it empty. Returns whether it was created here.
fn prepare_out(out: &Path) -> Result<bool, KitError> {
    match fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => {
            let mut entries = fs::read_dir(out).map_err(io_at(out))?;
            if entries.next().is_some() {
                return Err(KitError::NotEmpty(out.to_path_buf()));
            }
            Ok(false)
        }
        Ok(_) => Err(KitError::Invalid(format!("{} exists and is not a folder; choose another --out folder", out.display()))),
        Err(_) => {
            let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(KitError::Invalid(format!("the folder {} does not exist; create it first (or mount the stick)", parent.display())));
            }
            fs::create_dir(out).map_err(io_at(out))?;
            Ok(true)
        }
    }
}

/// Removes a failed kit: the folder when it was created here, else what was put into it.
struct Cleanup {
    dir: PathBuf,
    remove_dir: bool,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.remove_dir {
            let _ = fs::remove_dir_all(&self.dir);
        } else if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let p = e.path();
                let _ = if e.file_type().is_ok_and(|t| t.is_dir()) { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            }
        }
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), KitError> {
    let mut f = fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io_at(path))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io_at(path))
}

/// Copies `from` to the new file `to` (fsynced), with progress (phase "copying").
fn copy_new(from: &Path, to: &Path, cancel: Option<&AtomicBool>, progress: &dyn ProgressSink) -> Result<(), KitError> {
    let mut src = File::open(from).map_err(io_at(from))?;
    let total = src.metadata().map_err(io_at(from))?.len();
    let mut dst = fs::OpenOptions::new().write(true).create_new(true).open(to).map_err(io_at(to))?;
    let item = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(KitError::Cancelled);
        }
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(KitError::Io { path: from.to_path_buf(), source: e }),
        };
        dst.write_all(&buf[..n]).map_err(io_at(to))?;
        done += n as u64;
        progress.report(&Progress { phase: "copying", item: item.clone(), done_bytes: done, total_bytes: total.max(done) });
    }
    dst.sync_all().map_err(io_at(to))
}

struct InstallFacts {
    kit_name: String,
    tarball: String,
    deb: Option<String>,
    first_volume: String,
    models: Vec<String>,
    signed_by: Option<String>,
    created: String,
}

/// `INSTALL.txt`: the offline steps, in order, for someone who has no Airlock yet.
fn install_text(f: &InstallFacts) -> String {
    let version = env!("CARGO_PKG_VERSION");
    let top = portable::top_dir();
    let kit = format!("/media/usb/{}", f.kit_name);
    let bin = format!("~/{top}/bin/airlock");
    let require = if f.signed_by.is_some() { " --require-signature" } else { "" };
    let model = f.models.first().map(String::as_str).unwrap_or("MODEL");
    let mut s = String::new();
    let mut line = |l: &str| {
        s.push_str(l);
        s.push('\n');
    };
    line("AIRLOCK KIT: INSTALLING OFFLINE");
    line("");
    line(&format!("This folder carries Airlock {version} (run local LLMs with no network) and these models:"));
    for m in &f.models {
        line(&format!("  {m}"));
    }
    line(&format!("Written {} by airlock {version}.", f.created));
    match &f.signed_by {
        Some(id) => line(&format!("Signed with key {id}; its public key (a .pub file) comes to you separately, never on this stick.")),
        None => line("Not signed: SHA256SUMS catches damage in transit, not a deliberate change."),
    }
    line("Do not trust this file alone either: the same steps are in Airlock's README, published separately.");
    line("");
    line(&format!("The steps below assume the stick is mounted at /media/usb, so this folder is {kit}."));
    line("Use the real path if it differs. Nothing needs a network.");
    line("");
    line("1. Go to the kit:");
    line(&format!("     cd {kit}"));
    line("");
    match &f.signed_by {
        Some(id) => {
            // The program on this stick cannot vouch for itself: whoever could change the stick
            // could change it, this file and SHA256SUMS together. Only the signature, checked
            // with tools and a key the far side already has, cannot be forged.
            line("2. Check the kit with tools this machine already has, before any program from the kit runs:");
            line("     minisign -Vm SHA256SUMS -p KEY.pub");
            line(&format!("   KEY.pub is key {id}'s public key, which you received separately. minisign is"));
            line("   Debian's minisign package (from your site's mirror). It must print \"Signature and comment");
            line("   signature verified\"; anything else, including a missing SHA256SUMS.minisig: stop, do not");
            line("   use this kit. Then check every file against the signed list:");
        }
        None => line("2. Check every file with plain tools, before any program from the kit runs:"),
    }
    line("     sha256sum -c SHA256SUMS");
    line("   Every line must end in OK. Any FAILED line: copy the kit again.");
    line("");
    line("3. Install the program into your home folder:");
    line(&format!("     tar xzf app/{} -C ~/", f.tarball));
    line(&format!("   This makes ~/{top}/ (the command line in ~/{top}/bin/airlock)."));
    if let Some(deb) = &f.deb {
        line("   Or, on Debian/Ubuntu as root, install the package instead:");
        line(&format!("     apt-get install ./app/{deb}"));
        line(&format!("   Then type `airlock` wherever the steps below say {bin}."));
    }
    line("");
    let mut n = 4;
    if let Some(id) = &f.signed_by {
        line(&format!("{n}. Trust the signing key {id} (once), from its .pub file:"));
        line(&format!("     {bin} trust add KEY.pub"));
        line("");
        n += 1;
    }
    line(&format!("{n}. Check the kit with Airlock: every file, nothing added{}.", if f.signed_by.is_some() { ", the signature" } else { "" }));
    line(&format!("     {bin} kit verify {kit}{require}"));
    line("   It must end with \"kit verified\". It unpacks and runs nothing.");
    line("");
    n += 1;
    line(&format!("{n}. Import the models (every byte is verified again on the way in):"));
    line(&format!("     {bin} import {kit}/{}{require}", f.first_volume));
    line("");
    n += 1;
    line(&format!("{n}. Chat in the terminal:"));
    line(&format!("     {bin} run {model} \"hello\""));
    line("   or start the desktop app:");
    line(&format!("     ~/{top}/airlock-desktop"));
    line("   The desktop app needs the WebKitGTK runtime (Debian/Ubuntu package libwebkit2gtk-4.1-0,");
    line("   from your site's Debian mirror); the launcher says what is missing. The command line needs no");
    line("   GUI library, only the C/C++ runtime, libgomp1 and libssl3 (README.txt says how to check).");
    line("");
    line(&format!("More: ~/{top}/README.txt, and `{bin} --help`."));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(signed: bool, deb: bool) -> InstallFacts {
        InstallFacts {
            kit_name: "airlock-kit".into(),
            tarball: portable::file_name(),
            deb: deb.then(|| "airlock_0.1.0_amd64.deb".into()),
            first_volume: "models/models.zip.001".into(),
            models: vec!["gemma3:270m".into()],
            signed_by: signed.then(|| "0123456789ABCDEF".into()),
            created: "2027-01-15T08:00:00Z".into(),
        }
    }

    #[test]
    fn install_text_gives_the_real_names_in_order() {
        let t = install_text(&facts(true, true));
        let top = portable::top_dir();
        let steps = [
            "cd /media/usb/airlock-kit".to_string(),
            "minisign -Vm SHA256SUMS -p KEY.pub".into(),
            "sha256sum -c SHA256SUMS".into(),
            format!("tar xzf app/{} -C ~/", portable::file_name()),
            "apt-get install ./app/airlock_0.1.0_amd64.deb".into(),
            format!("~/{top}/bin/airlock trust add KEY.pub"),
            format!("~/{top}/bin/airlock kit verify /media/usb/airlock-kit --require-signature"),
            format!("~/{top}/bin/airlock import /media/usb/airlock-kit/models/models.zip.001 --require-signature"),
            format!("~/{top}/bin/airlock run gemma3:270m \"hello\""),
            format!("~/{top}/airlock-desktop"),
        ];
        let mut at = 0;
        for s in &steps {
            let i = t[at..].find(s.as_str()).unwrap_or_else(|| panic!("missing or out of order: {s}\n{t}"));
            at += i + s.len();
        }
        assert!(t.contains("0123456789ABCDEF"));
    }

    #[test]
    fn unsigned_install_text_has_no_trust_step() {
        let t = install_text(&facts(false, false));
        assert!(!t.contains("trust add"));
        assert!(!t.contains("--require-signature") && !t.contains("minisign"));
        assert!(t.contains("2. Check every file with plain tools") && t.contains("sha256sum -c SHA256SUMS"));
        assert!(!t.contains("apt-get install ./"));
        assert!(t.contains("4. Check the kit"));
    }

    #[test]
    fn deb_must_be_an_existing_deb_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_deb(&dir.path().join("missing.deb")).is_err());
        assert!(check_deb(dir.path()).is_err());
        let txt = dir.path().join("airlock.txt");
        fs::write(&txt, b"x").unwrap();
        assert!(check_deb(&txt).unwrap_err().to_string().contains(".deb"));
        let deb = dir.path().join("airlock_0.1.0_amd64.deb");
        fs::write(&deb, b"!<arch>\n").unwrap();
        assert_eq!(check_deb(&deb).unwrap().1, "airlock_0.1.0_amd64.deb");
    }

    #[test]
    fn out_must_be_new_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("kit");
        assert!(prepare_out(&out).unwrap());
        assert!(!prepare_out(&out).unwrap(), "an empty folder is accepted");
        fs::write(out.join("x"), b"x").unwrap();
        assert!(matches!(prepare_out(&out), Err(KitError::NotEmpty(_))));
        assert!(prepare_out(&dir.path().join("no/such/parent")).is_err());
    }
}
