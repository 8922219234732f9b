//! Airlock: run local LLMs on machines with no network.
//!
//! One library behind every face: the `airlock` CLI, the HTTP API and the desktop app all go
//! through [`core::Core`], so they cannot drift apart. Modules, one folder each:
//! - [`store`]: the Ollama-compatible model store (names, digests, manifests, blobs).
//! - [`gguf`]: a pure-Rust, bounds-checked GGUF reader/validator.
//! - [`bundle`]: verified import of bundles, Ollama folders, zips and single GGUF files.
//! - [`kit`]: the app and models in one checked folder (`airlock kit`), and its verification.
//! - [`modelfile`]: Ollama Modelfiles: parsing, `create`, `show --modelfile`.
//! - [`engine`]: prompts and inference.
//! - [`hardware`]: CPU/RAM/GPU probe and the per-model fit estimate.
//! - [`api`]: the Ollama- and OpenAI-compatible HTTP server.
//! - [`registry`]: push and pull through the site's own OCI registry.
//! - [`cli`]: the `airlock` command line.
//! - `desktop` (feature `desktop`): the Tauri app, `airlock-desktop`.

pub mod api;
pub mod bundle;
pub mod cli;
pub mod core;
pub mod documents;
pub mod durable;
pub mod engine;
pub mod gguf;
pub mod hardware;
pub mod kit;
pub mod modelfile;
pub mod progress;
pub mod registry;
pub mod store;
#[cfg(feature = "desktop")]
pub mod desktop;
