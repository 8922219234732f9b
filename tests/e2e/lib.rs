//! Nothing here: the package holds the end-to-end test (`main.rs`).
