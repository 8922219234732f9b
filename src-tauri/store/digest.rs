//! Blob digests: `sha256:<64 hex>` in manifests, `sha256-<64 hex>` as file names.
//! Digests are untrusted input; blob paths are only ever built from a parsed [`Digest`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A validated SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
pub struct InvalidDigest(pub String);

impl Digest {
    /// Parses `sha256:<hex>` or `sha256-<hex>` (old Linux stores use `:` in file names).
    pub fn parse(s: &str) -> Result<Self, InvalidDigest> {
        let invalid = || InvalidDigest(s.chars().take(100).collect());
        let hex_part = s
            .strip_prefix("sha256:")
            .or_else(|| s.strip_prefix("sha256-"))
            .ok_or_else(invalid)?;
        if hex_part.len() != 64 || !hex_part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut bytes).map_err(|_| invalid())?;
        Ok(Digest(bytes))
    }

    pub fn of_bytes(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    pub fn from_hasher(hasher: Sha256) -> Self {
        Digest(hasher.finalize().into())
    }

    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The blob file name Airlock writes: `sha256-<hex>`.
    pub fn file_name(&self) -> String {
        format!("sha256-{}", self.hex())
    }

    /// The file name older stores used: `sha256:<hex>`.
    pub fn legacy_file_name(&self) -> String {
        format!("sha256:{}", self.hex())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = InvalidDigest;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Reads `reader` to the end, returning its digest and length.
pub fn hash_reader(mut reader: impl std::io::Read) -> std::io::Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((Digest::from_hasher(hasher), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

    #[test]
    fn accepts_colon_and_dash_forms() {
        let a = Digest::parse(&format!("sha256:{HEX}")).unwrap();
        let b = Digest::parse(&format!("sha256-{HEX}")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.file_name(), format!("sha256-{HEX}"));
        assert_eq!(a.to_string(), format!("sha256:{HEX}"));
    }

    #[test]
    fn rejects_traversal_and_malformed_digests() {
        for bad in [
            "sha256:../../x",
            "sha256:",
            "sha512:00",
            &format!("sha256:{}", HEX.to_uppercase()),
            &format!("sha256:{HEX}0"),
            &format!("sha256:{}/", &HEX[..63]),
            &format!("sha256/{HEX}"),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
