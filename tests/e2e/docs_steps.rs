//! Chat with a local document, in the real window: a new conversation → Attach → the GTK
//! multi-select dialog answered by typing the file's path → the chip says it is indexed → a
//! question whose answer is in the file → the reply shows a source naming the file, which opens
//! in place with the passage → the conversation is deleted and its attachment with it (the
//! index in the app's data folder holds no row of it).

use std::path::{Path, PathBuf};

use fantoccini::Client;

use super::*;

/// The documents index the app keeps in its data folder (under XDG_DATA_HOME here).
fn index_file(data: &Path) -> Option<PathBuf> {
    let mut stack = vec![data.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "documents.sqlite") {
                return Some(p);
            }
        }
    }
    None
}

pub async fn attach_a_document_and_see_its_source(c: &Client, home: &Path, data: &Path) {
    let file = home.join("pump-manual.txt");
    std::fs::write(&file, "Pump manual.\n\nThe coolant pump P-101 is serviced every 90 days by the Halvorsen team.\n").unwrap();

    click(c, "[data-testid='nav-chat']").await;
    click(c, "[data-testid='new-chat']").await;
    wait_for(c, "[data-testid='model-picker']").await.select_by_value("gemma3:270m").await.unwrap();
    through_dialog(c, "[data-testid='attach-documents']", "Attach documents to this conversation", Some(&file)).await;
    wait_for(c, "[data-testid='attachment-chip'][data-name='pump-manual.txt']").await;
    wait_until_within(c, "the attached file is indexed", "const chip = document.querySelector(\"[data-testid='attachment-chip']\"); return !!chip && chip.dataset.state === 'indexed';", Duration::from_secs(180)).await;

    wait_for(c, "[data-testid='chat-input']").await.send_keys("How often is the coolant pump P-101 serviced?").await.unwrap();
    click(c, "[data-testid='send']").await;
    let last_reply = "const m = [...document.querySelectorAll(\"[data-testid='message'][data-role='assistant']\")].pop();";
    wait_until_within(
        c,
        "the reply is written",
        &format!("{last_reply} return !!m && (m.querySelector(\"[data-testid='message-content']\").textContent.trim().length > 20 || m.dataset.streaming === 'false');"),
        Duration::from_secs(240),
    )
    .await;
    // Its sources show once it ends (Stop ends a long one).
    click_stop(c).await;
    wait_until(c, "the reply ends", &format!("{last_reply} return m.dataset.streaming === 'false';")).await;
    let reply = c.execute(&format!("{last_reply} return m.querySelector(\"[data-testid='message-content']\").textContent;"), vec![]).await.unwrap();
    println!("the reply about the attached file: {reply}");
    let source = wait_for(c, "[data-testid='message'][data-role='assistant'] [data-testid='source'][data-file='pump-manual.txt']").await;
    let shown = source.text().await.unwrap();
    assert!(shown.contains("pump-manual.txt") && shown.contains("P-101"), "the source names the file and shows a snippet: {shown}");
    screenshot(c, "documents").await;
    source.click().await.unwrap();
    let passage = wait_for(c, "[data-testid='source-viewer'] [data-testid='source-text']").await.text().await.unwrap();
    assert!(passage.contains("serviced every 90 days"), "the passage opens in the window: {passage}");
    c.execute("document.querySelector(\"[data-testid='source-viewer']\").dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));", vec![]).await.unwrap();
    wait_until(c, "the viewer closes", "return !document.querySelector(\"[data-testid='source-viewer']\");").await;

    // The index is a SQLite file in the app's data folder; deleting the conversation drops its attachment.
    let index = index_file(data).expect("documents.sqlite in the app's data folder");
    let attachments = |index: &Path| rusqlite::Connection::open(index).unwrap().query_row("SELECT count(*) FROM attachments", [], |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(attachments(&index), 1);
    c.execute("document.querySelector(\"[data-testid='conversation'] .conv-open[aria-current='true']\").closest(\"[data-testid='conversation']\").querySelector(\"[data-testid='conversation-delete']\").click();", vec![]).await.unwrap();
    click(c, "[data-testid='confirm-yes']").await;
    wait_until(c, "the conversation is deleted", "return !document.querySelector(\"[data-testid='attachment-chip']\");").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while attachments(&index) != 0 {
        assert!(Instant::now() < deadline, "the deleted conversation's attachment is still in the index");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("documents: a file attached through the dialog, its source under the reply, and the attachment gone with the conversation");
}
