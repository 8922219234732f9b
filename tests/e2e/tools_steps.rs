//! MCP tools in the chat window, driven by a model that calls them by itself (Qwen2.5-Coder
//! 1.5B): a tool server imported in Settings → Tools (the native confirmation answered Allow),
//! offered by a new conversation, the call approved in the window, its card, and the answer
//! that uses the result.

use super::*;

/// Adds the `mcp` SDK test server reading `folder` (tests/fixtures/mcp_files_server.py) as a
/// person moving from another app does: its `mcpServers` JSON pasted into Settings → Tools.
async fn add_files_server(c: &Client, folder: &Path) {
    let python = std::env::var("AIRLOCK_TEST_PYTHON").expect("AIRLOCK_TEST_PYTHON names a Python with the mcp package (scripts/test.sh sets it)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/mcp_files_server.py");
    let config = json!({ "mcpServers": { "files": { "command": python, "args": [script, folder.display().to_string()] } } });
    click(c, "[data-testid='nav-settings']").await;
    wait_for(c, "[data-testid='tools-settings']").await;
    click(c, "[data-testid='mcp-import-open']").await;
    wait_for(c, "[data-testid='mcp-import-json']").await.send_keys(&config.to_string()).await.unwrap();
    click(c, "[data-testid='mcp-import']").await;
    answer_confirmation("Allow these tool servers?", Some("a"));
    let row = wait_for(c, "[data-testid='mcp-server-row'][data-name='files']").await.text().await.unwrap();
    assert!(row.contains("mcp_files_server.py"), "the server's command line is listed: {row}");
}

/// Imports the tool model with the CLI while the app is not running (it lists models at start).
pub fn import_tool_model(store: &Path) {
    let model = std::env::var("AIRLOCK_TOOL_MODEL").expect("AIRLOCK_TOOL_MODEL names Qwen2.5-Coder 1.5B (scripts/test.sh sets it)");
    let out = Command::new(cli()).args(["import", &model, "--name", "qwen2.5-coder:1.5b", "--link"]).env("AIRLOCK_MODELS", store).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// After [`import_tool_model`] and a start of the app.
pub async fn a_tool_call_approved_in_the_window(c: &Client, home: &Path) {
    let folder = home.join("shared");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("inventory.txt"), "The warehouse holds 417 blue crates and 12 red ones.").unwrap();
    add_files_server(c, &folder).await;

    // A new conversation with the tool model offers the server's tools.
    click(c, "[data-testid='nav-chat']").await;
    click(c, "[data-testid='new-chat']").await;
    wait_for(c, "[data-testid='model-picker'] option[value='qwen2.5-coder:1.5b']").await;
    wait_for(c, "[data-testid='model-picker']").await.select_by_value("qwen2.5-coder:1.5b").await.unwrap();
    click(c, "[data-testid='chat-settings-toggle']").await;
    click(c, "[data-testid='tool-server-files']").await;
    // Greedy, so the run repeats: sampled, this small model often writes its call as prose.
    wait_for(c, "[data-testid='param-temperature']").await.send_keys("0").await.unwrap();
    click(c, "[data-testid='chat-settings-toggle']").await;
    let started = Instant::now();
    wait_for(c, "[data-testid='chat-input']").await.send_keys("How many blue crates does the warehouse hold? Read the file inventory.txt to find out.").await.unwrap();
    click(c, "[data-testid='send']").await;

    // The call waits for the person, showing its tool and arguments; Allow runs it.
    let card = wait_for_within(c, "[data-testid='tool-card'][data-status='awaiting_approval']", Duration::from_secs(300)).await;
    let args = card.find(Locator::Css("[data-testid='tool-arguments']")).await.unwrap().text().await.unwrap();
    assert!(args.contains("inventory.txt"), "the arguments are shown before the call runs: {args}");
    screenshot(c, "tool-approval").await;
    click(c, "[data-testid='tool-allow']").await;
    wait_for(c, "[data-testid='tool-card'][data-status='done']").await;
    let reply_css = "[data-testid='message'][data-role='assistant']";
    wait_until_within(c, "the answer after the tool", &format!("const m = [...document.querySelectorAll(\"{reply_css}\")].pop(); return m && m.dataset.streaming === 'false';"), Duration::from_secs(300)).await;
    let seconds = started.elapsed().as_secs_f64();
    let answer = c.find_all(Locator::Css(reply_css)).await.unwrap().pop().unwrap().find(Locator::Css("[data-testid='message-content']")).await.unwrap().text().await.unwrap();
    let result = wait_for(c, "[data-testid='tool-result']").await.text().await.unwrap();
    assert!(result.contains("417 blue crates"), "the card shows the result: {result}");
    assert!(answer.contains("417"), "the answer uses the tool's result: {answer}");
    screenshot(c, "tool-card").await;
    println!("MCP in the window: question → approval → answer in {seconds:.1} s (model time included): {answer:?}");
}
