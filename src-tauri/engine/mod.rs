//! The inference engine: prompt rendering today; the runner supervisor arrives with the engine issue.

pub mod template;
