//! Registry credentials and challenges. Credentials come from `AIRLOCK_REGISTRY_AUTH`
//! (`user:password`, for the site registry `AIRLOCK_REGISTRY` only) or a docker-style
//! `config.json` `auths` entry for the host (`DOCKER_CONFIG`, else `~/.docker/config.json`, as
//! `docker login` writes it) — never from the command line, and they never appear in messages or
//! logs. A `401` carries a `WWW-Authenticate` challenge: `Basic` is answered with the
//! credentials, `Bearer realm=…,service=…,scope=…` by asking the realm for a token (with the
//! credentials, when there are any) — a realm on the registry's own origin, or one configured in
//! `AIRLOCK_REGISTRY_TOKEN_SERVICE`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use super::RegistryError;

pub const AUTH_ENV: &str = "AIRLOCK_REGISTRY_AUTH";
/// Token services (`https://auth.site.lan`, comma-separated) on another origin than the registry
/// that may receive its credentials.
pub const TOKEN_SERVICE_ENV: &str = "AIRLOCK_REGISTRY_TOKEN_SERVICE";

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

/// Credentials for `host`: `AIRLOCK_REGISTRY_AUTH` when `host` is the site registry (they were
/// given for it and go nowhere else), else the docker config's entry for `host`, as Docker does.
pub fn credentials_for(host: &str) -> Result<Option<Credentials>, RegistryError> {
    if let Some(pair) = std::env::var(AUTH_ENV).ok().filter(|p| !p.is_empty()) {
        if site_auth_host()?.is_some_and(|site| site.eq_ignore_ascii_case(host)) {
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

/// The host `AIRLOCK_REGISTRY_AUTH` is for: the site registry's, when both are set.
pub fn site_auth_host() -> Result<Option<String>, RegistryError> {
    if std::env::var(AUTH_ENV).map_or(true, |p| p.is_empty()) {
        return Ok(None);
    }
    Ok(super::Registry::from_env()?.map(|r| r.host))
}

/// The token services configured to receive credentials besides the registry's own origin.
pub fn configured_token_services() -> Vec<String> {
    std::env::var(TOKEN_SERVICE_ENV).unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).filter_map(origin).collect()
}

/// `scheme://host:port` of a URL, lower-case, with the scheme's default port written out; `None`
/// for anything but an absolute http(s) URL.
pub fn origin(url: &str) -> Option<String> {
    let uri: ureq::http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some(format!("{scheme}://{}:{port}", uri.host()?.to_ascii_lowercase()))
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
    fn origins_name_scheme_host_and_port() {
        assert_eq!(origin("https://Registry.Site.lan/v2/x/blobs/uploads/1?state=a").as_deref(), Some("https://registry.site.lan:443"));
        assert_eq!(origin("https://registry.site.lan:443/token"), origin("https://registry.site.lan/other"));
        assert_eq!(origin("http://127.0.0.1:5000/v2/").as_deref(), Some("http://127.0.0.1:5000"));
        assert_ne!(origin("http://127.0.0.1:5000/"), origin("http://127.0.0.1:5001/"));
        assert_ne!(origin("http://registry.site.lan/"), origin("https://registry.site.lan/"));
        for not_absolute in ["/v2/x/blobs/uploads/1", "registry.site.lan/token", "ftp://h/x", ""] {
            assert_eq!(origin(not_absolute), None, "{not_absolute}");
        }
    }

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
