//! Which registry and repository a name means. `REGISTRY/NAMESPACE/MODEL:TAG` names one
//! explicitly; a short name (`gemma3:270m`, `team/model:v1`) means the site's default registry,
//! `AIRLOCK_REGISTRY`, and keeps its short name in the store (so `airlock run gemma3:270m` works
//! after `airlock pull gemma3:270m`).

use super::RegistryError;
use crate::store::name::DEFAULT_HOST;
use crate::store::ModelName;

pub const REGISTRY_ENV: &str = "AIRLOCK_REGISTRY";

/// A registry's address and whether plain HTTP was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// `host` or `host:port`.
    pub host: String,
    pub plain_http: bool,
}

impl Registry {
    /// `host[:port]` (HTTPS), `https://host[:port]`, or `http://host[:port]` (plain HTTP, asked for
    /// explicitly).
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        let s = s.trim();
        let (host, plain_http) = match (s.strip_prefix("http://"), s.strip_prefix("https://")) {
            (Some(h), _) => (h, true),
            (_, Some(h)) => (h, false),
            _ => (s, false),
        };
        let host = host.trim_end_matches('/');
        let ok = host.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[')
            && !host.ends_with(':') && host.len() <= 255 && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'));
        if !ok {
            return Err(RegistryError::Config(format!("invalid registry address {s:?}: expected host[:port], e.g. registry.example.org:5000 (or http://host:port for plain HTTP)")));
        }
        Ok(Registry { host: host.to_ascii_lowercase(), plain_http })
    }

    /// The site's default registry, `AIRLOCK_REGISTRY`, if set.
    pub fn from_env() -> Result<Option<Self>, RegistryError> {
        match std::env::var(REGISTRY_ENV) {
            Ok(v) if !v.trim().is_empty() => Registry::parse(&v).map(Some).map_err(|e| RegistryError::Config(format!("{REGISTRY_ENV}: {e}"))),
            _ => Ok(None),
        }
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.plain_http { "http" } else { "https" }, self.host)
    }
}

/// A model in a registry, and the name it has in the local store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub registry: Registry,
    /// `namespace/model`, lower-case as registries require.
    pub repository: String,
    pub tag: String,
    /// The store name: the short name for the default registry, else the full one (as Ollama does).
    pub local: ModelName,
}

impl Reference {
    /// Resolves `name` against `default` (the site registry). `insecure` asks for plain HTTP.
    pub fn resolve(name: &str, default: Option<&Registry>, insecure: bool) -> Result<Self, RegistryError> {
        let trimmed = name.trim();
        let plain_scheme = trimmed.starts_with("http://");
        let local = ModelName::parse(trimmed).map_err(|e| RegistryError::Config(e.to_string()))?;
        let registry = if local.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            let Some(default) = default else {
                return Err(RegistryError::Config(format!(
                    "no registry for {name:?}: set {REGISTRY_ENV} to the site's registry (host:port), or name one: REGISTRY/NAMESPACE/MODEL:TAG; models also arrive by `airlock import`"
                )));
            };
            Registry { host: default.host.clone(), plain_http: default.plain_http || insecure || plain_scheme }
        } else {
            let mut r = Registry::parse(&local.host)?;
            r.plain_http = insecure || plain_scheme;
            r
        };
        let repository = format!("{}/{}", local.namespace, local.model).to_ascii_lowercase();
        check_repository(&repository)?;
        Ok(Reference { registry, repository, tag: local.tag.clone(), local })
    }

    /// Resolves a name a caller sent (an API request, the window) on the site registry `site`:
    /// the site's configured scheme and CA are the only ones used, so a name that carries a
    /// scheme (`http://…`, `https://…`, `//host/…`) is refused — it could downgrade the site to
    /// plain HTTP — and so is a name on any other registry host.
    pub fn resolve_on_site(name: &str, site: &Registry) -> Result<Self, RegistryError> {
        let trimmed = name.trim();
        if trimmed.contains("://") || trimmed.starts_with("//") {
            return Err(RegistryError::Config(format!(
                "{name:?} carries a scheme; send the model's name only (MODEL:TAG or NAMESPACE/MODEL:TAG): the site registry {} is always used as configured",
                site.base_url()
            )));
        }
        let reference = Reference::resolve(trimmed, Some(site), false)?;
        if reference.registry.host != site.host {
            return Err(RegistryError::Config(format!("{name:?} names registry {}; only the site registry {} is used", reference.registry.host, site.host)));
        }
        Ok(reference)
    }

    /// `host/namespace/model:tag`, as a user would type it.
    pub fn display(&self) -> String {
        format!("{}/{}:{}", self.registry.host, self.repository, self.tag)
    }
}

/// The OCI rule for repository path components: lower-case alphanumerics separated by `.`, `_`,
/// `__` or dashes.
fn check_repository(repo: &str) -> Result<(), RegistryError> {
    for part in repo.split('/') {
        let bytes = part.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        let ok = !bytes.is_empty() && alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]) && !part.contains("..") && !part.contains("___") && !part.contains("._") && !part.contains("_.") && !part.contains(".-") && !part.contains("-.");
        if !ok {
            return Err(RegistryError::Config(format!("{part:?} cannot be a registry repository name: use lower-case letters and digits, separated by '.', '_' or '-'")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_callers_use_only_the_site_registry_as_configured() {
        let site = Registry::parse("registry.site.lan:5000").unwrap();
        let ok = Reference::resolve_on_site("gemma3:270m", &site).unwrap();
        assert_eq!((ok.registry.host.as_str(), ok.registry.plain_http, ok.repository.as_str()), ("registry.site.lan:5000", false, "library/gemma3"));
        assert_eq!(Reference::resolve_on_site("registry.site.lan:5000/team/m:1", &site).unwrap().repository, "team/m");
        for name in ["http://gemma3:270m", "https://gemma3:270m", "HTTP://gemma3:270m", "//registry.site.lan:5000/library/gemma3", "http://registry.site.lan:5000/library/gemma3"] {
            let e = Reference::resolve_on_site(name, &site).unwrap_err().to_string();
            assert!(e.contains("scheme"), "{name}: {e}");
        }
        for name in ["registry.site.lan:5001/library/gemma3", "127.0.0.1:5000/library/gemma3", "other.lan/library/gemma3"] {
            let e = Reference::resolve_on_site(name, &site).unwrap_err().to_string();
            assert!(e.contains("only the site registry"), "{name}: {e}");
        }
    }

    #[test]
    fn short_names_use_the_site_registry_and_keep_their_short_name() {
        let site = Registry::parse("http://127.0.0.1:5000").unwrap();
        let r = Reference::resolve("gemma3:270m", Some(&site), false).unwrap();
        assert_eq!(r.registry, Registry { host: "127.0.0.1:5000".into(), plain_http: true });
        assert_eq!((r.repository.as_str(), r.tag.as_str()), ("library/gemma3", "270m"));
        assert_eq!(r.local.display_shortest(), "gemma3:270m");
        assert_eq!(r.display(), "127.0.0.1:5000/library/gemma3:270m");
    }

    #[test]
    fn explicit_registries_use_https_unless_asked() {
        let r = Reference::resolve("reg.site:5000/team/Model:v1", None, false).unwrap();
        assert_eq!(r.registry.base_url(), "https://reg.site:5000");
        assert_eq!(r.repository, "team/model");
        assert_eq!(r.local.display_shortest(), "reg.site:5000/team/Model:v1");
        assert_eq!(Reference::resolve("reg.site:5000/team/model:v1", None, true).unwrap().registry.base_url(), "http://reg.site:5000");
    }

    #[test]
    fn a_short_name_without_a_site_registry_is_a_clear_error() {
        let e = Reference::resolve("gemma3:270m", None, false).unwrap_err().to_string();
        assert!(e.contains("AIRLOCK_REGISTRY"), "{e}");
    }

    #[test]
    fn rejects_bad_registry_addresses() {
        for bad in ["", "http://", "a b", "host/path", "x@y"] {
            assert!(Registry::parse(bad).is_err(), "{bad:?}");
        }
    }
}
