//! Native confirmations: a GTK (or macOS, Windows) message dialog drawn by the app itself, not by
//! the web view, so a page that renders model output cannot fake the answer. The commands that
//! widen what the app reads, writes or trusts (a typed path, trusting a key, a weaker signature
//! policy) ask through [`Confirmer`]; refusing is the safe answer, and every error path counts as
//! a refusal.
//!
//! Like the file pickers, the dialog is never waited for on the main thread (GTK runs its loop
//! there): the plugin shows it from the event loop and answers a callback on another thread.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use tauri::{AppHandle, Manager};
use tauri_plugin_dialog::{DialogExt, MessageDialogButtons, MessageDialogKind};

use super::AppState;

/// What to ask: the window title, the text (which names the path or key and the action), and
/// the label of the button that goes ahead (Cancel is the other).
#[derive(Clone, Debug)]
pub struct Confirmation {
    pub title: String,
    pub message: String,
    pub proceed: String,
}

/// Asks the person; `true` only when they pressed the button that goes ahead.
pub trait Confirmer: Sync {
    fn confirm(&self, question: Confirmation) -> impl Future<Output = bool> + Send;
}

/// Set while a confirmation is on screen: a page asking again and again gets `false`, not a
/// pile of dialogs to click through.
#[derive(Default)]
pub struct ConfirmSlot(AtomicBool);

struct OpenConfirmation<'a>(&'a ConfirmSlot);

impl Drop for OpenConfirmation<'_> {
    fn drop(&mut self) {
        self.0 .0.store(false, Ordering::SeqCst);
    }
}

/// The real dialog, parented to the main window.
pub struct NativeConfirmer<'a> {
    pub app: &'a AppHandle,
    pub slot: &'a ConfirmSlot,
}

impl Confirmer for NativeConfirmer<'_> {
    async fn confirm(&self, q: Confirmation) -> bool {
        if self.slot.0.swap(true, Ordering::SeqCst) {
            return false;
        }
        let _open = OpenConfirmation(self.slot);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut dialog = self
            .app
            .dialog()
            .message(q.message)
            .title(q.title)
            .kind(MessageDialogKind::Warning)
            .buttons(MessageDialogButtons::OkCancelCustom(mnemonic(&q.proceed), mnemonic("Cancel")));
        if let Some(window) = self.app.get_webview_window("main") {
            dialog = dialog.parent(&window);
        }
        dialog.show(move |ok| {
            let _ = tx.send(ok);
        });
        rx.await.unwrap_or(false)
    }
}

/// The real native dialog, for the commands in `access`.
pub(super) fn confirmer<'a>(app: &'a AppHandle, state: &'a AppState) -> NativeConfirmer<'a> {
    NativeConfirmer { app, slot: &state.confirming }
}

/// GTK buttons take a mnemonic: `_Import` is pressed with Alt+I, as in every GTK dialog. Other
/// systems show the label as it is.
fn mnemonic(label: &str) -> String {
    if cfg!(target_os = "linux") {
        format!("_{label}")
    } else {
        label.to_string()
    }
}

#[cfg(test)]
pub mod testing {
    use std::sync::Mutex;

    use super::*;

    /// Answers every question with `answer` and keeps what was asked.
    pub struct Scripted {
        pub answer: bool,
        pub asked: Mutex<Vec<Confirmation>>,
    }

    impl Scripted {
        pub fn refusing() -> Self {
            Scripted { answer: false, asked: Mutex::default() }
        }
        pub fn accepting() -> Self {
            Scripted { answer: true, asked: Mutex::default() }
        }
        pub fn asked(&self) -> Vec<Confirmation> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Confirmer for Scripted {
        async fn confirm(&self, q: Confirmation) -> bool {
            self.asked.lock().unwrap().push(q);
            self.answer
        }
    }
}
