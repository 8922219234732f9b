//! Documents in a conversation, as the window uses them (`documents::Catalog` and
//! `documents::retrieve_for`), on the real test model: files attached to one conversation are
//! searched only there; a library serves every conversation that chooses it; the context block
//! names each source and stays within a third of the context; the sources come back for the
//! reply; a detached or deleted file's chunks go, a deleted conversation's attachments go and a
//! library's files stay; a damaged file is reported with why while the rest is indexed; another
//! embedding model indexes everything again. (The fixture-folder retrieval itself is
//! documents.rs's.)

use std::path::Path;
use std::sync::atomic::AtomicBool;

use airlock::core::Core;
use airlock::documents::retrieve::{context_budget, estimate_tokens};
use airlock::documents::{retrieve_for, Catalog, ModelEmbedder};
use airlock::engine::supervisor::EngineConfig;
use airlock::store::Store;

use crate::engine::store_with_real_model;

fn names(sources: &[airlock::documents::Source]) -> Vec<String> {
    sources.iter().map(|s| s.file.clone()).collect()
}

fn sync(catalog: &mut Catalog, conversation: &str, embedder: &ModelEmbedder) -> airlock::documents::SyncReport {
    catalog.sync(conversation, embedder, &mut |_| {}, &AtomicBool::new(false)).unwrap()
}

#[test]
fn attached_documents_and_libraries_feed_the_prompt_with_their_sources() {
    let store = store_with_real_model();
    let core = Core::new(Store::at(store.path()), EngineConfig { max_loaded: 2, ..crate::engine::config() });
    let model = "gemma3:270m";
    let embedder = ModelEmbedder::new(&core, model).unwrap();
    let docs = tempfile::TempDir::new().unwrap();
    let d = docs.path();
    std::fs::write(d.join("pump.txt"), "Maintenance log.\n\nThe coolant pump P-101 is serviced every 90 days by the Halvorsen team.\n").unwrap();
    std::fs::write(d.join("broken.pdf"), b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> garbage \x00\x01 endobj\ntrailer << /Root 1 0 R >>\n%%EOF").unwrap();
    let library = d.join("handbook");
    std::fs::create_dir(&library).unwrap();
    std::fs::write(library.join("parking.md"), "# Parking\n\nVisitors park in lot C near the north gate.\n").unwrap();
    // Long enough that several chunks compete for the budget.
    let filler: String = (0..40).map(|i| format!("Section {i}: the Halvorsen team logs routine pump checks in the ledger. ")).collect();
    std::fs::write(d.join("ledger.txt"), filler.repeat(4)).unwrap();

    let db = tempfile::TempDir::new().unwrap();
    let mut catalog = Catalog::open(&db.path().join("documents.sqlite")).unwrap();
    assert_eq!(catalog.embedding_model(model).unwrap(), model, "no model chosen: the chat model embeds");

    // Conversation A: the pump log, the ledger and a damaged PDF attached.
    for f in ["pump.txt", "ledger.txt", "broken.pdf"] {
        catalog.attach("conv-a", &d.join(f)).unwrap();
    }
    assert!(catalog.needs_sync("conv-a", model).unwrap());
    let mut seen = Vec::new();
    let report = catalog.sync("conv-a", &embedder, &mut |p| seen.push(p.current.file_name().unwrap().to_string_lossy().into_owned()), &AtomicBool::new(false)).unwrap();
    assert_eq!(seen, ["pump.txt", "ledger.txt", "broken.pdf"], "progress for each file in turn");
    assert_eq!(report.indexed.len(), 2, "{report:?}");
    assert_eq!(report.failed.len(), 1);
    assert!(report.failed[0].1.contains("PDF") && report.failed[0].1.contains("damaged"), "{:?}", report.failed);
    let attachments = catalog.attachments("conv-a").unwrap();
    let broken = attachments.iter().find(|a| a.name == "broken.pdf").unwrap();
    assert!(broken.indexed && broken.chunks == 0 && broken.error.as_deref().is_some_and(|e| e.contains("damaged")), "{broken:?}");
    assert!(attachments.iter().find(|a| a.name == "pump.txt").unwrap().chunks > 0);
    assert!(!catalog.needs_sync("conv-a", model).unwrap(), "nothing changed: nothing to read before the next question");
    let again = sync(&mut catalog, "conv-a", &embedder);
    assert_eq!((again.indexed.len(), again.unchanged), (0, 3), "{again:?}");

    // The question's answer comes first, named by its file, within a third of the context.
    let question = "How often is the coolant pump P-101 serviced?";
    let found = retrieve_for(&core, &catalog, "conv-a", model, question, Some(2048)).unwrap();
    let block = found.context.clone().expect("a context block");
    assert_eq!(found.sources[0].file, "pump.txt", "{:?}", names(&found.sources));
    assert!(found.sources[0].snippet.contains("P-101"), "{}", found.sources[0].snippet);
    assert!(block.contains("[1] pump.txt\n") && block.contains("serviced every 90 days"), "{block}");
    assert_eq!(found.budget, context_budget(2048));
    assert!(found.tokens <= found.budget, "{} / {}", found.tokens, found.budget);
    if found.counted_by == "estimate" {
        assert!(estimate_tokens(&block) <= found.budget);
    }
    println!("context block: {} sources, {} of {} tokens (counted by {})", found.sources.len(), found.tokens, found.budget, found.counted_by);
    assert!(found.sources.len() < 8, "the budget left some chunks out: {:?}", names(&found.sources));
    // A smaller context: a smaller block, still within its budget.
    let small = retrieve_for(&core, &catalog, "conv-a", model, question, Some(512)).unwrap();
    assert!(small.tokens <= context_budget(512) && small.sources.len() < found.sources.len().max(2), "{} sources in {} tokens", small.sources.len(), small.tokens);

    // Conversation B sees none of A's files; with the library chosen it sees the library's.
    catalog.attach("conv-b", &d.join("ledger.txt")).unwrap();
    assert!(retrieve_for(&core, &catalog, "conv-b", model, question, None).unwrap().sources.iter().all(|s| s.file == "ledger.txt"));
    let lib = catalog.add_library(&library).unwrap();
    catalog.use_libraries("conv-b", &[lib.id]).unwrap();
    catalog.use_libraries("conv-c", &[lib.id]).unwrap();
    assert!(catalog.needs_sync("conv-b", model).unwrap());
    let r = sync(&mut catalog, "conv-b", &embedder);
    assert_eq!(r.indexed.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>(), ["parking.md"], "{r:?}");
    let parking = retrieve_for(&core, &catalog, "conv-c", model, "Where do visitors park?", None).unwrap();
    assert_eq!(parking.sources[0].file, "parking.md");
    assert_eq!(parking.sources[0].location, "# Parking");
    assert!(retrieve_for(&core, &catalog, "conv-a", model, "Where do visitors park?", None).unwrap().sources.iter().all(|s| s.file != "parking.md"), "A does not use the library");
    assert_eq!(catalog.libraries().unwrap()[0].files, 1);

    // A library file changes on disk: found before the next question, and read again.
    std::fs::write(library.join("parking.md"), "# Parking\n\nVisitors now park in lot F behind the depot.\n").unwrap();
    assert!(catalog.needs_sync("conv-c", model).unwrap());
    sync(&mut catalog, "conv-c", &embedder);
    let moved = retrieve_for(&core, &catalog, "conv-c", model, "Where do visitors park?", None).unwrap();
    assert!(moved.sources[0].text.contains("lot F"), "{:?}", moved.sources[0]);

    // An attached file deleted from disk: its chunks go at the next sync, and it says why.
    let chunks = catalog.index().chunk_count().unwrap();
    std::fs::remove_file(d.join("pump.txt")).unwrap();
    sync(&mut catalog, "conv-a", &embedder);
    assert!(catalog.index().chunk_count().unwrap() < chunks);
    let gone = catalog.attachments("conv-a").unwrap().into_iter().find(|a| a.name == "pump.txt").unwrap();
    assert!(gone.chunks == 0 && gone.error.as_deref().is_some_and(|e| e.contains("cannot read")), "{gone:?}");
    assert!(retrieve_for(&core, &catalog, "conv-a", model, question, None).unwrap().sources.iter().all(|s| s.file != "pump.txt"));

    // Detaching the ledger from A keeps it for B; deleting B drops it; the library stays.
    let ledger = catalog.attachments("conv-a").unwrap().into_iter().find(|a| a.name == "ledger.txt").unwrap();
    catalog.detach("conv-a", ledger.id).unwrap();
    assert!(catalog.index().search_text("ledger", 1).unwrap().len() == 1, "still attached to B");
    catalog.forget_conversation("conv-b").unwrap();
    assert!(catalog.index().search_text("ledger", 1).unwrap().is_empty(), "no one uses it now");
    assert!(!catalog.index().search_text("depot", 1).unwrap().is_empty(), "the library's file stays");
    catalog.remove_library(lib.id).unwrap();
    assert!(catalog.index().search_text("depot", 1).unwrap().is_empty(), "a removed library's chunks go");
    assert!(!catalog.has_documents("conv-c").unwrap());

    // Another embedding model chosen in Settings: everything is read again with it.
    catalog.attach("conv-d", &library.parent().unwrap().join("ledger.txt")).unwrap();
    sync(&mut catalog, "conv-d", &embedder);
    catalog.set_chosen_model(Some("gemma3-embed")).unwrap();
    assert_eq!(catalog.embedding_model(model).unwrap(), "gemma3-embed");
    assert!(catalog.needs_sync("conv-d", "gemma3-embed").unwrap(), "vectors of another model are not reused");
    catalog.set_chosen_model(None).unwrap();
    assert!(!catalog.needs_sync("conv-d", model).unwrap());
    assert!(Path::new(&db.path().join("documents.sqlite")).is_file(), "one SQLite file");
    core.shutdown();
}
