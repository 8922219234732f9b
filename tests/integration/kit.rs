//! `airlock kit` end to end on the real test model. A kit made on the connected side passes plain
//! `sha256sum -c`, unpacks with the system `tar`, and the unpacked `bin/airlock` — with an empty
//! home, store and config, no `LD_LIBRARY_PATH` — verifies it, imports the models and answers.
//! Every change to a kit (a byte of the app or of a model volume, a missing or added file, a
//! hostile SHA256SUMS line, a bad or foreign signature) is refused naming the file, and the
//! refusal writes nothing anywhere.
//!
//! A debug kit carries debug binaries (hundreds of MB), so the tests make two kits only: an
//! unsigned one (copied once for the tampering cases) and a signed one.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use airlock::bundle::sign::SigningKey;
use airlock::kit::portable;
use tempfile::TempDir;

use crate::common::*;

const PASSWORD: &str = "correct horse";

/// An isolated machine: its own home, store and config, and a working folder.
struct Machine {
    _root: TempDir,
    home: PathBuf,
    store: PathBuf,
    config: PathBuf,
    cwd: PathBuf,
}

impl Machine {
    fn new() -> Self {
        let root = TempDir::new().unwrap();
        let [home, store, config, cwd] = ["home", "store", "config", "cwd"].map(|d| root.path().join(d));
        for d in [&home, &cwd] {
            fs::create_dir(d).unwrap();
        }
        Machine { _root: root, home, store, config, cwd }
    }

    /// Runs `exe` with only this machine's environment: no inherited `LD_LIBRARY_PATH`
    /// (cargo sets one for tests), so an unpacked binary must find its libraries by itself.
    fn run(&self, exe: &Path, args: &[&str]) -> Output {
        Command::new(exe)
            .args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("AIRLOCK_MODELS", &self.store)
            .env("AIRLOCK_CONFIG", &self.config)
            .env("AIRLOCK_THREADS", "2")
            .env("AIRLOCK_KEY_PASSWORD", PASSWORD)
            .output()
            .expect("run a program")
    }

    /// Names, sizes and times of everything this machine has on disk (its home, store, config
    /// and working folder, where the kit copies live).
    fn state(&self) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
        [&self.home, &self.store, &self.config, &self.cwd].iter().filter(|d| d.exists()).flat_map(|d| tree(d).into_iter().map(|(p, t)| (d.join(p), t))).collect()
    }
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), stdout(o), stderr(o));
    stdout(o)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Names, sizes and times of everything under `dir` (cheaper than hashing a kit every time).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, (u64, Option<SystemTime>)>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            out.insert(e.path().strip_prefix(root).unwrap().to_path_buf(), (m.len(), m.modified().ok()));
            if m.is_dir() {
                walk(&e.path(), root, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A packer store with the test model as `gemma3:270m` and `gemma3:short` (24-token replies).
fn packer() -> (TempDir, Machine) {
    let store = crate::engine::store_with_real_model();
    let m = Machine::new();
    (store, m)
}

/// `airlock kit MODELS --out <dir>/kit ARGS…` with the built binary; returns the kit folder.
fn make_kit(store: &Path, m: &Machine, models: &[&str], extra: &[&str]) -> PathBuf {
    let out = m.cwd.join("kit");
    let mut args = vec!["kit"];
    args.extend_from_slice(models);
    args.extend_from_slice(&["--out", s(&out)]);
    args.extend_from_slice(extra);
    let o = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(&args)
        .env("AIRLOCK_MODELS", store)
        .env("AIRLOCK_CONFIG", &m.config)
        .env("AIRLOCK_KEY_PASSWORD", PASSWORD)
        .env_remove("OLLAMA_MODELS")
        .env_remove("AIRLOCK_LIB_DIR")
        .output()
        .unwrap();
    let printed = ok(&o);
    assert!(printed.contains(&format!("wrote {}", out.join("SHA256SUMS").display())), "{printed}");
    assert!(stderr(&o).contains("kit ready:"), "{}", stderr(&o));
    out
}

fn sha256sum_check(kit: &Path) {
    let o = Command::new("sha256sum").args(["-c", "--strict", "SHA256SUMS"]).current_dir(kit).output().expect("coreutils sha256sum");
    let out = ok(&o);
    assert!(!out.contains("FAILED"), "{out}");
}

fn tarball(kit: &Path) -> PathBuf {
    let p = kit.join("app").join(portable::file_name());
    assert!(p.is_file(), "{} missing", p.display());
    p
}

/// Unpacks the kit's tarball with the system `tar` into an empty folder; returns the top folder.
fn unpack(kit: &Path, into: &Path) -> PathBuf {
    fs::create_dir_all(into).unwrap();
    let o = Command::new("tar").args(["xzf", s(&tarball(kit)), "-C", s(into)]).output().expect("system tar");
    ok(&o);
    assert!(stderr(&o).is_empty(), "tar warned: {}", stderr(&o));
    let tops: Vec<_> = fs::read_dir(into).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(tops, vec![portable::top_dir()], "one top folder");
    into.join(portable::top_dir())
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn check_layout(kit: &Path, top: &Path) {
    // The archive itself: one top folder, sorted, owned by root, fixed times.
    let o = Command::new("tar").args(["tzvf", s(&tarball(kit))]).env("TZ", "UTC").output().unwrap();
    let listing = ok(&o);
    let names: Vec<&str> = listing.lines().map(|l| l.split_whitespace().nth(5).unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| a.trim_end_matches('/').cmp(b.trim_end_matches('/')));
    assert_eq!(names, sorted, "entries are sorted");
    for l in listing.lines() {
        assert!(l.contains(" root/root "), "owner: {l}");
        assert!(l.contains(" 2024-01-01 00:00 "), "fixed time: {l}");
        assert!(l.split_whitespace().nth(5).unwrap().starts_with(&format!("{}/", portable::top_dir())) || l.ends_with(&portable::top_dir()), "{l}");
    }

    let bin = top.join("bin/airlock");
    assert_eq!(mode(&bin), 0o755);
    if Path::new(env!("CARGO_BIN_EXE_airlock")).with_file_name("airlock-desktop").is_file() {
        assert_eq!(mode(&top.join("bin/airlock-desktop")), 0o755, "the desktop app beside the packer's airlock is carried");
    }
    let libs: Vec<String> = fs::read_dir(top.join("lib/airlock")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(libs.iter().any(|n| n.starts_with("libggml-cpu-") && n.ends_with(".so")), "{libs:?}");
    assert!(libs.iter().any(|n| n.starts_with("libllama.so")), "{libs:?}");
    assert!(libs.iter().all(|n| n.starts_with("libllama") || n.starts_with("libggml") || n.starts_with("libmtmd")), "{libs:?}");
    let link = top.join("lib/airlock/libllama.so");
    if fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()) {
        assert!(link.is_file(), "library links resolve inside the folder");
    }
    assert_eq!(fs::read(top.join("share/applications/airlock.desktop")).unwrap(), fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("icons/airlock.desktop")).unwrap());
    for n in [16, 24, 32, 48, 64, 128, 256, 512] {
        let icon = top.join(format!("share/icons/hicolor/{n}x{n}/apps/airlock.png"));
        assert!(fs::read(&icon).unwrap().starts_with(b"\x89PNG"), "{}", icon.display());
    }
    let readme = fs::read_to_string(top.join("README.txt")).unwrap();
    assert!(readme.contains("./bin/airlock kit verify") && readme.contains("libwebkit2gtk-4.1-0"), "{readme}");
    let launcher = top.join("airlock-desktop");
    assert_eq!(mode(&launcher), 0o755);
    assert!(fs::read_to_string(&launcher).unwrap().starts_with("#!/bin/sh\n"));
}

/// The launcher names missing libraries and the Debian package; with everything present it
/// hands its arguments to the app. `bin/airlock` stands in for the app (hard links keep
/// `$ORIGIN`), so no window opens.
fn check_launcher(top: &Path, m: &Machine) {
    let fake = |name: &str, with_libs: bool| {
        let dir = m.cwd.join(name);
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::copy(top.join("airlock-desktop"), dir.join("airlock-desktop")).unwrap();
        fs::hard_link(top.join("bin/airlock"), dir.join("bin/airlock-desktop")).unwrap();
        if with_libs {
            std::os::unix::fs::symlink(top.join("lib"), dir.join("lib")).unwrap();
        }
        dir
    };
    let bare = fake("launcher-without-libs", false);
    let o = m.run(&bare.join("airlock-desktop"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("libraries are missing") && err.contains("libllama.so"), "{err}");
    assert!(err.contains("apt-get install libwebkit2gtk-4.1-0"), "{err}");
    let full = fake("launcher-with-libs", true);
    let o = m.run(&full.join("airlock-desktop"), &["--version"]);
    assert!(ok(&o).starts_with(&format!("airlock {}", env!("CARGO_PKG_VERSION"))), "{}", stdout(&o));
    fs::remove_dir_all(bare).unwrap();
    fs::remove_dir_all(full).unwrap();
}

/// `kit verify` with `exe` is refused (exit 1), names `file`, and writes nothing anywhere.
fn refused(exe: &Path, m: &Machine, kit: &Path, extra: &[&str], file: &str, says: &str) -> String {
    let (kit_before, machine_before) = (tree(kit), m.state());
    let mut args = vec!["kit", "verify", s(kit)];
    args.extend_from_slice(extra);
    let o = m.run(exe, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "not refused ({file}):\nstdout:\n{}\nstderr:\n{err}", stdout(&o));
    assert!(err.contains(file), "the refusal does not name {file}:\n{err}");
    assert!(err.contains(says), "the refusal does not say {says:?}:\n{err}");
    assert!(!stdout(&o).contains("kit verified"), "{}", stdout(&o));
    assert_eq!(tree(kit), kit_before, "verify changed the kit");
    assert_eq!(m.state(), machine_before, "verify wrote something");
    err
}

fn flip_byte(path: &Path, at: u64) {
    let mut b = fs::read(path).unwrap();
    let i = (at as usize).min(b.len() - 1);
    b[i] ^= 0x01;
    fs::write(path, b).unwrap();
}

#[test]
fn kit_unpacks_and_runs_on_a_machine_without_airlock_and_every_change_is_refused() {
    let (store, packer_side) = packer();
    // Small volumes, so the bundle is cut into several (.001, .002, …).
    let kit = make_kit(store.path(), &packer_side, &["gemma3:270m", "gemma3:short"], &["--split-size", "100M"]);
    sha256sum_check(&kit);
    let sums = fs::read_to_string(kit.join("SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums.lines().map(|l| l.split_once("  ").unwrap().1).collect();
    let app = format!("app/{}", portable::file_name());
    assert_eq!(listed, vec!["INSTALL.txt", app.as_str(), "models/models.zip.001", "models/models.zip.002", "models/models.zip.003"]);
    assert!(!kit.join("SHA256SUMS.minisig").exists());
    let install = fs::read_to_string(kit.join("INSTALL.txt")).unwrap();
    assert!(install.contains(&format!("tar xzf {app} -C ~/")) && install.contains("import /media/usb/kit/models/models.zip.001"), "{install}");

    // The far side: nothing but the stick. Unpack with the system tar and use what came out.
    let far = Machine::new();
    let top = unpack(&kit, &far.cwd.join("unpacked"));
    check_layout(&kit, &top);
    let bin = top.join("bin/airlock");
    assert!(ok(&far.run(&bin, &["--help"])).contains("Usage"), "the unpacked binary starts: its rpath finds lib/airlock");
    let version = ok(&far.run(&bin, &["--version"]));
    assert!(version.contains(&format!("backend modules in: {}", top.join("lib/airlock").display())), "the unpacked engine loads its own modules:\n{version}");
    check_launcher(&top, &far);

    let verified = ok(&far.run(&bin, &["kit", "verify", s(&kit)]));
    assert!(verified.contains("ok  models/models.zip.002"), "{verified}");
    assert!(verified.contains("kit verified: 5 files, unsigned"), "{verified}");
    let json: serde_json::Value = serde_json::from_str(&ok(&far.run(&bin, &["kit", "verify", s(&kit), "--json"]))).unwrap();
    assert_eq!(json["files"].as_array().unwrap().len(), 5);
    assert!(json["signer"].is_null());

    let imported = ok(&far.run(&bin, &["import", s(&kit.join("models/models.zip.001"))]));
    assert!(imported.contains("imported gemma3:270m") && imported.contains("imported gemma3:short"), "{imported}");
    assert_store_consistent(&far.store);
    let answer = ok(&far.run(&bin, &["run", "gemma3:short", "The sky is"]));
    assert!(!answer.trim().is_empty(), "the unpacked airlock answered nothing");

    // Tampering, on one copy of the kit; each change is undone before the next.
    let copy = far.cwd.join("copy");
    ok(&Command::new("cp").args(["-r", s(&kit), s(&copy)]).output().unwrap());
    let big = copy.join(&app);
    let original = fs::read(&big).unwrap();
    flip_byte(&big, original.len() as u64 / 2);
    refused(&bin, &far, &copy, &[], &app, "content differs from SHA256SUMS");
    fs::write(&big, &original).unwrap();

    let vol = copy.join("models/models.zip.002");
    flip_byte(&vol, 12_345_678);
    refused(&bin, &far, &copy, &[], "models/models.zip.002", "content differs from SHA256SUMS");
    flip_byte(&vol, 12_345_678);

    let last = copy.join("models/models.zip.003");
    let aside = far.cwd.join("aside");
    fs::rename(&last, &aside).unwrap();
    refused(&bin, &far, &copy, &[], "models/models.zip.003", "listed in SHA256SUMS but missing");
    fs::rename(&aside, &last).unwrap();

    let extra = copy.join("app/extra.sh");
    fs::write(&extra, b"#!/bin/sh\necho surprise\n").unwrap();
    refused(&bin, &far, &copy, &[], "app/extra.sh", "not listed in SHA256SUMS");
    fs::remove_file(&extra).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", copy.join("models/link")).unwrap();
    refused(&bin, &far, &copy, &[], "models/link", "symbolic link");
    fs::remove_file(copy.join("models/link")).unwrap();

    let sums_path = copy.join("SHA256SUMS");
    let hostile = format!("{sums}{}  ../x\n", "0".repeat(64));
    fs::write(&sums_path, &hostile).unwrap();
    fs::write(far.cwd.join("x"), b"outside").unwrap();
    refused(&bin, &far, &copy, &[], "SHA256SUMS, line 6", "\"../x\"");
    fs::remove_file(far.cwd.join("x")).unwrap();
    fs::write(&sums_path, sums.replace("  INSTALL.txt", " *INSTALL.txt")).unwrap();
    refused(&bin, &far, &copy, &[], "SHA256SUMS, line 1", "two spaces");
    fs::write(&sums_path, &sums).unwrap();

    refused(&bin, &far, &copy, &["--require-signature"], "not signed", "airlock kit --sign");
    fs::remove_file(&sums_path).unwrap();
    refused(&bin, &far, &copy, &[], "SHA256SUMS is missing", "copy the kit folder again");
    fs::write(&sums_path, &sums).unwrap();

    // Every change undone: the copy verifies again, so each refusal was the change's doing.
    assert!(ok(&far.run(&bin, &["kit", "verify", s(&copy)])).contains("kit verified: 5 files"));
    // A kit is never written over a folder that holds something.
    let o = Command::new(env!("CARGO_BIN_EXE_airlock")).args(["kit", "gemma3:270m", "--out", s(&copy)]).env("AIRLOCK_MODELS", store.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not empty"), "{}", stderr(&o));
}

#[test]
fn signed_kit_verifies_with_its_key_and_refuses_other_keys_and_changes() {
    let (store, packer_side) = packer();
    let keys = packer_side.cwd.join("keys");
    fs::create_dir(&keys).unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_airlock"));
    let out = ok(&packer_side.run(exe, &["keygen", "--out", s(&keys.join("signer"))]));
    let id = out.lines().find_map(|l| l.strip_prefix("key id ")).unwrap().trim().to_string();
    ok(&packer_side.run(exe, &["keygen", "--out", s(&keys.join("other"))]));

    let kit = make_kit(store.path(), &packer_side, &["gemma3:270m"], &["--sign", s(&keys.join("signer.key"))]);
    sha256sum_check(&kit);
    assert!(kit.join("SHA256SUMS.minisig").is_file());
    assert!(kit.join("models/models.zip").is_file(), "one zip without --split-size");
    let install = fs::read_to_string(kit.join("INSTALL.txt")).unwrap();
    assert!(install.contains(&id) && install.contains("trust add KEY.pub") && install.contains("--require-signature"), "{install}");

    let far = Machine::new();
    let signer_pub = keys.join("signer.pub");
    let good = ok(&far.run(exe, &["kit", "verify", s(&kit), "--key", s(&signer_pub)]));
    assert!(good.contains(&format!("kit verified: 3 files, signed by {id}")), "{good}");
    assert!(good.contains("tool:airlock") && good.contains("file:SHA256SUMS"), "the trusted comment is shown: {good}");

    // No key given and none trusted: refused, naming the key and what to do.
    let err = refused(exe, &far, &kit, &["--require-signature"], "SHA256SUMS.minisig", &id);
    assert!(err.contains("airlock trust add"), "{err}");
    refused(exe, &far, &kit, &[], &id, "not trusted here");
    // Trusted: verify, then import with the bundle's own signature required.
    ok(&far.run(exe, &["trust", "add", s(&signer_pub)]));
    assert!(ok(&far.run(exe, &["kit", "verify", s(&kit), "--require-signature"])).contains(&format!("signed by {id}")));
    ok(&far.run(exe, &["import", s(&kit.join("models/models.zip")), "--require-signature"]));
    assert!(ok(&far.run(exe, &["list"])).contains("gemma3:270m"));

    // SHA256SUMS changed after signing: one hex digit of one line.
    let sums_path = kit.join("SHA256SUMS");
    let sums = fs::read(&sums_path).unwrap();
    let mut changed = sums.clone();
    changed[0] = if changed[0] == b'0' { b'1' } else { b'0' };
    fs::write(&sums_path, &changed).unwrap();
    refused(exe, &far, &kit, &["--key", s(&signer_pub)], "SHA256SUMS.minisig", "does not match SHA256SUMS");
    refused(exe, &far, &kit, &[], "SHA256SUMS.minisig", "changed after it was signed");
    fs::write(&sums_path, &sums).unwrap();

    // A signature by another key over the very same SHA256SUMS.
    let sig_path = kit.join("SHA256SUMS.minisig");
    let sig = fs::read(&sig_path).unwrap();
    let other = SigningKey::load(&keys.join("other.key"), Some(PASSWORD.into())).unwrap();
    fs::write(&sig_path, other.sign(&sums, "timestamp:0\tfile:SHA256SUMS").unwrap()).unwrap();
    let err = refused(exe, &far, &kit, &["--key", s(&signer_pub)], &other.key_id, "not by the key in");
    assert!(err.contains("signer.pub"), "{err}");
    refused(exe, &far, &kit, &[], &other.key_id, "not trusted here");
    fs::write(&sig_path, b"untrusted comment: x\nnot a signature\n").unwrap();
    refused(exe, &far, &kit, &[], "SHA256SUMS.minisig", "malformed");
    fs::write(&sig_path, &sig).unwrap();
    assert!(ok(&far.run(exe, &["kit", "verify", s(&kit), "--key", s(&signer_pub)])).contains("kit verified"));

    // INSTALL.txt's first step uses only what the far side has before Airlock exists: Debian's
    // minisign, with the key that came separately, and coreutils.
    let said = minisign_verify(&kit, &signer_pub);
    assert!(said.is_ok(), "{said:?}");
    assert!(said.unwrap().contains(&format!("tool:airlock {}", env!("CARGO_PKG_VERSION"))));

    // Whoever can change the stick changes the program, SHA256SUMS and INSTALL.txt together: every
    // check made with the kit's own files passes, the signature does not.
    flip_byte(&tarball(&kit), 4096);
    fs::write(kit.join("INSTALL.txt"), "1. Run the app in app/; it checks the kit itself.\n").unwrap();
    let listed: Vec<String> = String::from_utf8(sums).unwrap().lines().map(|l| l.split_once("  ").unwrap().1.to_string()).collect();
    let forged = Command::new("sha256sum").args(&listed).current_dir(&kit).output().unwrap();
    fs::write(&sums_path, ok(&forged)).unwrap();
    sha256sum_check(&kit);
    let said = minisign_verify(&kit, &signer_pub).unwrap_err();
    assert!(said.contains("Signature verification failed"), "{said}");
    refused(exe, &far, &kit, &[], "SHA256SUMS.minisig", "changed after it was signed");

    // The same, with the signature deleted: minisign has nothing to check, and `kit verify`
    // requires a signature because a key is trusted here, unless told otherwise (and then says so).
    fs::remove_file(&sig_path).unwrap();
    let said = minisign_verify(&kit, &signer_pub).unwrap_err();
    assert!(said.contains("SHA256SUMS.minisig"), "{said}");
    let err = refused(exe, &far, &kit, &[], "SHA256SUMS.minisig", "1 key(s) are trusted here, so a signature is required");
    assert!(err.contains("--allow-unsigned"), "{err}");
    refused(exe, &far, &kit, &["--key", s(&signer_pub)], "SHA256SUMS.minisig", "a signature is required");
    let o = far.run(exe, &["kit", "verify", s(&kit), "--allow-unsigned"]);
    assert!(ok(&o).contains("kit verified: 3 files, unsigned"));
    assert!(stderr(&o).contains("although 1 key(s) are trusted here"), "{}", stderr(&o));
}

/// `minisign -Vm SHA256SUMS -p KEY` in `kit`: what it printed, as `Ok` when it verified.
fn minisign_verify(kit: &Path, key: &Path) -> Result<String, String> {
    let o = Command::new("minisign").args(["-Vm", "SHA256SUMS", "-p", s(key)]).current_dir(kit).output().expect("Debian's minisign (scripts/deps.sh installs it)");
    let said = format!("{}{}", stdout(&o), stderr(&o));
    if o.status.success() && said.contains("Signature and comment signature verified") {
        Ok(said)
    } else {
        Err(said)
    }
}
