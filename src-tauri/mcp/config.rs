//! An MCP server as the user configures it: a local process (command, arguments, environment) or
//! a Streamable HTTP address, the tools it may call without asking, and the `mcpServers` JSON that
//! Claude Desktop, Cursor, LM Studio and Jan share. Everything here is checked: the web view sends it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpServer {
    pub name: String,
    /// The program of a local server (stdio transport).
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The address of a Streamable HTTP server.
    #[serde(default)]
    pub url: Option<String>,
    /// Tools this server may run without asking, by their name on the server.
    #[serde(default)]
    pub always_allow: Vec<String>,
}

impl McpServer {
    /// Checks the fields; the message says what to fix.
    pub fn validate(&self) -> Result<(), String> {
        check_server_name(&self.name)?;
        let command = self.command.as_deref().map(str::trim).filter(|c| !c.is_empty());
        let url = self.url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        match (command, url) {
            (Some(_), Some(_)) => return Err(format!("server {:?} has both a command and a URL; give one", self.name)),
            (None, None) => return Err(format!("server {:?} needs a command to start or a URL to connect to", self.name)),
            (None, Some(url)) => check_url(url)?,
            (Some(_), None) => {}
        }
        let texts = self.command.iter().chain(&self.args).chain(self.env.values());
        if let Some(bad) = texts.clone().find(|t| t.contains('\0') || t.len() > 4096) {
            return Err(format!("an argument or value of server {:?} is too long or holds a NUL byte: {:.40}", self.name, bad));
        }
        if self.args.len() > 256 || self.env.len() > 256 || self.always_allow.len() > 1024 {
            return Err(format!("server {:?} has too many arguments, variables or allowed tools", self.name));
        }
        if let Some(key) = self.env.keys().find(|k| k.is_empty() || k.contains(['=', '\0']) || k.len() > 256) {
            return Err(format!("{key:?} is not an environment variable name"))
        }
        Ok(())
    }

    /// Whether it runs a program on this machine.
    pub fn is_local(&self) -> bool {
        self.url.as_deref().is_none_or(|u| u.trim().is_empty())
    }

    /// What starts or is reached, as a person reads it in a confirmation: the environment it
    /// adds, the program and its arguments (each quoted when it needs it), or the URL.
    pub fn launch_line(&self) -> String {
        match (&self.command, &self.url) {
            (Some(command), _) if self.is_local() => {
                let env = self.env.iter().map(|(k, v)| format!("{k}={}", quoted(v)));
                env.chain(std::iter::once(quoted(command))).chain(self.args.iter().map(|a| quoted(a))).collect::<Vec<_>>().join(" ")
            }
            (_, Some(url)) => url.clone(),
            _ => String::new(),
        }
    }

    /// Whether `self` starts or reaches something that `before` did not (so it needs asking).
    pub fn launches_differently_from(&self, before: Option<&McpServer>) -> bool {
        before.is_none_or(|b| (b.command.as_deref(), &b.args, &b.env, b.url.as_deref()) != (self.command.as_deref(), &self.args, &self.env, self.url.as_deref()))
    }
}

/// Server names key the settings and prefix clashing tool names: short and plain.
pub fn check_server_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err(format!("{name:?} is not a server name: use 1 to 64 letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() > 2048 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} is not an http:// or https:// address"));
    }
    Ok(())
}

/// `text` as a POSIX shell would need it to stay one word.
fn quoted(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b)) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The servers of an `{"mcpServers": {NAME: {"command", "args", "env"} | {"url"}}}` document
/// (the bare inner object is accepted too), each checked.
pub fn parse_mcp_servers_json(text: &str) -> Result<Vec<McpServer>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("this is not JSON: {e}"))?;
    let servers = doc.get("mcpServers").unwrap_or(&doc).as_object().ok_or("expected {\"mcpServers\": {\"name\": {\"command\": …, \"args\": […]}}}")?;
    if servers.is_empty() {
        return Err("the JSON lists no servers under \"mcpServers\"".into());
    }
    servers
        .iter()
        .map(|(name, entry)| {
            let text = |key: &str| entry.get(key).and_then(Value::as_str).map(str::to_string);
            let strings = |key: &str| -> Result<Vec<String>, String> {
                match entry.get(key) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::Array(items)) => items.iter().map(|v| v.as_str().map(str::to_string).ok_or(format!("server {name:?}: every entry of \"{key}\" must be a string"))).collect(),
                    Some(_) => Err(format!("server {name:?}: \"{key}\" must be a list of strings")),
                }
            };
            let env = match entry.get("env") {
                None | Some(Value::Null) => BTreeMap::new(),
                Some(Value::Object(map)) => map.iter().map(|(k, v)| Ok((k.clone(), v.as_str().ok_or(format!("server {name:?}: the value of {k:?} in \"env\" must be a string"))?.to_string()))).collect::<Result<_, String>>()?,
                Some(_) => return Err(format!("server {name:?}: \"env\" must be an object of strings")),
            };
            let server = McpServer { name: name.clone(), command: text("command"), args: strings("args")?, env, url: text("url").or_else(|| text("serverUrl")), always_allow: strings("alwaysAllow")? };
            server.validate()?;
            Ok(server)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_desktop_json_becomes_checked_servers() {
        let json = r#"{"mcpServers": {
            "time": {"command": "uvx", "args": ["mcp-server-time", "--local-timezone=Europe/Paris"]},
            "files": {"command": "python3", "args": ["server.py", "/srv/my docs"], "env": {"LOG": "it's quiet"}},
            "wiki": {"url": "http://10.0.0.5:8080/mcp"}
        }}"#;
        let servers = parse_mcp_servers_json(json).unwrap();
        assert_eq!(servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["time", "files", "wiki"]);
        assert_eq!(servers[0].launch_line(), "uvx mcp-server-time --local-timezone=Europe/Paris");
        assert_eq!(servers[1].launch_line(), r"LOG='it'\''s quiet' python3 server.py '/srv/my docs'");
        assert_eq!(servers[2].launch_line(), "http://10.0.0.5:8080/mcp");
        assert!(servers[0].is_local() && !servers[2].is_local());
    }

    #[test]
    fn bad_servers_are_refused_with_what_to_fix() {
        for (json, says) in [
            ("nope", "not JSON"),
            (r#"{"mcpServers": {}}"#, "no servers"),
            (r#"{"mcpServers": {"a b": {"command": "x"}}}"#, "not a server name"),
            (r#"{"mcpServers": {"x": {}}}"#, "needs a command"),
            (r#"{"mcpServers": {"x": {"command": "a", "url": "http://h/"}}}"#, "both"),
            (r#"{"mcpServers": {"x": {"url": "file:///etc/passwd"}}}"#, "not an http"),
            (r#"{"mcpServers": {"x": {"command": "a", "args": "b"}}}"#, "list of strings"),
            (r#"{"mcpServers": {"x": {"command": "a", "env": {"K": 1}}}}"#, "must be a string"),
        ] {
            let err = parse_mcp_servers_json(json).unwrap_err();
            assert!(err.contains(says), "{json}: {err}");
        }
    }

    #[test]
    fn only_a_changed_launch_needs_asking_again() {
        let time = McpServer { name: "time".into(), command: Some("mcp-server-time".into()), ..Default::default() };
        assert!(time.launches_differently_from(None));
        let allowed = McpServer { always_allow: vec!["get_current_time".into()], ..time.clone() };
        assert!(!allowed.launches_differently_from(Some(&time)));
        let moved = McpServer { args: vec!["--local-timezone=UTC".into()], ..time.clone() };
        assert!(moved.launches_differently_from(Some(&time)));
    }
}
