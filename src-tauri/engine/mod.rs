//! The inference engine: the supervisor of runner processes, the protocol they speak, and prompt
//! rendering.

pub mod chat;
pub mod embed;
pub mod limits;
pub mod protocol;
pub mod runner;
pub mod supervisor;
pub mod template;
pub mod tools;
pub mod vision;
