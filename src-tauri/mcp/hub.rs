//! The MCP servers running for the open conversation: started on first use (all at once), asked
//! for their tools, called with a time limit and a way to cancel each call, stopped when no
//! conversation uses them. A server that fails, crashes, hangs or answers garbage costs one
//! error result in words, never a blocked caller.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult, Tool};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use super::config::McpServer;

/// How long a tool may take before its call is given up (the server keeps running).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to start and list its tools.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A result longer than this reaches the model cut, saying so.
const RESULT_LIMIT: usize = 256 << 10;

/// A tool as the model and the window see it.
#[derive(Clone, Debug, Serialize)]
pub struct McpTool {
    pub server: String,
    pub name: String,
    /// What the model calls it: the tool's name, or `server__name` when two servers share one.
    pub function_name: String,
    pub description: String,
    /// The JSON schema of its arguments.
    pub parameters: Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub server: String,
    pub message: String,
}

#[derive(Debug, Default, Serialize)]
pub struct ToolList {
    pub tools: Vec<McpTool>,
    pub problems: Vec<Problem>,
}

/// What one call gave: the result's text, or what went wrong in words (`is_error`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CallOutcome {
    pub text: String,
    pub is_error: bool,
    pub duration_ms: u64,
}

struct Running {
    config: McpServer,
    client: RunningService<RoleClient, ()>,
    tools: Vec<Tool>,
    /// The last lines the server wrote to stderr, for the message when it dies.
    stderr: Arc<Mutex<VecDeque<String>>>,
}

pub struct McpHub {
    running: tokio::sync::Mutex<HashMap<String, Arc<Running>>>,
    /// Cancel switches of the calls under way, by the caller's request ID.
    pending: Mutex<HashMap<String, oneshot::Sender<()>>>,
    call_timeout: Duration,
}

impl Default for McpHub {
    fn default() -> Self {
        McpHub::new(CALL_TIMEOUT)
    }
}

impl McpHub {
    pub fn new(call_timeout: Duration) -> Self {
        McpHub { running: Default::default(), pending: Default::default(), call_timeout }
    }

    /// The tools of `servers`, starting those not running (or running with another launch line).
    pub async fn tools(&self, servers: &[McpServer]) -> ToolList {
        let mut list = ToolList::default();
        let mut starting = tokio::task::JoinSet::new();
        {
            let running = self.running.lock().await;
            for config in servers {
                if running.get(&config.name).is_none_or(|r| config.launches_differently_from(Some(&r.config)) || r.client.is_closed()) {
                    starting.spawn(start(config.clone()));
                }
            }
        }
        let mut failed = Vec::new();
        while let Some(done) = starting.join_next().await {
            match done {
                Ok(Ok(r)) => {
                    self.running.lock().await.insert(r.config.name.clone(), Arc::new(r));
                }
                Ok(Err((server, message))) => {
                    self.running.lock().await.remove(&server);
                    failed.push(server.clone());
                    list.problems.push(Problem { server, message });
                }
                Err(e) => list.problems.push(Problem { server: String::new(), message: format!("a server's start failed: {e}") }),
            }
        }
        let running = self.running.lock().await;
        let mut all = Vec::new();
        for config in servers.iter().filter(|c| !failed.contains(&c.name)) {
            let Some(r) = running.get(&config.name) else { continue };
            for tool in &r.tools {
                if !plain_tool_name(&tool.name) {
                    list.problems.push(Problem { server: config.name.clone(), message: format!("the tool {:.80?} was left out: tool names are letters, digits, '_', '-' and '.'", tool.name) });
                    continue;
                }
                all.push((config.name.clone(), tool));
            }
        }
        for (server, tool) in &all {
            let shared = all.iter().filter(|(_, t)| t.name == tool.name).count() > 1;
            list.tools.push(McpTool {
                server: server.clone(),
                name: tool.name.to_string(),
                function_name: if shared { format!("{server}__{}", tool.name) } else { tool.name.to_string() },
                description: tool.description.as_deref().unwrap_or_default().to_string(),
                parameters: Value::Object(tool.input_schema.as_ref().clone()),
            });
        }
        list
    }

    /// Calls `tool` of the running server `server`; `request_id` names the call for [`cancel`](Self::cancel).
    pub async fn call(&self, request_id: &str, server: &str, tool: &str, arguments: Map<String, Value>) -> CallOutcome {
        let started = Instant::now();
        let outcome = |text: String, is_error: bool| CallOutcome { text, is_error, duration_ms: started.elapsed().as_millis() as u64 };
        let Some(r) = self.running.lock().await.get(server).cloned() else {
            return outcome(format!("the MCP server {server:?} is not running; open the conversation again to start it"), true);
        };
        let (cancel, cancelled) = oneshot::channel();
        self.pending.lock().unwrap().insert(request_id.to_string(), cancel);
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let result = tokio::select! {
            r = tokio::time::timeout(self.call_timeout, r.client.call_tool(params)) => r,
            _ = cancelled => {
                self.pending.lock().unwrap().remove(request_id);
                return outcome(format!("cancelled: the call of {tool} was stopped by the user"), true);
            }
        };
        self.pending.lock().unwrap().remove(request_id);
        match result {
            Err(_) => outcome(format!("the tool {tool} of {server} did not answer within {} s", self.call_timeout.as_secs()), true),
            Ok(Ok(result)) => {
                let (text, is_error) = result_text(&result);
                outcome(text, is_error)
            }
            Ok(Err(e)) => {
                let died = r.client.is_closed() || matches!(e, ServiceError::TransportClosed | ServiceError::TransportSend(_));
                if died {
                    self.running.lock().await.remove(server);
                    outcome(format!("the MCP server {server} stopped during the call{}", last_words(&r.stderr)), true)
                } else {
                    outcome(format!("the MCP server {server} answered the call of {tool} with an error: {e}"), true)
                }
            }
        }
    }

    /// Ends the call `request_id` now, if it is under way.
    pub fn cancel(&self, request_id: &str) {
        if let Some(cancel) = self.pending.lock().unwrap().remove(request_id) {
            let _ = cancel.send(());
        }
    }

    /// Stops every running server not named in `keep`.
    pub async fn release(&self, keep: &[String]) {
        let stopping: Vec<Arc<Running>> = {
            let mut running = self.running.lock().await;
            let names: Vec<String> = running.keys().filter(|n| !keep.contains(n)).cloned().collect();
            names.iter().filter_map(|n| running.remove(n)).collect()
        };
        for r in stopping {
            // A call still under way holds the server until it ends; the last holder stops it.
            if let Ok(r) = Arc::try_unwrap(r) {
                let _ = r.client.cancel().await;
            }
        }
    }

    /// Names of the servers running now.
    pub async fn running(&self) -> Vec<String> {
        let mut names: Vec<String> = self.running.lock().await.keys().cloned().collect();
        names.sort();
        names
    }
}

/// MCP's recommended tool-name characters: anything else could confuse the model's template.
fn plain_tool_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

async fn start(config: McpServer) -> Result<Running, (String, String)> {
    let name = config.name.clone();
    let fail = |what: String| (name.clone(), what);
    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    let client = if let (Some(command), true) = (&config.command, config.is_local()) {
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(&config.args).kill_on_drop(true);
        // The server is the user's program, but Airlock's own settings and secrets stay here.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.split_once('_').is_some_and(|(head, _)| head == "AIRLOCK") || k == "DOCKER_CONFIG") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(&config.env);
        let (process, err) = TokioChildProcess::builder(cmd).stderr(Stdio::piped()).spawn().map_err(|e| fail(format!("could not start {}: {e}", config.launch_line())))?;
        if let Some(err) = err {
            let lines = stderr.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(err).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    let mut lines = lines.lock().unwrap();
                    if lines.len() == 20 {
                        lines.pop_front();
                    }
                    lines.push_back(line.chars().take(500).collect());
                }
            });
        }
        tokio::time::timeout(START_TIMEOUT, ().serve(process)).await
    } else {
        let url = config.url.clone().unwrap_or_default();
        // reqwest's rustls has no crypto provider of its own here: the process-wide one (ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::time::timeout(START_TIMEOUT, ().serve(StreamableHttpClientTransport::from_uri(url))).await
    };
    let client = match client {
        Err(_) => return Err(fail(format!("did not start within {} s{}", START_TIMEOUT.as_secs(), last_words(&stderr)))),
        Ok(Err(e)) => return Err(fail(format!("did not start: {e}{}", last_words(&stderr)))),
        Ok(Ok(client)) => client,
    };
    let tools = match tokio::time::timeout(START_TIMEOUT, client.list_all_tools()).await {
        Err(_) => return Err(fail(format!("did not list its tools within {} s", START_TIMEOUT.as_secs()))),
        Ok(Err(e)) => return Err(fail(format!("could not list its tools: {e}{}", last_words(&stderr)))),
        Ok(Ok(tools)) => tools,
    };
    Ok(Running { config, client, tools, stderr })
}

/// The server's last stderr lines, as a sentence's tail.
fn last_words(stderr: &Mutex<VecDeque<String>>) -> String {
    let lines = stderr.lock().unwrap();
    let tail: Vec<&str> = lines.iter().rev().take(3).map(String::as_str).collect::<Vec<_>>().into_iter().rev().collect();
    if tail.is_empty() {
        String::new()
    } else {
        format!(" (it said: {})", tail.join(" / "))
    }
}

/// A result's content as text for the model: text blocks as they are, anything else described
/// or as JSON; structured content when there is nothing else. Cut past [`RESULT_LIMIT`].
fn result_text(result: &CallToolResult) -> (String, bool) {
    let mut parts = Vec::new();
    for block in &result.content {
        let v = serde_json::to_value(block).unwrap_or_default();
        let part = match v["type"].as_str() {
            Some("text") => v["text"].as_str().unwrap_or_default().to_string(),
            Some("image" | "audio") => format!("[{} {}, not shown to the model]", v["type"].as_str().unwrap_or_default(), v["mimeType"].as_str().unwrap_or("of unknown type")),
            Some("resource") => v["resource"]["text"].as_str().map(str::to_string).unwrap_or_else(|| format!("[resource {}]", v["resource"]["uri"].as_str().unwrap_or("?"))),
            _ => v.to_string(),
        };
        parts.push(part);
    }
    if parts.is_empty() {
        if let Some(structured) = &result.structured_content {
            parts.push(structured.to_string());
        }
    }
    let mut text = parts.join("\n");
    if text.len() > RESULT_LIMIT {
        let mut cut = RESULT_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("\n[the result was cut here: it is longer than 256 KiB]");
    }
    (text, result.is_error == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_read_as_text_and_are_cut_when_huge() {
        let result: CallToolResult = serde_json::from_value(serde_json::json!({ "content": [{ "type": "text", "text": "14:05" }, { "type": "image", "data": "AAAA", "mimeType": "image/png" }] })).unwrap();
        assert_eq!(result_text(&result), ("14:05\n[image image/png, not shown to the model]".to_string(), false));
        let failed: CallToolResult = serde_json::from_value(serde_json::json!({ "content": [{ "type": "text", "text": "no such file" }], "isError": true })).unwrap();
        assert_eq!(result_text(&failed), ("no such file".to_string(), true));
        let structured: CallToolResult = serde_json::from_value(serde_json::json!({ "content": [], "structuredContent": { "t": 1 } })).unwrap();
        assert_eq!(result_text(&structured).0, r#"{"t":1}"#);
        let huge: CallToolResult = serde_json::from_value(serde_json::json!({ "content": [{ "type": "text", "text": "é".repeat(RESULT_LIMIT) }] })).unwrap();
        let (text, _) = result_text(&huge);
        assert!(text.len() < RESULT_LIMIT + 100 && text.ends_with("longer than 256 KiB]"));
    }

    #[test]
    fn tool_names_are_plain() {
        assert!(plain_tool_name("get_current_time") && plain_tool_name("files.read-v2"));
        for bad in ["", "a b", "<|im_start|>", "x\ny", &"a".repeat(129)] {
            assert!(!plain_tool_name(bad), "{bad:?}");
        }
    }
}
