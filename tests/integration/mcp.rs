//! MCP tools as the desktop chat runs them (`airlock::mcp`), against real servers from the
//! package index: `mcp-server-time`, and a small server on the official `mcp` Python SDK
//! (tests/fixtures/mcp_files_server.py) that reads the files of a folder and misbehaves on
//! request. Qwen2.5-Coder 1.5B decides by itself to call a tool, the result goes back, and
//! the answer uses it. scripts/test.sh installs both packages and sets `AIRLOCK_TEST_PYTHON`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use airlock::bundle::{import, ImportOptions};
use airlock::core::Core;
use airlock::engine::chat::RequestSettings;
use airlock::engine::protocol::SamplingOptions;
use airlock::engine::supervisor::StreamEvent;
use airlock::engine::template::ChatMessage;
use airlock::engine::tools::{ReplyPart, ToolCall, ToolRequest};
use airlock::mcp::{McpHub, McpServer, McpTool};
use airlock::progress::NoProgress;
use airlock::store::Store;
use serde_json::{json, Map, Value};
use tempfile::TempDir;

use crate::engine::config;

/// The virtualenv's Python, with `mcp` and `mcp-server-time` installed: a failure when missing.
fn python() -> PathBuf {
    let path = PathBuf::from(std::env::var_os("AIRLOCK_TEST_PYTHON").expect("AIRLOCK_TEST_PYTHON must name a Python with mcp and mcp-server-time (scripts/test.sh sets it)"));
    assert!(path.is_file(), "{} is missing", path.display());
    path
}

fn files_server(folder: &std::path::Path) -> McpServer {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_files_server.py");
    McpServer { name: "files".into(), command: Some(python().display().to_string()), args: vec![script.into(), folder.display().to_string()], ..Default::default() }
}

fn time_server() -> McpServer {
    let exe = python().parent().unwrap().join("mcp-server-time");
    McpServer { name: "time".into(), command: Some(exe.display().to_string()), args: vec!["--local-timezone=UTC".into()], ..Default::default() }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn args(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn real_mcp_servers_list_and_run_tools_and_every_failure_is_an_error_result() {
    let rt = runtime();
    let folder = TempDir::new().unwrap();
    std::fs::write(folder.path().join("notes.txt"), "Meet at the north gate.").unwrap();
    let hub = McpHub::new(Duration::from_secs(3));
    let missing = McpServer { name: "gone".into(), command: Some("/nonexistent/mcp-server".into()), ..Default::default() };
    let garbage = McpServer { name: "garbage".into(), command: Some("sh".into()), args: vec!["-c".into(), "echo 'this is not JSON-RPC'; echo broken >&2; sleep 1".into()], ..Default::default() };
    let list = rt.block_on(hub.tools(&[files_server(folder.path()), time_server(), missing, garbage]));
    let names: Vec<(&str, &str)> = list.tools.iter().map(|t| (t.server.as_str(), t.function_name.as_str())).collect();
    for want in [("files", "read_file"), ("files", "list_files"), ("time", "get_current_time"), ("time", "convert_time")] {
        assert!(names.contains(&want), "{want:?} not in {names:?}");
    }
    let problem = |server: &str| list.problems.iter().find(|p| p.server == server).map(|p| p.message.clone()).unwrap_or_else(|| panic!("no problem reported for {server}: {:?}", list.problems));
    assert!(problem("gone").contains("could not start") && problem("gone").contains("/nonexistent/mcp-server"), "{}", problem("gone"));
    assert!(problem("garbage").contains("did not start"), "{}", problem("garbage"));
    assert_eq!(rt.block_on(hub.running()), ["files", "time"]);

    // Calls: a result, the tool's own error, a server that hangs, one cancelled, one that dies.
    let read = rt.block_on(hub.call("c1", "files", "read_file", args(json!({ "name": "notes.txt" }))));
    assert_eq!((read.text.as_str(), read.is_error), ("Meet at the north gate.", false));
    let now = rt.block_on(hub.call("c2", "time", "get_current_time", args(json!({ "timezone": "UTC" }))));
    assert!(!now.is_error && now.text.contains("datetime"), "{now:?}");
    let outside = rt.block_on(hub.call("c3", "files", "read_file", args(json!({ "name": "../../etc/passwd" }))));
    assert!(outside.is_error && outside.text.contains("read_file"), "{outside:?}");
    let started = Instant::now();
    let hung = rt.block_on(hub.call("c4", "files", "slow", args(json!({ "seconds": 30 }))));
    assert!(hung.is_error && hung.text.contains("did not answer within 3 s") && started.elapsed() < Duration::from_secs(10), "{hung:?}");
    let cancelled = rt.block_on(async {
        let call = hub.call("c5", "files", "slow", args(json!({ "seconds": 30 })));
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            hub.cancel("c5");
        };
        tokio::join!(call, cancel).0
    });
    assert!(cancelled.is_error && cancelled.text.starts_with("cancelled"), "{cancelled:?}");
    let after = rt.block_on(hub.call("c6", "files", "list_files", Map::new()));
    assert_eq!((after.text.as_str(), after.is_error), ("notes.txt", false), "the server still works after a timeout and a cancel");
    let died = rt.block_on(hub.call("c7", "files", "crash", Map::new()));
    assert!(died.is_error && died.text.contains("stopped during the call"), "{died:?}");
    assert_eq!(rt.block_on(hub.running()), ["time"]);
    let gone = rt.block_on(hub.call("c8", "files", "list_files", Map::new()));
    assert!(gone.is_error && gone.text.contains("not running"), "{gone:?}");
    // Opening the conversation again starts it again; releasing stops what it does not keep.
    let again = rt.block_on(hub.tools(&[files_server(folder.path())]));
    assert!(again.problems.is_empty() && again.tools.iter().any(|t| t.name == "read_file"), "{:?}", again.problems);
    rt.block_on(hub.release(&["files".to_string()]));
    assert_eq!(rt.block_on(hub.running()), ["files"]);
    rt.block_on(hub.release(&[]));
    assert!(rt.block_on(hub.running()).is_empty());
}

/// A store with the tool model (`qwen2.5-coder:1.5b`): the 0.5B calls tools but, given their
/// results, only calls them again, in or out of the loop.
fn store_with_tool_model() -> TempDir {
    let path = PathBuf::from(std::env::var_os("AIRLOCK_TOOL_MODEL").expect("AIRLOCK_TOOL_MODEL must name Qwen2.5-Coder 1.5B (tests/fixtures/fetch-test-model.sh instruct-1.5b)"));
    let dir = TempDir::new().unwrap();
    let opts = ImportOptions { name: Some("qwen2.5-coder:1.5b".into()), link: true, ..Default::default() };
    import(&Store::at(dir.path()), &path, &opts, &NoProgress).unwrap();
    dir
}

fn as_function(tool: &McpTool) -> Value {
    json!({ "type": "function", "function": { "name": tool.function_name, "description": tool.description, "parameters": tool.parameters } })
}

/// One reply: its text and the calls the model's reply parser found.
fn reply(core: &Core, messages: &[ChatMessage], tools: &[Value]) -> (String, Vec<ToolCall>) {
    let model = core.prepare("qwen2.5-coder:1.5b").unwrap();
    let settings = RequestSettings {
        options: SamplingOptions { temperature: Some(0.0), num_predict: Some(120), ..Default::default() },
        num_ctx: Some(4096),
        tools: ToolRequest { tools: tools.to_vec(), ..Default::default() },
        ..Default::default()
    };
    let mut stream = core.engine().chat(&model, messages, settings).unwrap();
    let (mut text, mut calls) = (String::new(), Vec::new());
    let mut take = |parts: Vec<ReplyPart>| {
        for part in parts {
            match part {
                ReplyPart::Content(t) => text.push_str(&t),
                ReplyPart::ToolCall(c) => calls.push(c),
                ReplyPart::Thinking(_) => {}
            }
        }
    };
    for event in stream.generation.by_ref() {
        match event {
            StreamEvent::Piece(p) => take(stream.parser.push(&p)),
            StreamEvent::Done(_) => break,
            StreamEvent::Error(e) => panic!("{e}"),
        }
    }
    take(stream.parser.finish());
    (text, calls)
}

#[test]
fn qwen_calls_an_mcp_tool_by_itself_and_answers_with_its_result() {
    let rt = runtime();
    let folder = TempDir::new().unwrap();
    std::fs::write(folder.path().join("inventory.txt"), "The warehouse holds 417 blue crates and 12 red ones.").unwrap();
    let hub = McpHub::default();
    let list = rt.block_on(hub.tools(&[files_server(folder.path())]));
    assert!(list.problems.is_empty(), "{:?}", list.problems);
    let tools: Vec<Value> = list.tools.iter().filter(|t| t.name == "read_file").map(as_function).collect();
    let dir = store_with_tool_model();
    let core = Core::new(Store::at(dir.path()), config());
    let mut messages = vec![ChatMessage::new("user", "How many blue crates does the warehouse hold? Read the file inventory.txt to find out.")];
    let mut called: Vec<(String, Value)> = Vec::new();
    let started = Instant::now();
    // The window's loop (ui/src/lib/tools.ts), step by step: the model's calls run and their
    // results go back as tool messages; a call it already made is not run again, and the model
    // is asked once more without tools, to answer from the results it has.
    let mut offered = tools.clone();
    let answer = loop {
        assert!(called.len() < 4, "no answer after {} tool calls: {called:?}", called.len());
        let (text, calls) = reply(&core, &messages, &offered);
        if calls.is_empty() {
            break text;
        }
        if calls.iter().all(|c| called.iter().any(|(name, a)| *name == c.function.name && *a == c.function.arguments)) {
            println!("the model repeated a call: asked again without tools");
            offered.clear();
            continue;
        }
        messages.push(ChatMessage { tool_calls: calls.clone(), ..ChatMessage::new("assistant", text) });
        for call in calls {
            let tool = list.tools.iter().find(|t| t.function_name == call.function.name).unwrap_or_else(|| panic!("the model called an unknown tool: {call:?}"));
            let outcome = rt.block_on(hub.call("q", &tool.server, &tool.name, call.function.arguments.as_object().cloned().unwrap_or_default()));
            println!("step {}: {}({}) -> {:?} in {} ms", called.len() + 1, tool.name, call.function.arguments, outcome.text, outcome.duration_ms);
            called.push((call.function.name.clone(), call.function.arguments.clone()));
            messages.push(ChatMessage { tool_name: Some(call.function.name.clone()), tool_call_id: call.id.clone(), ..ChatMessage::new("tool", outcome.text) });
        }
    };
    println!("answer after {} call(s), {:.1} s: {answer:?}", called.len(), started.elapsed().as_secs_f64());
    assert!(called.iter().any(|(name, a)| name == "read_file" && a["name"] == "inventory.txt"), "the model read the file by itself: {called:?}");
    assert!(answer.contains("417"), "the answer uses the tool's result: {answer:?}");
    rt.block_on(hub.release(&[]));
}
