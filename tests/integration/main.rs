//! Integration tests: one binary, one module per area.

mod common;
mod gguf;
mod import;
mod store_cli;
mod export;
mod runner;
mod engine;
mod engine_sharing;
mod load;
mod api;
mod access;
mod serve_stop;
mod rpc;
mod shared_store;
mod embed;
mod env_table;
mod documents;
mod documents_chat;
mod hardware;
mod kit;
mod gpu;
mod durability;
mod store_lock;
mod modelfile;
mod registry;
mod vision;
