//! The audit log: one JSON line per API request (who, from where, which route and model, the
//! outcome, token counts, the digests a store change touched), appended by one writer thread,
//! fsync'd in batches and rotated by size. It never holds a token; prompt and reply text only
//! when the operator asks for it.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// One request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Record {
    pub time: String,
    /// The token's name; `None` on a server without tokens (or before a token was accepted).
    pub token: Option<String>,
    pub peer: Option<String>,
    pub method: String,
    pub route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_tokens: Option<u64>,
    /// Prompt tokens whose KV cache an earlier request left (a conversation's prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    pub duration_ms: u64,
    /// Why a reply that had begun (status 200) failed, or why the request was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The blobs a store change added, removed or published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<String>,
    /// The request's messages or prompt, only with text recording on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<serde_json::Value>,
    /// The reply's text, only with text recording on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// From the request's start to the reply's first text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_token_ms: Option<u64>,
    /// The reply's decoding speed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// The route as declared (`/api/blobs/{digest}`), for metrics; not logged.
    #[serde(skip)]
    pub route_template: Option<String>,
}

/// Where finished records go: the audit log, the metrics.
pub trait RecordSink: Send + Sync {
    fn finished(&self, record: &Record);
}

/// A log file is rotated once it reaches this size; this many old files are kept.
pub const ROTATE_BYTES: u64 = 64 << 20;
const KEEP_ROTATED: u32 = 9;
/// Lines are written at once and fsync'd at most this long after.
const SYNC_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuditError(pub String);

/// The writer of one audit log. Dropping it writes and syncs what is queued.
pub struct AuditLog {
    path: PathBuf,
    /// Whether requests' prompt and reply text are recorded.
    pub keep_text: bool,
    tx: Mutex<Option<mpsc::Sender<String>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditLog({})", self.path.display())
    }
}

/// Names the audit log's file.
pub const PATH_ENV: &str = "AIRLOCK_AUDIT_LOG";

/// `AIRLOCK_AUDIT_LOG`, else `<data folder>/airlock/audit.jsonl`.
pub fn default_path() -> Option<PathBuf> {
    match std::env::var_os(PATH_ENV).filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => dirs::data_dir().map(|d| d.join("airlock").join("audit.jsonl")),
    }
}

impl AuditLog {
    pub fn open(path: PathBuf, keep_text: bool, rotate_bytes: u64) -> Result<Arc<Self>, AuditError> {
        let fail = |e: std::io::Error| AuditError(format!("cannot open the audit log {}: {e}; set AIRLOCK_AUDIT_LOG to a file this user can write", path.display()));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let file = open_append(&path).map_err(fail)?;
        let (tx, rx) = mpsc::channel::<String>();
        let at = path.clone();
        let writer = std::thread::Builder::new().name("audit-log".into()).spawn(move || write_lines(at, file, rx, rotate_bytes)).map_err(fail)?;
        Ok(Arc::new(AuditLog { path, keep_text, tx: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)) }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, record: &Record) {
        let line = serde_json::to_string(record).expect("records serialise");
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(line);
        }
    }
}

impl RecordSink for AuditLog {
    fn finished(&self, record: &Record) {
        self.write(record);
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread: each line is appended at once (a reader sees it), the file is synced once
/// per batch, and a full file is renamed to `.1` (older ones shift up) before the next line.
fn write_lines(path: PathBuf, mut file: File, rx: mpsc::Receiver<String>, rotate_bytes: u64) {
    let mut size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut unsynced = false;
    let mut last_sync = Instant::now();
    let complain = |e: std::io::Error| eprintln!("warning: cannot write the audit log {}: {e}", path.display());
    loop {
        match rx.recv_timeout(SYNC_EVERY) {
            Ok(mut line) => {
                line.push('\n');
                if size > 0 && size + line.len() as u64 > rotate_bytes {
                    let _ = file.sync_data();
                    for n in (1..KEEP_ROTATED).rev() {
                        let _ = std::fs::rename(rotated(&path, n), rotated(&path, n + 1));
                    }
                    match std::fs::rename(&path, rotated(&path, 1)).and_then(|_| open_append(&path)) {
                        Ok(f) => (file, size) = (f, 0),
                        Err(e) => complain(e),
                    }
                }
                match file.write_all(line.as_bytes()) {
                    Ok(()) => size += line.len() as u64,
                    Err(e) => complain(e),
                }
                unsynced = true;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = file.sync_data();
                return;
            }
        }
        if unsynced && last_sync.elapsed() >= SYNC_EVERY {
            if let Err(e) = file.sync_data() {
                complain(e);
            }
            unsynced = false;
            last_sync = Instant::now();
        }
    }
}

/// A request's record while it runs: routes and streams fill it in, and it goes to the sinks
/// when the last holder lets go (the response body ended or the client left, and the generation
/// stopped).
pub struct Note {
    record: Mutex<Record>,
    began: Instant,
    keep_text: bool,
    sinks: Vec<Arc<dyn RecordSink>>,
}

impl Note {
    pub fn new(sinks: Vec<Arc<dyn RecordSink>>, keep_text: bool, record: Record) -> Arc<Self> {
        Arc::new(Note { record: Mutex::new(record), began: Instant::now(), keep_text, sinks })
    }

    /// Whether the request's prompt and reply text are kept.
    pub fn keep_text(&self) -> bool {
        self.keep_text
    }

    /// Since the request began.
    pub fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }

    pub fn update(&self, f: impl FnOnce(&mut Record)) {
        f(&mut self.record.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl Drop for Note {
    fn drop(&mut self) {
        let record = self.record.get_mut().unwrap_or_else(|e| e.into_inner());
        record.duration_ms = self.began.elapsed().as_millis() as u64;
        for sink in &self.sinks {
            sink.finished(record);
        }
    }
}

/// The log and its rotated files, oldest first.
fn files(path: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = (1..=KEEP_ROTATED).rev().map(|n| rotated(path, n)).filter(|p| p.exists()).collect();
    all.push(path.to_path_buf());
    all
}

/// `airlock audit`: the records from `since` on, of one token if asked, oldest first. Lines that
/// are not records (a torn last line after a crash) are counted, not fatal.
pub fn read(path: &Path, since: Option<OffsetDateTime>, token: Option<&str>) -> Result<(Vec<Record>, usize), AuditError> {
    let mut records = Vec::new();
    let mut unreadable = 0;
    for file in files(path) {
        let f = match File::open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(AuditError(format!("cannot read the audit log {}: {e}", file.display()))),
        };
        for line in std::io::BufReader::new(f).lines() {
            let Ok(record) = line.map_err(|_| ()).and_then(|l| serde_json::from_str::<Record>(&l).map_err(|_| ())) else {
                unreadable += 1;
                continue;
            };
            let recent = since.is_none_or(|s| OffsetDateTime::parse(&record.time, &Rfc3339).is_ok_and(|t| t >= s));
            if recent && token.is_none_or(|t| record.token.as_deref() == Some(t)) {
                records.push(record);
            }
        }
    }
    Ok((records, unreadable))
}

/// `--since`: a date, an RFC 3339 time, or a span back from now (`30m`, `12h`, `7d`).
pub fn parse_since(s: &str) -> Result<OffsetDateTime, AuditError> {
    let bad = || AuditError(format!("invalid --since {s:?}: expected a date (2026-12-01), a time (2026-12-01T08:00:00Z) or a span (30m, 12h, 7d)"));
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    if let Ok(d) = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let span = match unit {
        "s" => time::Duration::seconds(n),
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        _ => return Err(bad()),
    };
    Ok(OffsetDateTime::now_utc() - span)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(token: &str, time: &str) -> Record {
        Record { time: time.into(), token: Some(token.into()), method: "POST".into(), route: "/api/chat".into(), status: 200, ..Record::default() }
    }

    #[test]
    fn lines_rotate_by_size_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(path.clone(), false, 600).unwrap();
        for i in 0..20 {
            log.write(&record(if i % 2 == 0 { "alice" } else { "bob" }, &format!("2026-12-05T10:00:{i:02}Z")));
        }
        drop(log);
        assert!(rotated(&path, 1).exists(), "a 600-byte log rotates");
        for f in files(&path) {
            assert!(std::fs::metadata(&f).unwrap().len() <= 600 + 200, "{}", f.display());
        }
        let (all, bad) = read(&path, None, None).unwrap();
        assert_eq!((all.len(), bad), (20, 0));
        assert!(all.windows(2).all(|w| w[0].time < w[1].time), "oldest first");
        let (alice, _) = read(&path, Some(parse_since("2026-12-05T10:00:10Z").unwrap()), Some("alice")).unwrap();
        assert_eq!(alice.len(), 5);
    }

    #[test]
    fn a_note_is_written_when_its_last_holder_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/audit.jsonl");
        let log = AuditLog::open(path.clone(), false, ROTATE_BYTES).unwrap();
        let note = Note::new(vec![log.clone()], false, record("alice", "2026-12-05T10:00:00Z"));
        let held = note.clone();
        drop(note);
        held.update(|r| r.reply_tokens = Some(7));
        drop(held);
        drop(log);
        let (all, _) = read(&path, None, None).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].reply_tokens, Some(7));
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"torn").unwrap();
        assert_eq!(read(&path, None, None).unwrap().1, 1);
        assert!(parse_since("7d").unwrap() < OffsetDateTime::now_utc());
        assert!(parse_since("yesterday").is_err());
    }
}
