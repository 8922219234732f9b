//! `airlock push` / `pull` against a real Docker Distribution registry (Debian's `docker-registry`,
//! scripts/deps.sh) started by each test on a free loopback port, with its own storage folder and
//! config, and stopped afterwards.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use airlock::store::{Digest, Store};
use tempfile::TempDir;

use crate::common::*;
use crate::engine::store_with_real_model;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A registry process on 127.0.0.1:`port`, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    dir: TempDir,
    tls: Option<PathBuf>,
}

impl Registry {
    fn start() -> Self {
        Registry::start_with(None, None)
    }

    /// `tls`: (certificate, key) files; `htpasswd`: a bcrypt htpasswd file.
    fn start_with(tls: Option<(&Path, &Path, &Path)>, htpasswd: Option<&Path>) -> Self {
        assert!(Path::new(REGISTRY_BIN).is_file(), "{REGISTRY_BIN} missing: install Debian's docker-registry (scripts/deps.sh)");
        let dir = TempDir::new().unwrap();
        let port = free_port();
        let mut config = format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", dir.path().join("storage").display());
        if let Some((cert, key, _)) = tls {
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
        }
        if let Some(h) = htpasswd {
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: airlock-test\n    path: {}\n", h.display()));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let child = Command::new(REGISTRY_BIN).arg("serve").arg(&config_path).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start docker-registry");
        let reg = Registry { child, port, dir, tls: tls.map(|(_, _, ca)| ca.to_path_buf()) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }

    /// The address for AIRLOCK_REGISTRY: plain HTTP unless the registry has TLS.
    fn address(&self) -> String {
        match self.tls {
            Some(_) => format!("127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    fn blob_data(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir.path().join("storage/docker/registry/v2/blobs/sha256").join(&hex[..2]).join(&hex).join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the CLI against `store` with `env` on top of a clean registry environment (no docker
/// config of this machine's user, no inherited credentials).
fn cli(store: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let docker = store.parent().unwrap().join(format!("{}-docker", store.file_name().unwrap().to_string_lossy()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(args).env("AIRLOCK_MODELS", store).env("DOCKER_CONFIG", &docker).env("AIRLOCK_THREADS", "2");
    for k in ["AIRLOCK_REGISTRY", "AIRLOCK_REGISTRY_AUTH", "AIRLOCK_REGISTRY_TOKEN_SERVICE", "AIRLOCK_CA_FILE"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "command failed:\n{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// The store's manifests and blobs, ignoring staging and partial downloads.
fn store_proper(root: &Path) -> std::collections::BTreeMap<PathBuf, Digest> {
    store_files(root).into_iter().filter(|(p, _)| !p.starts_with(".airlock-pull")).collect()
}

fn two_models_sharing_weights() -> Vec<FixtureModel> {
    let a = FixtureModel::new("registry.ollama.ai/library/alpha/latest", 11);
    let mut b = FixtureModel::new("registry.ollama.ai/team/beta/v2", 12);
    b.blobs[1] = a.blobs[1].clone();
    vec![a, b]
}

fn store_with(models: &[FixtureModel]) -> TempDir {
    let (src, store) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    write_folder(src.path(), models);
    let out = cli(store.path(), &[], &["import", src.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    store
}

#[test]
fn push_then_pull_into_an_empty_store_gives_the_same_model_which_runs() {
    let reg = Registry::start();
    let env = [("AIRLOCK_REGISTRY", reg.address())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let seed = store_with_real_model();
    let pushed = json_of(&cli(seed.path(), &env, &["push", "gemma3:short", "--json"]));
    assert_eq!(pushed["blobs_uploaded"], 3, "{pushed}");

    let far = TempDir::new().unwrap();
    let pulled = json_of(&cli(far.path(), &env, &["pull", "gemma3:short", "--json"]));
    let local = Store::at(seed.path()).resolve("gemma3:short").unwrap();
    assert_eq!(pulled["id"], local.id.hex(), "same model ID on both sides");
    let remote = Store::at(far.path()).resolve("gemma3:short").unwrap();
    assert_eq!(remote.manifest_bytes, local.manifest_bytes, "manifest byte for byte");
    assert_eq!(pulled["blobs_downloaded"], 3);
    let verify = cli(far.path(), &[], &["verify"]);
    assert!(verify.status.success(), "verify: {}", stderr(&verify));
    assert!(!far.path().join(".airlock-staging").exists() && !far.path().join(".airlock-pull").exists(), "pull left temporary files");

    let answer = cli(far.path(), &[], &["run", "gemma3:short", "The sky is"]);
    assert!(answer.status.success(), "{}", stderr(&answer));
    assert!(!stdout(&answer).trim().is_empty(), "the pulled model answered nothing");

    // A second pull has everything already.
    let again = json_of(&cli(far.path(), &env, &["pull", "gemma3:short", "--json"]));
    assert_eq!((again["blobs_downloaded"].as_u64(), again["blobs_already_present"].as_u64()), (Some(0), Some(3)));
}

#[test]
fn a_second_push_uploads_nothing_and_a_model_sharing_the_weights_uploads_only_its_config() {
    let reg = Registry::start();
    let addr = reg.address();
    let env = [("AIRLOCK_REGISTRY", addr.as_str())];
    let store = store_with(&two_models_sharing_weights());
    let first = json_of(&cli(store.path(), &env, &["push", "alpha", "--json"]));
    assert_eq!((first["blobs_uploaded"].as_u64(), first["blobs_already_present"].as_u64()), (Some(2), Some(0)), "{first}");
    let second = json_of(&cli(store.path(), &env, &["push", "alpha", "--json"]));
    assert_eq!((second["blobs_uploaded"].as_u64(), second["blobs_already_present"].as_u64()), (Some(0), Some(2)), "{second}");
    // beta lives in another repository (team/beta): its weights are mounted from library/alpha.
    let beta = json_of(&cli(store.path(), &env, &["push", "team/beta:v2", "--json"]));
    assert_eq!((beta["blobs_uploaded"].as_u64(), beta["blobs_mounted"].as_u64(), beta["bytes_uploaded"].as_u64()), (Some(1), Some(1), Some(two_models_sharing_weights()[1].blobs[0].1.len() as u64)), "{beta}");

    let far = TempDir::new().unwrap();
    for name in ["alpha", "team/beta:v2"] {
        json_of(&cli(far.path(), &env, &["pull", name, "--json"]));
    }
    assert_store_consistent(far.path());
    assert_eq!(Store::at(far.path()).list().unwrap().0.len(), 2);
}

#[test]
fn a_blob_corrupted_in_the_registry_fails_the_pull_naming_the_digest_and_leaves_the_store_unchanged() {
    let reg = Registry::start();
    let addr = reg.address();
    let env = [("AIRLOCK_REGISTRY", addr.as_str())];
    let models = two_models_sharing_weights();
    let seed = store_with(&models[..1]);
    json_of(&cli(seed.path(), &env, &["push", "alpha", "--json"]));
    let weights = Digest::of_bytes(&models[0].blobs[1].1);
    let data = reg.blob_data(&weights);
    let mut f = fs::OpenOptions::new().write(true).open(&data).unwrap_or_else(|e| panic!("{}: {e}", data.display()));
    f.seek(SeekFrom::Start(40)).unwrap();
    f.write_all(b"\xff\xfe").unwrap();
    drop(f);

    // The far store already holds another model: it must come through untouched.
    let far = store_with(&[FixtureModel::new("registry.ollama.ai/library/other/latest", 13)]);
    let before = store_proper(far.path());
    let out = cli(far.path(), &env, &["pull", "alpha"]);
    assert!(!out.status.success(), "a corrupt blob was accepted");
    let err = stderr(&out);
    assert!(err.contains(&weights.to_string()) && err.contains("damaged"), "{err}");
    assert_eq!(store_proper(far.path()), before, "a refused pull changed the store");
    assert!(!far.path().join(".airlock-staging").exists(), "staging left behind");
    assert!(!far.path().join(".airlock-pull").join(format!("{}.partial", weights.hex())).exists(), "corrupt bytes kept for a resume");
    assert_store_consistent(far.path());
}

#[test]
fn a_pull_killed_mid_blob_resumes_and_ends_verified() {
    let reg = Registry::start();
    let addr = reg.address();
    let env = [("AIRLOCK_REGISTRY", addr.as_str())];
    let seed = store_with_real_model();
    json_of(&cli(seed.path(), &env, &["push", "gemma3:270m", "--json"]));
    let weights = Store::at(seed.path()).resolve("gemma3:270m").unwrap().manifest.layers[0].clone();

    let far = TempDir::new().unwrap();
    let partial = far.path().join(".airlock-pull").join(format!("{}.partial", weights.digest.hex()));
    let docker = TempDir::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["pull", "gemma3:270m"])
        .env("AIRLOCK_MODELS", far.path())
        .env("AIRLOCK_REGISTRY", &addr)
        .env("DOCKER_CONFIG", docker.path())
        .env_remove("AIRLOCK_REGISTRY_AUTH")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let got = loop {
        let len = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if len > 0 {
            child.kill().unwrap(); // SIGKILL
            break len;
        }
        assert!(child.try_wait().unwrap().is_none(), "the pull ended before it could be killed mid-blob");
        assert!(Instant::now() < deadline, "no bytes arrived");
        std::thread::sleep(Duration::from_millis(1));
    };
    child.wait().unwrap();
    assert!(got < weights.size, "killed too late to test a resume");
    assert!(Store::at(far.path()).list().unwrap().0.is_empty(), "a killed pull published a model");

    let again = json_of(&cli(far.path(), &env, &["pull", "gemma3:270m", "--json"]));
    let resumed = again["bytes_resumed"].as_u64().unwrap();
    assert!(resumed >= got, "the second pull did not resume: {again}");
    // The config blob (finished before the kill, but never published) comes again in full.
    let config = Store::at(seed.path()).resolve("gemma3:270m").unwrap().manifest.config.size;
    assert_eq!(again["bytes_downloaded"].as_u64().unwrap() + resumed, weights.size + config, "{again}");
    let verify = cli(far.path(), &[], &["verify"]);
    assert!(verify.status.success(), "verify after resume: {}", stderr(&verify));
    assert!(!partial.exists());
}

#[test]
fn signed_pushes_pull_with_require_signature_and_unsigned_ones_are_refused() {
    let reg = Registry::start();
    let addr = reg.address();
    let config = TempDir::new().unwrap();
    let cfg = config.path().to_str().unwrap();
    let env = [("AIRLOCK_REGISTRY", addr.as_str()), ("AIRLOCK_CONFIG", cfg)];
    let models = two_models_sharing_weights();
    let store = store_with(&models);
    let key = config.path().join("site");
    assert!(cli(store.path(), &env, &["keygen", "--out", key.to_str().unwrap(), "--unencrypted"]).status.success());
    assert!(cli(store.path(), &env, &["trust", "add", config.path().join("site.pub").to_str().unwrap()]).status.success());
    let signed = json_of(&cli(store.path(), &env, &["push", "alpha", "--sign", config.path().join("site.key").to_str().unwrap(), "--json"]));
    assert!(signed["signed_by"].is_string(), "{signed}");
    json_of(&cli(store.path(), &env, &["push", "team/beta:v2", "--json"]));

    let far = TempDir::new().unwrap();
    let pulled = json_of(&cli(far.path(), &env, &["pull", "alpha", "--require-signature", "--json"]));
    assert_eq!(pulled["signer"]["key_id"], signed["signed_by"], "{pulled}");
    let before = store_proper(far.path());
    let out = cli(far.path(), &env, &["pull", "team/beta:v2", "--require-signature"]);
    assert!(!out.status.success() && stderr(&out).contains("not signed"), "{}", stderr(&out));
    assert_eq!(store_proper(far.path()), before, "a refused pull changed the store");
}

#[test]
fn the_api_requires_a_signature_once_a_key_is_trusted_and_pushes_only_when_allowed() {
    let reg = Registry::start();
    let addr = reg.address();
    let config = TempDir::new().unwrap();
    let cfg = config.path().to_str().unwrap();
    let env = [("AIRLOCK_REGISTRY", addr.as_str()), ("AIRLOCK_CONFIG", cfg)];
    let store = store_with(&two_models_sharing_weights());
    let key = config.path().join("site");
    assert!(cli(store.path(), &env, &["keygen", "--out", key.to_str().unwrap(), "--unencrypted"]).status.success());
    json_of(&cli(store.path(), &env, &["push", "alpha", "--sign", config.path().join("site.key").to_str().unwrap(), "--json"]));
    json_of(&cli(store.path(), &env, &["push", "team/beta:v2", "--json"]));
    let pull = |port: u16, name: &str| crate::api::post(port, "/api/pull", &format!(r#"{{"model":"{name}","stream":false}}"#), "");
    // The server's stderr, for what it says as it starts.
    let serve = |args: &[&str]| {
        let log = config.path().join(format!("serve-{}.log", free_port()));
        let server = crate::api::serve_with_args(args, &env, false, fs::File::create(&log).unwrap().into());
        (server, log)
    };
    let said = |log: &Path| fs::read_to_string(log).unwrap();

    // No key trusted: nothing to require, and the server says so.
    let (open, log) = serve(&[]);
    assert_eq!(pull(open.port, "team/beta:v2").0, 200);
    assert!(said(&log).contains("accept unsigned models: no key is trusted here"), "{}", said(&log));
    drop(open);

    // Once a key is trusted, `airlock serve` requires a signature by default.
    assert!(cli(store.path(), &env, &["trust", "add", config.path().join("site.pub").to_str().unwrap()]).status.success());
    let (strict, log) = serve(&[]);
    assert!(said(&log).contains("require a signature by one of the 1 key(s) trusted here"), "{}", said(&log));
    let (status, body) = pull(strict.port, "team/beta:v2");
    assert!(status == 400 && body.contains("not signed"), "{status} {body}");
    assert!(store_proper(strict.store()).is_empty(), "a refused pull wrote something");
    let (status, body) = pull(strict.port, "alpha");
    assert_eq!(status, 200, "{body}");
    // Pushing through the API is off unless the operator turns it on.
    let (status, body) = crate::api::post(strict.port, "/api/push", r#"{"model":"alpha","stream":false}"#, "");
    assert!(status == 403 && body.contains("airlock serve --allow-push"), "{status} {body}");
    drop(strict);

    // An explicit policy lowers it, and the server says so; --allow-push turns pushing on.
    let (lowered, log) = serve(&["--signature", "off", "--allow-push"]);
    let notes = said(&log);
    assert!(notes.contains("accept models without a trusted signature (signature policy off), although 1 key(s) are trusted here"), "{notes}");
    assert!(notes.contains("/api/push is on"), "{notes}");
    assert_eq!(pull(lowered.port, "team/beta:v2").0, 200);
    let (status, body) = crate::api::post(lowered.port, "/api/push", r#"{"model":"team/beta:v2","stream":false}"#, "");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn tls_and_htpasswd_pull_works_with_the_site_ca_and_credentials_and_fails_clearly_without() {
    let certs = TempDir::new().unwrap();
    let (ca, cert, key) = make_ca_and_certificate(certs.path());
    let htpasswd = certs.path().join("htpasswd");
    let out = Command::new("htpasswd").args(["-Bbn", "alice", "correct-horse"]).output().expect("htpasswd (apache2-utils, scripts/deps.sh)");
    assert!(out.status.success());
    fs::write(&htpasswd, &out.stdout).unwrap();
    let reg = Registry::start_with(Some((&cert, &key, &ca)), Some(&htpasswd));
    let name = format!("127.0.0.1:{}/library/alpha:latest", reg.port);
    let ca_s = ca.to_str().unwrap();
    // AIRLOCK_REGISTRY_AUTH is for the site registry named beside it.
    let site = reg.address();

    let models = two_models_sharing_weights();
    let seed = store_with(&models[..1]);
    // The store names it alpha:latest; push it under the registry's full name.
    let pushed = cli(seed.path(), &[("AIRLOCK_REGISTRY", site.as_str()), ("AIRLOCK_REGISTRY_AUTH", "alice:correct-horse")], &["push", "alpha", &name, "--ca-file", ca_s, "--json"]);
    json_of(&pushed);

    let far = TempDir::new().unwrap();
    let no_ca = cli(far.path(), &[("AIRLOCK_REGISTRY", site.as_str()), ("AIRLOCK_REGISTRY_AUTH", "alice:correct-horse")], &["pull", &name]);
    assert!(!no_ca.status.success() && stderr(&no_ca).contains("--ca-file"), "{}", stderr(&no_ca));
    let no_creds = cli(far.path(), &[], &["pull", &name, "--ca-file", ca_s]);
    assert!(!no_creds.status.success() && stderr(&no_creds).contains("requires credentials"), "{}", stderr(&no_creds));
    let wrong = cli(far.path(), &[("AIRLOCK_REGISTRY", site.as_str()), ("AIRLOCK_REGISTRY_AUTH", "alice:wrong-password")], &["pull", &name, "--ca-file", ca_s]);
    let wrong_err = stderr(&wrong);
    assert!(!wrong.status.success() && wrong_err.contains("refused the credentials"), "{wrong_err}");
    assert!(!wrong_err.contains("wrong-password"), "a password was printed: {wrong_err}");
    assert!(Store::at(far.path()).list().unwrap().0.is_empty());

    // Credentials from a docker config.json (as `docker login` writes it), CA from the environment.
    let docker = far.path().parent().unwrap().join(format!("{}-docker", far.path().file_name().unwrap().to_string_lossy()));
    fs::create_dir_all(&docker).unwrap();
    let auth = base64_encode("alice:correct-horse");
    fs::write(docker.join("config.json"), format!(r#"{{"auths":{{"127.0.0.1:{}":{{"auth":"{auth}"}}}}}}"#, reg.port)).unwrap();
    let pulled = json_of(&cli(far.path(), &[("AIRLOCK_CA_FILE", ca_s)], &["pull", &name, "--json"]));
    assert_eq!(pulled["id"], Store::at(seed.path()).resolve("alpha").unwrap().id.hex());
    assert_store_consistent(far.path());
    fs::remove_dir_all(&docker).unwrap();
}

/// A CA, and a certificate for 127.0.0.1 signed by it, made with `openssl`.
fn make_ca_and_certificate(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    };
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Airlock test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n").unwrap();
    run(&["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf"]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The registry token flow against Distribution's own token verification: the registry answers
/// `401 Bearer realm=…,service=…,scope=…`; a token service (this test's, on loopback) checks the
/// Basic credentials and issues an RS256 JWT signed with `openssl`, which the registry verifies
/// against its root certificate bundle.
#[test]
fn bearer_token_auth_pushes_mounts_and_pulls_with_credentials_and_refuses_without() {
    let certs = TempDir::new().unwrap();
    let run = |args: &[&str]| assert!(Command::new("openssl").args(args).current_dir(certs.path()).output().unwrap().status.success(), "openssl {args:?}");
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "token.key", "-out", "token.pem", "-days", "2", "-subj", "/CN=airlock test token issuer"]);
    let token_port = free_port();
    let service = TokenService::start(token_port, certs.path().to_path_buf());
    let realm = format!("http://127.0.0.1:{token_port}/token");
    let reg = Registry::start_with_token_auth(&realm, &certs.path().join("token.pem"));
    let addr = reg.address();
    // The token service runs on another origin (port) than the registry: configured, so trusted.
    let service_origin = format!("http://127.0.0.1:{token_port}");

    let store = store_with(&two_models_sharing_weights());
    let good = [("AIRLOCK_REGISTRY", addr.as_str()), ("AIRLOCK_REGISTRY_TOKEN_SERVICE", service_origin.as_str()), ("AIRLOCK_REGISTRY_AUTH", "alice:correct-horse")];
    json_of(&cli(store.path(), &good, &["push", "alpha", "--json"]));
    let beta = json_of(&cli(store.path(), &good, &["push", "team/beta:v2", "--json"]));
    assert_eq!(beta["blobs_mounted"], 1, "mount across repositories with a two-scope token: {beta}");
    assert!(service.requests() >= 2, "the token service was not asked");

    let far = TempDir::new().unwrap();
    // Unless configured, a realm on another origin is refused before anything is sent there.
    let asked = service.requests();
    let unconfigured = cli(far.path(), &[("AIRLOCK_REGISTRY", addr.as_str()), ("AIRLOCK_REGISTRY_AUTH", "alice:correct-horse")], &["pull", "alpha"]);
    let said = stderr(&unconfigured);
    assert!(!unconfigured.status.success() && said.contains("refusing the token service") && said.contains("AIRLOCK_REGISTRY_TOKEN_SERVICE"), "{said}");
    assert_eq!(service.requests(), asked, "the unconfigured token service was contacted");
    let no_creds = cli(far.path(), &[("AIRLOCK_REGISTRY", addr.as_str()), ("AIRLOCK_REGISTRY_TOKEN_SERVICE", service_origin.as_str())], &["pull", "alpha"]);
    assert!(!no_creds.status.success() && stderr(&no_creds).contains("requires credentials"), "{}", stderr(&no_creds));
    let wrong = cli(far.path(), &[("AIRLOCK_REGISTRY", addr.as_str()), ("AIRLOCK_REGISTRY_TOKEN_SERVICE", service_origin.as_str()), ("AIRLOCK_REGISTRY_AUTH", "alice:nope")], &["pull", "alpha"]);
    assert!(!wrong.status.success() && stderr(&wrong).contains("refused the credentials") && !stderr(&wrong).contains("nope"), "{}", stderr(&wrong));
    let pulled = json_of(&cli(far.path(), &good, &["pull", "team/beta:v2", "--json"]));
    assert_eq!(pulled["id"], Store::at(store.path()).resolve("team/beta:v2").unwrap().id.hex());
    assert_store_consistent(far.path());
}

impl Registry {
    fn start_with_token_auth(realm: &str, root_cert: &Path) -> Self {
        let dir = TempDir::new().unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  token:\n    realm: {realm}\n    service: airlock-test\n    issuer: airlock-test-issuer\n    rootcertbundle: {}\n",
            dir.path().join("storage").display(),
            root_cert.display()
        );
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).unwrap();
        let child = Command::new(REGISTRY_BIN).arg("serve").arg(&config_path).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start docker-registry");
        let reg = Registry { child, port, dir, tls: None };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not start on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        reg
    }
}

/// A minimal registry token service (Docker's token spec) for one user, alice:correct-horse.
struct TokenService {
    _server: Loopback,
    count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenService {
    fn start(port: u16, dir: PathBuf) -> Self {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        let server = Loopback::start(port, move |request, conn, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let authorized = request.authorization() == Some(format!("Basic {}", base64_encode("alice:correct-horse")).as_str());
            let target = request.line.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if authorized { ("200 OK", format!(r#"{{"token":"{}"}}"#, jwt(&dir, target))) } else { ("401 Unauthorized", r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_string()) };
            let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        });
        TokenService { _server: server, count }
    }

    fn requests(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// An RS256 JWT granting every scope asked for in `target` (`/token?service=…&scope=…&scope=…`).
fn jwt(dir: &Path, target: &str) -> String {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let decode = |s: &str| -> String {
        let mut out = Vec::new();
        let bytes = s.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' && i + 2 < bytes.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let access: Vec<serde_json::Value> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("scope="))
        .map(decode)
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }))
        })
        .collect();
    let pem = fs::read_to_string(dir.join("token.pem")).unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "x5c": [der_b64] });
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({ "iss": "airlock-test-issuer", "sub": "alice", "aud": "airlock-test", "exp": now + 600, "nbf": now - 60, "iat": now, "jti": format!("{now}-{}", access.len()), "access": access });
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let mut child = Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(dir.join("token.key")).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(signing_input.as_bytes()).unwrap();
    let sig = child.wait_with_output().unwrap().stdout;
    format!("{signing_input}.{}", b64(&sig))
}

/// A request's line and headers, as a [`Loopback`] server read them.
#[derive(Clone, Debug)]
struct Recorded {
    line: String,
    headers: Vec<(String, String)>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }
}

/// A loopback HTTP server for one test, on `port` (0: any free one): each connection gets its own
/// thread, which reads the request's line and headers and hands them, the connection and the
/// server's stop flag to `answer`. Stops accepting when dropped.
struct Loopback {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

type Answer = dyn Fn(Recorded, &mut TcpStream, &std::sync::atomic::AtomicBool) + Send + Sync;

impl Loopback {
    fn start(port: u16, answer: impl Fn(Recorded, &mut TcpStream, &std::sync::atomic::AtomicBool) + Send + Sync + 'static) -> Self {
        use std::io::{BufRead, BufReader};
        use std::sync::atomic::Ordering;
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let answer: Arc<Answer> = Arc::new(answer);
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let (answer, stopping) = (answer.clone(), stopping.clone());
                std::thread::spawn(move || {
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut headers = Vec::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            headers.push((k.trim().to_string(), v.trim().to_string()));
                        }
                    }
                    let request = Recorded { line: line.trim().to_string(), headers };
                    // Read the body to its end, so the client is not cut off while it sends.
                    let len = request.header("content-length").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                    let _ = std::io::copy(&mut std::io::Read::take(&mut reader, len), &mut std::io::sink());
                    answer(request, &mut conn, &stopping);
                });
            }
        });
        Loopback { port, stop }
    }

    fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A [`Loopback`] server that records every request and answers each with `respond`'s status line
/// and headers (no body), closing the connection.
struct Recorder {
    server: Loopback,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Recorded>>>,
}

impl Recorder {
    fn start(respond: impl Fn(&Recorded) -> String + Send + Sync + 'static) -> Self {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = seen.clone();
        let server = Loopback::start(0, move |request, conn, _| {
            let answer = respond(&request);
            kept.lock().unwrap().push(request);
            let _ = conn.write_all(format!("{answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes());
        });
        Recorder { server, seen }
    }

    fn port(&self) -> u16 {
        self.server.port
    }

    fn origin(&self) -> String {
        self.server.origin()
    }

    fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }
}

#[test]
fn credentials_go_only_to_the_registry_and_origin_they_were_given_for() {
    const SECRET: &str = "alice:site-secret";
    let store = store_with(&two_models_sharing_weights()[..1]);
    let basic = |_: &Recorded| "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"registry\"".to_string();
    let no_credential = |who: &str, r: &Recorder| {
        let seen = r.seen();
        assert!(seen.iter().all(|q| q.authorization().is_none()), "{who} saw a credential: {seen:?}");
        seen.len()
    };

    // AIRLOCK_REGISTRY_AUTH is the site registry's: another registry asking for credentials
    // does not get them, and the error says where that registry's own belong.
    let site = Recorder::start(basic);
    let other = Recorder::start(basic);
    let env = [("AIRLOCK_REGISTRY", site.origin()), ("AIRLOCK_REGISTRY_AUTH", SECRET.to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cli(store.path(), &env, &["pull", &format!("127.0.0.1:{}/library/x:1", other.port()), "--insecure"]);
    let said = stderr(&out);
    assert!(!out.status.success() && said.contains("holds the site registry") && said.contains("docker login"), "{said}");
    assert!(no_credential("another registry", &other) > 0, "the other registry was asked");
    assert!(site.seen().is_empty());

    // A Bearer challenge naming a token service on another origin: refused before any request.
    let token_service = Recorder::start(|_| "HTTP/1.1 200 OK\r\nContent-Type: application/json".to_string());
    let realm = format!("{}/token", token_service.origin());
    let site = Recorder::start(move |_| format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"{realm}\",service=\"registry\",scope=\"repository:library/x:pull\""));
    let env = [("AIRLOCK_REGISTRY", site.origin()), ("AIRLOCK_REGISTRY_AUTH", SECRET.to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cli(store.path(), &env, &["pull", "x:1"]);
    let said = stderr(&out);
    assert!(!out.status.success() && said.contains(&format!("refusing the token service {}", token_service.origin())), "{said}");
    assert_eq!(no_credential("the foreign token service", &token_service), 0);

    // An upload the registry points at another origin goes there without the credentials, and
    // that origin's challenge is not answered.
    let elsewhere = Recorder::start(basic);
    let upload_at = format!("{}/uploads/1", elsewhere.origin());
    let site = Recorder::start(move |r| match (r.authorization(), r.line.starts_with("POST")) {
        (None, _) => "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"registry\"".to_string(),
        (Some(_), true) => format!("HTTP/1.1 202 Accepted\r\nLocation: {upload_at}"),
        (Some(_), false) => "HTTP/1.1 404 Not Found".to_string(),
    });
    let env = [("AIRLOCK_REGISTRY", site.origin()), ("AIRLOCK_REGISTRY_AUTH", SECRET.to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = cli(store.path(), &env, &["push", "alpha"]);
    let said = stderr(&out);
    assert!(!out.status.success() && said.contains(&format!("credentials are sent to {} only", site.origin())), "{said}");
    assert!(!said.contains("site-secret"), "{said}");
    assert!(site.seen().iter().any(|r| r.authorization().is_some()), "the site registry itself got its credentials");
    assert!(no_credential("the upload's other origin", &elsewhere) > 0, "the upload went there");
}

/// A registry written for one test, serving `library/x:1`: `manifest` and the blobs in `blobs`.
/// A blob is sent up to `stall_after` bytes, then nothing more while the connection stays open;
/// a resumed (`Range`) request gets its headers and then nothing. Every connection has its own
/// thread, so a stalled one holds up no other.
struct FakeRegistry {
    server: Loopback,
    blob_requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeRegistry {
    fn start(manifest: Vec<u8>, blobs: Vec<Vec<u8>>, stall_after: usize) -> Self {
        use std::sync::atomic::Ordering;
        let blob_requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let requests = blob_requests.clone();
        let server = Loopback::start(0, move |request, conn, stopping| {
            let path = request.line.split_whitespace().nth(1).unwrap_or("").to_string();
            let blob = blobs.iter().find(|b| path.ends_with(&format!("/blobs/{}", Digest::of_bytes(b))));
            if path == "/v2/library/x/manifests/1" {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", airlock::store::manifest::MANIFEST_MEDIA_TYPE, manifest.len());
                let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&manifest));
            } else if let Some(blob) = blob {
                requests.fetch_add(1, Ordering::Relaxed);
                let ranged = request.header("range").is_some();
                let sent = if ranged { 0 } else { stall_after.min(blob.len()) };
                let head = if ranged {
                    let from = blob.len() / 2;
                    format!("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {from}-{}/{}\r\nContent-Length: {}\r\n\r\n", blob.len() - 1, blob.len(), blob.len() - from)
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", blob.len())
                };
                let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(&blob[..sent]));
                if sent < blob.len() {
                    // Stalled: the connection stays open and silent.
                    while !stopping.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            } else {
                let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        FakeRegistry { server, blob_requests }
    }
}

#[test]
fn a_stalled_registry_fails_the_pull_within_the_timeout_and_frees_the_blob_for_the_next_pull() {
    // A layer of 1 MiB (never completed, so never parsed) sent up to half, then stalled.
    let layer: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let model = FixtureModel { manifest_path: "x".into(), blobs: vec![(airlock::store::manifest::CONFIG_MEDIA_TYPE.into(), b"{}".to_vec()), (airlock::store::manifest::MEDIA_MODEL.into(), layer.clone())] };
    let registry = FakeRegistry::start(model.manifest_bytes(), model.blobs.iter().map(|(_, b)| b.clone()).collect(), layer.len() / 2);
    let config = TempDir::new().unwrap();
    let address = registry.server.origin();
    let env = [("AIRLOCK_REGISTRY", address.as_str()), ("AIRLOCK_REGISTRY_TIMEOUT", "2"), ("AIRLOCK_CONFIG", config.path().to_str().unwrap())];
    let server = crate::api::serve(&env, false);
    for attempt in ["first", "second"] {
        let started = Instant::now();
        let (status, body) = crate::api::post(server.port, "/api/pull", r#"{"model":"x:1","stream":false}"#, "");
        let took = started.elapsed();
        // The second pull is not told another pull holds the blob: the first let go of it.
        assert!(status == 502 && body.contains("the registry sent nothing for 2 s (it stalled)") && body.contains("pull again to resume"), "{attempt}: {status} {body}");
        assert!(took < Duration::from_secs(30), "{attempt} pull took {took:?}");
        println!("{attempt} pull of a stalled registry failed after {:.1} s: {body}", took.as_secs_f64());
    }
    assert!(registry.blob_requests.load(std::sync::atomic::Ordering::Relaxed) >= 2);
    let partial = server.store().join(".airlock-pull").join(format!("{}.partial", Digest::of_bytes(&layer).hex()));
    assert_eq!(fs::metadata(&partial).unwrap().len(), layer.len() as u64 / 2, "what arrived is kept for a resume");
    assert!(Store::at(server.store()).list().unwrap().0.is_empty(), "nothing was published");
}

#[test]
fn a_model_larger_than_the_free_disk_is_refused_before_a_byte_is_fetched() {
    // The manifest declares a layer of 1 PiB beside a config of 2 bytes.
    let config = b"{}".to_vec();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{{"mediaType":"{}","digest":"sha256:{}","size":{}}}]}}"#,
        airlock::store::manifest::MANIFEST_MEDIA_TYPE,
        airlock::store::manifest::CONFIG_MEDIA_TYPE,
        Digest::of_bytes(&config),
        airlock::store::manifest::MEDIA_MODEL,
        "ab".repeat(32),
        1u64 << 50
    );
    let registry = FakeRegistry::start(manifest.into_bytes(), vec![config], usize::MAX);
    let address = registry.server.origin();
    let config_dir = TempDir::new().unwrap();
    let env = [("AIRLOCK_REGISTRY", address.as_str()), ("AIRLOCK_CONFIG", config_dir.path().to_str().unwrap())];
    let server = crate::api::serve(&env, false);
    let (status, body) = crate::api::post(server.port, "/api/pull", r#"{"model":"x:1","stream":false}"#, "");
    assert!(status == 507 && body.contains(&format!("{} bytes are needed", (1u64 << 50) + 2)) && body.contains("free some disk space"), "{status} {body}");
    let far = TempDir::new().unwrap();
    let out = cli(far.path(), &[("AIRLOCK_REGISTRY", address.as_str())], &["pull", "x:1"]);
    assert!(!out.status.success() && stderr(&out).contains("bytes are needed"), "{}", stderr(&out));
    assert_eq!(registry.blob_requests.load(std::sync::atomic::Ordering::Relaxed), 0, "no blob was fetched");
    assert!(!server.store().join(".airlock-pull").exists() && !far.path().join(".airlock-pull").exists());
}
