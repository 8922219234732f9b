//! Split bundles: a zip cut into `NAME.zip.001`, `NAME.zip.002`, … so it fits on FAT32 media or
//! several small drives. `cat` of the volumes is the zip, so any tool can rejoin them.
//!
//! [`VolumeWriter`] cuts the stream while exporting; [`VolumeReader`] presents the volumes as one
//! seekable file to the zip reader on import, after [`VolumeSet::open`] has checked that none is
//! missing or short (so the error names the volume instead of saying "invalid zip").

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::ImportError;
use crate::units::parse_size;

/// The largest file FAT32 can hold: 4 GiB − 1.
pub const FAT32_MAX: u64 = (4 << 30) - 1;

/// Parses a volume size ([`crate::units::parse_size`]); a volume holds at least 4096 bytes.
pub fn parse_volume_size(s: &str) -> Result<u64, String> {
    let bytes = parse_size(s)?;
    // Below this, volume bookkeeping outweighs the data and a zip header could not fit.
    if bytes < 4096 {
        return Err(format!("invalid size {s:?}: a volume must be at least 4096 bytes"));
    }
    Ok(bytes)
}

/// `base` + `.NNN` (three digits, more past 999).
pub fn volume_path(base: &Path, n: usize) -> PathBuf {
    let mut s = base.as_os_str().to_os_string();
    s.push(format!(".{n:03}"));
    PathBuf::from(s)
}

/// When `path` names a volume (`X.zip.007`), its base (`X.zip`) and number.
pub fn split_volume_name(path: &Path) -> Option<(PathBuf, usize)> {
    let name = path.file_name()?.to_str()?;
    let (stem, digits) = name.rsplit_once('.')?;
    if stem.is_empty() || digits.len() < 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((path.with_file_name(stem), digits.parse().ok()?))
}

/// The first volume (`*.001`) in a folder that holds no bundle of its own, if there is exactly one.
pub fn first_volume_in(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| split_volume_name(p).is_some_and(|(_, n)| n == 1) && p.is_file())
        .collect();
    (found.len() == 1).then(|| found.remove(0))
}

// ---------------------------------------------------------------------------------------------
// Reading

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// A checked, complete set of volumes.
#[derive(Clone, Debug)]
pub struct VolumeSet {
    pub paths: Vec<PathBuf>,
    /// Offset of each volume in the joined stream, plus the total at the end.
    starts: Vec<u64>,
}

impl VolumeSet {
    /// Finds `X.001`, `X.002`, … beside `first` and checks that none is missing and that every
    /// volume but the last has the first one's size, then that the zip's end record (which tells
    /// where its central directory is) sits at the end of the last one.
    pub fn open(first: &Path) -> Result<Self, ImportError> {
        let Some((base, 1)) = split_volume_name(first) else {
            return Err(ImportError::source(first, "is not the first volume of a split bundle (expected a name ending in .001)"));
        };
        let dir = first.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base_name = base.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut highest = 1;
        for entry in fs::read_dir(dir).map_err(|e| ImportError::source(dir, format!("cannot list: {e}")))?.flatten() {
            if let Some((b, n)) = split_volume_name(&entry.path()) {
                if b.file_name().is_some_and(|f| f.to_string_lossy() == base_name) {
                    highest = highest.max(n);
                }
            }
        }
        let mut paths = Vec::new();
        let mut starts = vec![0u64];
        let mut volume_size = 0;
        for n in 1..=highest {
            let path = volume_path(&base, n);
            let len = match fs::metadata(&path) {
                Ok(m) if m.is_file() => m.len(),
                _ => {
                    return Err(ImportError::source(
                        first,
                        format!("volume {} is missing (the bundle has volumes up to .{highest:03}); copy it next to the others", file_name(&path)),
                    ))
                }
            };
            if n == 1 {
                volume_size = len;
            } else if n < highest && len != volume_size {
                return Err(ImportError::integrity(&path, format!("is {len} bytes, expected {volume_size} like {} (every volume but the last has the same size)", file_name(first))));
            } else if n == highest && (len == 0 || len > volume_size) {
                return Err(ImportError::integrity(&path, format!("is {len} bytes; the last volume must hold between 1 and {volume_size} bytes")));
            }
            paths.push(path);
            starts.push(starts.last().unwrap() + len);
        }
        let set = VolumeSet { paths, starts };
        set.check_end(&base)?;
        Ok(set)
    }

    pub fn total_len(&self) -> u64 {
        *self.starts.last().unwrap()
    }

    /// The zip's end record must be in the tail, and its central directory must end right
    /// before it: otherwise the last volume is cut short or a further one is missing.
    fn check_end(&self, base: &Path) -> Result<(), ImportError> {
        let total = self.total_len();
        let last = self.paths.last().unwrap();
        let next = volume_path(base, self.paths.len() + 1);
        let incomplete = || {
            ImportError::source(
                &self.paths[0],
                format!("volume {} is missing, or the last volume {} is incomplete: the zip's end record is not in it", file_name(&next), file_name(last)),
            )
        };
        let tail_len = total.min(22 + 65535 + 20);
        let mut tail = vec![0u8; tail_len as usize];
        let mut r = VolumeReader::new(self.clone());
        r.seek(SeekFrom::Start(total - tail_len)).and_then(|_| r.read_exact(&mut tail)).map_err(|e| ImportError::source(last, format!("cannot read: {e}")))?;
        let Some(at) = (0..tail.len().saturating_sub(21)).rev().find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06]) else {
            return Err(incomplete());
        };
        let eocd_pos = total - tail_len + at as u64;
        let rd32 = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as u64;
        let rd64 = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let comment_len = u16::from_le_bytes([tail[at + 20], tail[at + 21]]) as u64;
        if eocd_pos + 22 + comment_len != total {
            return Err(incomplete());
        }
        let (mut cd_size, mut cd_offset, mut cd_end) = (rd32(&tail, at + 12), rd32(&tail, at + 16), eocd_pos);
        // Zip64: a locator right before the end record points at the zip64 end record.
        if at >= 20 && tail[at - 20..at - 16] == [0x50, 0x4b, 0x06, 0x07] {
            let rec_pos = rd64(&tail, at - 20 + 8);
            let mut rec = [0u8; 56];
            r.seek(SeekFrom::Start(rec_pos)).and_then(|_| r.read_exact(&mut rec)).map_err(|e| ImportError::source(last, format!("cannot read: {e}")))?;
            if rec[..4] != [0x50, 0x4b, 0x06, 0x06] {
                return Err(ImportError::integrity(last, "the zip64 end record is not where the locator says; a volume was changed or cut"));
            }
            cd_size = rd64(&rec, 40);
            cd_offset = rd64(&rec, 48);
            cd_end = rec_pos;
        }
        if cd_offset.checked_add(cd_size) != Some(cd_end) {
            return Err(ImportError::integrity(
                last,
                format!("the zip's central directory says the volumes hold {} bytes before it, they hold {cd_end}; a volume is short, long or out of order", cd_offset.saturating_add(cd_size)),
            ));
        }
        Ok(())
    }
}

/// The volumes of a [`VolumeSet`] read as one file.
pub struct VolumeReader {
    set: VolumeSet,
    pos: u64,
    /// The open volume: its index and the file, positioned at `pos`.
    open: Option<(usize, File)>,
}

impl VolumeReader {
    pub fn new(set: VolumeSet) -> Self {
        VolumeReader { set, pos: 0, open: None }
    }
}

impl Read for VolumeReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let total = self.set.total_len();
        if self.pos >= total || buf.is_empty() {
            return Ok(0);
        }
        let i = self.set.starts.partition_point(|&s| s <= self.pos) - 1;
        let (start, end) = (self.set.starts[i], self.set.starts[i + 1]);
        if self.open.as_ref().is_none_or(|(j, _)| *j != i) {
            let mut f = File::open(&self.set.paths[i]).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.set.paths[i].display())))?;
            f.seek(SeekFrom::Start(self.pos - start))?;
            self.open = Some((i, f));
        }
        let (_, f) = self.open.as_mut().unwrap();
        let want = buf.len().min((end - self.pos) as usize);
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{} became shorter while reading", self.set.paths[i].display())));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for VolumeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let total = self.set.total_len() as i128;
        let new = match to {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => total + d as i128,
            SeekFrom::Current(d) => self.pos as i128 + d as i128,
        };
        if new < 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the first volume"));
        }
        if new as u64 != self.pos {
            self.pos = new as u64;
            self.open = None;
        }
        Ok(self.pos)
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// Writes one stream into one file, or cut into volumes of at most `split` bytes. Files are
/// created with `create_new` (never overwriting) and fsynced after their last write: a full
/// volume when the next one starts, and again at [`VolumeWriter::finish`] when a
/// [`VolumeWriter::patch`] has written into it since.
pub struct VolumeWriter {
    base: PathBuf,
    split: Option<u64>,
    paths: Vec<PathBuf>,
    cur: File,
    cur_len: u64,
    pos: u64,
    /// How much of the current file has been handed to the kernel's writeback.
    flushed: u64,
    /// Earlier volumes written by `patch` after they were fsynced.
    patched: std::collections::BTreeSet<usize>,
}

/// Start writing back every this many bytes, so the final fsync finds little left to do.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Asks the kernel to start writing `len` bytes at `offset` to disk now, without waiting
/// (Linux `sync_file_range`); elsewhere a no-op. Only a hint: the final fsync is what counts.
fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor we own; no memory is passed.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

impl VolumeWriter {
    /// Writes to `base` itself, or to `base.001`, `base.002`, … when `split` is set.
    pub fn create(base: &Path, split: Option<u64>) -> io::Result<Self> {
        let first = if split.is_some() { volume_path(base, 1) } else { base.to_path_buf() };
        let cur = create_new(&first)?;
        Ok(VolumeWriter { base: base.to_path_buf(), split, paths: vec![first], cur, cur_len: 0, pos: 0, flushed: 0, patched: Default::default() })
    }

    /// Bytes written so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Overwrites bytes already written at `offset` (a CRC in a local header), wherever they are.
    pub fn patch(&mut self, mut offset: u64, mut bytes: &[u8]) -> io::Result<()> {
        let vol = self.split.unwrap_or(u64::MAX);
        while !bytes.is_empty() {
            let i = (offset / vol) as usize;
            let within = offset % vol;
            let n = bytes.len().min((vol - within) as usize);
            let mut f = OpenOptions::new().write(true).open(&self.paths[i])?;
            f.seek(SeekFrom::Start(within))?;
            f.write_all(&bytes[..n])?;
            if i + 1 < self.paths.len() {
                self.patched.insert(i);
            }
            bytes = &bytes[n..];
            offset += n as u64;
        }
        Ok(())
    }

    /// fsyncs the last volume and every earlier one patched since it was synced; returns every
    /// file written.
    pub fn finish(self) -> io::Result<Vec<PathBuf>> {
        self.cur.sync_all()?;
        for &i in &self.patched {
            File::open(&self.paths[i]).and_then(|f| f.sync_all()).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.paths[i].display())))?;
        }
        Ok(self.paths)
    }
}

fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl Write for VolumeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(split) = self.split {
            if self.cur_len == split {
                // Patches reopen earlier volumes by path, so the full one can be closed now.
                self.cur.sync_all()?;
                let next = volume_path(&self.base, self.paths.len() + 1);
                self.cur = create_new(&next)?;
                self.paths.push(next);
                self.cur_len = 0;
                self.flushed = 0;
            }
        }
        let room = self.split.map_or(buf.len(), |s| buf.len().min((s - self.cur_len) as usize));
        let n = self.cur.write(&buf[..room])?;
        self.cur_len += n as u64;
        self.pos += n as u64;
        if self.cur_len - self.flushed >= WRITEBACK_EVERY {
            start_writeback(&self.cur, self.flushed, self.cur_len - self.flushed);
            self.flushed = self.cur_len;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.cur.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_volume_sizes() {
        assert_eq!(parse_volume_size("100M").unwrap(), 100 << 20);
        assert_eq!(parse_volume_size("5000").unwrap(), 5000);
        assert!(parse_volume_size("12").unwrap_err().contains("at least 4096 bytes"));
        assert!(parse_volume_size("4X").is_err());
    }

    #[test]
    fn names_volumes() {
        let p = volume_path(Path::new("/a/x.zip"), 3);
        assert_eq!(p, Path::new("/a/x.zip.003"));
        assert_eq!(split_volume_name(&p), Some((PathBuf::from("/a/x.zip"), 3)));
        assert_eq!(split_volume_name(Path::new("/a/x.zip")), None);
        assert_eq!(split_volume_name(Path::new("/a/x.zip.01")), None);
    }

    #[test]
    fn writer_cuts_and_reader_rejoins() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("x.bin");
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut w = VolumeWriter::create(&base, Some(4096)).unwrap();
        w.write_all(&data).unwrap();
        w.patch(4090, b"ABCDEFGHIJ").unwrap();
        let paths = w.finish().unwrap();
        assert_eq!(paths.len(), 5);
        let mut expected = data.clone();
        expected[4090..4100].copy_from_slice(b"ABCDEFGHIJ");
        let joined: Vec<u8> = paths.iter().flat_map(|p| fs::read(p).unwrap()).collect();
        assert_eq!(joined, expected);
        let set = VolumeSet { paths: paths.clone(), starts: std::iter::once(0).chain((1..=5).map(|i| (i * 4096).min(20_000))).collect() };
        let mut r = VolumeReader::new(set);
        r.seek(SeekFrom::Start(4000)).unwrap();
        let mut got = vec![0u8; 9000];
        r.read_exact(&mut got).unwrap();
        assert_eq!(got, expected[4000..13000]);
    }
}
