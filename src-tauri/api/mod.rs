//! The local HTTP API: Ollama's `/api/*` and OpenAI's `/v1/*` on loopback, over the same
//! [`Core`] as the CLI and the desktop app, so existing clients (Open WebUI, editors, LangChain,
//! the official `ollama` and `openai` libraries) work unchanged.
//!
//! Safer than Ollama on loopback: requests whose `Host` is not a loopback name are refused (DNS
//! rebinding), browser `Origin`s must be on the allowlist, POST bodies must be JSON (no
//! preflight-free form posts from web pages), bodies are size-limited, API tokens (scoped, limited
//! to models, `airlock token`) are required once any exist and always off loopback, `airlock
//! serve` writes every request to the audit log, and no response carries a filesystem path.
//!
//! Uses: `core`, `engine`, `store`, `bundle`, `modelfile`, `registry`, `access`, `units`; never
//! `cli` or `desktop`.

mod anthropic;
mod audit;
mod body;
mod create;
mod embed;
mod guard;
mod ollama;
mod openai;
pub(crate) mod options;
mod registry_routes;
mod responses;
mod stream;
mod reply;
mod images;
mod metrics;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::access::audit::AuditLog;
use crate::bundle::SignaturePolicy;
use crate::core::Core;

pub const DEFAULT_PORT: u16 = 11434;
/// Requests are JSON; a conversation of a few MB is plenty.
const BODY_LIMIT: usize = 32 << 20;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub addr: SocketAddr,
    /// `AIRLOCK_API_KEY`: one chat-scoped token, required on every request when set.
    pub api_key: Option<String>,
    /// The token file (`airlock token`): once it exists, every request needs one of its tokens
    /// (or `api_key`).
    pub tokens_file: Option<PathBuf>,
    /// Where each request is recorded.
    pub audit: Option<Arc<AuditLog>>,
    /// The graceful stop of `airlock serve`.
    pub drain: Arc<Drain>,
    /// Extra browser origins allowed besides the app's own.
    pub origins: Vec<String>,
    /// The registry `/api/pull` and `/api/push` use.
    pub site_registry: SiteRegistry,
    /// What `/api/pull` requires of a model's signature.
    pub pull_signature: PullSignature,
    /// Whether `/api/push` may publish to the site registry: off unless the operator turns it
    /// on, since a push through the API lets any caller replace a model every machine pulls.
    pub allow_push: bool,
}

/// The site registry of pulls and pushes through the API.
#[derive(Clone)]
pub enum SiteRegistry {
    /// `AIRLOCK_REGISTRY` (`airlock serve`).
    Environment,
    /// Asked at each request: the app's server uses the registry in the app's Settings.
    Follow(Arc<dyn Fn() -> Option<String> + Send + Sync>),
}

impl SiteRegistry {
    pub fn current(&self) -> Result<Option<crate::registry::Registry>, crate::registry::RegistryError> {
        match self {
            SiteRegistry::Environment => crate::registry::Registry::from_env(),
            SiteRegistry::Follow(configured) => configured().map(|r| crate::registry::Registry::parse(&r)).transpose(),
        }
    }
}

impl std::fmt::Debug for SiteRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if matches!(self, SiteRegistry::Environment) { "Environment" } else { "Follow" })
    }
}

/// The signature policy of pulls through the API.
#[derive(Clone)]
pub enum PullSignature {
    /// `require` once any key is trusted here, else `off`: `airlock serve`'s default. Asked at
    /// each pull, so `airlock trust add` applies at once.
    RequireWhenTrusted,
    /// Chosen by the operator (`airlock serve --signature`, `AIRLOCK_PULL_SIGNATURE`).
    Fixed(SignaturePolicy),
    /// Asked at each pull: the app's server follows the policy in the app's Settings.
    Follow(Arc<dyn Fn() -> SignaturePolicy + Send + Sync>),
}

impl PullSignature {
    pub fn current(&self) -> SignaturePolicy {
        match self {
            PullSignature::RequireWhenTrusted => crate::bundle::sign::default_trust_dir().map_or(SignaturePolicy::Off, |d| crate::bundle::sign::default_policy(&d)),
            PullSignature::Fixed(p) => *p,
            PullSignature::Follow(current) => current(),
        }
    }
}

impl std::fmt::Debug for PullSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PullSignature::RequireWhenTrusted => f.write_str("RequireWhenTrusted"),
            PullSignature::Fixed(p) => write!(f, "Fixed({p:?})"),
            PullSignature::Follow(_) => f.write_str("Follow"),
        }
    }
}

/// Read by `airlock serve` for `/api/pull`: off, warn or require (default: require once a key is trusted).
pub const SIGNATURE_ENV: &str = "AIRLOCK_PULL_SIGNATURE";
/// `1`: the audit log also keeps each request's messages and the reply's text.
pub const AUDIT_TEXT_ENV: &str = "AIRLOCK_AUDIT_TEXT";
/// Seconds a stopping server waits for the replies under way (default 30).
pub const DRAIN_ENV: &str = "AIRLOCK_DRAIN_TIMEOUT";

/// A graceful stop: once begun, every new request gets 503 (`/` too, so a load balancer stops
/// sending here) while the requests under way finish, for at most `limit`.
#[derive(Debug)]
pub struct Drain {
    pub limit: Duration,
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new(Duration::from_secs(30))
    }
}

impl Drain {
    pub fn new(limit: Duration) -> Self {
        Drain { limit, draining: Default::default(), in_flight: Default::default() }
    }

    pub fn begin(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Requests under way (their responses not yet sent).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request as under way until the returned guard is dropped.
    fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Waits until no request is under way, or `limit` has passed; says which.
    pub async fn settled(&self) -> bool {
        let deadline = tokio::time::Instant::now() + self.limit;
        while self.in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        true
    }
}

/// One request under way, for [`Drain`].
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ServerConfig {
    /// `AIRLOCK_HOST`, else `OLLAMA_HOST` (Ollama's syntax), `AIRLOCK_API_KEY`, `AIRLOCK_ORIGINS`,
    /// `AIRLOCK_PULL_SIGNATURE`; pushing is off.
    pub fn from_env() -> Result<Self, String> {
        let host = std::env::var("AIRLOCK_HOST").ok().filter(|s| !s.is_empty()).or_else(|| std::env::var("OLLAMA_HOST").ok().filter(|s| !s.is_empty()));
        let addr = match host {
            Some(h) => parse_host(&h)?,
            None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
        };
        let api_key = std::env::var("AIRLOCK_API_KEY").ok().filter(|s| !s.is_empty());
        let origins = std::env::var("AIRLOCK_ORIGINS").map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
        let pull_signature = match std::env::var(SIGNATURE_ENV) {
            Ok(v) if !v.trim().is_empty() => PullSignature::Fixed(v.trim().parse().map_err(|e| format!("{SIGNATURE_ENV}: {e}"))?),
            _ => PullSignature::RequireWhenTrusted,
        };
        let tokens_file = crate::bundle::sign::config_dir().ok().map(|d| crate::access::tokens::token_file(&d));
        let audit_path = crate::access::audit::default_path().ok_or("no data folder known for the audit log; set AIRLOCK_AUDIT_LOG to a file")?;
        let keep_text = std::env::var(AUDIT_TEXT_ENV).is_ok_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        let drain_secs = match std::env::var(DRAIN_ENV) {
            Ok(v) if !v.trim().is_empty() => v.trim().parse::<u64>().map_err(|_| format!("{DRAIN_ENV}: expected seconds, got {v:?}"))?,
            _ => 30,
        };
        let drain = Arc::new(Drain::new(Duration::from_secs(drain_secs)));
        let cfg = ServerConfig { addr, api_key, tokens_file, audit: None, drain, origins, site_registry: SiteRegistry::Environment, pull_signature, allow_push: false };
        cfg.check()?;
        let audit = AuditLog::open(audit_path, keep_text, crate::access::audit::ROTATE_BYTES).map_err(|e| e.0)?;
        Ok(ServerConfig { audit: Some(audit), ..cfg })
    }

    /// What the operator should know about pulls and pushes through this server, as it starts.
    pub fn transfer_notes(&self) -> Vec<String> {
        let trusted = crate::bundle::sign::default_trust_dir().map_or(0, |d| crate::bundle::sign::trusted_key_count(&d));
        let mut notes = Vec::new();
        match (&self.pull_signature, trusted) {
            (PullSignature::Fixed(p @ (SignaturePolicy::Off | SignaturePolicy::Warn)), n) if n > 0 => {
                let chosen = if *p == SignaturePolicy::Off { "off" } else { "warn" };
                notes.push(format!("warning: pulls through the API accept models without a trusted signature (signature policy {chosen}), although {n} key(s) are trusted here"))
            }
            (PullSignature::RequireWhenTrusted, 0) => notes.push("pulls through the API accept unsigned models: no key is trusted here (`airlock trust add KEY.pub` makes a signature required)".into()),
            (PullSignature::RequireWhenTrusted, n) => notes.push(format!("pulls through the API require a signature by one of the {n} key(s) trusted here")),
            _ => {}
        }
        if self.allow_push {
            notes.push("warning: /api/push is on: every caller of this API can publish models to the site registry with this server's credentials".into());
        }
        notes
    }

    /// A server reachable from other machines must have a token.
    pub fn check(&self) -> Result<(), String> {
        let has_tokens = self.tokens_file.as_deref().is_some_and(|f| f.exists());
        if !self.addr.ip().is_loopback() && self.api_key.is_none() && !has_tokens {
            return Err(format!("refusing to listen on {} without API tokens: anyone on the network could use it; add one with `airlock token add NAME`, set AIRLOCK_API_KEY, or bind to 127.0.0.1", self.addr));
        }
        Ok(())
    }
}

/// Parses Ollama's host syntax: `host`, `host:port`, `:port`, `http://host:port`, `[::1]:port`.
pub fn parse_host(s: &str) -> Result<SocketAddr, String> {
    let bad = || format!("invalid host {s:?}: expected e.g. 127.0.0.1:11434");
    let rest = s.trim().trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        (h, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| bad())?,
        None => DEFAULT_PORT,
    };
    let ip = match host {
        "" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse().map_err(|_| bad())?,
    };
    Ok(SocketAddr::new(ip, port))
}

pub fn router(core: Arc<Core>, cfg: &ServerConfig) -> Router {
    let guard = guard::Guard::new(cfg);
    let metrics = Arc::new(metrics::Metrics::default());
    stream::hide_path(core.store.root());
    if let Some(home) = dirs::home_dir() {
        stream::hide_path(&home);
    }
    Router::new()
        .route("/", get(|| async { "Airlock is running" }))
        .route("/api/version", get(ollama::version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/embed", post(embed::ollama_embed))
        .route("/api/embeddings", post(embed::ollama_embeddings))
        .route("/api/delete", axum::routing::delete(ollama::delete))
        .route("/api/copy", post(ollama::copy))
        .route("/api/create", post(create::create))
        // Uploads stream to disk, limited by the free space rather than BODY_LIMIT.
        .route("/api/blobs/{digest}", axum::routing::head(create::blob_exists).post(create::upload_blob).layer(DefaultBodyLimit::disable()))
        .route("/api/pull", post(registry_routes::pull))
        .route("/api/push", post(registry_routes::push))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/embeddings", post(embed::openai_embeddings))
        .route("/v1/responses", post(responses::responses))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route("/metrics", get(metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(guard.clone(), guard::check_request))
        .layer(guard.cors())
        .layer(axum::middleware::from_fn_with_state(guard, guard::check_caller))
        .layer(axum::middleware::from_fn_with_state(audit::Recorders { log: cfg.audit.clone(), metrics: metrics.clone(), drain: cfg.drain.clone() }, audit::record))
        .layer(axum::Extension(metrics))
        .layer(axum::Extension(Arc::new(responses::KeptResponses::default())))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::Extension(Arc::new(registry_routes::TransferRules {
            site_registry: cfg.site_registry.clone(),
            pull_signature: cfg.pull_signature.clone(),
            allow_push: cfg.allow_push,
        })))
        .with_state(core)
}

/// Runs the server until Ctrl-C. A taken port is a clear error.
pub fn serve(core: Arc<Core>, cfg: ServerConfig) -> anyhow::Result<()> {
    let listener = bind(cfg.addr).map_err(|e| anyhow::anyhow!("{e} (AIRLOCK_HOST=127.0.0.1:PORT)"))?;
    eprintln!("Listening on {} (Airlock {})", listener.local_addr()?, env!("CARGO_PKG_VERSION"));
    if let Some(log) = &cfg.audit {
        eprintln!("recording every request in {}", log.path().display());
    }
    for note in cfg.transfer_notes() {
        eprintln!("{note}");
    }
    // As Ollama does at start, unless OLLAMA_NOPRUNE is set: blobs no model uses go (in the
    // background: the API answers meanwhile).
    if std::env::var_os("OLLAMA_NOPRUNE").is_some_and(|v| !v.is_empty()) {
        eprintln!("not pruning unused blobs: OLLAMA_NOPRUNE is set");
        return serve_until_stopped(core, cfg, listener);
    }
    let pruning = core.clone();
    std::thread::spawn(move || match pruning.store.prune(crate::store::PRUNE_MIN_AGE) {
        Ok(r) if !r.removed.is_empty() => eprintln!("pruned {} blob(s) no model uses ({} bytes)", r.removed.len(), r.bytes),
        Ok(r) => {
            if let Some(why) = r.skipped {
                eprintln!("warning: no blob pruned: {why}");
            }
        }
        Err(crate::store::StoreError::ReadOnly { .. }) => eprintln!("the model store is read-only here: its models are listed and run; create, copy, delete, pull and uploads are refused"),
        Err(e) => eprintln!("warning: could not prune unused blobs: {e}"),
    });
    serve_until_stopped(core, cfg, listener)
}

/// Serves until SIGTERM or Ctrl-C, then drains (see [`Drain`]).
fn serve_until_stopped(core: Arc<Core>, cfg: ServerConfig, listener: std::net::TcpListener) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let drain = cfg.drain.clone();
        let (drained, drained_rx) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            stop_signal().await;
            drain.begin();
            eprintln!("stopping: new requests get 503; waiting up to {} s for the {} under way (again to stop now)", drain.limit.as_secs(), drain.in_flight());
            tokio::select! {
                done = drain.settled() => if !done { eprintln!("stopping: {} request(s) still running after {} s are cut off", drain.in_flight(), drain.limit.as_secs()) },
                _ = stop_signal() => eprintln!("stopping now"),
            }
            let _ = drained.send(());
        };
        let server = serve_on(listener, core.clone(), &cfg, shutdown);
        // Past the drain, connections still open (a reply cut off) do not hold the exit.
        let cut_off = async {
            if drained_rx.await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = server => served?,
            _ = cut_off => {}
        }
        core.shutdown();
        Ok(())
    })
}

/// Ctrl-C, or SIGTERM (systemd's stop, a load balancer's orchestration).
async fn stop_signal() {
    #[cfg(unix)]
    {
        let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Binds the API's address (before any runtime exists, so the caller learns at once), with an
/// error that says what to do about a taken port.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("{addr} is already in use (is Ollama or another Airlock running?); stop it or choose another port")
        } else {
            format!("cannot listen on {addr}: {e}")
        }
    })?;
    listener.set_nonblocking(true).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    Ok(listener)
}

/// Serves the API on `listener` until `shutdown` completes (the CLI's Ctrl-C, the app's toggle).
/// Must run inside a tokio runtime.
pub async fn serve_on(listener: std::net::TcpListener, core: Arc<Core>, cfg: &ServerConfig, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = router(core, cfg).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ollama_host_syntax() {
        assert_eq!(parse_host("127.0.0.1").unwrap(), "127.0.0.1:11434".parse().unwrap());
        assert_eq!(parse_host(":8080").unwrap(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(parse_host("http://0.0.0.0:11434").unwrap(), "0.0.0.0:11434".parse().unwrap());
        assert_eq!(parse_host("[::1]:9000").unwrap(), "[::1]:9000".parse().unwrap());
        assert!(parse_host("example.com:11434").is_err());
    }

    #[test]
    fn non_loopback_needs_a_token() {
        let cfg = ServerConfig { addr: "0.0.0.0:11434".parse().unwrap(), api_key: None, tokens_file: None, audit: None, drain: Default::default(), origins: vec![], site_registry: SiteRegistry::Environment, pull_signature: PullSignature::RequireWhenTrusted, allow_push: false };
        assert!(cfg.check().unwrap_err().contains("airlock token add"));
        assert!(ServerConfig { api_key: Some("k".into()), ..cfg.clone() }.check().is_ok());
        let dir = tempfile::tempdir().unwrap();
        let file = crate::access::tokens::token_file(dir.path());
        assert!(ServerConfig { tokens_file: Some(file.clone()), ..cfg.clone() }.check().is_err(), "no token file yet");
        crate::access::tokens::add(&file, "ops", crate::access::tokens::Scope::Admin, &[], None).unwrap();
        assert!(ServerConfig { tokens_file: Some(file), ..cfg }.check().is_ok());
    }
}
