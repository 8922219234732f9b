//! Bundle signatures: minisign (Ed25519) key pairs, signing the bundle index, the trusted-keys
//! list, and the import-side check.
//!
//! Signing the index is enough: it holds every manifest's SHA-256 and every blob's digest and
//! size, and import checks each manifest and blob against it, so a signed index pins every byte.
//! Trusted keys are minisign `.pub` files kept in `<config>/trusted-keys/<KEYID>.pub`, where
//! `<config>` is `AIRLOCK_CONFIG` or the platform config dir + `airlock`.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use minisign::{KeyPair, PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};
use serde::{Deserialize, Serialize};

/// What import does about signatures (a setting in the desktop app, `--require-signature` in the CLI).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignaturePolicy {
    /// No check is enforced; a valid signature by a trusted key is still reported.
    #[default]
    Off,
    /// Unsigned bundles and unknown keys import with a warning; a bad signature is an error.
    Warn,
    /// Only bundles signed by a trusted key import.
    Require,
}

impl std::str::FromStr for SignaturePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "warn" => Ok(Self::Warn),
            "require" => Ok(Self::Require),
            _ => Err(format!("unknown signature policy {s:?}: use off, warn or require")),
        }
    }
}

/// Who signed a bundle.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Signer {
    /// The minisign key ID, 16 upper-case hex digits (as `minisign` prints it).
    pub key_id: String,
    /// The signature's trusted comment (signed too): creation time and tool version.
    pub trusted_comment: String,
}

/// A trusted public key.
#[derive(Clone, Debug, Serialize)]
pub struct TrustedKey {
    pub key_id: String,
    /// The `.pub` file's untrusted comment line, to help tell keys apart.
    pub comment: String,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SignError(pub String);

fn err(s: impl Into<String>) -> SignError {
    SignError(s.into())
}

pub fn key_id(keynum: &[u8]) -> String {
    let mut b = [0u8; 8];
    b.copy_from_slice(&keynum[..8]);
    format!("{:016X}", u64::from_le_bytes(b))
}

/// `AIRLOCK_CONFIG`, else `<platform config dir>/airlock`.
pub fn config_dir() -> Result<PathBuf, SignError> {
    if let Some(p) = std::env::var_os("AIRLOCK_CONFIG").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    dirs::config_dir().map(|d| d.join("airlock")).ok_or_else(|| err("no config directory known; set AIRLOCK_CONFIG to a folder for Airlock's settings"))
}

/// Writes `PREFIX.key` (the secret key, encrypted with `password` unless it is `None`) and
/// `PREFIX.pub`. Refuses to overwrite either. Returns the key ID.
pub fn keygen(prefix: &Path, password: Option<String>) -> Result<String, SignError> {
    let (sk_path, pk_path) = (with_ext(prefix, "key"), with_ext(prefix, "pub"));
    for p in [&sk_path, &pk_path] {
        if p.exists() {
            return Err(err(format!("{} already exists; choose another --out prefix or remove it first", p.display())));
        }
    }
    let pair = match password {
        Some(pw) => KeyPair::generate_encrypted_keypair(Some(pw)),
        None => KeyPair::generate_unencrypted_keypair(),
    }
    .map_err(|e| err(format!("cannot generate a key pair: {e}")))?;
    let id = key_id(pair.pk.keynum());
    let comment = format!("airlock secret key {id}");
    let sk_box = pair.sk.to_box(Some(&comment)).map_err(|e| err(e.to_string()))?;
    let pk_box = pair.pk.to_box().map_err(|e| err(e.to_string()))?;
    write_new(&sk_path, &sk_box.to_bytes(), true)?;
    if let Err(e) = write_new(&pk_path, &pk_box.to_bytes(), false) {
        let _ = fs::remove_file(&sk_path);
        return Err(e);
    }
    Ok(id)
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_os_string();
    s.push(format!(".{ext}"));
    PathBuf::from(s)
}

fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), SignError> {
    use std::io::Write;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(|e| err(format!("cannot create {}: {e}", path.display())))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// A secret key ready to sign.
#[derive(Clone)]
pub struct SigningKey {
    sk: SecretKey,
    pub key_id: String,
}

impl SigningKey {
    /// Loads a minisign secret key; an encrypted one is opened with `password`. Never prompts:
    /// minisign's own prompt would wait on a terminal the app does not have, so an encrypted
    /// key without a password is refused at once, saying so (callers ask the person: the app's
    /// password field, the CLI's prompt when it runs on a terminal).
    pub fn load(path: &Path, password: Option<String>) -> Result<Self, SignError> {
        let sk_box = read_secret_box(path)?;
        let bad = |e: minisign::PError| err(format!("{}: not a usable minisign secret key: {e}", path.display()));
        let sk = if !box_is_encrypted(&sk_box, path)? {
            sk_box.into_unencrypted_secret_key().map_err(bad)?
        } else {
            let Some(password) = password.filter(|p| !p.is_empty()) else {
                return Err(err(format!("this key is encrypted: enter its password ({})", path.display())));
            };
            match SecretKey::from_box(sk_box, Some(password)) {
                Ok(sk) => sk,
                Err(e) if e.to_string().contains("Wrong password") => return Err(err(format!("wrong password for the encrypted key {}; enter it again", path.display()))),
                Err(e) => return Err(bad(e)),
            }
        };
        let key_id = key_id(sk.keynum());
        Ok(SigningKey { sk, key_id })
    }

    /// Whether the secret key in `path` needs a password.
    pub fn is_encrypted(path: &Path) -> Result<bool, SignError> {
        box_is_encrypted(&read_secret_box(path)?, path)
    }

    /// Signs `data` (the index bytes) with `trusted_comment`; returns the `.minisig` file bytes.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<Vec<u8>, SignError> {
        let untrusted = format!("signature by Airlock key {}", self.key_id);
        let sig = minisign::sign(None, &self.sk, Cursor::new(data), Some(trusted_comment), Some(&untrusted)).map_err(|e| err(format!("cannot sign: {e}")))?;
        Ok(sig.to_bytes())
    }
}

fn read_secret_box(path: &Path) -> Result<SecretKeyBox, SignError> {
    let text = fs::read_to_string(path).map_err(|e| err(format!("cannot read the secret key {}: {e}", path.display())))?;
    SecretKeyBox::from_string(&text).map_err(|e| err(format!("{}: not a minisign secret key: {e}", path.display())))
}

/// Reads the key's algorithm fields (its second line, base64) without decrypting anything.
fn box_is_encrypted(sk_box: &SecretKeyBox, path: &Path) -> Result<bool, SignError> {
    use ct_codecs::{Base64, Decoder};
    let text = sk_box.to_string();
    let encoded = text.lines().nth(1).unwrap_or_default().trim();
    let sk = Base64::decode_to_vec(encoded, None).ok().and_then(|bytes| SecretKey::from_bytes(&bytes).ok());
    let sk = sk.ok_or_else(|| err(format!("{}: not a minisign secret key (its key line is not valid base64 of a key)", path.display())))?;
    Ok(sk.is_encrypted())
}

/// The trusted-keys folder under `config`.
pub fn trust_dir(config: &Path) -> PathBuf {
    config.join("trusted-keys")
}

fn read_public_key(path: &Path) -> Result<(PublicKey, String), SignError> {
    let text = fs::read_to_string(path).map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
    let comment = text.lines().next().and_then(|l| l.strip_prefix("untrusted comment:")).unwrap_or("").trim().to_string();
    let pk = PublicKeyBox::from_string(&text)
        .and_then(|b| b.into_public_key())
        .or_else(|_| PublicKey::from_base64(text.trim()))
        .map_err(|e| err(format!("{}: not a minisign public key: {e}", path.display())))?;
    Ok((pk, comment))
}

/// The key ID of the public key in `pub_file` (to name it before trusting it).
pub fn public_key_id(pub_file: &Path) -> Result<String, SignError> {
    Ok(key_id(read_public_key(pub_file)?.0.keynum()))
}

/// Adds the public key in `pub_file` to the trusted keys; returns its ID.
pub fn trust_add(dir: &Path, pub_file: &Path) -> Result<String, SignError> {
    let (pk, _) = read_public_key(pub_file)?;
    let id = key_id(pk.keynum());
    fs::create_dir_all(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    let target = dir.join(format!("{id}.pub"));
    let bytes = pk.to_box().map_err(|e| err(e.to_string()))?.to_bytes();
    crate::durable::write_atomic(&target, &bytes).map_err(|e| err(e.to_string()))?;
    Ok(id)
}

pub fn trust_list(dir: &Path) -> Result<Vec<TrustedKey>, SignError> {
    let mut keys = Vec::new();
    for path in key_files(dir) {
        let (pk, comment) = read_public_key(&path)?;
        keys.push(TrustedKey { key_id: key_id(pk.keynum()), comment, path });
    }
    keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    Ok(keys)
}

/// The `.pub` files in the trusted-keys folder `dir` (none when it does not exist).
fn key_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().filter(|e| !e.file_name().to_string_lossy().starts_with('.')).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "pub")).collect()
}

/// How many keys are trusted in `dir`. A `.pub` file that cannot be read still counts: someone
/// put it there to be trusted.
pub fn trusted_key_count(dir: &Path) -> usize {
    key_files(dir).len()
}

/// The policy where none was chosen (`airlock serve`'s pulls, `airlock kit verify`): once a key
/// is trusted here the site has said whose signatures count, so a signature is required;
/// with no trusted key there is nothing to require.
pub fn default_policy(dir: &Path) -> SignaturePolicy {
    if trusted_key_count(dir) > 0 {
        SignaturePolicy::Require
    } else {
        SignaturePolicy::Off
    }
}

/// The trusted-keys folder of this user (see [`config_dir`]), if one is known.
pub fn default_trust_dir() -> Option<PathBuf> {
    config_dir().ok().map(|c| trust_dir(&c))
}

pub fn trust_remove(dir: &Path, id: &str) -> Result<(), SignError> {
    let id = id.trim().to_ascii_uppercase();
    let key = trust_list(dir)?.into_iter().find(|k| k.key_id == id).ok_or_else(|| err(format!("no trusted key {id}; `airlock trust list` shows them")))?;
    fs::remove_file(&key.path).map_err(|e| err(format!("cannot remove {}: {e}", key.path.display())))
}

/// The outcome of checking a bundle's signature.
pub enum Verdict {
    Signed(Signer),
    Unsigned,
    UnknownKey(String),
    /// A trusted key's signature that does not match: the index was changed after signing.
    Bad(String),
}

fn parse_signature(sig_bytes: &[u8]) -> Result<SignatureBox, SignError> {
    let text = std::str::from_utf8(sig_bytes).map_err(|_| err("the signature file is not text"))?;
    SignatureBox::from_string(text).map_err(|e| err(format!("the signature file is malformed: {e}")))
}

/// Checks `signature` over `data` against the one public key in `pub_file` alone (no trusted
/// keys): a signature by any other key is [`Verdict::UnknownKey`].
pub fn check_with_key(data: &[u8], signature: Option<&[u8]>, pub_file: &Path) -> Result<Verdict, SignError> {
    let Some(sig_bytes) = signature else { return Ok(Verdict::Unsigned) };
    let sig = parse_signature(sig_bytes)?;
    let id = key_id(sig.keynum());
    let (pk, _) = read_public_key(pub_file)?;
    if key_id(pk.keynum()) != id {
        return Ok(Verdict::UnknownKey(id));
    }
    match minisign::verify(&pk, &sig, Cursor::new(data), true, false, false) {
        Ok(()) => Ok(Verdict::Signed(Signer { key_id: id, trusted_comment: sig.trusted_comment().unwrap_or_default() })),
        Err(e) => Ok(Verdict::Bad(format!("the signature by key {id} does not match the signed file ({e}): it was changed after it was signed"))),
    }
}

/// Checks `signature` (the `.minisig` bytes) over `index` against the keys in `dir`.
pub fn check(index: &[u8], signature: Option<&[u8]>, dir: &Path) -> Result<Verdict, SignError> {
    let Some(sig_bytes) = signature else { return Ok(Verdict::Unsigned) };
    let sig = parse_signature(sig_bytes)?;
    let id = key_id(sig.keynum());
    let Some(key) = trust_list(dir)?.into_iter().find(|k| k.key_id == id) else { return Ok(Verdict::UnknownKey(id)) };
    let (pk, _) = read_public_key(&key.path)?;
    match minisign::verify(&pk, &sig, Cursor::new(index), true, false, false) {
        Ok(()) => Ok(Verdict::Signed(Signer { key_id: id, trusted_comment: sig.trusted_comment().unwrap_or_default() })),
        Err(e) => Ok(Verdict::Bad(format!("the signature by trusted key {id} does not match airlock-bundle.json ({e}): the bundle was changed after it was signed"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encrypted_key_without_a_password_is_refused_without_prompting() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("signer");
        let id = keygen(&prefix, Some("correct horse".into())).unwrap();
        let key = dir.path().join("signer.key");
        assert!(SigningKey::is_encrypted(&key).unwrap());
        // minisign would prompt on the terminal here; the load must return, saying what to do.
        for missing in [None, Some(String::new())] {
            let e = SigningKey::load(&key, missing).err().expect("refused").to_string();
            assert!(e.contains("this key is encrypted: enter its password"), "{e}");
        }
        let e = SigningKey::load(&key, Some("wrong".into())).err().expect("a wrong password is refused").to_string();
        assert!(e.contains("wrong password"), "{e}");
        let sk = SigningKey::load(&key, Some("correct horse".into())).unwrap();
        assert_eq!(sk.key_id, id);
        assert!(!sk.sign(b"index", "t").unwrap().is_empty());
    }

    #[test]
    fn an_unencrypted_key_loads_without_a_password() {
        let dir = tempfile::tempdir().unwrap();
        let id = keygen(&dir.path().join("k"), None).unwrap();
        let key = dir.path().join("k.key");
        assert!(!SigningKey::is_encrypted(&key).unwrap());
        assert_eq!(SigningKey::load(&key, None).unwrap().key_id, id);
        // A password given for a key that has none is not needed, and not an error.
        assert_eq!(SigningKey::load(&key, Some("unused".into())).unwrap().key_id, id);
        let pubkey = dir.path().join("k.pub");
        let e = SigningKey::load(&pubkey, None).err().expect("a public key is not a secret key").to_string();
        assert!(e.contains("not a minisign secret key") || e.contains("not a usable"), "{e}");
    }

    #[test]
    fn a_signature_is_required_by_default_once_any_key_is_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let trusted = dir.path().join("trusted-keys");
        assert_eq!(default_policy(&trusted), SignaturePolicy::Off, "no folder, no key");
        let id = keygen(&dir.path().join("k"), None).unwrap();
        assert_eq!(trust_add(&trusted, &dir.path().join("k.pub")).unwrap(), id);
        assert_eq!((trusted_key_count(&trusted), default_policy(&trusted)), (1, SignaturePolicy::Require));
        trust_remove(&trusted, &id).unwrap();
        assert_eq!(default_policy(&trusted), SignaturePolicy::Off);
        // A key file that no longer parses still means a key was meant to be trusted.
        fs::write(trusted.join(".hidden.pub"), "ignored").unwrap();
        assert_eq!(trusted_key_count(&trusted), 0);
        fs::write(trusted.join("broken.pub"), "not a key").unwrap();
        assert_eq!(default_policy(&trusted), SignaturePolicy::Require);
    }
}
