//! Who may use the API and what they did: scoped API tokens (`airlock token`) and the audit log
//! (`airlock audit`). The API server checks the one and writes the other; the command line
//! manages both. Files only: the HTTP side lives in `api`.
//!
//! Uses: `durable`, `units`.

pub mod audit;
pub mod tokens;
