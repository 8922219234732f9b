//! Registry credentials and challenges. Credentials come from `AIRLOCK_REGISTRY_AUTH`
//! (`user:password`) or a docker-style `config.json` `auths` entry (`DOCKER_CONFIG`, else
//! `~/.docker/config.json`, as `docker login` writes it) — never from the command line, and they
//! never appear in messages or logs. A `401` carries a `WWW-Authenticate` challenge: `Basic` is
//! answered with the credentials, `Bearer realm=…,service=…,scope=…` by asking the realm for a
//! token (with the credentials, when there are any).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::RegistryError;

pub const AUTH_ENV: &str = "AIRLOCK_REGISTRY_AUTH";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ user: {:?}, password: <hidden> }}", self.user)
    }
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials { user: user.into(), password: password.into() }
    }

    fn parse_pair(pair: &str, origin: &str) -> Result<Self, RegistryError> {
        match pair.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials::new(u, p)),
            _ => Err(RegistryError::Config(format!("{origin} must be user:password"))),
        }
    }

    /// The `Authorization` header value for Basic auth.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", BASE64.encode(format!("{}:{}", self.user, self.password)))
    }
}

/// Credentials for `host`: `AIRLOCK_REGISTRY_AUTH`, else the docker config's entry for it.
pub fn credentials_for(host: &str) -> Result<Option<Credentials>, RegistryError> {
    if let Ok(pair) = std::env::var(AUTH_ENV) {
        if !pair.is_empty() {
            return Credentials::parse_pair(&pair, AUTH_ENV).map(Some);
        }
    }
    let Some(path) = docker_config_path() else { return Ok(None) };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RegistryError::Config(format!("cannot read {}: {e}", path.display()))),
    };
    from_docker_config(&text, host).map_err(|why| RegistryError::Config(format!("{}: {why}", path.display())))
}

fn docker_config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        Some(dir) => Some(PathBuf::from(dir).join("config.json")),
        None => dirs::home_dir().map(|h| h.join(".docker").join("config.json")),
    }
}

#[derive(serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(serde::Deserialize)]
struct DockerAuth {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The `auths` entry for `host` (keys may carry a scheme and a path, as `docker login` writes them).
fn from_docker_config(text: &str, host: &str) -> Result<Option<Credentials>, String> {
    let config: DockerConfig = serde_json::from_str(text).map_err(|e| format!("not a docker config.json: {e}"))?;
    let key_host = |k: &str| -> String {
        let k = k.trim_start_matches("https://").trim_start_matches("http://");
        k.split('/').next().unwrap_or("").to_ascii_lowercase()
    };
    let Some((_, entry)) = config.auths.iter().find(|(k, _)| key_host(k) == host.to_ascii_lowercase()) else { return Ok(None) };
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = BASE64.decode(auth.trim()).map_err(|_| format!("the auths entry for {host} is not base64"))?;
        let pair = String::from_utf8(decoded).map_err(|_| format!("the auths entry for {host} is not text"))?;
        return Credentials::parse_pair(&pair, &format!("the auths entry for {host}")).map(Some).map_err(|e| e.to_string());
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials::new(u, p))),
        _ => Ok(None),
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `basic` or `bearer`, lower-case.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses `Bearer realm="https://auth/token",service="registry",scope="repository:a/b:pull,push"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, mut rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',', '\t']);
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        params.insert(key, value);
    }
    Some(Challenge { scheme: scheme.to_ascii_lowercase(), params })
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
pub fn query_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges_with_commas_in_quotes() {
        let c = parse_challenge(r#"Bearer realm="https://auth.site/token",service="registry.site",scope="repository:library/gemma3:pull,push""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.site/token");
        assert_eq!(c.params["service"], "registry.site");
        assert_eq!(c.params["scope"], "repository:library/gemma3:pull,push");
        let b = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((b.scheme.as_str(), b.params["realm"].as_str()), ("basic", "Registry Realm"));
    }

    #[test]
    fn reads_docker_config_auths_entries() {
        let auth = BASE64.encode("alice:s3cret:with-colon");
        let text = format!(r#"{{"auths":{{"https://reg.site:5000/v2/":{{"auth":"{auth}"}},"other:1":{{"username":"bob","password":"pw"}}}}}}"#);
        assert_eq!(from_docker_config(&text, "reg.site:5000").unwrap(), Some(Credentials::new("alice", "s3cret:with-colon")));
        assert_eq!(from_docker_config(&text, "other:1").unwrap(), Some(Credentials::new("bob", "pw")));
        assert_eq!(from_docker_config(&text, "elsewhere").unwrap(), None);
    }

    #[test]
    fn never_shows_the_password() {
        let c = Credentials::new("alice", "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(Credentials::parse_pair("nocolon", AUTH_ENV).unwrap_err().to_string().contains("user:password"));
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(query_encode("repository:a/b:pull,push"), "repository%3Aa%2Fb%3Apull%2Cpush");
    }
}
