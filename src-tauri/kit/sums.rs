//! `SHA256SUMS`: the kit's list of files, in the format `sha256sum` writes and `sha256sum -c`
//! checks (`<64 lowercase hex>  <path>`, one line each), so the far side can check a kit with
//! plain coreutils before it trusts any Airlock binary.
//!
//! The parser is strict because the file comes from the stick: only the exact format Airlock
//! writes is accepted, and every path must be a plain relative path inside the kit.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};

pub const SUMS_FILE: &str = "SHA256SUMS";
pub const SUMS_SIG_FILE: &str = "SHA256SUMS.minisig";

/// Bounds on untrusted input: a kit lists a handful of files.
pub const MAX_SUMS_BYTES: u64 = 1 << 20;
pub const MAX_ENTRIES: usize = 10_000;
pub const MAX_PATH_BYTES: usize = 1024;

/// One line: a file of the kit (relative, `/`-separated) and its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SumLine {
    pub sha256: String,
    pub path: String,
}

/// Why a `SHA256SUMS` text was refused: the 1-based line and the problem.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub problem: String,
}

/// Parses `SHA256SUMS`; refuses anything but the exact format [`format`] writes.
pub fn parse(bytes: &[u8]) -> Result<Vec<SumLine>, ParseError> {
    let fail = |line: usize, problem: &str| Err(ParseError { line, problem: problem.to_string() });
    if bytes.len() as u64 > MAX_SUMS_BYTES {
        return fail(1, &format!("the file is larger than {MAX_SUMS_BYTES} bytes"));
    }
    if bytes.is_empty() {
        return fail(1, "the file is empty; it must list the kit's files");
    }
    let Some(body) = bytes.strip_suffix(b"\n") else {
        return fail(bytes.split(|&b| b == b'\n').count(), "the last line does not end with a newline: the file is cut short");
    };
    let mut out: Vec<SumLine> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        if n > MAX_ENTRIES {
            return fail(n, &format!("more than {MAX_ENTRIES} lines"));
        }
        let Ok(line) = std::str::from_utf8(raw) else { return fail(n, "the line is not UTF-8 text") };
        if line.is_empty() {
            return fail(n, "empty line");
        }
        if line.contains('\r') {
            return fail(n, "carriage return in the line (the file was converted to DOS line endings)");
        }
        if line.len() > 66 + MAX_PATH_BYTES {
            return fail(n, &format!("the line is longer than {} characters", 66 + MAX_PATH_BYTES));
        }
        let (hash, rest) = line.split_at_checked(64).unwrap_or((line, ""));
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return fail(n, "the line does not start with a SHA-256 of 64 lower-case hex digits");
        }
        let Some(path) = rest.strip_prefix("  ") else {
            return fail(n, "the hash must be followed by two spaces and a path (text mode, as sha256sum writes it)");
        };
        if let Err(problem) = check_path(path) {
            return fail(n, &format!("{path:?}: {problem}"));
        }
        if !seen.insert(path) {
            return fail(n, &format!("{path:?} is listed twice"));
        }
        out.push(SumLine { sha256: hash.to_string(), path: path.to_string() });
    }
    Ok(out)
}

/// A path `SHA256SUMS` may name: relative, `/`-separated, no `.`/`..`/empty components, no
/// backslash or control character, not the checksum files themselves.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("path longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.starts_with('/') {
        return Err("absolute path; a kit lists paths relative to its folder".into());
    }
    if path.contains('\\') {
        return Err("backslash in the path".into());
    }
    if path.chars().any(|c| c.is_control()) {
        return Err("control character in the path".into());
    }
    for c in path.split('/') {
        match c {
            "" => return Err("empty path component (`//` or a trailing `/`)".into()),
            "." | ".." => return Err(format!("`{c}` in the path; a kit lists only files inside its folder")),
            _ if c.trim() != c => return Err("a path component starts or ends with a space".into()),
            _ => {}
        }
    }
    if path == SUMS_FILE || path == SUMS_SIG_FILE {
        return Err("the checksum files do not list themselves".into());
    }
    Ok(())
}

/// The `SHA256SUMS` text for `lines` (sorted by path).
pub fn format(lines: &[SumLine]) -> String {
    let mut sorted: Vec<&SumLine> = lines.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    sorted.iter().map(|l| format!("{}  {}\n", l.sha256, l.path)).collect()
}

/// Streams `path` through SHA-256; `on_chunk` gets each chunk's length (for progress) and may
/// stop the work by returning an error. Returns (lower-case hex, size).
pub fn hash_file(path: &Path, mut on_chunk: impl FnMut(u64) -> io::Result<()>) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        len += n as u64;
        on_chunk(n as u64)?;
    }
    Ok((hex::encode(h.finalize()), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

    fn line(path: &str) -> String {
        format!("{H}  {path}\n")
    }

    fn refused(text: &str) -> ParseError {
        parse(text.as_bytes()).expect_err(&format!("accepted {text:?}"))
    }

    #[test]
    fn parses_what_format_writes_and_sha256sum_reads() {
        let lines = vec![SumLine { sha256: H.into(), path: "models/models.zip".into() }, SumLine { sha256: "0".repeat(64), path: "INSTALL.txt".into() }];
        let text = format(&lines);
        assert_eq!(text, format!("{}  INSTALL.txt\n{H}  models/models.zip\n", "0".repeat(64)));
        let parsed = parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].path, "INSTALL.txt");
        assert_eq!(parsed[1], lines[0]);
    }

    #[test]
    fn refuses_paths_that_leave_the_kit() {
        for p in ["../x", "app/../../etc/passwd", "/etc/passwd", "..", ".", "./app/x", "app/./x", "app//x", "app/", "a\\b", "..\\x", "C:\\x", " ", "app/ x", "x "] {
            let e = refused(&line(p));
            assert_eq!(e.line, 1, "{p}");
        }
    }

    #[test]
    fn refuses_malformed_lines_naming_the_line() {
        let ok = line("INSTALL.txt");
        let cases = [
            format!("{ok}{}  x\n", &H[..63]),         // short hash
            format!("{ok}{}  x\n", H.to_uppercase()), // upper-case hex
            format!("{ok}{H} *x\n"),                  // binary-mode marker
            format!("{ok}{H} x\n"),                   // one space
            format!("{ok}{H}   \n"),                  // empty path (spaces after two)
            format!("{ok}{H}  \n"),                   // empty path
            format!("{ok}\n"),                        // empty line
            format!("{ok}{H}  x\r\n"),                // CRLF
            format!("{ok}{H}  a\u{7}b\n"),            // control character
            format!("{ok}{}  x\n", "g".repeat(64)),   // not hex
            format!("{ok}{H}  INSTALL.txt\n"),        // duplicate
            format!("{ok}{H}  SHA256SUMS\n"),         // lists itself
            format!("{ok}{H}  SHA256SUMS.minisig\n"),
            format!("{ok}\\{H}  x\n"), // sha256sum's escaped form
            format!("{ok}{H}  {}\n", "a".repeat(MAX_PATH_BYTES + 1)),
        ];
        for text in &cases {
            let e = refused(text);
            assert_eq!(e.line, 2, "{text:?}: {}", e.problem);
        }
        let mut bad_utf8 = ok.clone().into_bytes();
        bad_utf8.extend_from_slice(&H.as_bytes()[..64]);
        bad_utf8.extend_from_slice(b"  \xff\xfe\n");
        assert_eq!(parse(&bad_utf8).unwrap_err().line, 2);
    }

    #[test]
    fn refuses_empty_truncated_and_oversized_files() {
        assert!(refused("").problem.contains("empty"));
        assert!(refused(&format!("{H}  x")).problem.contains("newline"));
        let many: String = (0..=MAX_ENTRIES).map(|i| line(&format!("f{i}"))).collect();
        assert!(parse(many.as_bytes()).is_err());
        let huge = vec![b'a'; MAX_SUMS_BYTES as usize + 1];
        assert!(parse(&huge).unwrap_err().problem.contains("larger"));
    }

    #[test]
    fn hostile_input_never_panics() {
        let accents = "é".repeat(40);
        let samples: [&[u8]; 6] = [b"\n", b"\n\n", b"  \n", &[0xff; 70], b"\x00\x00\n", accents.as_bytes()];
        for s in samples {
            let _ = parse(s);
        }
        // Multi-byte characters where the hash should end must not split a character.
        let _ = parse(format!("{}é  x\n", &H[..63]).as_bytes());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn any_accepted_path_stays_inside_the_kit(path in "[a-z./\\\\ \u{0}\r]{0,24}") {
            if let Ok(lines) = parse(format!("{H}  {path}\n").as_bytes()) {
                let p = &lines[0].path;
                proptest::prop_assert!(!p.starts_with('/') && !p.contains('\\'));
                proptest::prop_assert!(p.split('/').all(|c| !c.is_empty() && c != "." && c != ".."), "{:?}", p);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn hash_file_matches_a_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        let (hex, len) = hash_file(&p, |_| Ok(())).unwrap();
        assert_eq!(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(len, 3);
    }
}
