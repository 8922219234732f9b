//! Text out of the files people keep: plain text and Markdown, source code, HTML (html2text),
//! PDF (pdf-extract, page by page) and Word `.docx` (its `word/document.xml`, read with zip and
//! quick-xml). Each file becomes sections of text with a location a person can find again: a
//! page, a heading, a line. A file that cannot be read is an error saying why, never a panic.
//!
//! PDF, DOCX and HTML parsers meet hostile input: a form XObject that draws itself recurses until
//! the stack runs out, a doubly compressed stream of a few KB inflates to gigabytes. So those
//! files are read in a child process (`airlock extract`, like the runner) under [`READER_LIMITS`]:
//! a file that breaks one is an error naming the limit, and the app lives on.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::child::{self, Limits};

/// Files bigger than this are not read (an index is for documents, not disk images).
pub const MAX_FILE_BYTES: u64 = 64 << 20;

/// What the child that reads one PDF, DOCX or HTML file may use: enough for any real document
/// under [`MAX_FILE_BYTES`], far from what would slow the machine.
pub const READER_LIMITS: Limits = Limits { memory: Some(1 << 30), cpu: Some(Duration::from_secs(60)), wall: Duration::from_secs(120), output: 256 << 20 };

/// A part of a document with where it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Section {
    /// "page 3", "# Installation", "" for a file without structure.
    pub location: String,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
}

pub const SOURCE_EXTENSIONS: &[&str] = &[
    "rs", "py", "js", "ts", "tsx", "jsx", "go", "c", "h", "cpp", "hpp", "cc", "java", "kt", "cs", "rb", "php", "swift", "sh", "bash", "sql", "toml", "yaml", "yml", "json", "xml", "ini", "cfg", "conf", "csv", "log", "svelte", "vue", "css", "scss", "lua", "pl", "r", "m", "scala", "zig", "tex", "rst", "adoc", "org",
];

/// What kind of document `path` is, by its extension; `None`: not one we read.
pub fn kind_of(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "text" => Some(Kind::Text),
        "md" | "markdown" => Some(Kind::Markdown),
        "html" | "htm" | "xhtml" => Some(Kind::Html),
        "pdf" => Some(Kind::Pdf),
        "docx" => Some(Kind::Docx),
        e if SOURCE_EXTENSIONS.contains(&e) => Some(Kind::Text),
        _ => None,
    }
}

/// The sections of `path`, or why it cannot be read (in words for the person who owns it).
/// PDF, DOCX and HTML are parsed in a child process under [`READER_LIMITS`].
pub fn extract(path: &Path) -> Result<Vec<Section>, String> {
    extract_within(path, READER_LIMITS)
}

/// [`extract`], with the reader child held to `limits`.
pub fn extract_within(path: &Path, limits: Limits) -> Result<Vec<Section>, String> {
    match checked_kind(path)? {
        kind @ (Kind::Text | Kind::Markdown) => extract_here(path, kind),
        Kind::Html | Kind::Pdf | Kind::Docx => extract_in_child(path, limits),
    }
}

fn checked_kind(path: &Path) -> Result<Kind, String> {
    let kind = kind_of(path).ok_or_else(|| "not a document type Airlock reads (.txt, .md, .pdf, .docx, .html or source code)".to_string())?;
    let meta = fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("it is {} MB; documents over {} MB are not indexed", meta.len() >> 20, MAX_FILE_BYTES >> 20));
    }
    Ok(kind)
}

fn extract_in_child(path: &Path, limits: Limits) -> Result<Vec<Section>, String> {
    let exe = child::own_exe().ok_or("the airlock program that reads documents in a separate process was not found; reinstall Airlock")?;
    let mut cmd = Command::new(exe);
    // The reader gets no credential or key, like every child that parses untrusted files.
    crate::backends::restrict_child_environment(&mut cmd);
    cmd.arg("extract").arg("--").arg(path);
    let done = child::run_limited(cmd, limits).map_err(|e| format!("reading it was stopped: {e}"))?;
    match serde_json::from_slice::<Result<Vec<Section>, String>>(&done.stdout) {
        Ok(result) if done.status.success() => result,
        _ => Err(format!("the document reader failed ({}){}", done.status, if done.stderr_tail.is_empty() { String::new() } else { format!(": {}", done.stderr_tail) })),
    }
}

/// The `airlock extract PATH` child: the sections of one file (or why not) as JSON on stdout.
pub fn reader_main(path: &Path) -> ExitCode {
    match serde_json::to_writer(std::io::stdout().lock(), &checked_kind(path).and_then(|kind| extract_here(path, kind))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write the extracted text: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `path` (already checked by [`checked_kind`]) in this process: only for the reader
/// child, and for plain text.
fn extract_here(path: &Path, kind: Kind) -> Result<Vec<Section>, String> {
    let sections = match kind {
        Kind::Text => vec![Section { location: String::new(), text: read_text(path)? }],
        Kind::Markdown => markdown_sections(&read_text(path)?),
        Kind::Html => {
            let bytes = fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
            let text = html2text::config::plain().string_from_read(&bytes[..], 10_000).map_err(|e| format!("not readable as HTML: {e}"))?;
            vec![Section { location: String::new(), text }]
        }
        Kind::Pdf => pdf_pages(path)?,
        Kind::Docx => docx_sections(path)?,
    };
    Ok(sections.into_iter().filter(|s| !s.text.trim().is_empty()).collect())
}

fn read_text(path: &Path) -> Result<String, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.iter().take(8192).any(|b| *b == 0) {
        return Err("it looks like a binary file, not text".into());
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One section per heading, located by the heading's text.
fn markdown_sections(text: &str) -> Vec<Section> {
    let mut out = vec![Section { location: String::new(), text: String::new() }];
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            out.push(Section { location: line.trim().to_string(), text: String::new() });
        }
        let last = out.last_mut().unwrap();
        last.text.push_str(line);
        last.text.push('\n');
    }
    out
}

fn pdf_pages(path: &Path) -> Result<Vec<Section>, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !bytes.starts_with(b"%PDF") && !bytes.windows(5).take(1024).any(|w| w == b"%PDF-") {
        return Err("not a PDF file (no %PDF header); it may be damaged or misnamed".into());
    }
    // pdf-extract panics on some malformed files: reported as damage, not as a crash.
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(&bytes))
        .map_err(|_| "the PDF is damaged: its structure could not be parsed".to_string())?
        .map_err(|e| format!("the PDF could not be read ({e}); it may be damaged, encrypted or only scanned images"))?;
    let sections: Vec<Section> = pages.into_iter().enumerate().map(|(i, text)| Section { location: format!("page {}", i + 1), text }).collect();
    if sections.iter().all(|s| s.text.trim().is_empty()) {
        return Err("the PDF holds no text (scanned pages need OCR first)".into());
    }
    Ok(sections)
}

/// The most XML a `.docx` may hold (it compresses well; real documents hold far less).
const MAX_DOCX_XML: u64 = MAX_FILE_BYTES * 4;

/// The paragraphs of a `.docx`, grouped under the headings (paragraph styles `Heading…`/`Title`).
fn docx_sections(path: &Path) -> Result<Vec<Section>, String> {
    use quick_xml::events::Event;
    let file = fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a valid .docx (not a zip archive: {e})"))?;
    let mut xml = String::new();
    {
        // Checked as read, too: the size an archive declares may lie.
        let too_large = || format!("its text part (word/document.xml) is larger than {} MB", MAX_DOCX_XML >> 20);
        let entry = zip.by_name("word/document.xml").map_err(|_| "not a valid .docx (no word/document.xml inside)".to_string())?;
        if entry.size() > MAX_DOCX_XML {
            return Err(too_large());
        }
        entry.take(MAX_DOCX_XML + 1).read_to_string(&mut xml).map_err(|e| format!("not a valid .docx ({e})"))?;
        if xml.len() as u64 > MAX_DOCX_XML {
            return Err(too_large());
        }
    }
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut sections = vec![Section { location: String::new(), text: String::new() }];
    let (mut paragraph, mut heading, mut in_text) = (String::new(), false, false);
    loop {
        match reader.read_event().map_err(|e| format!("not a valid .docx (its XML is broken: {e})"))? {
            Event::Start(e) if e.local_name().as_ref() == "t" => in_text = true,
            Event::End(e) if e.local_name().as_ref() == "t" => in_text = false,
            Event::Empty(e) | Event::Start(e) if e.local_name().as_ref() == "pStyle" => {
                let style = e.attributes().flatten().find(|a| a.key.local_name().as_ref() == "val").map(|a| a.value.to_ascii_lowercase()).unwrap_or_default();
                heading = style.starts_with("heading") || style == "title";
            }
            Event::Empty(e) if matches!(e.local_name().as_ref(), "tab") => paragraph.push('\t'),
            Event::Empty(e) if matches!(e.local_name().as_ref(), "br" | "cr") => paragraph.push('\n'),
            Event::Text(t) if in_text => paragraph.push_str(&t),
            Event::GeneralRef(r) if in_text => {
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    paragraph.push(c);
                } else if let Some(s) = quick_xml::escape::resolve_predefined_entity(&r) {
                    paragraph.push_str(s);
                }
            }
            Event::End(e) if e.local_name().as_ref() == "p" => {
                let text = std::mem::take(&mut paragraph);
                if heading && !text.trim().is_empty() {
                    sections.push(Section { location: text.trim().to_string(), text: String::new() });
                }
                let last = sections.last_mut().unwrap();
                last.text.push_str(&text);
                last.text.push('\n');
                heading = false;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_extension() {
        assert_eq!(kind_of(Path::new("a/Report.PDF")), Some(Kind::Pdf));
        assert_eq!(kind_of(Path::new("notes.md")), Some(Kind::Markdown));
        assert_eq!(kind_of(Path::new("main.rs")), Some(Kind::Text));
        assert_eq!(kind_of(Path::new("photo.jpg")), None);
        assert_eq!(kind_of(Path::new("Makefile")), None);
    }

    #[test]
    fn markdown_sections_follow_headings_but_not_code_comments() {
        let s = markdown_sections("intro\n# Install\nrun it\n```sh\n# a comment\n```\n## Use\nok\n");
        let locations: Vec<&str> = s.iter().map(|s| s.location.as_str()).collect();
        assert_eq!(locations, ["", "# Install", "## Use"]);
        assert!(s[1].text.contains("# a comment"));
    }
}
