//! How an Airlock signature travels through a registry: under the tag `sha256-<hex>.sig` (the
//! cosign convention), where `<hex>` is the SHA-256 of the model's manifest bytes (its model ID),
//! in the same repository. That tag holds a small Docker v2 manifest whose one layer
//! ([`SIGNATURE_MEDIA_TYPE`]) is a minisign signature of the model's manifest bytes — the same
//! Ed25519 keys and trusted-keys list as signed bundles. The manifest pins every blob by digest
//! and size, and pull checks every blob against it, so the signature covers every byte.

use super::client::Client;
use super::RegistryError;
use crate::bundle::sign::{self, SignaturePolicy, Signer, SigningKey, Verdict};
use crate::store::manifest::{Layer, Manifest, CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};
use crate::store::Digest;

pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.airlock.signature.minisign";
/// A minisign signature file is a few hundred bytes.
const MAX_SIGNATURE_BYTES: u64 = 16 << 10;

/// The tag that carries the signature of the manifest whose ID is `id`.
pub fn signature_tag(id: &Digest) -> String {
    format!("sha256-{}.sig", id.hex())
}

/// The signature artefact: (config bytes, signature bytes, manifest bytes).
pub fn artefact(manifest_bytes: &[u8], key: &SigningKey, model: &str) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>), RegistryError> {
    let id = Digest::of_bytes(manifest_bytes);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sig = key.sign(manifest_bytes, &format!("timestamp:{now}\tmodel:{model}\tmanifest:{id}")).map_err(|e| RegistryError::Signature(e.to_string()))?;
    let config = serde_json::to_vec(&serde_json::json!({ "airlock": "signature", "signs": id.to_string(), "key_id": key.key_id })).expect("json");
    let manifest = Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.into(),
        config: Layer { media_type: CONFIG_MEDIA_TYPE.into(), digest: Digest::of_bytes(&config), size: config.len() as u64 },
        layers: vec![Layer { media_type: SIGNATURE_MEDIA_TYPE.into(), digest: Digest::of_bytes(&sig), size: sig.len() as u64 }],
    };
    Ok((config, sig, manifest.to_bytes()))
}

/// Fetches the signature of `manifest_bytes` from `repo`, if the registry has one.
pub fn fetch(client: &Client, repo: &str, manifest_bytes: &[u8]) -> Result<Option<Vec<u8>>, RegistryError> {
    let tag = signature_tag(&Digest::of_bytes(manifest_bytes));
    let Some(bytes) = client.manifest(repo, &tag)? else { return Ok(None) };
    let m = Manifest::parse(&bytes).map_err(|e| RegistryError::Signature(format!("the signature tag {tag} holds no usable manifest: {e}")))?;
    let layer = m.layers.iter().find(|l| l.media_type == SIGNATURE_MEDIA_TYPE).ok_or_else(|| RegistryError::Signature(format!("the signature tag {tag} holds no {SIGNATURE_MEDIA_TYPE} layer")))?;
    if layer.size > MAX_SIGNATURE_BYTES {
        return Err(RegistryError::Signature(format!("the signature in {tag} is {} bytes; a signature is a few hundred", layer.size)));
    }
    let (mut reader, _) = client.open_blob(repo, &layer.digest, 0)?;
    let mut sig = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut reader, MAX_SIGNATURE_BYTES + 1), &mut sig).map_err(|e| RegistryError::transport(repo, e))?;
    if Digest::of_bytes(&sig) != layer.digest {
        return Err(RegistryError::Integrity(format!("the signature blob {} in {tag} does not match its digest", layer.digest)));
    }
    Ok(Some(sig))
}

/// Applies `policy` to a pulled manifest and its signature (if any); returns the signer and
/// warnings, or the refusal. Same rules as for bundles.
pub fn check(manifest_bytes: &[u8], sig: Option<&[u8]>, policy: SignaturePolicy, trust_dir: Option<&std::path::Path>) -> Result<(Option<Signer>, Vec<String>), RegistryError> {
    if policy == SignaturePolicy::Off && sig.is_none() {
        return Ok((None, Vec::new()));
    }
    let dir = match trust_dir {
        Some(d) => d.to_path_buf(),
        None => match sign::config_dir() {
            Ok(c) => sign::trust_dir(&c),
            Err(e) if policy == SignaturePolicy::Off => return Ok((None, vec![e.to_string()])),
            Err(e) => return Err(RegistryError::Signature(e.to_string())),
        },
    };
    let verdict = sign::check(manifest_bytes, sig, &dir).map_err(|e| RegistryError::Signature(e.to_string()))?;
    let problem = match verdict {
        Verdict::Signed(s) => return Ok((Some(s), Vec::new())),
        Verdict::Unsigned => "the model is not signed in the registry".to_string(),
        Verdict::UnknownKey(id) => format!("the model is signed by key {id}, which is not a trusted key (`airlock trust add FILE.pub` trusts it)"),
        Verdict::Bad(_) if policy == SignaturePolicy::Off => return Ok((None, vec!["the model's signature in the registry does not match its manifest".into()])),
        Verdict::Bad(_) => return Err(RegistryError::Signature("the model's signature by a trusted key does not match its manifest: the model was changed after it was signed; nothing was pulled".into())),
    };
    match policy {
        SignaturePolicy::Off => Ok((None, Vec::new())),
        SignaturePolicy::Warn => Ok((None, vec![format!("{problem}; pulling anyway (signature policy: warn)")])),
        SignaturePolicy::Require => Err(RegistryError::Signature(format!("{problem}, and signatures are required; nothing was pulled"))),
    }
}
