//! The inference engine: the supervisor of runner processes, the protocol they speak, and prompt
//! rendering.
//!
//! Inside, from the bottom up: [`conversation`] (messages, tool calls, `think`), [`limits`] and
//! [`protocol`] (the supervisor ↔ runner lines); [`template`] (prompt rendering) and [`tools`]
//! (reading tool calls and thinking out of replies), which use the conversation types;
//! [`untrusted`] (keeping outside text from becoming control tokens), [`prompt`] (a prompt
//! rendered with outside text guarded, and its fixed prefix); [`attention`] (flash
//! attention and the KV cache type a runner's context is built with); [`context`] (the default context
//! for this machine's memory, and the slots a runner holds);
//! [`runner`] (the child process that links llama.cpp); [`rpc_worker`] (`airlock rpc-worker`,
//! llama.cpp's RPC server, which links it too); [`supervisor`] (which runners live);
//! [`chat`], [`embed`] and [`vision`] (requests on top of the supervisor), with [`speculative`]
//! (which draft model a request runs with). A new request kind goes
//! beside `chat`; a new way of shaping prompts into `template`; anything that touches llama.cpp
//! into `runner`, never into the calling process.
//!
//! Uses: `store`, `gguf`, `hardware`, `backends`. The modules that serve people (`core`, `api`,
//! `cli`, `desktop`, `documents`, `modelfile`) use it; it uses none of them.

pub mod attention;
pub mod chat;
pub mod context;
pub mod conversation;
pub mod embed;
pub mod limits;
pub mod prompt;
pub mod protocol;
pub mod rpc_worker;
pub mod speculative;
pub mod runner;
pub mod supervisor;
pub mod template;
pub mod tools;
pub mod untrusted;
pub mod vision;
