//! Durable file writes: the one way Airlock replaces a small file (a manifest, an inventory, a
//! conversation, a trusted key, `SHA256SUMS`). Write a temporary file beside the target, fsync
//! it, rename it over the target, fsync the folder: after a crash or a power loss a reader finds
//! the old file or the whole new one, never a torn or empty one.
//!
//! Never writes anywhere but the target's own folder (a rename across filesystems is not atomic).
//!
//! Uses no other module of Airlock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes` atomically and durably. The temporary file is a hidden sibling
/// (`.NAME.<pid>-<n>.tmp`), unique per write, so concurrent writers of one file never share it;
/// it is removed again when anything fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o666)
}

/// [`write_atomic`] for a secret: the file is readable by its owner only (mode 0600 on Unix) from
/// the moment it exists, so no other user can read it even before the rename.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent_of(path);
    let tmp = temp_path(path)?;
    let written = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        #[cfg(not(unix))]
        let _ = mode;
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())));
    }
    // The rename itself must reach the disk too.
    sync_dir(dir).map_err(|e| io::Error::new(e.kind(), format!("cannot sync the folder {}: {e}", dir.display())))
}

/// fsyncs a directory so a rename into it (or a file created in it) survives a crash. A no-op
/// where directories cannot be opened (Windows: renames there are durable via the file system).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

fn temp_path(path: &Path) -> io::Result<PathBuf> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a file name", path.display())))?;
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    Ok(parent_of(path).join(format!(".{}.{}-{n}.tmp", name.to_string_lossy(), std::process::id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.json");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two, longer").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two, longer");
        assert_eq!(names(dir.path()), ["a.json"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.json");
        write_atomic(&target, b"old").unwrap();
        // A folder where the file should be: the rename fails after the temporary was written.
        let blocked = dir.path().join("sub");
        fs::create_dir_all(blocked.join("x")).unwrap();
        let err = write_atomic(&blocked, b"new").unwrap_err();
        assert!(err.to_string().contains("sub"), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["a.json", "sub"]);
        assert!(write_atomic(&dir.path().join("missing/a.json"), b"x").is_err());
    }

    #[test]
    fn concurrent_writers_never_leave_a_torn_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("c.json");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let target = &target;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_atomic(target, &vec![b'a' + t; 10_000]).unwrap();
                        let read = fs::read(target).unwrap();
                        assert!(read.len() == 10_000 && read.iter().all(|&b| b == read[0]), "torn file");
                    }
                });
            }
        });
        assert_eq!(names(dir.path()), ["c.json"]);
    }
}
