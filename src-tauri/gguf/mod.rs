//! GGUF reader/validator: the first code that touches a model file, before llama.cpp ever sees it.
//!
//! Owns: parsing GGUF v2/v3 (little-endian) headers, metadata and tensor tables into [`GgufInfo`];
//! checking every count, length, type, shape, offset and size against the file and sane caps,
//! with the same packing rules llama.cpp enforces; the ggml type and file-type tables; the
//! Ollama-style summaries (quantization, parameter count); split models ([`split`]: checking parts
//! and merging them into one stream); and [`writer::GgufBuilder`] for fixtures.
//!
//! Must never: panic or overflow on any input; allocate a buffer sized by a number from the file
//! before checking it against the bytes actually left; read tensor data (bounds are arithmetic,
//! so a 250 MB file costs one header read); keep huge arrays (the tokenizer's 262k strings are
//! validated, then summarised as type + length); or write to the file it reads.
//!
//! Uses no other module of Airlock (the bottom layer, with `durable`, `progress`, `units` and
//! `backends`).

mod error;
mod reader;
pub mod split;
mod types;
pub mod writer;

#[cfg(test)]
mod tests;

pub use error::GgufError;
pub use reader::{
    read, read_file, DEFAULT_ALIGNMENT, KEEP_ARRAY_MAX, KEEP_TOTAL_MAX, MAX_ALIGNMENT,
    MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS, MAX_KV_COUNT, MAX_NAME_LEN, MAX_STRING_LEN,
    MAX_TENSOR_COUNT, MAX_TENSOR_NAME_LEN,
};
pub use types::*;

/// Whether a file starts with the GGUF magic (`b"GGUF"`); for sniffing, not validation.
pub fn is_gguf_magic(first_bytes: &[u8]) -> bool {
    first_bytes.starts_with(b"GGUF")
}
