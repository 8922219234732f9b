//! Free disk space for the store, and reservations of it by the writes in progress (uploads,
//! pulls): two writes at once cannot both count the same free bytes, and no write is started
//! that cannot finish.

use std::path::Path;
use std::sync::{Arc, Mutex};

/// Room always left on the disk: a write never fills it to the last byte.
pub const DISK_RESERVE: u64 = 64 << 20;

/// Bytes free to an unprivileged writer on the filesystem holding `path` (or its nearest existing
/// folder); `None` where unknown (not Linux).
pub fn free_space(path: &Path) -> Option<u64> {
    let existing = path.ancestors().find(|p| p.exists())?;
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid NUL-terminated path and a zeroed out-struct of the right type.
        if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
            return None;
        }
        Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = existing;
        None
    }
}

/// What the writes in progress have reserved.
#[derive(Debug, Default)]
pub struct SpaceLedger {
    reserved: Arc<Mutex<u64>>,
}

/// Bytes held for one write until it is dropped.
#[derive(Debug)]
pub struct Reservation {
    reserved: Arc<Mutex<u64>>,
    bytes: u64,
    /// What the write may use: the bytes reserved, or when it did not say how many, what was free
    /// for it when it started.
    room: u64,
}

impl Reservation {
    pub fn room(&self) -> u64 {
        self.room
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut r = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        *r = r.saturating_sub(self.bytes);
    }
}

/// A write that does not fit.
#[derive(Debug, thiserror::Error)]
#[error("{needed} bytes are needed and {room} are free for the model store{held}; free some disk space and try again", held = if *reserved > 0 { format!(" ({reserved} more are held by transfers in progress)") } else { String::new() })]
pub struct NoSpace {
    pub needed: u64,
    pub room: u64,
    pub reserved: u64,
}

impl SpaceLedger {
    /// Reserves `bytes` on the filesystem of `root` (0: a write of unknown size, which may use what
    /// is free now, see [`Reservation::room`]). Unknown free space reserves without checking.
    pub fn reserve(&self, root: &Path, bytes: u64) -> Result<Reservation, NoSpace> {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let room = match free_space(root) {
            Some(free) => free.saturating_sub(DISK_RESERVE).saturating_sub(*reserved),
            None => u64::MAX,
        };
        if bytes > room {
            return Err(NoSpace { needed: bytes, room, reserved: *reserved });
        }
        *reserved += bytes;
        Ok(Reservation { reserved: self.reserved.clone(), bytes, room: if bytes > 0 { bytes } else { room } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_writes_cannot_count_the_same_free_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SpaceLedger::default();
        let free = free_space(dir.path()).unwrap() - DISK_RESERVE;
        let most = free / 10 * 6;
        let first = ledger.reserve(dir.path(), most).unwrap();
        assert_eq!(first.room(), most);
        let refused = ledger.reserve(dir.path(), most).unwrap_err();
        assert_eq!(refused.reserved, most);
        assert!(refused.to_string().contains("held by transfers in progress"), "{refused}");
        // A write of unknown size may use what the others left.
        let open = ledger.reserve(dir.path(), 0).unwrap();
        assert!(open.room() < free - most / 2, "what the first holds is not offered again: {} of {free}", open.room());
        drop(first);
        let again = ledger.reserve(dir.path(), most).unwrap();
        drop((again, open));
        assert_eq!(*ledger.reserved.lock().unwrap(), 0, "every reservation is given back");
        assert!(ledger.reserve(dir.path(), u64::MAX / 2).is_err());
        assert!(free_space(&dir.path().join("not/yet/made")).is_some(), "the nearest existing folder counts");
    }
}
