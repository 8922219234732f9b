//! A blocking OCI Distribution client (ureq over rustls): blob `HEAD`/`GET` (with `Range`),
//! uploads (`POST`, then one monolithic `PUT`, or `PATCH` chunks for large blobs), cross-repository
//! mounts, manifest `GET`/`PUT` of exact bytes. TLS trusts the system's CA store plus an optional
//! site CA file; plain HTTP only for a registry asked for with `--insecure` or `http://`.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ureq::http::{Method, Request, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body, SendBody};

use super::auth::{self, Credentials};
use super::{Registry, RegistryError};
use crate::store::manifest::{MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES};
use crate::store::Digest;

pub const CA_FILE_ENV: &str = "AIRLOCK_CA_FILE";
/// Seconds a registry may send nothing before a request or download fails (a stalled registry
/// must not hang a pull, and the blob it holds, forever).
pub const TIMEOUT_ENV: &str = "AIRLOCK_REGISTRY_TIMEOUT";
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Blobs up to this size go in one `PUT`; larger ones in `PATCH` chunks of this size.
pub const CHUNK_SIZE: u64 = 64 << 20;

#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// A PEM file of extra CA certificates (a site CA), trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// How long the registry may send nothing (default 60 s).
    pub read_timeout: Option<Duration>,
}

impl ClientOptions {
    /// `AIRLOCK_CA_FILE` and `AIRLOCK_REGISTRY_TIMEOUT`, when set.
    pub fn from_env() -> Self {
        let read_timeout = std::env::var(TIMEOUT_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok()).filter(|s| *s > 0).map(Duration::from_secs);
        ClientOptions { ca_file: std::env::var_os(CA_FILE_ENV).filter(|v| !v.is_empty()).map(PathBuf::from), read_timeout }
    }
}

/// What a request sends. A file part is re-opened for a retry after an authentication challenge.
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    File { path: &'a Path, offset: u64, len: u64, sent: &'a dyn Fn(u64) },
}

/// Outcome of a cross-repository mount request.
pub enum Mount {
    Mounted,
    /// The registry started an ordinary upload instead, at this location.
    Upload(String),
}

pub struct Client {
    agent: Agent,
    read_timeout: Duration,
    registry: Registry,
    /// The registry's origin: the only one its `Authorization` is sent to.
    origin: String,
    credentials: Option<Credentials>,
    /// The `Authorization` value that answered the last challenge.
    authorization: Mutex<Option<String>>,
}

impl Client {
    pub fn new(registry: &Registry, opts: &ClientOptions) -> Result<Self, RegistryError> {
        let read_timeout = opts.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT);
        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_per_read(Some(read_timeout))
            .https_only(!registry.plain_http)
            .user_agent(format!("airlock/{}", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            .timeout_recv_body(None);
        if !registry.plain_http {
            config = config.tls_config(TlsConfig::builder().root_certs(root_certs(opts.ca_file.as_deref())?).build());
        }
        let credentials = auth::credentials_for(&registry.host)?;
        let origin = auth::origin(&registry.base_url()).ok_or_else(|| RegistryError::Config(format!("{} is not a usable registry address", registry.host)))?;
        Ok(Client { agent: Agent::new_with_config(config.build()), read_timeout, registry: registry.clone(), origin, credentials, authorization: Mutex::new(None) })
    }

    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.registry.base_url())
    }

    /// Sends a request, answering one `401` challenge (Basic or Bearer token) and retrying.
    /// `Authorization` goes to the registry's own origin only: a request the registry pointed
    /// elsewhere (an absolute upload `Location`) goes without it, and is not answered if asked.
    fn send(&self, method: Method, url: &str, headers: &[(&str, String)], payload: &Payload) -> Result<Response<Body>, RegistryError> {
        let own_origin = auth::origin(url).is_some_and(|o| o == self.origin);
        let mut challenged = false;
        loop {
            let auth = if own_origin { self.authorization.lock().unwrap_or_else(|e| e.into_inner()).clone() } else { None };
            let resp = self.send_once(method.clone(), url, headers, payload, auth.as_deref())?;
            if resp.status() != 401 {
                return Ok(resp);
            }
            if !own_origin {
                return Err(RegistryError::Auth(format!(
                    "{}: the registry sent this request to {}, which asks for credentials; the registry's credentials are sent to {} only",
                    self.registry.host,
                    auth::origin(url).unwrap_or_else(|| url.to_string()),
                    self.origin
                )));
            }
            if challenged {
                return Err(RegistryError::Auth(match &self.credentials {
                    Some(c) => format!("{}: the registry refused the credentials of user {:?} (from {} or the docker config.json); check them", self.registry.host, c.user, auth::AUTH_ENV),
                    None => self.needs_credentials(),
                }));
            }
            challenged = true;
            let header = resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let value = self.answer(&header)?;
            *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        }
    }

    fn needs_credentials(&self) -> String {
        let host = &self.registry.host;
        match auth::site_auth_host() {
            Ok(Some(site)) if !site.eq_ignore_ascii_case(host) => format!(
                "{host}: the registry requires credentials; {} holds the site registry {site}'s and is sent nowhere else, so add an auths entry for {host} to the docker config.json (`docker login {host}`)",
                auth::AUTH_ENV
            ),
            _ => format!(
                "{host}: the registry requires credentials; set {}=user:password with {}={host}, or add an auths entry for it to the docker config.json (`docker login {host}`)",
                auth::AUTH_ENV,
                super::reference::REGISTRY_ENV
            ),
        }
    }

    /// The `Authorization` value answering a `WWW-Authenticate` challenge.
    fn answer(&self, header: &str) -> Result<String, RegistryError> {
        let challenge = auth::parse_challenge(header).ok_or_else(|| RegistryError::Auth(format!("{}: the registry asks for authentication without saying how (no WWW-Authenticate)", self.registry.host)))?;
        match challenge.scheme.as_str() {
            "basic" => self.credentials.as_ref().map(|c| c.basic_header()).ok_or_else(|| RegistryError::Auth(self.needs_credentials())),
            "bearer" => self.fetch_token(&challenge.params),
            other => Err(RegistryError::Auth(format!("{}: unsupported authentication scheme {other:?} (Basic and Bearer tokens are supported)", self.registry.host))),
        }
    }

    /// The registry token flow: `GET realm?service=…&scope=…`, with Basic credentials if any.
    fn fetch_token(&self, params: &std::collections::BTreeMap<String, String>) -> Result<String, RegistryError> {
        let realm = params.get("realm").filter(|r| !r.is_empty()).ok_or_else(|| RegistryError::Auth(format!("{}: the Bearer challenge names no realm", self.registry.host)))?;
        let plain = realm.starts_with("http://");
        if !(realm.starts_with("https://") || plain && self.registry.plain_http) {
            return Err(RegistryError::Auth(format!("{}: refusing the token service {realm:?}: credentials go to HTTPS services only (use --insecure for a plain-HTTP site)", self.registry.host)));
        }
        // A challenge is the registry's word only: it may not send the credentials to any host.
        let realm_origin = auth::origin(realm).ok_or_else(|| RegistryError::Auth(format!("{}: the token service {realm:?} is not an absolute URL", self.registry.host)))?;
        if realm_origin != self.origin && !auth::configured_token_services().contains(&realm_origin) {
            return Err(RegistryError::Auth(format!(
                "{}: refusing the token service {realm_origin}: it is not the registry's own origin, and credentials go only where they were configured; if it is your site's token service, set {}={realm_origin}",
                self.registry.host,
                auth::TOKEN_SERVICE_ENV
            )));
        }
        let mut url = realm.clone();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        // Several scopes (a mount names two repositories) go as repeated `scope` parameters.
        let scopes = params.get("scope").map(|s| s.split_whitespace().collect::<Vec<_>>()).unwrap_or_default();
        let pairs = params.get("service").map(|s| ("service", s.as_str())).into_iter().chain(scopes.into_iter().map(|s| ("scope", s)));
        for (key, v) in pairs {
            url.push_str(&format!("{sep}{key}={}", auth::query_encode(v)));
            sep = '&';
        }
        let auth = self.credentials.as_ref().map(|c| c.basic_header());
        let mut resp = self.send_once(Method::GET, &url, &[], &Payload::Empty, auth.as_deref())?;
        if resp.status() == 401 || resp.status() == 403 {
            return Err(RegistryError::Auth(match &self.credentials {
                Some(c) => format!("{}: the token service refused the credentials of user {:?}", self.registry.host, c.user),
                None => self.needs_credentials(),
            }));
        }
        if resp.status() != 200 {
            return Err(status_error("token request", resp));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = resp.body_mut().with_config().limit(1 << 20).read_to_vec().map_err(|e| RegistryError::transport(realm, e))?;
        let t: Token = serde_json::from_slice(&body).map_err(|e| RegistryError::Auth(format!("{}: the token service's answer is not a token: {e}", self.registry.host)))?;
        let token = t.token.or(t.access_token).filter(|t| !t.is_empty()).ok_or_else(|| RegistryError::Auth(format!("{}: the token service gave no token", self.registry.host)))?;
        Ok(format!("Bearer {token}"))
    }

    fn send_once(&self, method: Method, url: &str, headers: &[(&str, String)], payload: &Payload, auth: Option<&str>) -> Result<Response<Body>, RegistryError> {
        let mut builder = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, v.as_str());
        }
        if let Some(a) = auth {
            builder = builder.header("Authorization", a);
        }
        let bad = |e: ureq::http::Error| RegistryError::transport(url, e);
        let result = match payload {
            Payload::Empty => self.agent.run(builder.body(()).map_err(bad)?),
            Payload::Bytes(b) => self.agent.run(builder.header("Content-Length", b.len().to_string()).body(*b).map_err(bad)?),
            Payload::File { path, offset, len, sent } => {
                let mut file = File::open(path).map_err(|e| RegistryError::transport(url, format!("cannot read {}: {e}", path.display())))?;
                file.seek(SeekFrom::Start(*offset)).map_err(|e| RegistryError::transport(url, format!("cannot read {}: {e}", path.display())))?;
                let mut reader = Counting { inner: file.take(*len), sent: *sent };
                let request = builder.header("Content-Length", len.to_string()).body(SendBody::from_reader(&mut reader)).map_err(bad)?;
                self.agent.run(request)
            }
        };
        result.map_err(|e| transport_error(url, e, self.registry.plain_http))
    }

    /// The size of a blob the repository has, or `None`.
    pub fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self.send(Method::HEAD, &url, &[], &Payload::Empty)?;
        match resp.status().as_u16() {
            200 => Ok(Some(content_length(&resp).unwrap_or(0))),
            404 => Ok(None),
            _ => Err(status_error(&format!("checking blob {digest}"), resp)),
        }
    }

    /// Opens a blob for reading from byte `offset` (a `Range` request when `offset > 0`).
    /// Returns the reader and the offset the body really starts at (0 when the registry ignored
    /// the range).
    pub fn open_blob(&self, repo: &str, digest: &Digest, offset: u64) -> Result<(impl Read, u64), RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let headers: Vec<(&str, String)> = if offset > 0 { vec![("Range", format!("bytes={offset}-"))] } else { Vec::new() };
        let resp = self.send(Method::GET, &url, &headers, &Payload::Empty)?;
        let start = match resp.status().as_u16() {
            200 => 0,
            206 => {
                let range = resp.headers().get("content-range").and_then(|v| v.to_str().ok()).unwrap_or("");
                let start = range.strip_prefix("bytes ").and_then(|r| r.split('-').next()).and_then(|s| s.parse::<u64>().ok());
                if start != Some(offset) {
                    return Err(RegistryError::Integrity(format!("blob {digest}: asked for bytes from {offset}, the registry sent range {range:?}")));
                }
                offset
            }
            404 => return Err(RegistryError::NotFound(format!("blob {digest} is not in {}/{repo}; the model in the registry is incomplete — push it again", self.registry.host))),
            _ => return Err(status_error(&format!("downloading blob {digest}"), resp)),
        };
        Ok((resp.into_body().into_reader(), start))
    }

    /// The manifest bytes for `reference` (a tag or digest), exactly as stored; `None` if absent.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let accept = format!("{MANIFEST_MEDIA_TYPE}, {OCI_MANIFEST_MEDIA_TYPE}");
        let mut resp = self.send(Method::GET, &url, &[("Accept", accept)], &Payload::Empty)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(status_error(&format!("fetching manifest {repo}:{reference}"), resp)),
        }
        let claimed = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = resp.body_mut().with_config().limit(MAX_MANIFEST_BYTES).read_to_vec().map_err(|e| RegistryError::transport(&url, format!("reading the manifest: {e}")))?;
        if let Some(claimed) = claimed.filter(|c| c.starts_with("sha256:")) {
            let actual = Digest::of_bytes(&bytes);
            if Digest::parse(&claimed).ok() != Some(actual) {
                return Err(RegistryError::Integrity(format!("manifest {repo}:{reference}: the registry says its digest is {claimed}, its bytes hash to {actual}")));
            }
        }
        Ok(Some(bytes))
    }

    /// Stores `bytes` as the manifest `reference`, byte for byte.
    pub fn put_manifest(&self, repo: &str, reference: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self.send(Method::PUT, &url, &[("Content-Type", MANIFEST_MEDIA_TYPE.to_string())], &Payload::Bytes(bytes))?;
        if resp.status() != 201 && resp.status() != 200 {
            return Err(status_error(&format!("storing manifest {repo}:{reference}"), resp));
        }
        let expected = Digest::of_bytes(bytes);
        if let Some(claimed) = resp.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            if Digest::parse(claimed).ok() != Some(expected) {
                return Err(RegistryError::Integrity(format!("manifest {repo}:{reference}: the registry stored digest {claimed}, the manifest is {expected} (it changed the bytes)")));
            }
        }
        Ok(())
    }

    /// Asks the registry to mount `digest` from repository `from` into `repo`.
    pub fn mount(&self, repo: &str, digest: &Digest, from: &str) -> Result<Mount, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/?mount={}&from={}", auth::query_encode(&digest.to_string()), auth::query_encode(from)));
        let resp = self.send(Method::POST, &url, &[], &Payload::Bytes(&[]))?;
        match resp.status().as_u16() {
            201 => Ok(Mount::Mounted),
            202 => Ok(Mount::Upload(self.location(&resp, &url)?)),
            _ => Err(status_error(&format!("mounting blob {digest} from {from}"), resp)),
        }
    }

    /// Starts an upload session in `repo`; returns its location.
    pub fn start_upload(&self, repo: &str) -> Result<String, RegistryError> {
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self.send(Method::POST, &url, &[], &Payload::Bytes(&[]))?;
        if resp.status() != 202 {
            return Err(status_error(&format!("starting an upload to {repo}"), resp));
        }
        self.location(&resp, &url)
    }

    /// Uploads the file `path` (`size` bytes, `digest`) to the session at `location`: one `PUT` for
    /// a small blob, `PATCH` chunks then a closing `PUT` for a large one. `sent` gets byte counts.
    pub fn upload(&self, mut location: String, digest: &Digest, path: &Path, size: u64, sent: &dyn Fn(u64)) -> Result<(), RegistryError> {
        let octet = ("Content-Type", "application/octet-stream".to_string());
        let what = format!("uploading blob {digest}");
        let mut offset = 0;
        if size > CHUNK_SIZE {
            while offset < size {
                let len = CHUNK_SIZE.min(size - offset);
                let range = ("Content-Range", format!("{offset}-{}", offset + len - 1));
                let base = offset;
                let progress = move |n: u64| sent(base + n);
                let resp = self.send(Method::PATCH, &location, &[octet.clone(), range], &Payload::File { path, offset, len, sent: &progress })?;
                if resp.status() != 202 {
                    return Err(status_error(&what, resp));
                }
                location = self.location(&resp, &location)?;
                offset += len;
            }
        }
        let put_url = format!("{location}{}digest={}", if location.contains('?') { '&' } else { '?' }, auth::query_encode(&digest.to_string()));
        let payload = if offset < size { Payload::File { path, offset, len: size - offset, sent } } else { Payload::Bytes(&[]) };
        let resp = self.send(Method::PUT, &put_url, &[octet], &payload)?;
        if resp.status() != 201 {
            return Err(status_error(&what, resp));
        }
        Ok(())
    }

    /// Uploads a small in-memory blob in one `PUT`.
    pub fn upload_bytes(&self, location: String, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
        let put_url = format!("{location}{}digest={}", if location.contains('?') { '&' } else { '?' }, auth::query_encode(&digest.to_string()));
        let resp = self.send(Method::PUT, &put_url, &[("Content-Type", "application/octet-stream".to_string())], &Payload::Bytes(bytes))?;
        if resp.status() != 201 {
            return Err(status_error(&format!("uploading blob {digest}"), resp));
        }
        Ok(())
    }

    fn location(&self, resp: &Response<Body>, url: &str) -> Result<String, RegistryError> {
        let loc = resp.headers().get("location").and_then(|v| v.to_str().ok()).ok_or_else(|| RegistryError::transport(url, "the registry started an upload without a Location"))?;
        Ok(if loc.starts_with('/') { self.url(loc) } else { loc.to_string() })
    }
}

/// Counts the bytes a request body has sent.
struct Counting<'a, R> {
    inner: R,
    sent: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.sent)(n as u64);
        Ok(n)
    }
}

fn content_length(resp: &Response<Body>) -> Option<u64> {
    resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// The system's CA certificates plus those in `ca_file`.
fn root_certs(ca_file: Option<&Path>) -> Result<RootCerts, RegistryError> {
    let mut certs: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs().certs.iter().map(|c| Certificate::from_der(c.as_ref()).to_owned()).collect();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| RegistryError::Config(format!("cannot read the CA file {}: {e}", path.display())))?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(PemItem::Certificate(c)) = item {
                certs.push(c.to_owned());
            }
        }
        if certs.len() == before {
            return Err(RegistryError::Config(format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())));
        }
    }
    Ok(RootCerts::new_with_certs(&certs))
}

fn transport_error(url: &str, e: ureq::Error, plain_http: bool) -> RegistryError {
    let text = e.to_string();
    let hint = if text.contains("certificate") || text.contains("UnknownIssuer") {
        format!("; if the registry uses a site CA, pass --ca-file CA.pem or set {CA_FILE_ENV}")
    } else if !plain_http && (text.contains("corrupt message") || text.contains("InvalidContentType") || text.contains("Protocol")) {
        "; if the registry serves plain HTTP, ask for it with --insecure (or an http:// registry address)".to_string()
    } else {
        String::new()
    };
    RegistryError::transport(url, format!("{text}{hint}"))
}

/// An error for an unexpected status, with the registry's own error text when it sent one.
pub(crate) fn status_error(what: &str, mut resp: Response<Body>) -> RegistryError {
    let status = resp.status().as_u16();
    let body = resp.body_mut().with_config().limit(64 << 10).read_to_vec().unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    let detail = match serde_json::from_slice::<Errors>(&body) {
        Ok(e) => e.errors.iter().map(|i| format!("{} {}", i.code.as_deref().unwrap_or(""), i.message.as_deref().unwrap_or("")).trim().to_string()).collect::<Vec<_>>().join("; "),
        Err(_) => String::from_utf8_lossy(&body).chars().take(200).collect::<String>().trim().to_string(),
    };
    RegistryError::Status { what: what.to_string(), status, detail: if detail.is_empty() { String::new() } else { format!(": {detail}") } }
}
