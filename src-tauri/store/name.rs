//! Model names with Ollama's grammar: `[host/][namespace/]model[:tag]`.
//! Defaults `registry.ollama.ai`, `library`, `latest`; every part is validated before it becomes
//! a path component, so a name can never point outside `manifests/`.

use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_HOST: &str = "registry.ollama.ai";
pub const DEFAULT_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName {
    pub host: String,
    pub namespace: String,
    pub model: String,
    pub tag: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid model name {name:?}: {reason}")]
pub struct InvalidName {
    pub name: String,
    pub reason: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Host,
    Namespace,
    Model,
    Tag,
}

impl Part {
    fn label(self) -> &'static str {
        match self {
            Part::Host => "host",
            Part::Namespace => "namespace",
            Part::Model => "model",
            Part::Tag => "tag",
        }
    }
    fn max_len(self) -> usize {
        if self == Part::Host { 350 } else { 80 }
    }
}

/// Ollama's part rule: starts with a letter, digit or `_`; then letters, digits, `_`, `-`,
/// `.` (not in namespaces) and `:` (hosts only, for a port).
fn check_part(kind: Part, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > kind.max_len() {
        return Err(format!("the {} must be 1 to {} characters", kind.label(), kind.max_len()));
    }
    if s == "." || s == ".." || s.contains("..") {
        return Err(format!("the {} must not contain \"..\"", kind.label()));
    }
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_alphanumeric()
            || c == '_'
            || (i > 0 && c == '-')
            || (i > 0 && c == '.' && kind != Part::Namespace)
            || (i > 0 && c == ':' && kind == Part::Host);
        if !ok {
            return Err(format!("the {} {s:?} has a character not allowed there ({c:?}); use letters, digits, '_', '-' and '.'", kind.label()));
        }
    }
    Ok(())
}

impl ModelName {
    /// Parses a user-supplied name, filling in Ollama's defaults.
    pub fn parse(input: &str) -> Result<Self, InvalidName> {
        let err = |reason: String| InvalidName { name: input.chars().take(200).collect(), reason };
        let mut s = input.trim();
        if let Some(rest) = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")) {
            s = rest;
        }
        if s.contains('@') {
            return Err(err("digest references (@sha256:…) are not supported here".into()));
        }
        // A ':' is a tag separator only after the last '/' (before it, it is a host's port).
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, DEFAULT_TAG),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [m] => (DEFAULT_HOST, DEFAULT_NAMESPACE, *m),
            [ns, m] => (DEFAULT_HOST, *ns, *m),
            [h, ns, m] => (*h, *ns, *m),
            _ => return Err(err("expected [host/][namespace/]model[:tag]".into())),
        };
        let name = ModelName { host: host.into(), namespace: namespace.into(), model: model.into(), tag: tag.into() };
        name.validate().map_err(err)?;
        Ok(name)
    }

    fn validate(&self) -> Result<(), String> {
        check_part(Part::Host, &self.host)?;
        check_part(Part::Namespace, &self.namespace)?;
        check_part(Part::Model, &self.model)?;
        check_part(Part::Tag, &self.tag)
    }

    /// Rebuilds a name from a manifest path relative to `manifests/` (host/namespace/model/tag).
    pub fn from_manifest_path(rel: &Path) -> Result<Self, InvalidName> {
        let shown = rel.display().to_string();
        let comps: Vec<&str> = rel.iter().map(|c| c.to_str().unwrap_or("\u{FFFD}")).collect();
        let [host, namespace, model, tag] = comps.as_slice() else {
            return Err(InvalidName { name: shown, reason: "a manifest must be at manifests/<host>/<namespace>/<model>/<tag>".into() });
        };
        let name = ModelName { host: host.to_string(), namespace: namespace.to_string(), model: model.to_string(), tag: tag.to_string() };
        name.validate().map_err(|reason| InvalidName { name: shown, reason })?;
        Ok(name)
    }

    /// Path of the manifest relative to `manifests/`.
    pub fn manifest_rel_path(&self) -> PathBuf {
        [&self.host, &self.namespace, &self.model, &self.tag].iter().collect()
    }

    /// The shortest form, as `ollama list` prints it: `llama3:8b`, `ns/model:tag`, `host/ns/model:tag`.
    pub fn display_shortest(&self) -> String {
        let mut s = String::new();
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            s.push_str(&format!("{}/{}/", self.host, self.namespace));
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            s.push_str(&format!("{}/", self.namespace));
        }
        s.push_str(&format!("{}:{}", self.model, self.tag));
        s
    }

    /// Names are compared case-insensitively, as Ollama does.
    pub fn matches(&self, other: &ModelName) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.namespace.eq_ignore_ascii_case(&other.namespace)
            && self.model.eq_ignore_ascii_case(&other.model)
            && self.tag.eq_ignore_ascii_case(&other.tag)
    }

    /// Derives a valid model name from a file name such as `Gemma-3 270M (q4).gguf`.
    pub fn from_file_stem(stem: &str) -> Result<Self, InvalidName> {
        let mut model: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' { c.to_ascii_lowercase() } else { '-' })
            .collect();
        for (run, single) in [("..", "."), ("--", "-")] {
            while model.contains(run) {
                model = model.replace(run, single);
            }
        }
        let model: String = model.trim_matches(['-', '.']).chars().take(80).collect();
        ModelName::parse(&model)
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_shortest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_ollama_defaults() {
        let n = ModelName::parse("llama3").unwrap();
        assert_eq!(n.manifest_rel_path(), PathBuf::from("registry.ollama.ai/library/llama3/latest"));
        assert_eq!(n.display_shortest(), "llama3:latest");
    }

    #[test]
    fn parses_every_form_and_shows_the_shortest() {
        let cases = [
            ("llama3:8b", "llama3:8b"),
            ("library/llama3.2:1b", "llama3.2:1b"),
            ("jane/phi3:mini", "jane/phi3:mini"),
            ("example.com:5000/team/model:v1", "example.com:5000/team/model:v1"),
            ("registry.ollama.ai/library/gemma3:270m", "gemma3:270m"),
        ];
        for (input, shown) in cases {
            assert_eq!(ModelName::parse(input).unwrap().display_shortest(), shown, "{input}");
        }
        let n = ModelName::parse("example.com:5000/team/model").unwrap();
        assert_eq!((n.host.as_str(), n.tag.as_str()), ("example.com:5000", "latest"));
    }

    #[test]
    fn rejects_names_that_could_escape_the_store() {
        for bad in ["../x", "a/../b", "..", "x:..", "a\\b", "/abs", "a/b/c/d", "", "x:", ":tag", "ns.x/model", "-x", "a b", "a/b/c/d:e"] {
            assert!(ModelName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ModelName::parse(&"m".repeat(81)).is_err());
    }

    #[test]
    fn derives_a_name_from_a_file_stem() {
        assert_eq!(ModelName::from_file_stem("Gemma-3 270M (q4)").unwrap().display_shortest(), "gemma-3-270m-q4:latest");
        assert_eq!(ModelName::from_file_stem("gemma-3-270m-q4_k_m").unwrap().model, "gemma-3-270m-q4_k_m");
    }

    #[test]
    fn rebuilds_names_from_manifest_paths() {
        let n = ModelName::from_manifest_path(Path::new("registry.ollama.ai/library/gemma3/270m")).unwrap();
        assert_eq!(n.display_shortest(), "gemma3:270m");
        assert!(ModelName::from_manifest_path(Path::new("registry.ollama.ai/library/gemma3")).is_err());
    }
}
