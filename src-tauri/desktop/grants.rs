//! Paths the person chose, held on the Rust side. The web view renders model output, so it is an
//! untrusted caller: it never names a file for the app to read, write or trust. The answer of a
//! file dialog (or a drop on the window) becomes an unguessable handle, kept here with what it
//! was chosen for; the web view gets the handle and the path to show, and passes the handle
//! back. A path typed into the window's path field is a [`PathArg::Typed`]: it is used only after
//! a native confirmation that names it and what will be done with it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::confirm::{Confirmation, Confirmer};
use super::error::{CommandError, CommandResult};
use super::pick::PickKind;

/// What a chosen path may be used for: a bundle picked to import is not an export target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Import,
    ExportTo,
    SignWith,
    Trust,
    /// Read into a conversation: a document or an image.
    Attach,
    /// Written with a conversation's export (Markdown or JSON).
    SaveConversation,
    /// Read as a conversation export, into a new conversation.
    OpenConversation,
}

impl Purpose {
    pub fn of(kind: PickKind) -> Self {
        match kind {
            PickKind::BundleFolder | PickKind::BundleFile => Purpose::Import,
            PickKind::ExportFile | PickKind::ExportFolder => Purpose::ExportTo,
            PickKind::SecretKey => Purpose::SignWith,
            PickKind::PublicKey => Purpose::Trust,
            PickKind::Documents | PickKind::LibraryFolder => Purpose::Attach,
            PickKind::ConversationMarkdown | PickKind::ConversationJson => Purpose::SaveConversation,
            PickKind::ConversationFile => Purpose::OpenConversation,
        }
    }

    /// What the app will do with a path, for the confirmation.
    fn doing(self, path: &Path) -> String {
        let p = path.display();
        match self {
            Purpose::Import => format!("read {p} and import the models in it"),
            Purpose::ExportTo => format!("write the exported models to {p}"),
            Purpose::SignWith => format!("read the secret key {p} and sign with it"),
            Purpose::Trust => format!("trust the public key in {p}"),
            Purpose::Attach => format!("read {p} into the conversation"),
            Purpose::SaveConversation => format!("write the conversation to {p}"),
            Purpose::OpenConversation => format!("read {p} as a conversation"),
        }
    }
}

/// A chosen path as the web view sees it: the handle to pass back, and the path to show.
#[derive(Clone, Debug, Serialize)]
pub struct Chosen {
    pub handle: String,
    pub path: String,
}

/// A path argument from the web view.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathArg {
    /// Returned by a file dialog or a drop.
    Handle(String),
    /// Typed by the person (or written by the page): needs a native confirmation.
    Typed(String),
}

/// Handles kept, oldest dropped first: a page cannot grow the map without bound.
const MAX_GRANTS: usize = 1024;

#[derive(Default)]
pub struct PathGrants(Mutex<Grants>);

#[derive(Default)]
struct Grants {
    by_handle: HashMap<String, (PathBuf, Purpose)>,
    order: VecDeque<String>,
}

impl PathGrants {
    /// Records a path the person chose (in a native dialog or by dropping it on the window).
    pub fn grant(&self, path: PathBuf, purpose: Purpose) -> Chosen {
        let handle = new_handle();
        let shown = path.display().to_string();
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.order.len() >= MAX_GRANTS {
            if let Some(old) = g.order.pop_front() {
                g.by_handle.remove(&old);
            }
        }
        g.by_handle.insert(handle.clone(), (path, purpose));
        g.order.push_back(handle.clone());
        Chosen { handle, path: shown }
    }

    /// The path behind `handle`, if it was chosen for `purpose`.
    pub fn path(&self, handle: &str, purpose: Purpose) -> CommandResult<PathBuf> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match g.by_handle.get(handle) {
            Some((path, p)) if *p == purpose => Ok(path.clone()),
            Some(_) => Err(CommandError::invalid("that file was chosen for something else; choose it again with the button next to this field")),
            None => Err(CommandError::new("unknown_handle", "that file choice is no longer known to Airlock; choose the file again")),
        }
    }
}

fn new_handle() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the system's random source is available");
    hex::encode(bytes)
}

/// A typed path: absolute, so nothing depends on the app's working directory.
pub fn check_typed(path: &str) -> CommandResult<PathBuf> {
    let p = PathBuf::from(path.trim());
    if path.trim().is_empty() || path.len() > 4096 || !p.is_absolute() {
        return Err(CommandError::invalid(format!("give a full path (starting with /), not {path:?}")));
    }
    Ok(p)
}

/// Turns the path arguments of one action into paths: every handle must be known and chosen
/// for its purpose (checked first, so a bad handle asks nothing); typed paths are then confirmed
/// together in one native dialog titled `title`, naming each path and what will be done with it.
/// Refused → `not_confirmed`, and the caller does nothing.
pub async fn resolve(grants: &PathGrants, confirm: &impl Confirmer, args: Vec<(PathArg, Purpose)>, title: &str, proceed: &str) -> CommandResult<Vec<PathBuf>> {
    let mut paths = Vec::with_capacity(args.len());
    let mut typed = Vec::new();
    for (arg, purpose) in args {
        match arg {
            PathArg::Handle(h) => paths.push(grants.path(&h, purpose)?),
            PathArg::Typed(t) => {
                let p = check_typed(&t)?;
                typed.push(purpose.doing(&p));
                paths.push(p);
            }
        }
    }
    if typed.is_empty() {
        return Ok(paths);
    }
    let message = format!(
        "Airlock will {}.\n\n{} typed into Airlock's window, not chosen in a file dialog. Go ahead only if you typed {} yourself.",
        typed.join(", and "),
        if typed.len() == 1 { "This path was" } else { "These paths were" },
        if typed.len() == 1 { "it" } else { "them" },
    );
    if confirm.confirm(Confirmation { title: title.into(), message, proceed: proceed.into() }).await {
        Ok(paths)
    } else {
        Err(not_confirmed())
    }
}

pub fn not_confirmed() -> CommandError {
    CommandError::new("not_confirmed", "not confirmed in Airlock's dialog; nothing was done")
}

#[cfg(test)]
mod tests {
    use super::super::confirm::testing::Scripted;
    use super::*;

    #[test]
    fn a_handle_works_only_for_what_it_was_chosen_for() {
        let grants = PathGrants::default();
        let chosen = grants.grant("/media/usb/models.zip".into(), Purpose::Import);
        assert_eq!(chosen.path, "/media/usb/models.zip");
        assert_eq!(chosen.handle.len(), 32);
        assert_eq!(grants.path(&chosen.handle, Purpose::Import).unwrap(), PathBuf::from("/media/usb/models.zip"));
        assert_eq!(grants.path(&chosen.handle, Purpose::ExportTo).unwrap_err().code, "invalid_argument");
        assert_eq!(grants.path("0123456789abcdef0123456789abcdef", Purpose::Import).unwrap_err().code, "unknown_handle");
        assert_ne!(grants.grant("/a".into(), Purpose::Import).handle, grants.grant("/a".into(), Purpose::Import).handle, "each choice gets its own handle");
    }

    #[test]
    fn old_handles_are_forgotten_past_the_limit() {
        let grants = PathGrants::default();
        let first = grants.grant("/first".into(), Purpose::Import);
        for i in 0..MAX_GRANTS {
            grants.grant(format!("/p{i}").into(), Purpose::Import);
        }
        assert_eq!(grants.path(&first.handle, Purpose::Import).unwrap_err().code, "unknown_handle");
    }

    #[test]
    fn typed_paths_must_be_absolute() {
        assert!(check_typed("/media/usb/models.zip").is_ok());
        for bad in ["", "  ", "models.zip", "../etc/passwd", "~/models"] {
            assert_eq!(check_typed(bad).unwrap_err().code, "invalid_argument", "{bad:?}");
        }
        assert!(check_typed(&format!("/{}", "a".repeat(5000))).is_err());
    }

    #[test]
    fn typed_paths_are_confirmed_once_naming_each_and_a_refusal_stops_everything() {
        tauri::async_runtime::block_on(async {
            let grants = PathGrants::default();
            let key = grants.grant("/keys/me.key".into(), Purpose::SignWith);
            let refuse = Scripted::refusing();
            let args = vec![(PathArg::Typed("/tmp/out.zip".into()), Purpose::ExportTo), (PathArg::Handle(key.handle.clone()), Purpose::SignWith)];
            let e = resolve(&grants, &refuse, args.clone(), "Export to a typed path?", "Export").await.unwrap_err();
            assert_eq!(e.code, "not_confirmed");
            let asked = refuse.asked();
            assert_eq!(asked.len(), 1);
            assert!(asked[0].message.contains("write the exported models to /tmp/out.zip"), "{}", asked[0].message);
            assert!(!asked[0].message.contains("/keys/me.key"), "a chosen file needs no confirmation");

            let accept = Scripted::accepting();
            let paths = resolve(&grants, &accept, args, "Export to a typed path?", "Export").await.unwrap();
            assert_eq!(paths, vec![PathBuf::from("/tmp/out.zip"), PathBuf::from("/keys/me.key")]);

            // Handles alone: no question.
            let paths = resolve(&grants, &refuse, vec![(PathArg::Handle(key.handle), Purpose::SignWith)], "t", "p").await.unwrap();
            assert_eq!(paths, vec![PathBuf::from("/keys/me.key")]);
            // A bad handle fails before anything is asked, even alongside a typed path.
            let before = refuse.asked().len();
            let args = vec![(PathArg::Typed("/tmp/x".into()), Purpose::Import), (PathArg::Handle("forged".into()), Purpose::SignWith)];
            assert_eq!(resolve(&grants, &refuse, args, "t", "p").await.unwrap_err().code, "unknown_handle");
            assert_eq!(refuse.asked().len(), before);
        });
    }
}
