//! The local API server inside the app: the same router as `airlock serve`, on loopback only,
//! started, stopped and moved to another port from Settings.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::oneshot;

use super::settings::ApiSettings;
use crate::api::{self, PullSignature, ServerConfig, SiteRegistry};
use crate::core::Core;

#[derive(Clone, Debug, Serialize)]
pub struct ApiServerStatus {
    pub enabled: bool,
    pub port: u16,
    pub token: Option<String>,
    pub running: bool,
    pub url: Option<String>,
    /// Why it is not running although enabled.
    pub error: Option<String>,
}

pub struct ApiServer {
    state: Mutex<State>,
    /// The app's own registry and signature policy, asked at each request: a local client
    /// pulls from where the window's Pull does, and cannot pull past what Settings require.
    site_registry: SiteRegistry,
    pull_signature: PullSignature,
}

#[derive(Default)]
struct State {
    settings: ApiSettings,
    shutdown: Option<oneshot::Sender<()>>,
    url: Option<String>,
    error: Option<String>,
}

impl ApiServer {
    pub fn new(site_registry: SiteRegistry, pull_signature: PullSignature) -> Self {
        ApiServer { state: Mutex::default(), site_registry, pull_signature }
    }

    /// Stops the running server, if any, and starts one as `settings` say.
    pub fn apply(&self, core: Arc<Core>, settings: ApiSettings) -> ApiServerStatus {
        let mut state = self.state.lock().unwrap();
        let was_running = state.shutdown.take().map(|stop| stop.send(())).is_some();
        state.url = None;
        state.error = None;
        if settings.enabled {
            // Loopback only: the app never exposes models to the network (`airlock serve` can,
            // with a token).
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port));
            let mut bound = api::bind(addr);
            // The server just stopped may hold its port for a moment while it finishes (up to
            // half a second); a port someone else holds fails at once.
            for _ in 0..20 {
                if bound.is_ok() || !was_running {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(25));
                bound = api::bind(addr);
            }
            match bound {
                Ok(listener) => {
                    // Pushing stays off: the app never publishes models for its API's callers.
                    let cfg = ServerConfig { addr, api_key: settings.token.clone(), tokens_file: None, audit: None, drain: Default::default(), origins: Vec::new(), site_registry: self.site_registry.clone(), pull_signature: self.pull_signature.clone(), allow_push: false };
                    let (stop, stopped) = oneshot::channel::<()>();
                    tauri::async_runtime::spawn(async move {
                        let shutdown = async {
                            let _ = stopped.await;
                        };
                        if let Err(e) = api::serve_on(listener, core, &cfg, shutdown).await {
                            eprintln!("warning: the API server stopped: {e}");
                        }
                    });
                    state.shutdown = Some(stop);
                    state.url = Some(format!("http://{addr}"));
                }
                Err(e) => state.error = Some(e),
            }
        }
        state.settings = settings;
        status(&state)
    }

    pub fn status(&self) -> ApiServerStatus {
        status(&self.state.lock().unwrap())
    }

    pub fn stop(&self) {
        if let Some(stop) = self.state.lock().unwrap().shutdown.take() {
            let _ = stop.send(());
        }
    }
}

fn status(s: &State) -> ApiServerStatus {
    ApiServerStatus {
        enabled: s.settings.enabled,
        port: s.settings.port,
        token: s.settings.token.clone(),
        running: s.shutdown.is_some(),
        url: s.url.clone(),
        error: s.error.clone(),
    }
}
