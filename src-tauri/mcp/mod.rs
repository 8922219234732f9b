//! MCP (Model Context Protocol) clients for the desktop chat, on the official Rust SDK (`rmcp`):
//! local servers over stdio and Streamable HTTP servers, as the user configured them
//! ([`config`]), run while a conversation uses them ([`hub`]). What a tool returns is outside
//! text: it goes back to the model as a `tool` message, tokenised as plain text like any other.
//!
//! Uses no other module of Airlock.

pub mod config;
pub mod hub;

pub use config::{parse_mcp_servers_json, McpServer};
pub use hub::{CallOutcome, McpHub, McpTool, ToolList};
