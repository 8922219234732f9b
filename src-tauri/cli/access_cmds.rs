//! `airlock token` (the API's scoped tokens) and `airlock audit` (what callers did): the
//! operator's side of a shared server. Neither needs the model store.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::format::table;
use crate::access::audit::{self, Record};
use crate::access::tokens::{self, Scope};

#[derive(Subcommand)]
pub enum AccessCommand {
    /// Manage the API's tokens: once one exists, `airlock serve` requires a token on every request
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Show the API's audit log: one line per request (who, from where, route, model, outcome)
    Audit {
        /// Only requests from then on: a date (2026-12-01), a time (RFC 3339) or a span (30m, 12h, 7d)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only the requests made with this token
        #[arg(long, value_name = "NAME")]
        token: Option<String>,
        /// One JSON record per line, as stored
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// Make a token and print it (once: only a salted hash is kept)
    Add {
        name: String,
        /// chat: inference and listing; admin: also create, copy, delete, blobs, pull, push, /metrics
        #[arg(long, default_value = "chat")]
        scope: Scope,
        /// Limit the token to models matching these patterns (e.g. 'gemma3:*' or qwen2.5-coder, which matches every tag)
        #[arg(long, value_name = "PATTERN", num_args = 1..)]
        models: Vec<String>,
        /// Refuse the token after this date (2027-01-31: through that day, UTC) or RFC 3339 time
        #[arg(long, value_name = "DATE")]
        expires: Option<String>,
    },
    /// List the tokens: names, scopes, models, expiry and last use (from the audit log)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a token: requests carrying it are refused from the next one on (no restart)
    Revoke { name: String },
}

pub fn run(cmd: AccessCommand) -> Result<ExitCode> {
    match cmd {
        AccessCommand::Token { action } => token(action),
        AccessCommand::Audit { since, token, json } => show_audit(since, token, json),
    }
}

fn audit_path() -> Result<std::path::PathBuf> {
    audit::default_path().ok_or_else(|| anyhow::anyhow!("no data folder known for the audit log; set {} to its file", audit::PATH_ENV))
}

fn token(action: TokenAction) -> Result<ExitCode> {
    let file = tokens::token_file(&crate::bundle::sign::config_dir()?);
    match action {
        TokenAction::Add { name, scope, models, expires } => {
            let expires = expires.as_deref().map(tokens::parse_expiry).transpose()?;
            let token = tokens::add(&file, &name, scope, &models, expires)?;
            println!("{token}");
            eprintln!("token {name:?} ({scope}) added to {}; it is shown only now: hand it over and keep no other copy", file.display());
        }
        TokenAction::List { json } => {
            let entries = tokens::list(&file)?;
            let last_use = last_use();
            if json {
                let list: Vec<serde_json::Value> = entries
                    .iter()
                    .map(|t| serde_json::json!({ "name": t.name, "scope": t.scope, "models": t.models, "expires": t.expires, "created": t.created, "last_used": last_use.get(&t.name) }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if entries.is_empty() {
                eprintln!("no API tokens; `airlock token add NAME --scope chat|admin` makes one");
            } else {
                let mut rows = vec![["NAME", "SCOPE", "MODELS", "EXPIRES", "LAST USED"].map(String::from).to_vec()];
                for t in &entries {
                    let models = if t.models.is_empty() { "all".to_string() } else { t.models.join(" ") };
                    rows.push(vec![t.name.clone(), t.scope.to_string(), models, t.expires.clone().unwrap_or_else(|| "never".into()), last_use.get(&t.name).cloned().unwrap_or_else(|| "never".into())]);
                }
                print!("{}", table(&rows));
            }
        }
        TokenAction::Revoke { name } => {
            tokens::revoke(&file, &name)?;
            println!("revoked {name:?}: requests that carry it are refused from now on");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each token's last request, from the audit log (absent or unreadable: none known).
fn last_use() -> HashMap<String, String> {
    let Ok(path) = audit_path() else { return HashMap::new() };
    let (records, _) = audit::read(&path, None, None).unwrap_or_default();
    records.into_iter().filter_map(|r| Some((r.token?, r.time))).collect()
}

fn show_audit(since: Option<String>, token: Option<String>, json: bool) -> Result<ExitCode> {
    let path = audit_path()?;
    let since = since.as_deref().map(audit::parse_since).transpose()?;
    let (records, unreadable) = audit::read(&path, since, token.as_deref())?;
    if unreadable > 0 {
        eprintln!("warning: {unreadable} line(s) of {} are not records (cut off by a crash?) and are left out", path.display());
    }
    if json {
        for r in &records {
            println!("{}", serde_json::to_string(r)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![["TIME", "TOKEN", "PEER", "REQUEST", "MODEL", "STATUS", "TOKENS IN/OUT", "MS"].map(String::from).to_vec()];
    rows.extend(records.iter().map(row));
    print!("{}", table(&rows));
    Ok(ExitCode::SUCCESS)
}

fn row(r: &Record) -> Vec<String> {
    let counts = match (r.prompt_tokens, r.reply_tokens) {
        (None, None) => "-".to_string(),
        (p, e) => format!("{}/{}", p.unwrap_or(0), e.unwrap_or(0)),
    };
    let status = match &r.error {
        Some(e) => format!("{} ({})", r.status, e.chars().take(60).collect::<String>()),
        None => r.status.to_string(),
    };
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    vec![r.time.clone(), dash(&r.token), dash(&r.peer), format!("{} {}", r.method, r.route), dash(&r.model), status, counts, r.duration_ms.to_string()]
}
