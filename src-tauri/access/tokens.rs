//! API tokens with scopes: `airlock token add/list/revoke` write the token file, the API server
//! reads it (again whenever it changes, so a revoke applies to the next request).
//!
//! A token is shown once, when it is made; the file keeps only a random salt and the SHA-256 of
//! salt and token, so reading the file (or a backup of it) gives no usable token. Tokens are 256
//! random bits, so a fast hash is enough: there is nothing to guess.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Inference and listing: chat, generate, embeddings, tags, show, ps.
    Chat,
    /// Everything `chat` may, and the routes that change the store or the site registry.
    Admin,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Scope::Chat => "chat",
            Scope::Admin => "admin",
        })
    }
}

/// One token as the file keeps it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenEntry {
    pub name: String,
    pub scope: Scope,
    /// Glob patterns of the model names it may use (`gemma3:*`, `qwen2.5-coder`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// RFC 3339; the token is refused from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    pub created: String,
    salt: String,
    sha256: String,
}

#[derive(Serialize, Deserialize, Default)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

fn err(s: impl Into<String>) -> TokenError {
    TokenError(s.into())
}

/// The name of the token that `AIRLOCK_API_KEY` stands for, in the audit log.
pub const ENV_TOKEN_NAME: &str = "AIRLOCK_API_KEY";

/// The token file in Airlock's config folder.
pub fn token_file(config_dir: &Path) -> PathBuf {
    config_dir.join("api-tokens.json")
}

fn read(path: &Path) -> Result<Vec<TokenEntry>, TokenError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<TokenFile>(&bytes).map(|f| f.tokens).map_err(|e| err(format!("the token file {} is damaged ({e}); restore it from a backup or remove it and add the tokens again", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(err(format!("cannot read the token file {}: {e}", path.display()))),
    }
}

fn write(path: &Path, tokens: Vec<TokenEntry>) -> Result<(), TokenError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    }
    let json = serde_json::to_vec_pretty(&TokenFile { tokens }).expect("token entries serialise");
    crate::durable::write_atomic_private(path, &json).map_err(|e| err(e.to_string()))
}

pub fn list(path: &Path) -> Result<Vec<TokenEntry>, TokenError> {
    read(path)
}

/// `--expires`: a date (the token works through that day, UTC) or an RFC 3339 instant.
pub fn parse_expiry(s: &str) -> Result<OffsetDateTime, TokenError> {
    let bad = || err(format!("invalid expiry {s:?}: expected a date such as 2027-01-31 or a time such as 2027-01-31T18:00:00Z"));
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let date = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).map_err(|_| bad())?;
    Ok(date.next_day().ok_or_else(bad)?.midnight().assume_utc())
}

fn hash(salt: &[u8], token: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(token.as_bytes());
    h.finalize().into()
}

fn check_name(name: &str) -> Result<(), TokenError> {
    let ok = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
    if ok { Ok(()) } else { Err(err(format!("invalid token name {name:?}: use up to 64 letters, digits, '.', '_', '-' or '@'"))) }
}

/// Adds a token and returns it: the only time its text exists outside the caller's hands.
pub fn add(path: &Path, name: &str, scope: Scope, models: &[String], expires: Option<OffsetDateTime>) -> Result<String, TokenError> {
    check_name(name)?;
    if name == ENV_TOKEN_NAME {
        return Err(err(format!("{ENV_TOKEN_NAME} is the name of the environment's token; choose another name")));
    }
    for p in models {
        glob::Pattern::new(p).map_err(|e| err(format!("invalid model pattern {p:?}: {e}")))?;
    }
    if let Some(t) = expires.filter(|t| *t <= OffsetDateTime::now_utc()) {
        return Err(err(format!("the expiry {} has already passed", t.format(&Rfc3339).unwrap_or_default())));
    }
    let mut tokens = read(path)?;
    if tokens.iter().any(|t| t.name == name) {
        return Err(err(format!("a token named {name:?} exists; revoke it first (`airlock token revoke {name}`) or choose another name")));
    }
    let mut secret = [0u8; 32];
    let mut salt = [0u8; 16];
    getrandom::fill(&mut secret).and_then(|_| getrandom::fill(&mut salt)).map_err(|e| err(format!("no randomness available: {e}")))?;
    let token = format!("airlock-{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
    tokens.push(TokenEntry {
        name: name.to_string(),
        scope,
        models: models.to_vec(),
        expires: expires.map(|t| t.format(&Rfc3339).unwrap_or_default()),
        created: crate::units::now_rfc3339(),
        salt: hex::encode(salt),
        sha256: hex::encode(hash(&salt, &token)),
    });
    write(path, tokens)?;
    Ok(token)
}

/// Removes a token; requests that carry it are refused from the next one on.
pub fn revoke(path: &Path, name: &str) -> Result<(), TokenError> {
    let mut tokens = read(path)?;
    let before = tokens.len();
    tokens.retain(|t| t.name != name);
    if tokens.len() == before {
        return Err(err(format!("no token named {name:?}; `airlock token list` shows the names")));
    }
    write(path, tokens)
}

/// Who is calling, once the token is checked.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No tokens are configured: a single-user loopback server, open to whoever reaches it.
    Anyone,
    Token { name: String, scope: Scope, models: Vec<glob::Pattern> },
}

impl Caller {
    pub fn name(&self) -> Option<&str> {
        match self {
            Caller::Anyone => None,
            Caller::Token { name, .. } => Some(name),
        }
    }

    pub fn may(&self, needed: Scope) -> bool {
        match self {
            Caller::Anyone => true,
            Caller::Token { scope, .. } => *scope == Scope::Admin || needed == Scope::Chat,
        }
    }

    /// Whether the caller may use the model named `name` (its shortest form, `gemma3:270m`). A
    /// pattern without a tag matches every tag of the names it matches.
    pub fn may_use(&self, name: &str) -> bool {
        match self {
            Caller::Token { models, .. } if !models.is_empty() => {
                let untagged = name.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(name, |(n, _)| n);
                models.iter().any(|p| p.matches(name) || (!p.as_str().contains(':') && p.matches(untagged)))
            }
            _ => true,
        }
    }
}

/// Why a request's token was refused.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    Missing,
    Unknown,
    Expired { name: String, at: String },
    /// The token file cannot be read: every request is refused until it is fixed.
    Unreadable(String),
}

/// The tokens a server accepts: the token file (reread when it changes) and `AIRLOCK_API_KEY`
/// (one chat token). Once the file exists, even empty, tokens are required: revoking the last
/// token closes the server rather than opening it.
pub struct Tokens {
    path: Option<PathBuf>,
    env_key: Option<String>,
    loaded: Mutex<Loaded>,
}

struct Loaded {
    /// The file's modification time and length when it was last read.
    stamp: Option<(SystemTime, u64)>,
    entries: Result<Arc<Vec<TokenEntry>>, String>,
}

impl Tokens {
    pub fn new(path: Option<PathBuf>, env_key: Option<String>) -> Self {
        Tokens { path, env_key, loaded: Mutex::new(Loaded { stamp: None, entries: Ok(Arc::default()) }) }
    }

    /// The token file's entries, reread when its modification time or length changed; `None`
    /// when there is no file. One `stat` per request, and no read while nothing changed.
    fn entries(&self) -> Result<Option<Arc<Vec<TokenEntry>>>, String> {
        let Some(path) = &self.path else { return Ok(None) };
        let Some(stamp) = std::fs::metadata(path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len())) else { return Ok(None) };
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if loaded.stamp != Some(stamp) {
            loaded.entries = read(path).map(Arc::new).map_err(|e| e.0);
            loaded.stamp = Some(stamp);
        }
        loaded.entries.clone().map(Some)
    }

    /// Checks the bearer token a request carries (`None`: no `Authorization` header).
    pub fn authenticate(&self, given: Option<&str>) -> Result<Caller, Refusal> {
        let entries = self.entries().map_err(Refusal::Unreadable)?;
        if entries.is_none() && self.env_key.is_none() {
            return Ok(Caller::Anyone);
        }
        let entries = entries.unwrap_or_default();
        let given = given.ok_or(Refusal::Missing)?;
        // Every entry is compared, in constant time, so the timing says nothing about which matched.
        let mut found: Option<&TokenEntry> = None;
        for entry in entries.iter() {
            let (Ok(salt), Ok(expected)) = (hex::decode(&entry.salt), hex::decode(&entry.sha256)) else { continue };
            if bool::from(hash(&salt, given).as_slice().ct_eq(&expected)) {
                found = Some(entry);
            }
        }
        let env_matches = self.env_key.as_deref().is_some_and(|key| bool::from(Sha256::digest(given.as_bytes()).as_slice().ct_eq(Sha256::digest(key.as_bytes()).as_slice())));
        if let Some(entry) = found {
            if let Some(at) = &entry.expires {
                let expired = OffsetDateTime::parse(at, &Rfc3339).map_or(true, |t| t <= OffsetDateTime::now_utc());
                if expired {
                    return Err(Refusal::Expired { name: entry.name.clone(), at: at.clone() });
                }
            }
            let models = entry.models.iter().filter_map(|p| glob::Pattern::new(p).ok()).collect();
            return Ok(Caller::Token { name: entry.name.clone(), scope: entry.scope, models });
        }
        if env_matches {
            return Ok(Caller::Token { name: ENV_TOKEN_NAME.into(), scope: Scope::Chat, models: Vec::new() });
        }
        Err(Refusal::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_stored_hashed_and_checked_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(dir.path());
        let tokens = Tokens::new(Some(path.clone()), None);
        assert!(matches!(tokens.authenticate(None), Ok(Caller::Anyone)), "no file: no token needed");
        let alice = add(&path, "alice", Scope::Admin, &[], None).unwrap();
        let bob = add(&path, "bob", Scope::Chat, &["gemma3".into()], Some(parse_expiry("2999-01-01").unwrap())).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&alice) && !text.contains(&bob[8..]), "{text}");
        #[cfg(unix)]
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions()) & 0o777, 0o600);
        assert!(matches!(tokens.authenticate(Some(&alice)), Ok(Caller::Token { ref name, scope: Scope::Admin, .. }) if name == "alice"));
        let b = tokens.authenticate(Some(&bob)).unwrap();
        assert!(b.may(Scope::Chat) && !b.may(Scope::Admin));
        assert!(b.may_use("gemma3:270m") && b.may_use("gemma3") && !b.may_use("qwen2.5:0.5b") && !b.may_use("gemma3x:1b"));
        assert_eq!(tokens.authenticate(Some("airlock-wrong")).unwrap_err(), Refusal::Unknown);
        assert_eq!(tokens.authenticate(None).unwrap_err(), Refusal::Missing);
        assert!(add(&path, "alice", Scope::Chat, &[], None).unwrap_err().0.contains("exists"));
        revoke(&path, "alice").unwrap();
        revoke(&path, "bob").unwrap();
        assert_eq!(tokens.authenticate(Some(&alice)).unwrap_err(), Refusal::Unknown);
        assert_eq!(tokens.authenticate(None).unwrap_err(), Refusal::Missing, "an empty file still requires a token");
        assert!(revoke(&path, "alice").unwrap_err().0.contains("no token named"));
    }

    #[test]
    fn expiry_dates_and_bad_input() {
        assert_eq!(parse_expiry("2027-01-31").unwrap(), time::macros::datetime!(2027-02-01 0:00 UTC));
        assert!(parse_expiry("31/01/2027").unwrap_err().0.contains("2027-01-31"));
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(dir.path());
        assert!(add(&path, "old", Scope::Chat, &[], Some(parse_expiry("2020-01-01").unwrap())).unwrap_err().0.contains("passed"));
        assert!(add(&path, "a b", Scope::Chat, &[], None).is_err());
        assert!(add(&path, "x", Scope::Chat, &["[".into()], None).unwrap_err().0.contains("pattern"));
        std::fs::write(&path, "{not json").unwrap();
        let tokens = Tokens::new(Some(path), None);
        assert!(matches!(tokens.authenticate(Some("x")), Err(Refusal::Unreadable(m)) if m.contains("damaged")));
    }

    #[test]
    fn the_environment_key_is_one_chat_token() {
        let tokens = Tokens::new(None, Some("s3cret".into()));
        let c = tokens.authenticate(Some("s3cret")).unwrap();
        assert_eq!(c.name(), Some(ENV_TOKEN_NAME));
        assert!(!c.may(Scope::Admin));
        assert_eq!(tokens.authenticate(Some("s3cre")).unwrap_err(), Refusal::Unknown);
    }
}
