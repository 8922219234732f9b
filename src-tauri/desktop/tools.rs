//! MCP tools in the chat: the servers the person configured (Settings → Tools), the tools of the
//! servers a conversation uses, and each call the window asks for once the person approved it.
//! The web view may not start a process on its own: adding or changing a server that starts one
//! (or connects to an address) asks natively, naming the exact command line. The loop itself
//! (model → calls → results → model) runs in the window, which shows every call.

use std::collections::BTreeMap;

use serde_json::Value;
use tauri::{AppHandle, State};

use super::chat::check_request_id;
use super::confirm::{confirmer, Confirmation, Confirmer};
use super::error::{CommandError, CommandResult};
use super::grants::not_confirmed;
use super::AppState;
use crate::mcp::config::check_server_name;
use crate::mcp::{parse_mcp_servers_json, CallOutcome, McpServer, ToolList};

type AppStateRef<'a> = State<'a, AppState>;

#[tauri::command]
pub fn mcp_servers(state: AppStateRef<'_>) -> Vec<McpServer> {
    state.settings.mcp_servers()
}

/// Adds `server`, or replaces the one named `previous`.
#[tauri::command]
pub async fn save_mcp_server(app: AppHandle, state: AppStateRef<'_>, previous: Option<String>, server: McpServer) -> CommandResult<Vec<McpServer>> {
    let servers = state.settings.mcp_servers();
    let updated = with_server(&servers, previous.as_deref(), server)?;
    confirm_launches(&confirmer(&app, &state), &servers, &updated).await?;
    state.settings.set_mcp_servers(&updated)?;
    Ok(updated)
}

#[tauri::command]
pub async fn remove_mcp_server(state: AppStateRef<'_>, name: String) -> CommandResult<Vec<McpServer>> {
    let mut servers = state.settings.mcp_servers();
    servers.retain(|s| s.name != name);
    state.settings.set_mcp_servers(&servers)?;
    let keep: Vec<String> = state.mcp.running().await.into_iter().filter(|n| *n != name).collect();
    state.mcp.release(&keep).await;
    Ok(servers)
}

/// The `mcpServers` JSON of another app: every server in it, added or replacing one of the same name.
#[tauri::command]
pub async fn import_mcp_servers(app: AppHandle, state: AppStateRef<'_>, json: String) -> CommandResult<Vec<McpServer>> {
    if json.len() > 1 << 20 {
        return Err(CommandError::invalid("the JSON is larger than 1 MiB"));
    }
    let servers = state.settings.mcp_servers();
    let mut updated = servers.clone();
    for server in parse_mcp_servers_json(&json).map_err(CommandError::invalid)? {
        let previous = updated.iter().any(|s| s.name == server.name).then(|| server.name.clone());
        updated = with_server(&updated, previous.as_deref(), server)?;
    }
    confirm_launches(&confirmer(&app, &state), &servers, &updated).await?;
    state.settings.set_mcp_servers(&updated)?;
    Ok(updated)
}

#[tauri::command]
pub fn set_tool_always_allow(state: AppStateRef<'_>, server: String, tool: String, allow: bool) -> CommandResult<Vec<McpServer>> {
    let mut servers = state.settings.mcp_servers();
    let s = servers.iter_mut().find(|s| s.name == server).ok_or_else(|| unknown(&server))?;
    s.always_allow.retain(|t| *t != tool);
    if allow {
        s.always_allow.push(tool);
    }
    s.validate().map_err(CommandError::invalid)?;
    state.settings.set_mcp_servers(&servers)?;
    Ok(servers)
}

/// The tools of the configured servers named in `servers`, starting them when needed.
#[tauri::command]
pub async fn mcp_tools(state: AppStateRef<'_>, servers: Vec<String>) -> CommandResult<ToolList> {
    let configured = state.settings.mcp_servers();
    let mut chosen = Vec::new();
    let mut missing = Vec::new();
    for name in servers.iter().take(64) {
        match configured.iter().find(|s| s.name == *name) {
            Some(s) => chosen.push(s.clone()),
            None => missing.push(name.clone()),
        }
    }
    let mut list = state.mcp.tools(&chosen).await;
    for server in missing {
        list.problems.push(crate::mcp::hub::Problem { message: format!("{server:?} is no longer among the tool servers in Settings → Tools"), server });
    }
    Ok(list)
}

/// One call the person approved in the window. A tool's own failure is an error result, not an error.
#[tauri::command]
pub async fn mcp_call(state: AppStateRef<'_>, request_id: String, server: String, tool: String, arguments: Value) -> CommandResult<CallOutcome> {
    check_request_id(&request_id)?;
    check_server_name(&server).map_err(CommandError::invalid)?;
    let arguments = match arguments {
        Value::Object(map) => map,
        Value::Null => Default::default(),
        _ => return Err(CommandError::invalid("a tool's arguments are a JSON object")),
    };
    Ok(state.mcp.call(&request_id, &server, &tool, arguments).await)
}

#[tauri::command]
pub fn mcp_cancel(state: AppStateRef<'_>, request_id: String) -> CommandResult<()> {
    check_request_id(&request_id)?;
    state.mcp.cancel(&request_id);
    Ok(())
}

/// Stops the running servers that the open conversation does not use.
#[tauri::command]
pub async fn mcp_release(state: AppStateRef<'_>, keep: Vec<String>) -> CommandResult<()> {
    state.mcp.release(&keep).await;
    Ok(())
}

fn unknown(server: &str) -> CommandError {
    CommandError::invalid(format!("there is no tool server named {server:?}"))
}

/// `servers` with `server` added (`previous` `None`) or put in place of `previous`, checked.
fn with_server(servers: &[McpServer], previous: Option<&str>, mut server: McpServer) -> CommandResult<Vec<McpServer>> {
    server.name = server.name.trim().to_string();
    server.command = server.command.map(|c| c.trim().to_string()).filter(|c| !c.is_empty());
    server.url = server.url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
    server.validate().map_err(CommandError::invalid)?;
    let mut updated = servers.to_vec();
    let at = match previous {
        Some(name) => Some(updated.iter().position(|s| s.name == name).ok_or_else(|| unknown(name))?),
        None => None,
    };
    if updated.iter().enumerate().any(|(i, s)| s.name == server.name && Some(i) != at) {
        return Err(CommandError::invalid(format!("there is already a tool server named {:?}", server.name)));
    }
    if updated.len() >= 64 && at.is_none() {
        return Err(CommandError::invalid("64 tool servers at most"));
    }
    match at {
        Some(i) => updated[i] = server,
        None => updated.push(server),
    }
    Ok(updated)
}

/// Asks once for every server of `after` that starts a program or reaches an address it did not
/// start or reach in `before`, naming each exact command line; nothing to ask, nothing asked.
async fn confirm_launches(confirm: &impl Confirmer, before: &[McpServer], after: &[McpServer]) -> CommandResult<()> {
    let by_name: BTreeMap<&str, &McpServer> = before.iter().map(|s| (s.name.as_str(), s)).collect();
    let new: Vec<&McpServer> = after.iter().filter(|s| s.launches_differently_from(by_name.get(s.name.as_str()).copied())).collect();
    if new.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = new
        .iter()
        .map(|s| if s.is_local() { format!("• {}: runs the program\n    {}", s.name, s.launch_line()) } else { format!("• {}: connects to\n    {}", s.name, s.launch_line()) })
        .collect();
    let question = Confirmation {
        title: "Allow these tool servers?".into(),
        message: format!(
            "When a conversation uses its tools, Airlock will start or reach:\n\n{}\n\nA tool server can do whatever its program or address allows, with your account's rights. Allow only servers you trust.",
            lines.join("\n")
        ),
        proceed: "Allow".into(),
    };
    if !confirm.confirm(question).await {
        return Err(not_confirmed());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::confirm::testing::Scripted;
    use super::*;

    fn time() -> McpServer {
        McpServer { name: "time".into(), command: Some("mcp-server-time".into()), args: vec!["--local-timezone=UTC".into()], ..Default::default() }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn a_new_or_changed_launch_asks_natively_naming_the_command_line() {
        let yes = Scripted::accepting();
        run(confirm_launches(&yes, &[], &[time()])).unwrap();
        assert!(yes.asked()[0].message.contains("mcp-server-time --local-timezone=UTC"), "{:?}", yes.asked());
        let no = Scripted::refusing();
        assert_eq!(run(confirm_launches(&no, &[], &[time()])).unwrap_err().code, "not_confirmed");
        // Allowing a tool or renaming nothing that launches: no question.
        let quiet = Scripted::refusing();
        let allowed = McpServer { always_allow: vec!["get_current_time".into()], ..time() };
        run(confirm_launches(&quiet, &[time()], &[allowed])).unwrap();
        assert!(quiet.asked().is_empty());
        let changed = McpServer { command: Some("/tmp/evil".into()), ..time() };
        assert!(run(confirm_launches(&Scripted::refusing(), &[time()], &[changed])).is_err());
    }

    #[test]
    fn servers_are_added_replaced_and_checked() {
        let list = with_server(&[], None, time()).unwrap();
        assert!(with_server(&list, None, time()).unwrap_err().message.contains("already"));
        let renamed = with_server(&list, Some("time"), McpServer { name: "clock".into(), ..time() }).unwrap();
        assert_eq!(renamed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["clock"]);
        assert!(with_server(&list, Some("nope"), time()).is_err());
        assert!(with_server(&list, None, McpServer { name: "x".into(), ..Default::default() }).unwrap_err().message.contains("needs a command"));
        let spaced = with_server(&[], None, McpServer { name: " t ".into(), command: Some(" uvx ".into()), url: Some(" ".into()), ..Default::default() }).unwrap();
        assert_eq!((spaced[0].name.as_str(), spaced[0].command.as_deref(), spaced[0].url.as_deref()), ("t", Some("uvx"), None));
    }
}
