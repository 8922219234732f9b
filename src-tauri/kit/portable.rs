//! The portable app: `airlock-<version>-<os>-<arch>.tar.gz`, written from the running
//! installation's own files (a cargo build, the `.deb`'s `/usr/bin` + `/usr/lib/airlock`, or an
//! unpacked portable folder), so whatever runs here can be carried as it is.
//!
//! Layout, under one top folder `airlock-<version>/`: `bin/airlock`, `bin/airlock-desktop` (when
//! installed), `lib/airlock/` (llama.cpp and the ggml CPU-variant modules, symlinks kept),
//! `share/` (the .desktop entry and icons), `README.txt` and the `airlock-desktop` launcher. The
//! binaries find `lib/airlock` through their `$ORIGIN/../lib/airlock` rpath.
//!
//! The archive is deterministic (sorted entries, fixed times, root owner) and written to a
//! temporary file that is renamed into place only when complete. It never reads anything but the
//! files listed above.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

use super::{io_at, KitError};
use crate::progress::{NoProgress, Progress, ProgressSink};

/// Entry times when the caller fixes none: 2024-01-01T00:00:00Z (GNU tar warns about 0).
pub const DEFAULT_MTIME: u64 = 1_704_067_200;

/// The library files the binaries and the engine load at run time.
const LIB_PREFIXES: [&str; 3] = ["libllama", "libggml", "libmtmd"];

const ICON_SIZES: [u32; 8] = [16, 24, 32, 48, 64, 128, 256, 512];

const DESKTOP_ENTRY: &[u8] = include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/icons/airlock.desktop"));
const README: &str = include_str!("README.txt");
const LAUNCHER: &str = include_str!("airlock-desktop.sh");

macro_rules! icon {
    ($n:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/icons/hicolor/", $n, "x", $n, ".png")).as_slice()
    };
}

fn icon_png(size: u32) -> &'static [u8] {
    match size {
        16 => icon!("16"),
        24 => icon!("24"),
        32 => icon!("32"),
        48 => icon!("48"),
        64 => icon!("64"),
        128 => icon!("128"),
        256 => icon!("256"),
        512 => icon!("512"),
        _ => unreachable!("ICON_SIZES lists only embedded sizes"),
    }
}

/// `airlock-<version>`: the tarball's top folder.
pub fn top_dir() -> String {
    format!("airlock-{}", env!("CARGO_PKG_VERSION"))
}

/// `airlock-<version>-<os>-<arch>.tar.gz`.
pub fn file_name() -> String {
    format!("{}-{}-{}.tar.gz", top_dir(), std::env::consts::OS, std::env::consts::ARCH)
}

/// The installed files a portable tarball is made of.
#[derive(Clone, Debug)]
pub struct PortableSource {
    /// The `airlock` command-line binary.
    pub airlock: PathBuf,
    /// `airlock-desktop` beside it; `None` for a command-line-only installation.
    pub desktop: Option<PathBuf>,
    /// Where the engine libraries are (`crate::backends::backend_dir`).
    pub lib_dir: PathBuf,
}

impl PortableSource {
    /// This installation: the running executable when it is `airlock`, else the `airlock` beside
    /// it (the desktop app), and the engine's library folder.
    pub fn locate() -> Result<Self, KitError> {
        let exe = std::env::current_exe().map_err(|e| KitError::Install(format!("cannot tell where this program is installed: {e}")))?;
        let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
        let airlock = if exe.file_stem().is_some_and(|s| s == "airlock") { exe.clone() } else { dir.join("airlock") };
        if !airlock.is_file() {
            return Err(KitError::Install(format!("{} is missing: a kit carries the `airlock` command-line program, which belongs beside {}; reinstall Airlock", airlock.display(), exe.display())));
        }
        let desktop = Some(dir.join("airlock-desktop")).filter(|p| p.is_file());
        let lib_dir = crate::backends::backend_dir().ok_or_else(|| {
            KitError::Install(format!(
                "cannot find the engine libraries (libggml-cpu-*.so) beside {} or in {}; set {} to the folder that holds them, or reinstall Airlock",
                exe.display(),
                dir.join("../lib/airlock").display(),
                crate::backends::LIB_DIR_ENV
            ))
        })?;
        Ok(PortableSource { airlock, desktop, lib_dir })
    }
}

/// What goes into one tar entry.
enum Content {
    Dir,
    File { from: PathBuf, size: u64, mode: u32 },
    Bytes { data: &'static [u8], mode: u32 },
    Symlink(PathBuf),
}

struct Entry {
    /// Path inside the archive, `/`-separated, under the top folder.
    path: String,
    content: Content,
}

/// Writes the portable tarball of this installation into `out_dir`; returns its path.
pub fn write_portable(out_dir: &Path) -> Result<PathBuf, KitError> {
    write_portable_with(&PortableSource::locate()?, out_dir, DEFAULT_MTIME, None, &NoProgress)
}

/// [`write_portable`] from `src`, with entry times `mtime` (seconds since 1970), a cancel flag
/// and progress (phase "packing app").
pub fn write_portable_with(src: &PortableSource, out_dir: &Path, mtime: u64, cancel: Option<&AtomicBool>, progress: &dyn ProgressSink) -> Result<PathBuf, KitError> {
    if !out_dir.is_dir() {
        return Err(KitError::Invalid(format!("the folder {} does not exist; create it first", out_dir.display())));
    }
    let entries = plan(src)?;
    let name = file_name();
    let dest = out_dir.join(&name);
    if fs::symlink_metadata(&dest).is_ok() {
        return Err(KitError::Invalid(format!("{} already exists; remove it first", dest.display())));
    }
    let tmp = out_dir.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let mut guard = RemoveOnDrop(Some(tmp.clone()));
    let file = fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(io_at(&tmp))?;
    let total: u64 = entries
        .iter()
        .map(|e| match &e.content {
            Content::File { size, .. } => *size,
            Content::Bytes { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum();
    let mut done = 0u64;
    let mut ar = tar::Builder::new(GzEncoder::new(BufWriter::with_capacity(1 << 20, file), Compression::default()));
    for e in &entries {
        let mut h = Header::new_gnu();
        h.set_mtime(mtime);
        h.set_uid(0);
        h.set_gid(0);
        h.set_username("root").and_then(|_| h.set_groupname("root")).map_err(io_at(&tmp))?;
        let written = match &e.content {
            Content::Dir => {
                h.set_entry_type(EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                ar.append_data(&mut h, &e.path, io::empty())
            }
            Content::Symlink(target) => {
                h.set_entry_type(EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                ar.append_link(&mut h, &e.path, target)
            }
            Content::Bytes { data, mode } => {
                h.set_entry_type(EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                done += data.len() as u64;
                ar.append_data(&mut h, &e.path, *data)
            }
            Content::File { from, size, mode } => {
                h.set_entry_type(EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(*size);
                let f = File::open(from).map_err(io_at(from))?;
                let item = e.path.clone();
                let reader = Exact {
                    inner: f.take(*size),
                    from,
                    left: *size,
                    cancel,
                    on_read: &mut |n| {
                        done += n as u64;
                        progress.report(&Progress { phase: "packing app", item: item.clone(), done_bytes: done, total_bytes: total });
                    },
                };
                ar.append_data(&mut h, &e.path, reader)
            }
        };
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(KitError::Cancelled);
        }
        written.map_err(io_at(&dest))?;
    }
    let gz = ar.into_inner().map_err(io_at(&dest))?;
    let buf = gz.finish().map_err(io_at(&tmp))?;
    let file = buf.into_inner().map_err(|e| KitError::Io { path: tmp.clone(), source: e.into_error() })?;
    file.sync_all().map_err(io_at(&tmp))?;
    drop(file);
    fs::rename(&tmp, &dest).map_err(io_at(&dest))?;
    guard.0 = None;
    let _ = crate::store::sync_dir(out_dir);
    progress.report(&Progress { phase: "packing app", item: name, done_bytes: total, total_bytes: total });
    Ok(dest)
}

/// Every entry of the tarball, parents included, sorted (so the output is deterministic).
fn plan(src: &PortableSource) -> Result<Vec<Entry>, KitError> {
    let top = top_dir();
    let mut entries = Vec::new();
    let mut add = |path: String, content: Content| entries.push(Entry { path: format!("{top}/{path}"), content });

    add("bin/airlock".into(), file_entry(&src.airlock, 0o755)?);
    if let Some(d) = &src.desktop {
        add("bin/airlock-desktop".into(), file_entry(d, 0o755)?);
    }
    for (name, content) in libraries(&src.lib_dir)? {
        add(format!("lib/airlock/{name}"), content);
    }
    add("share/applications/airlock.desktop".into(), Content::Bytes { data: DESKTOP_ENTRY, mode: 0o644 });
    for n in ICON_SIZES {
        add(format!("share/icons/hicolor/{n}x{n}/apps/airlock.png"), Content::Bytes { data: icon_png(n), mode: 0o644 });
    }
    add("README.txt".into(), Content::Bytes { data: README.as_bytes(), mode: 0o644 });
    add("airlock-desktop".into(), Content::Bytes { data: LAUNCHER.as_bytes(), mode: 0o755 });

    // Every parent folder gets its own entry, so unpacking creates it 0755 whatever the umask.
    let mut dirs = std::collections::BTreeSet::new();
    for e in &entries {
        let mut p = e.path.as_str();
        while let Some((parent, _)) = p.rsplit_once('/') {
            dirs.insert(parent.to_string());
            p = parent;
        }
    }
    entries.extend(dirs.into_iter().map(|path| Entry { path, content: Content::Dir }));
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

fn file_entry(path: &Path, mode: u32) -> Result<Content, KitError> {
    let meta = fs::metadata(path).map_err(io_at(path))?;
    Ok(Content::File { from: path.to_path_buf(), size: meta.len(), mode })
}

/// The `libllama*`, `libggml*` and `libmtmd*` files of `dir`. A symlink to another of those
/// files stays a link; any other link is carried as the file it points to.
fn libraries(dir: &Path) -> Result<Vec<(String, Content)>, KitError> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).map_err(io_at(dir))? {
        let e = e.map_err(io_at(dir))?;
        let Ok(name) = e.file_name().into_string() else { continue };
        if LIB_PREFIXES.iter().any(|p| name.starts_with(p)) && !e.file_type().map_err(io_at(&e.path()))?.is_dir() {
            names.push(name);
        }
    }
    names.sort();
    if !names.iter().any(|n| n.starts_with("libggml-cpu")) {
        return Err(KitError::Install(format!(
            "{} holds no engine CPU module (libggml-cpu-*.so); point {} at the folder that does, or reinstall Airlock",
            dir.display(),
            crate::backends::LIB_DIR_ENV
        )));
    }
    let mut out = Vec::new();
    for name in &names {
        let path = dir.join(name);
        let meta = fs::symlink_metadata(&path).map_err(io_at(&path))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(io_at(&path))?;
            let local = target.to_str().filter(|t| !t.contains('/') && names.iter().any(|n| n == t));
            if local.is_some() {
                out.push((name.clone(), Content::Symlink(target)));
                continue;
            }
            if !path.is_file() {
                return Err(KitError::Install(format!("{} is a broken link (to {}); rebuild or reinstall Airlock", path.display(), target.display())));
            }
        }
        out.push((name.clone(), file_entry(&path, 0o755)?));
    }
    Ok(out)
}

/// Reads exactly `left` bytes of `from` (an early end means the file changed while being
/// packed), reports each chunk and stops when cancelled. Its errors name `from`.
struct Exact<'a, R> {
    inner: R,
    from: &'a Path,
    left: u64,
    cancel: Option<&'a AtomicBool>,
    on_read: &'a mut dyn FnMut(usize),
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(io::Error::other("cancelled"));
        }
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf).map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", self.from.display())))?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} changed while it was being packed; try again", self.from.display())));
        }
        self.left -= n as u64;
        (self.on_read)(n);
        Ok(n)
    }
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_icon_size_is_embedded_as_a_png() {
        for n in ICON_SIZES {
            assert!(icon_png(n).starts_with(b"\x89PNG\r\n\x1a\n"), "{n}x{n}");
        }
    }

    #[test]
    fn launcher_is_a_posix_shell_script_and_readme_names_the_commands() {
        assert!(LAUNCHER.starts_with("#!/bin/sh\n"));
        assert!(LAUNCHER.contains("exec \"$dir/bin/airlock-desktop\" \"$@\""));
        assert!(LAUNCHER.contains("libwebkit2gtk-4.1-0"));
        for cmd in ["./bin/airlock --version", "./bin/airlock kit verify", "./bin/airlock import", "./bin/airlock run", "./airlock-desktop"] {
            assert!(README.contains(cmd), "README.txt lacks {cmd}");
        }
    }

    #[test]
    fn plan_is_sorted_with_parents_first_and_keeps_library_links() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("airlock");
        fs::write(&bin, b"binary").unwrap();
        let lib = dir.path().join("lib");
        fs::create_dir(&lib).unwrap();
        fs::write(lib.join("libggml-cpu-haswell.so"), b"cpu").unwrap();
        fs::write(lib.join("libllama.so.0.0.1"), b"llama").unwrap();
        fs::write(lib.join("unrelated.so"), b"x").unwrap();
        // The multimodal library (vision projectors) travels with the engine.
        fs::write(lib.join("libmtmd.so.0.6.0"), b"mtmd").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("libllama.so.0.0.1", lib.join("libllama.so.0")).unwrap();
        let src = PortableSource { airlock: bin, desktop: None, lib_dir: lib };
        let entries = plan(&src).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        let top = top_dir();
        assert_eq!(paths[0], top);
        assert!(paths.contains(&format!("{top}/lib/airlock/libggml-cpu-haswell.so").as_str()));
        assert!(paths.contains(&format!("{top}/lib/airlock/libmtmd.so.0.6.0").as_str()));
        assert!(!paths.iter().any(|p| p.contains("unrelated") || p.ends_with("bin/airlock-desktop")));
        #[cfg(unix)]
        assert!(entries.iter().any(|e| e.path.ends_with("libllama.so.0") && matches!(&e.content, Content::Symlink(t) if t == Path::new("libllama.so.0.0.1"))));
    }

    #[test]
    fn a_library_folder_without_a_cpu_module_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("libllama.so"), b"llama").unwrap();
        let err = libraries(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("libggml-cpu"), "{err}");
    }
}
