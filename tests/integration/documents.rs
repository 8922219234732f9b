//! The document index on a fixture folder this test writes (text, Markdown, HTML, a PDF made
//! with lopdf, a DOCX made with zip, a damaged PDF), embedded by the real test model: each fact
//! is found first by BM25, by vectors and by the fused search; the damaged PDF is reported with
//! a clear reason while the rest is indexed; removing a file removes its chunks; an unchanged
//! folder is not read again. What only one side finds: a rare name (the words) and a paraphrase
//! sharing no word with its fact (the vectors). Files built to break their parsers are stopped by
//! the reader child's limits, and the rest of their folder is indexed.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use airlock::core::Core;
use airlock::documents::{Embedder, Index, ModelEmbedder};
use airlock::engine::supervisor::EngineConfig;
use airlock::store::Store;
use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};

use crate::engine::store_with_real_model;

/// A one-page PDF whose text is `lines`, one per line.
fn write_pdf(path: &Path, lines: &[&str]) {
    let mut ops = vec![Operation::new("BT", vec![]), Operation::new("Tf", vec!["F1".into(), 12.into()]), Operation::new("Td", vec![72.into(), 720.into()])];
    for line in lines {
        ops.push(Operation::new("Tj", vec![Object::string_literal(*line)]));
        ops.push(Operation::new("Td", vec![0.into(), (-16).into()]));
    }
    ops.push(Operation::new("ET", vec![]));
    write_pdf_raw(path, Content { operations: ops }.encode().unwrap(), &[], &[]);
}

/// A minimal Word document: a heading and paragraphs.
fn write_docx(path: &Path, heading: &str, paragraphs: &[&str]) {
    let mut body = format!(r#"<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>{heading}</w:t></w:r></w:p>"#);
    for p in paragraphs {
        body.push_str(&format!("<w:p><w:r><w:t xml:space=\"preserve\">{p}</w:t></w:r></w:p>"));
    }
    let document = format!(r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>"#);
    let content_types = r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>"#;
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("[Content_Types].xml", opts).unwrap();
    zip.write_all(content_types.as_bytes()).unwrap();
    zip.start_file("word/document.xml", opts).unwrap();
    zip.write_all(document.as_bytes()).unwrap();
    zip.finish().unwrap();
}

/// (question, the fact restated, the file whose chunk must come first). The test model is a
/// small chat model, not an embedding model: its mean-pooled vectors find a restatement of a
/// fact, not reliably a question about it, so vectors are asked with the restatement; words
/// (BM25) and the fused search are asked the question.
const FACTS: &[(&str, &str, &str)] = &[
    ("How often is the coolant pump P-101 serviced?", "The coolant pump P-101 is serviced every 90 days.", "pump.txt"),
    ("Which day does the cafeteria serve lentil soup?", "The cafeteria serves lentil soup every Thursday.", "menu.pdf"),
    ("Who handles badge renewals?", "Badge renewals are handled by the security office.", "badges.docx"),
    ("Where do visitors park?", "Visitors park in lot C near the north gate.", "guide.md"),
    ("When does the archive room open?", "The archive room opens at 7:30 on weekdays.", "page.html"),
];

fn write_fixtures(dir: &Path) {
    std::fs::write(dir.join("pump.txt"), "Maintenance log.\n\nThe coolant pump P-101 is serviced every 90 days by the Halvorsen team.\n").unwrap();
    write_pdf(&dir.join("menu.pdf"), &["Cafeteria menu", "The cafeteria serves lentil soup every Thursday."]);
    write_docx(&dir.join("badges.docx"), "Security", &["Badge renewals are handled by the security office in building 12."]);
    std::fs::create_dir(dir.join("handbook")).unwrap();
    std::fs::write(dir.join("handbook/guide.md"), "# Parking\n\nVisitors park in lot C near the north gate.\n").unwrap();
    std::fs::write(dir.join("page.html"), "<html><body><h1>Library</h1><p>The archive room opens at 7:30 on weekdays.</p><script>var x = 1;</script></body></html>").unwrap();
    std::fs::write(dir.join("broken.pdf"), b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> garbage \x00\x01\x02 endobj\ntrailer << /Root 1 0 R >>\n%%EOF").unwrap();
    std::fs::write(dir.join("photo.jpg"), b"\xff\xd8\xff not a document").unwrap();
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_folder_is_indexed_and_each_fact_is_retrieved_first() {
    let store = store_with_real_model();
    let core = Core::new(Store::at(store.path()), EngineConfig { max_loaded: 2, ..crate::engine::config() });
    let embedder = ModelEmbedder::new(&core, "gemma3:270m").unwrap();
    let docs = tempfile::TempDir::new().unwrap();
    write_fixtures(docs.path());
    let db = tempfile::TempDir::new().unwrap();
    let mut index = Index::open(&db.path().join("index.sqlite")).unwrap();

    let mut seen = Vec::new();
    let report = index.sync_folder(docs.path(), &embedder, &mut |p| seen.push(p.current.to_path_buf()), &AtomicBool::new(false)).unwrap();
    let mut indexed: Vec<String> = report.indexed.iter().map(|p| file_name(p)).collect();
    indexed.sort();
    assert_eq!(indexed, ["badges.docx", "guide.md", "menu.pdf", "page.html", "pump.txt"], "{report:?}");
    assert_eq!(seen.len(), 6, "progress for every document, the damaged one too");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let (bad, why) = &report.failed[0];
    assert_eq!(file_name(bad), "broken.pdf");
    assert!(why.contains("PDF") && why.contains("damaged"), "{why}");

    // The located sources: the PDF's page, the DOCX's heading.
    let hit = index.search_text("lentil soup", 1).unwrap().remove(0);
    assert_eq!((file_name(&hit.path), hit.location.as_str()), ("menu.pdf".to_string(), "page 1"));
    let hit = index.search_text("badge renewals", 1).unwrap().remove(0);
    assert_eq!((file_name(&hit.path), hit.location.as_str()), ("badges.docx".to_string(), "Security"));
    assert!(index.search_text("var x", 5).unwrap().is_empty(), "script text was indexed");

    for (question, statement, file) in FACTS {
        let by_text = index.search_text(question, 3).unwrap();
        assert_eq!(file_name(&by_text[0].path), *file, "BM25 for {question:?}: {by_text:?}");
        let v = embedder.embed(&[statement.to_string()]).unwrap().remove(0);
        let by_vector = index.search_vector(&v, 3).unwrap();
        assert_eq!(file_name(&by_vector[0].path), *file, "vectors for {statement:?}: {:?}", by_vector.iter().map(|h| (file_name(&h.path), h.score)).collect::<Vec<_>>());
        let fused = index.search(question, &embedder, 3).unwrap();
        assert_eq!(file_name(&fused[0].path), *file, "hybrid for {question:?}");
    }
    // A rare name only the words find: these vectors blur it; the fused search still finds it.
    let rare = "Halvorsen";
    let (by_text, by_vector) = (index.search_text(rare, 3).unwrap(), index.search_vector(&embedder.embed(&[rare.to_string()]).unwrap().remove(0), 3).unwrap());
    println!("{rare:?}: BM25 {:?}, vectors {:?}", scored(&by_text), scored(&by_vector));
    assert_eq!(file_name(&by_text[0].path), "pump.txt", "BM25 finds the name");
    assert_ne!(file_name(&by_vector[0].path), "pump.txt", "the vectors alone do not put it first: {:?}", scored(&by_vector));
    assert_eq!(file_name(&index.search(rare, &embedder, 3).unwrap()[0].path), "pump.txt", "the fused search finds it");

    // Unchanged: nothing read again. Removed: its chunks go.
    let chunks = index.chunk_count().unwrap();
    let again = index.sync_folder(docs.path(), &embedder, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    // (The damaged PDF too: it is read again only when it changes.)
    assert_eq!((again.indexed.len(), again.unchanged, again.failed.len()), (0, 6, 0), "{again:?}");
    std::fs::remove_file(docs.path().join("menu.pdf")).unwrap();
    let after = index.sync_folder(docs.path(), &embedder, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    assert_eq!(after.removed.iter().map(|p| file_name(p)).collect::<Vec<_>>(), ["menu.pdf"]);
    assert!(index.chunk_count().unwrap() < chunks);
    assert!(index.search_text("lentil soup", 5).unwrap().is_empty());
    assert!(!index.files().unwrap().iter().any(|(p, _, _)| file_name(p) == "menu.pdf"));

    // A cancelled sync stops between files.
    let fresh = tempfile::TempDir::new().unwrap();
    let mut other = Index::open(&fresh.path().join("i.sqlite")).unwrap();
    let err = other.sync_folder(docs.path(), &embedder, &mut |_| {}, &AtomicBool::new(true)).unwrap_err();
    assert!(err.to_string().contains("cancelled"));
    core.shutdown();
}

fn scored(hits: &[airlock::documents::Hit]) -> Vec<(String, f64)> {
    hits.iter().map(|h| (file_name(&h.path), h.score)).collect()
}

/// A paraphrase sharing no word with its fact: only the vectors find it, and so the fused search.
/// No embedding model is on the package index; Qwen2.5-Coder 0.5B's mean-pooled vectors stand in
/// (the test model's tell paraphrases apart too weakly).
#[test]
fn a_paraphrase_with_no_shared_word_is_found_by_the_vectors() {
    let model = std::path::PathBuf::from(std::env::var_os("AIRLOCK_INSTRUCT_MODEL").expect("AIRLOCK_INSTRUCT_MODEL must name Qwen2.5-Coder 0.5B (tests/fixtures/fetch-test-model.sh instruct)"));
    let store = tempfile::TempDir::new().unwrap();
    let opts = airlock::bundle::ImportOptions { name: Some("qwen:0.5b".into()), link: true, ..Default::default() };
    airlock::bundle::import(&Store::at(store.path()), &model, &opts, &airlock::progress::NoProgress).unwrap();
    let core = Core::new(Store::at(store.path()), crate::engine::config());
    let embedder = ModelEmbedder::new(&core, "qwen:0.5b").unwrap();
    let docs = tempfile::TempDir::new().unwrap();
    write_fixtures(docs.path());
    let db = tempfile::TempDir::new().unwrap();
    let mut index = Index::open(&db.path().join("index.sqlite")).unwrap();
    index.sync_folder(docs.path(), &embedder, &mut |_| {}, &AtomicBool::new(false)).unwrap();

    let paraphrase = "Guest vehicles: where do they go?";
    let by_text = index.search_text(paraphrase, 3).unwrap();
    let by_vector = index.search_vector(&embedder.embed(&[paraphrase.to_string()]).unwrap().remove(0), 3).unwrap();
    println!("{paraphrase:?}: BM25 {:?}, vectors {:?}", scored(&by_text), scored(&by_vector));
    assert!(by_text.iter().all(|h| file_name(&h.path) != "guide.md"), "BM25 shares no word with the fact: {:?}", scored(&by_text));
    assert_eq!(file_name(&by_vector[0].path), "guide.md", "the vectors find the paraphrase: {:?}", scored(&by_vector));
    assert_eq!(file_name(&index.search(paraphrase, &embedder, 3).unwrap()[0].path), "guide.md", "the fused search finds it");
    core.shutdown();
}

/// zlib data that inflates to `chunks` × 64 MB of zeros, made in well under a second: deflate's
/// window carries across blocks, so after zeros the compressed form of 64 MB more zeros (ended by
/// a sync flush) is the same bytes every time, and is repeated instead of computed.
fn zeros_zlib(chunks: usize) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let zeros = vec![0u8; 64 << 20];
    let mut deflate = Compress::new(Compression::best(), false);
    let mut piece = |flush| {
        let mut out = Vec::with_capacity(4 << 20);
        let before = deflate.total_in();
        deflate.compress_vec(if flush == FlushCompress::Finish { &[] } else { &zeros }, &mut out, flush).unwrap();
        assert!(flush == FlushCompress::Finish || deflate.total_in() - before == zeros.len() as u64);
        out
    };
    let (first, second, third) = (piece(FlushCompress::Sync), piece(FlushCompress::Sync), piece(FlushCompress::Sync));
    assert_eq!(second, third, "deflate's steady state");
    let mut data = vec![0x78, 0xda];
    data.extend_from_slice(&first);
    for _ in 1..chunks {
        data.extend_from_slice(&second);
    }
    data.extend_from_slice(&piece(FlushCompress::Finish));
    // Adler-32 of n zeros: a stays 1, b adds 1 per byte.
    let n = chunks as u64 * zeros.len() as u64;
    data.extend_from_slice(&((((n % 65521) << 16) | 1) as u32).to_be_bytes());
    data
}

/// A one-page PDF whose content stream is `content` under the filters `filters`, with the form
/// XObjects `forms` (name, its content) in the page's resources; each form's resources are the
/// page's, so a form can draw itself.
fn write_pdf_raw(path: &Path, content: Vec<u8>, filters: &[&str], forms: &[(&str, &[u8])]) {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let resources_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
    let mut xobjects = lopdf::Dictionary::new();
    for (name, form) in forms {
        let dict = dictionary! { "Type" => "XObject", "Subtype" => "Form", "BBox" => vec![0.into(), 0.into(), 100.into(), 100.into()], "Resources" => resources_id };
        xobjects.set(*name, doc.add_object(Stream::new(dict, form.to_vec())));
    }
    doc.objects.insert(resources_id, Object::Dictionary(dictionary! { "Font" => dictionary! { "F1" => font_id }, "XObject" => xobjects }));
    let mut dict = dictionary! {};
    if !filters.is_empty() {
        dict.set("Filter", filters.iter().map(|f| Object::Name(f.as_bytes().to_vec())).collect::<Vec<Object>>());
    }
    let content_id = doc.add_object(Stream::new(dict, content));
    let page_id = doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => content_id });
    let pages = dictionary! { "Type" => "Pages", "Kids" => vec![page_id.into()], "Count" => 1, "Resources" => resources_id, "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()] };
    doc.objects.insert(pages_id, Object::Dictionary(pages));
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    doc.save(path).unwrap();
}

/// Files built to break their parsers, beside good ones: a PDF form that draws itself (the
/// reader recurses until its stack runs out), a PDF stream compressed twice that inflates from
/// a few KB to 2.5 GB, a DOCX whose XML inflates to 300 MB, a 200 MB HTML page. Each is marked
/// failed with the limit it broke, the good files are indexed, and this process (the app's part
/// that indexes) lives on to search them.
#[test]
fn hostile_documents_are_stopped_by_the_reader_limits_and_the_rest_is_indexed() {
    let store = store_with_real_model();
    let core = Core::new(Store::at(store.path()), EngineConfig { max_loaded: 2, ..crate::engine::config() });
    let embedder = ModelEmbedder::new(&core, "gemma3:270m").unwrap();
    let docs = tempfile::TempDir::new().unwrap();
    let dir = docs.path();
    write_pdf(&dir.join("menu.pdf"), &["The cafeteria serves lentil soup every Thursday."]);
    std::fs::write(dir.join("page.html"), "<html><body><p>The archive room opens at 7:30 on weekdays.</p></body></html>").unwrap();
    std::fs::write(dir.join("pump.txt"), "The pump in hall B is serviced every March.\n").unwrap();

    write_pdf_raw(&dir.join("recursive.pdf"), b"BT /F1 12 Tf (start) Tj ET /Fm0 Do".to_vec(), &[], &[("Fm0", b"/Fm0 Do")]);
    let inner = zeros_zlib(40);
    let mut outer = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    outer.write_all(&inner).unwrap();
    let bomb = outer.finish().unwrap();
    write_pdf_raw(&dir.join("bomb.pdf"), bomb, &["FlateDecode", "FlateDecode"], &[]);
    assert!(std::fs::metadata(dir.join("bomb.pdf")).unwrap().len() < 64 << 10, "a few KB that inflate to 2.5 GB");

    let paragraph = "<w:p><w:r><w:t>All work and no play makes a dull report.</w:t></w:r></w:p>";
    let body = paragraph.repeat((300 << 20) / paragraph.len());
    write_docx(&dir.join("bomb.docx"), "Report", &[body.as_str()]);
    assert!(std::fs::metadata(dir.join("bomb.docx")).unwrap().len() < 4 << 20);
    let mut html = std::io::BufWriter::new(std::fs::File::create(dir.join("huge.html")).unwrap());
    html.write_all(b"<html><body>").unwrap();
    for _ in 0..(200 << 20) / 64 {
        html.write_all(b"<div><p>a page that goes on and on and on and on and on</p></div>").unwrap();
    }
    drop(html);

    let db = tempfile::TempDir::new().unwrap();
    let mut index = Index::open(&db.path().join("index.sqlite")).unwrap();
    let report = index.sync_folder(dir, &embedder, &mut |_| {}, &AtomicBool::new(false)).unwrap();
    let mut indexed: Vec<String> = report.indexed.iter().map(|p| file_name(p)).collect();
    indexed.sort();
    assert_eq!(indexed, ["menu.pdf", "page.html", "pump.txt"], "{report:?}");
    let why = |name: &str| report.failed.iter().find(|(p, _)| file_name(p) == name).map(|(_, why)| why.clone()).unwrap_or_else(|| panic!("{name} not failed: {report:?}"));
    for name in ["recursive.pdf", "bomb.pdf", "bomb.docx", "huge.html"] {
        eprintln!("{name}: {}", why(name));
    }
    assert!(why("recursive.pdf").contains("nests too deeply"), "{}", why("recursive.pdf"));
    assert!(why("bomb.pdf").contains("needed more than 1024 MB of memory"), "{}", why("bomb.pdf"));
    assert!(why("bomb.docx").contains("larger than 256 MB"), "{}", why("bomb.docx"));
    assert!(why("huge.html").contains("over 64 MB are not indexed"), "{}", why("huge.html"));
    assert_eq!(report.failed.len(), 4, "{report:?}");

    // Alive, and the good files answer.
    let hit = index.search("When is lentil soup served?", &embedder, 1).unwrap().remove(0);
    assert_eq!(file_name(&hit.path), "menu.pdf");
    core.shutdown();
}
