//! Airlock: run local LLMs on machines with no network.
//!
//! One library behind every face: the `airlock` CLI, the HTTP API and the desktop app all go
//! through [`core::Core`], so they cannot drift apart. Modules, one folder each, from the bottom
//! up; each uses only modules listed before it (README "Layout" has the table):
//! - [`units`], [`durable`], [`progress`]: sizes and time stamps, atomic file writes, progress.
//! - [`child`]: Airlock's own child processes (the device probe, the document reader) under limits.
//! - [`gguf`]: a pure-Rust, bounds-checked GGUF reader/validator.
//! - [`backends`]: where ggml's backend modules live, and loading them.
//! - [`store`]: the Ollama-compatible model store (names, digests, manifests, blobs, text layers).
//! - [`hardware`]: CPU/RAM/GPU probe and the per-model fit estimate.
//! - [`library`]: the models in folders people already have (Hugging Face, LM Studio, Jan, GPT4All).
//! - [`bundle`]: verified import of bundles, Ollama folders, zips and single GGUF files; export.
//! - [`engine`]: conversations, prompts and inference (runner processes and their supervisor).
//! - [`registry`]: push and pull through the site's own OCI registry.
//! - [`modelfile`]: Ollama Modelfiles: parsing, `create`, `show --modelfile`.
//! - [`kit`]: the app and models in one checked folder (`airlock kit`), and its verification.
//! - [`core`]: the store, engine and hardware every face shares.
//! - [`documents`]: local documents for conversations (extraction, index, retrieval).
//! - [`api`]: the Ollama- and OpenAI-compatible HTTP server.
//! - [`cli`]: the `airlock` command line.
//! - `desktop` (feature `desktop`): the Tauri app, `airlock-desktop`.

pub mod access;
pub mod api;
pub mod backends;
pub mod bundle;
pub mod child;
pub mod cli;
pub mod core;
pub mod documents;
pub mod durable;
pub mod engine;
pub mod gguf;
pub mod hardware;
pub mod kit;
pub mod library;
pub mod mcp;
pub mod modelfile;
pub mod progress;
pub mod registry;
pub mod store;
pub mod units;
#[cfg(feature = "desktop")]
pub mod desktop;
