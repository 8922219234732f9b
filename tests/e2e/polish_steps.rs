//! The window's polish (issues 17 and 18) in the real window: the first-run path on an empty
//! store, the loaded model with Unload after a reply, a conversation exported through the save
//! dialog, and the dark theme's screenshot.

use std::path::Path;

use fantoccini::{Client, Locator};

use super::*;

/// On the empty store's first start: the Chat page is the way to the first model.
pub async fn first_run(c: &Client, store: &Path) {
    click(c, "[data-testid='nav-chat']").await;
    let first = wait_for(c, "[data-testid='first-run']").await.text().await.unwrap();
    for shown in [".zip", ".zip.001", ".gguf", "models/", "bundle folder", "Import folder…", "Import file…"] {
        assert!(first.contains(shown), "the first-run card names {shown:?}: {first}");
    }
    let path = wait_for(c, "[data-testid='first-run-store-path']").await.text().await.unwrap();
    assert_eq!(path.trim(), store.display().to_string(), "the first-run card says where models live");
    // Its import button is the Models page's: the same dialog opens (cancelled here).
    click(c, "[data-testid='first-run-import-file']").await;
    let window = wait_for_dialog("Import a bundle (.zip");
    answer_dialog(&window, "Import a bundle (.zip", None);
    assert_answers(c, "after the first-run import dialog").await;
}

/// After a reply: the model is loaded (Models page, marked in the table) and Unload unloads it
/// (its process ends); the conversation exports as Markdown through the save dialog; the chat
/// in the dark theme is photographed. Returns to the Chat page.
pub async fn after_reply(c: &Client, sandbox_data: &Path, export_to: &Path, prompt: &str) {
    // Export as Markdown: the save dialog, answered by typing the file's path.
    click(c, "[data-testid='export-markdown']").await;
    let title = "Export the conversation as Markdown";
    let window = wait_for_dialog(title);
    assert_answers(c, "while the export dialog is open").await;
    answer_dialog(&window, title, Some(export_to));
    wait_until(c, "the export is written", "const r = document.querySelector(\"[data-testid='export-result']\"); return !!r && r.textContent.startsWith('Exported to');").await;
    let md = std::fs::read_to_string(export_to).unwrap_or_else(|e| panic!("the export {} was not written: {e}", export_to.display()));
    assert!(md.contains("### You") && md.contains(prompt) && md.contains("### Assistant"), "the Markdown export has the conversation:\n{md}");
    println!("conversation exported: {} ({} bytes)", export_to.display(), md.len());

    // The loaded model, where it runs, and Unload.
    click(c, "[data-testid='nav-models']").await;
    let loaded = wait_for(c, "[data-testid='loaded-model'][data-name='gemma3:270m']").await.text().await.unwrap();
    assert!(loaded.contains("CPU") || loaded.contains("GPU"), "the loaded model says where it runs: {loaded}");
    wait_for(c, "[data-testid='model-row'][data-name='gemma3:270m'] [data-testid='model-loaded']").await;
    assert_eq!(runners(sandbox_data), 1, "one model process while loaded");
    click(c, "[data-testid='unload-model']").await;
    wait_for(c, "[data-testid='loaded-none']").await;
    let deadline = Instant::now() + WAIT;
    while runners(sandbox_data) > 0 {
        assert!(Instant::now() < deadline, "the model process did not end after Unload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(c.find_all(Locator::Css("[data-testid='model-loaded']")).await.unwrap().is_empty(), "the table no longer marks it loaded");
    println!("unloaded: the model process ended");

    // The dark theme's screenshot (README), then the theme as it was. The theme is chosen in the
    // Settings page's select (set by script: a native select's popup would take the next click).
    click(c, "[data-testid='nav-settings']").await;
    wait_for(c, "[data-testid='theme']").await;
    let choose = |theme: &str| format!("const s = document.querySelector(\"[data-testid='theme']\"); const before = s.value; s.value = '{theme}'; s.dispatchEvent(new Event('change', {{bubbles: true}})); return before;");
    let before = c.execute(&choose("dark"), vec![]).await.unwrap().as_str().unwrap_or("system").to_string();
    click(c, "[data-testid='nav-chat']").await;
    wait_until(c, "the chat in the dark theme", "return document.documentElement.dataset.theme === 'dark' && !!document.querySelector(\"[data-testid='chat-input']\") && !document.querySelector(\"[data-testid='theme']\");").await;
    wait_for(c, "[data-testid='message'][data-role='assistant']").await;
    // Let the web view paint the page before it is photographed.
    tokio::time::sleep(Duration::from_millis(700)).await;
    screenshot(c, "chat-dark").await;
    click(c, "[data-testid='nav-settings']").await;
    wait_for(c, "[data-testid='theme']").await;
    c.execute(&choose(&before), vec![]).await.unwrap();
    click(c, "[data-testid='nav-chat']").await;
    wait_for(c, "[data-testid='chat-input']").await;
}

fn runners(sandbox_data: &Path) -> usize {
    app_processes(sandbox_data).into_iter().filter(|(_, k)| *k == "runner").count()
}
