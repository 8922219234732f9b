//! The commands that make the app read, write or trust files, and the settings that widen trust
//! (the signature policy, the site registry, the API server), written for an untrusted caller
//! (the web view renders model output). They take handles of chosen paths or typed paths
//! ([`PathArg`]), never a bare path; a typed path, trusting a key, a weaker signature policy, a
//! new or plain-HTTP registry and opening the API server each need a yes from a native dialog
//! ([`Confirmer`]). Without it nothing is read, written or changed. The Tauri commands in `transfer` and `settings_page` only
//! pass the app's state and the real dialog in; tests pass a scripted one.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::confirm::{Confirmation, Confirmer};
use super::error::{CommandError, CommandResult};
use super::grants::{not_confirmed, Chosen, PathArg, PathGrants, Purpose};
use super::settings::ApiSettings;
use crate::bundle::export::{self, ExportOptions, ExportReport};
use crate::bundle::sign::{self, SigningKey};
use crate::bundle::volumes::{parse_volume_size, FAT32_MAX};
use crate::bundle::{self, ImportOptions, ImportReport, SignaturePolicy};
use crate::core::Core;
use crate::kit::{self, KitOptions};
use crate::library::{Found, Skipped, LOOKED_FOR};
use crate::progress::ProgressSink;
use crate::registry::Registry;

/// Runs blocking work (disk, hashing, child processes) off the async runtime's threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> CommandResult<T> + Send + 'static) -> CommandResult<T> {
    tauri::async_runtime::spawn_blocking(f).await.map_err(|e| CommandError::new("app", e.to_string()))?
}

pub fn check_name(name: &str) -> CommandResult<()> {
    if name.trim().is_empty() || name.len() > 512 {
        return Err(CommandError::invalid("a model name must be 1 to 512 characters"));
    }
    Ok(())
}

/// The cancel flag of the one import or export running (one at a time).
pub type Transfer = Mutex<Option<Arc<AtomicBool>>>;

/// Holds the one running transfer's cancel flag; dropping it frees the slot.
pub(super) struct TransferSlot<'a>(&'a Transfer);

impl<'a> TransferSlot<'a> {
    pub(super) fn take(slot: &'a Transfer) -> CommandResult<(Self, Arc<AtomicBool>)> {
        let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_some() {
            return Err(CommandError::new("busy", "another import or export is running; wait for it or cancel it first"));
        }
        let flag = Arc::new(AtomicBool::new(false));
        *s = Some(flag.clone());
        Ok((TransferSlot(slot), flag))
    }
}

impl Drop for TransferSlot<'_> {
    fn drop(&mut self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What the app around these commands provides.
pub struct Access<'a, C: Confirmer> {
    pub core: &'a Arc<Core>,
    pub grants: &'a PathGrants,
    pub confirm: &'a C,
    pub transfer: &'a Transfer,
}

pub async fn import<C: Confirmer>(a: &Access<'_, C>, source: PathArg, name: Option<String>, signature: SignaturePolicy, sink: impl ProgressSink + 'static) -> CommandResult<ImportReport> {
    if let Some(n) = &name {
        check_name(n)?;
    }
    let path = super::grants::resolve(a.grants, a.confirm, vec![(source, Purpose::Import)], "Import from a typed path?", "Import").await?.remove(0);
    if !path.exists() {
        return Err(CommandError::new("import", format!("{} does not exist; check the path or pick the bundle again", path.display())));
    }
    let (_slot, cancel) = TransferSlot::take(a.transfer)?;
    let core = a.core.clone();
    let opts = ImportOptions { name: name.filter(|n| !n.trim().is_empty()), cancel: Some(cancel), signature, ..Default::default() };
    blocking(move || Ok(bundle::import(&core.store, &path, &opts, &sink)?)).await
}

/// What a chosen folder holds: a bundle (imported as one), or the models found in it.
#[derive(Debug, Serialize)]
pub struct FolderScan {
    /// The folder, as a handle to pass to [`import_found`].
    pub source: Chosen,
    pub bundle: bool,
    pub models: Vec<Found>,
    pub skipped: Vec<Skipped>,
    pub skipped_more: usize,
    pub looked_for: &'static str,
}

/// Reads a chosen folder: a bundle, a kit or an Ollama models folder is reported as such (then
/// [`import`] takes it); any other folder is listed model by model for the person to choose.
pub async fn scan_folder<C: Confirmer>(a: &Access<'_, C>, source: PathArg) -> CommandResult<FolderScan> {
    let path = super::grants::resolve(a.grants, a.confirm, vec![(source, Purpose::Import)], "Import from a typed path?", "Import").await?.remove(0);
    if !path.is_dir() {
        return Err(CommandError::new("import", format!("{} is not a folder; choose a folder, or import a file with Import file…", path.display())));
    }
    let chosen = a.grants.grant(path.clone(), Purpose::Import);
    let core = a.core.clone();
    blocking(move || {
        if bundle::is_bundle(&path)? {
            return Ok(FolderScan { source: chosen, bundle: true, models: Vec::new(), skipped: Vec::new(), skipped_more: 0, looked_for: LOOKED_FOR });
        }
        let scan = bundle::scan_folder(&core.store, &path)?;
        Ok(FolderScan { source: chosen, bundle: false, models: scan.models, skipped: scan.skipped, skipped_more: scan.skipped_more, looked_for: LOOKED_FOR })
    })
    .await
}

/// One model chosen from a [`FolderScan`]: its `id` and the name to import it under.
#[derive(Debug, Deserialize)]
pub struct Pick {
    pub id: String,
    pub name: String,
}

/// Imports the chosen models of a folder, read again now (the web view's list is not trusted):
/// all of them, or none.
pub async fn import_found<C: Confirmer>(a: &Access<'_, C>, source: PathArg, picks: Vec<Pick>, signature: SignaturePolicy, sink: impl ProgressSink + 'static) -> CommandResult<ImportReport> {
    if picks.is_empty() || picks.len() > 10_000 {
        return Err(CommandError::invalid("choose at least one model to import"));
    }
    for p in &picks {
        check_name(&p.name)?;
    }
    if signature == SignaturePolicy::Require {
        return Err(CommandError::new("signature", "GGUF files carry no signature, and your settings require signed imports; import a signed bundle instead"));
    }
    let path = super::grants::resolve(a.grants, a.confirm, vec![(source, Purpose::Import)], "Import from a typed path?", "Import").await?.remove(0);
    let (_slot, cancel) = TransferSlot::take(a.transfer)?;
    let core = a.core.clone();
    let opts = ImportOptions { cancel: Some(cancel), signature, ..Default::default() };
    blocking(move || {
        let scan = bundle::scan_folder(&core.store, &path)?;
        let picks: Vec<(String, String)> = picks.into_iter().map(|p| (p.id, p.name.trim().to_string())).collect();
        Ok(bundle::import_picked(&core.store, &scan, &picks, &opts, &sink)?)
    })
    .await
}

#[derive(Deserialize)]
pub struct ExportChoices {
    pub split_size: Option<String>,
    #[serde(default)]
    pub fat32: bool,
    /// The minisign secret key to sign with.
    pub sign_key: Option<PathArg>,
    /// Its password, when it is encrypted (asked in the window, never on a terminal).
    pub key_password: Option<String>,
    /// A transfer kit: Airlock itself, the models and SHA256SUMS in the folder `out`.
    #[serde(default)]
    pub kit: bool,
}

/// What an export wrote; for a kit, `outputs` are the kit's files.
#[derive(Debug, Serialize)]
pub struct ExportOutcome {
    #[serde(flatten)]
    pub report: ExportReport,
    pub kit: bool,
}

pub async fn export<C: Confirmer>(a: &Access<'_, C>, models: Vec<String>, out: PathArg, options: ExportChoices, sink: impl ProgressSink + 'static) -> CommandResult<ExportOutcome> {
    if models.is_empty() || models.len() > 10_000 {
        return Err(CommandError::invalid("choose at least one model to export"));
    }
    for m in &models {
        check_name(m)?;
    }
    let split_size = match (options.fat32, options.split_size.as_deref().map(str::trim).filter(|s| !s.is_empty())) {
        (true, _) => Some(FAT32_MAX),
        (false, Some(s)) => Some(parse_volume_size(s).map_err(CommandError::invalid)?),
        (false, None) => None,
    };
    let mut args = vec![(out, Purpose::ExportTo)];
    args.extend(options.sign_key.filter(|k| !matches!(k, PathArg::Typed(t) if t.trim().is_empty())).map(|k| (k, Purpose::SignWith)));
    let mut paths = super::grants::resolve(a.grants, a.confirm, args, "Export to a typed path?", "Export").await?.into_iter();
    let (out, sign_key) = (paths.next().expect("the output path"), paths.next());
    let password = options.key_password.filter(|p| !p.is_empty());
    let (_slot, cancel) = TransferSlot::take(a.transfer)?;
    let core = a.core.clone();
    let kit = options.kit;
    blocking(move || {
        let sign = match sign_key {
            Some(p) => Some(SigningKey::load(&p, password).map_err(|e| CommandError::new("signature", format!("cannot use the signing key {}: {e}", p.display())))?),
            None => None,
        };
        if !kit {
            let opts = ExportOptions { split_size, sign, cancel: Some(cancel), ..Default::default() };
            return Ok(ExportOutcome { report: export::export(&core.store, &models, &out, &opts, &sink)?, kit: false });
        }
        let opts = KitOptions { split_size, sign, cancel: Some(cancel), ..Default::default() };
        let kit = kit::write_kit(&core.store, &models, &out, &opts, &sink)?;
        let report = ExportReport {
            models: kit.models,
            blobs_written: 0,
            blobs_excluded: 0,
            bytes_written: kit.total_bytes,
            outputs: kit.files.iter().map(|f| kit.out.join(&f.path)).collect(),
            signed_by: kit.signed_by,
            base_inventory: None,
        };
        Ok(ExportOutcome { report, kit: true })
    })
    .await
}

/// Trusts the public key chosen in the key dialog (`handle`), once the person confirms its ID
/// in a native dialog. Returns the key ID.
pub async fn trust_add(grants: &PathGrants, confirm: &impl Confirmer, handle: &str, trust_dir: &Path) -> CommandResult<String> {
    let path = grants.path(handle, Purpose::Trust)?;
    let id = sign::public_key_id(&path)?;
    let question = Confirmation {
        title: "Trust this signing key?".into(),
        message: format!(
            "Trust key {id} (from {})?\n\nBundles signed with it will import as signed by a trusted key, also when signatures are required. Trust a key only when you got it from its owner or compared its ID with them.",
            path.display()
        ),
        proceed: "Trust".into(),
    };
    if !confirm.confirm(question).await {
        return Err(not_confirmed());
    }
    Ok(sign::trust_add(trust_dir, &path)?)
}

fn strength(p: SignaturePolicy) -> u8 {
    match p {
        SignaturePolicy::Off => 0,
        SignaturePolicy::Warn => 1,
        SignaturePolicy::Require => 2,
    }
}

/// Changes the signature policy; a weaker one than `current` only after a native confirmation.
pub async fn set_signature_policy(confirm: &impl Confirmer, current: SignaturePolicy, new: SignaturePolicy, save: impl FnOnce(SignaturePolicy) -> CommandResult<()>) -> CommandResult<()> {
    if strength(new) < strength(current) {
        let name = |p| serde_json::to_value(p).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let consequence = match new {
            SignaturePolicy::Off => "Signatures will not be checked at all: unsigned bundles, and bundles signed by unknown keys, import without a word.",
            _ => "Unsigned bundles, and bundles signed by unknown keys, will import with a warning instead of being refused.",
        };
        let question = Confirmation {
            title: "Lower the signature policy?".into(),
            message: format!("Change the signature policy from {} to {}?\n\n{consequence}", name(current), name(new)),
            proceed: "Lower".into(),
        };
        if !confirm.confirm(question).await {
            return Err(not_confirmed());
        }
    }
    save(new)
}

/// Changes the site registry; a new host, or plain HTTP where it was HTTPS, only after a native
/// confirmation (pulls run what comes from there, and the registry credentials go there).
pub async fn set_registry(confirm: &impl Confirmer, current: Option<&str>, new: Option<&str>, save: impl FnOnce(Option<&str>) -> CommandResult<()>) -> CommandResult<()> {
    let parse = |r: &str| Registry::parse(r).map_err(|e| CommandError::invalid(e.to_string()));
    let new_site = new.map(parse).transpose()?;
    // A registry saved before it could be read counts as none.
    let current_site = current.and_then(|r| parse(r).ok());
    let widens = match (&current_site, &new_site) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(c), Some(n)) => !c.host.eq_ignore_ascii_case(&n.host) || n.plain_http && !c.plain_http,
    };
    if let (true, Some(site)) = (widens, &new_site) {
        let clear = if site.plain_http {
            "\n\nIt is plain HTTP: anyone on the network in between can read and change what is pulled, and see the registry credentials."
        } else {
            ""
        };
        let question = Confirmation {
            title: "Use this site registry?".into(),
            message: format!("Pull models from {}?\n\nModels pulled from it run on this computer, and the registry credentials set for Airlock are sent to it.{clear}", site.base_url()),
            proceed: "Use".into(),
        };
        if !confirm.confirm(question).await {
            return Err(not_confirmed());
        }
    }
    save(new)
}

/// Whether the local API server may change from `current` to `new`: turning it on, or removing its
/// token while it is on, only after a native confirmation (every program of every user on this
/// computer can then use it).
pub async fn confirm_api_server(confirm: &impl Confirmer, current: &ApiSettings, new: &ApiSettings) -> CommandResult<()> {
    let opens = new.enabled && (!current.enabled || current.token.is_some() && new.token.is_none());
    if opens {
        let who = if new.token.is_some() { "Programs on this computer that have the token" } else { "Every program on this computer, under any user account," };
        let question = Confirmation {
            title: "Allow programs to use the API?".into(),
            message: format!("{who} can then chat with the models, pull models from the site registry and add or delete models through http://127.0.0.1:{}.", new.port),
            proceed: "Allow".into(),
        };
        if !confirm.confirm(question).await {
            return Err(not_confirmed());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::confirm::testing::Scripted;
    use super::*;
    use crate::engine::supervisor::EngineConfig;
    use crate::gguf::writer::GgufBuilder;
    use crate::gguf::GGML_TYPE_F32;
    use crate::progress::NoProgress;
    use crate::store::Store;

    fn tiny_gguf(path: &Path) {
        let bytes = GgufBuilder::new()
            .kv_str("general.architecture", "llama")
            .kv_u32("general.file_type", 0)
            .kv_u32("llama.context_length", 2048)
            .kv_u32("llama.embedding_length", 8)
            .kv_u32("llama.block_count", 1)
            .tensor("token_embd.weight", &[8, 4], GGML_TYPE_F32)
            .build();
        std::fs::write(path, bytes).unwrap();
    }

    fn model_names(core: &Core) -> Vec<String> {
        core.store.list().unwrap().0.iter().map(|m| m.name.display_shortest()).collect()
    }

    struct World {
        dir: tempfile::TempDir,
        core: Arc<Core>,
        grants: PathGrants,
        transfer: Transfer,
    }

    impl World {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let core = Arc::new(Core::new(Store::at(dir.path().join("store")), EngineConfig::from_env()));
            World { dir, core, grants: PathGrants::default(), transfer: Mutex::new(None) }
        }
        fn access<'a, C: Confirmer>(&'a self, confirm: &'a C) -> Access<'a, C> {
            Access { core: &self.core, grants: &self.grants, confirm, transfer: &self.transfer }
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tauri::async_runtime::block_on(f)
    }

    #[test]
    fn a_typed_import_path_imports_nothing_without_a_yes() {
        let w = World::new();
        let gguf = w.dir.path().join("crafted.gguf");
        tiny_gguf(&gguf);
        let typed = PathArg::Typed(gguf.display().to_string());
        let refuse = Scripted::refusing();
        let e = run(import(&w.access(&refuse), typed.clone(), Some("tiny:1".into()), SignaturePolicy::Off, NoProgress)).unwrap_err();
        assert_eq!(e.code, "not_confirmed", "{}", e.message);
        assert!(model_names(&w.core).is_empty(), "nothing imported");
        let asked = refuse.asked();
        assert_eq!(asked.len(), 1);
        assert!(asked[0].message.contains(&gguf.display().to_string()), "the dialog names the path: {}", asked[0].message);
        // An unknown handle asks nothing and imports nothing.
        let e = run(import(&w.access(&refuse), PathArg::Handle("00112233445566778899aabbccddeeff".into()), None, SignaturePolicy::Off, NoProgress)).unwrap_err();
        assert_eq!(e.code, "unknown_handle");
        assert_eq!(refuse.asked().len(), 1);
        assert!(model_names(&w.core).is_empty());
        assert!(w.transfer.lock().unwrap().is_none(), "the transfer slot is free again");

        // Confirmed, the same path imports; so does a chosen file, with no question.
        let accept = Scripted::accepting();
        run(import(&w.access(&accept), typed, Some("tiny:1".into()), SignaturePolicy::Off, NoProgress)).unwrap();
        let chosen = w.grants.grant(gguf.clone(), Purpose::Import);
        run(import(&w.access(&refuse), PathArg::Handle(chosen.handle), Some("tiny:2".into()), SignaturePolicy::Off, NoProgress)).unwrap();
        assert_eq!(model_names(&w.core), ["tiny:1", "tiny:2"]);
        assert_eq!(refuse.asked().len(), 1, "a chosen file needs no confirmation");
    }

    #[test]
    fn a_typed_export_path_writes_nothing_without_a_yes() {
        let w = World::new();
        let gguf = w.dir.path().join("m.gguf");
        tiny_gguf(&gguf);
        let accept = Scripted::accepting();
        run(import(&w.access(&accept), PathArg::Typed(gguf.display().to_string()), Some("tiny:1".into()), SignaturePolicy::Off, NoProgress)).unwrap();
        let elsewhere = w.dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let out = elsewhere.join("out.zip");
        let nothing_there = || std::fs::read_dir(&elsewhere).unwrap().next().is_none();
        let choices = || ExportChoices { split_size: None, fat32: false, sign_key: None, key_password: None, kit: false };
        let refuse = Scripted::refusing();
        let typed = PathArg::Typed(out.display().to_string());
        let e = run(export(&w.access(&refuse), vec!["tiny:1".into()], typed.clone(), choices(), NoProgress)).unwrap_err();
        assert_eq!(e.code, "not_confirmed");
        assert!(nothing_there(), "nothing written");
        assert!(refuse.asked()[0].message.contains(&out.display().to_string()));
        // A handle chosen to import is not an export target.
        let import_handle = w.grants.grant(out.clone(), Purpose::Import).handle;
        assert_eq!(run(export(&w.access(&refuse), vec!["tiny:1".into()], PathArg::Handle(import_handle), choices(), NoProgress)).unwrap_err().code, "invalid_argument");
        // A typed signing key is confirmed too, even when the output was chosen in the dialog.
        let chosen_out = w.grants.grant(out.clone(), Purpose::ExportTo);
        let typed_key = ExportChoices { sign_key: Some(PathArg::Typed("/home/someone/.minisign/minisign.key".into())), ..choices() };
        assert_eq!(run(export(&w.access(&refuse), vec!["tiny:1".into()], PathArg::Handle(chosen_out.handle.clone()), typed_key, NoProgress)).unwrap_err().code, "not_confirmed");
        assert!(nothing_there());
        assert_eq!(refuse.asked().len(), 2);

        run(export(&w.access(&refuse), vec!["tiny:1".into()], PathArg::Handle(chosen_out.handle), choices(), NoProgress)).unwrap();
        assert!(out.is_file(), "a chosen output is written without a question");
        std::fs::remove_file(&out).unwrap();
        run(export(&w.access(&accept), vec!["tiny:1".into()], typed, choices(), NoProgress)).unwrap();
        assert!(out.is_file(), "a confirmed typed output is written");
    }

    #[test]
    fn an_encrypted_signing_key_without_its_password_fails_at_once_naming_the_fix() {
        let w = World::new();
        let gguf = w.dir.path().join("m.gguf");
        tiny_gguf(&gguf);
        let accept = Scripted::accepting();
        run(import(&w.access(&accept), PathArg::Typed(gguf.display().to_string()), Some("tiny:1".into()), SignaturePolicy::Off, NoProgress)).unwrap();
        sign::keygen(&w.dir.path().join("signer"), Some("correct horse".into())).unwrap();
        let key = w.grants.grant(w.dir.path().join("signer.key"), Purpose::SignWith).handle;
        let out = w.dir.path().join("signed.zip");
        let target = w.grants.grant(out.clone(), Purpose::ExportTo).handle;
        let with = |password: Option<&str>| ExportChoices { split_size: None, fat32: false, sign_key: Some(PathArg::Handle(key.clone())), key_password: password.map(String::from), kit: false };
        let e = run(export(&w.access(&accept), vec!["tiny:1".into()], PathArg::Handle(target.clone()), with(None), NoProgress)).unwrap_err();
        assert_eq!(e.code, "signature");
        assert!(e.message.contains("this key is encrypted: enter its password"), "{}", e.message);
        assert!(!out.exists());
        assert!(w.transfer.lock().unwrap().is_none(), "the transfer slot is free for the next try");
        let done = run(export(&w.access(&accept), vec!["tiny:1".into()], PathArg::Handle(target), with(Some("correct horse")), NoProgress)).unwrap();
        assert!(done.report.signed_by.is_some() && out.is_file());
    }

    #[test]
    fn trusting_a_key_needs_a_chosen_file_and_a_yes() {
        let w = World::new();
        let id = sign::keygen(&w.dir.path().join("k"), None).unwrap();
        let trust = w.dir.path().join("trusted-keys");
        let refuse = Scripted::refusing();
        // A crafted handle, or one chosen for another purpose: nothing asked, nothing trusted.
        assert_eq!(run(trust_add(&w.grants, &refuse, "deadbeef", &trust)).unwrap_err().code, "unknown_handle");
        let wrong = w.grants.grant(w.dir.path().join("k.pub"), Purpose::Import).handle;
        assert_eq!(run(trust_add(&w.grants, &refuse, &wrong, &trust)).unwrap_err().code, "invalid_argument");
        assert!(refuse.asked().is_empty());
        let chosen = w.grants.grant(w.dir.path().join("k.pub"), Purpose::Trust).handle;
        assert_eq!(run(trust_add(&w.grants, &refuse, &chosen, &trust)).unwrap_err().code, "not_confirmed");
        assert!(refuse.asked()[0].message.contains(&id), "the dialog names the key ID");
        assert!(sign::trust_list(&trust).unwrap().is_empty(), "nothing trusted");
        assert_eq!(run(trust_add(&w.grants, &Scripted::accepting(), &chosen, &trust)).unwrap(), id);
        assert_eq!(sign::trust_list(&trust).unwrap().len(), 1);
    }

    #[test]
    fn only_a_weaker_signature_policy_asks_and_a_refusal_keeps_the_old_one() {
        use SignaturePolicy::*;
        let saved = Mutex::new(Require);
        let save = |p| {
            *saved.lock().unwrap() = p;
            Ok(())
        };
        let refuse = Scripted::refusing();
        for weaker in [Warn, Off] {
            assert_eq!(run(set_signature_policy(&refuse, Require, weaker, save)).unwrap_err().code, "not_confirmed");
            assert_eq!(*saved.lock().unwrap(), Require);
        }
        assert!(refuse.asked()[1].message.contains("from require to off"), "{}", refuse.asked()[1].message);
        run(set_signature_policy(&refuse, Off, Require, save)).unwrap();
        run(set_signature_policy(&refuse, Warn, Warn, save)).unwrap();
        assert_eq!(refuse.asked().len(), 2, "a stronger or equal policy asks nothing");
        run(set_signature_policy(&Scripted::accepting(), Require, Off, save)).unwrap();
        assert_eq!(*saved.lock().unwrap(), Off);
    }

    #[test]
    fn a_new_or_plain_http_registry_asks_and_a_refusal_keeps_the_old_one() {
        let saved = Mutex::new(Some("registry.site.lan:5000".to_string()));
        let save = |r: Option<&str>| {
            *saved.lock().unwrap() = r.map(str::to_string);
            Ok(())
        };
        let refuse = Scripted::refusing();
        for widening in ["attacker.example:5000", "http://registry.site.lan:5000", "registry.site.lan:5001"] {
            assert_eq!(run(set_registry(&refuse, Some("registry.site.lan:5000"), Some(widening), save)).unwrap_err().code, "not_confirmed", "{widening}");
            assert_eq!(saved.lock().unwrap().as_deref(), Some("registry.site.lan:5000"));
        }
        assert_eq!(run(set_registry(&refuse, None, Some("registry.site.lan:5000"), save)).unwrap_err().code, "not_confirmed", "a first registry asks too");
        let asked = refuse.asked();
        assert!(asked[0].message.contains("https://attacker.example:5000"), "{}", asked[0].message);
        assert!(asked[1].message.contains("plain HTTP"), "{}", asked[1].message);
        // Narrowing asks nothing: the same registry, HTTPS where it was plain, or none.
        run(set_registry(&refuse, Some("registry.site.lan:5000"), Some(" REGISTRY.site.lan:5000 "), save)).unwrap();
        run(set_registry(&refuse, Some("http://registry.site.lan:5000"), Some("registry.site.lan:5000"), save)).unwrap();
        run(set_registry(&refuse, Some("registry.site.lan:5000"), None, save)).unwrap();
        assert_eq!(refuse.asked().len(), 4);
        assert_eq!(*saved.lock().unwrap(), None);
        assert_eq!(run(set_registry(&refuse, None, Some("not a registry"), save)).unwrap_err().code, "invalid_argument");
        run(set_registry(&Scripted::accepting(), None, Some("http://registry.site.lan:5000"), save)).unwrap();
        assert_eq!(saved.lock().unwrap().as_deref(), Some("http://registry.site.lan:5000"));
    }

    #[test]
    fn opening_the_api_server_asks_first() {
        let off = ApiSettings { enabled: false, port: 11434, token: None };
        let on = ApiSettings { enabled: true, ..off.clone() };
        let with_token = ApiSettings { token: Some("t".into()), ..on.clone() };
        let refuse = Scripted::refusing();
        assert_eq!(run(confirm_api_server(&refuse, &off, &on)).unwrap_err().code, "not_confirmed");
        assert_eq!(run(confirm_api_server(&refuse, &with_token, &on)).unwrap_err().code, "not_confirmed", "removing the token while on");
        assert_eq!(run(confirm_api_server(&refuse, &off, &with_token)).unwrap_err().code, "not_confirmed", "on, with a token");
        let asked = refuse.asked();
        assert!(asked[0].message.contains("Every program on this computer") && asked[0].message.contains("127.0.0.1:11434"), "{}", asked[0].message);
        assert!(asked[2].message.contains("that have the token"), "{}", asked[2].message);
        // Closing, moving or adding a token asks nothing.
        run(confirm_api_server(&refuse, &on, &off)).unwrap();
        run(confirm_api_server(&refuse, &on, &ApiSettings { port: 8080, ..on.clone() })).unwrap();
        run(confirm_api_server(&refuse, &on, &with_token)).unwrap();
        assert_eq!(refuse.asked().len(), 3);
        run(confirm_api_server(&Scripted::accepting(), &off, &on)).unwrap();
    }
}
