//! Modelfiles, the Ollama way: parsing them ([`parser`]), checking every `PARAMETER`
//! ([`params`]), making a model from one or from `/api/create`'s fields ([`create`]), and
//! printing the Modelfile of a stored model ([`show`]).
//!
//! Owns: the Modelfile grammar, Ollama's parameter table and the exact bytes of the `params`,
//! `messages`, `template`, `system`, `license`, `adapter` and config layers, so that Ollama reads
//! a store Airlock made and the other way round. Must never: write anything before the whole
//! recipe (every parameter, the template, the base and adapter files) has been checked, copy a
//! blob the store already has, or publish a manifest before its blobs are in place.
//!
//! Uses: `store` (its layer types), `engine` (the template parser, Go values), `gguf`.

pub mod create;
pub mod params;
pub mod parser;
pub mod show;

#[cfg(test)]
mod tests;

pub use create::{create, CreateError, Created, Recipe, Source};
pub use params::Parameters;
pub use parser::{parse, Command, Instruction, Modelfile, ParseError};
pub use show::ModelLayers;
