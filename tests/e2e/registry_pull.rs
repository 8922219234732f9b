//! "Pull from site registry", as a user goes: a real Docker Distribution registry on loopback
//! (Debian's docker-registry) seeded by `airlock push`; in the real window, Settings → the site
//! registry → Models → Pull → progress → the model in the list, verified in the store.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// The registry process, killed on drop.
struct Registry {
    child: Child,
    _storage: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_registry(port: u16) -> Registry {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, format!("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n", dir.path().join("storage").display())).unwrap();
    let child = Command::new("/usr/bin/docker-registry").arg("serve").arg(&config).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("docker-registry (scripts/deps.sh)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Registry { child, _storage: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_a_model_from_the_site_registry_on_the_models_page() {
    let _one_window = ONE_WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let model = std::env::var_os("AIRLOCK_TEST_MODEL").map(PathBuf::from).expect("AIRLOCK_TEST_MODEL must name the test model (scripts/test.sh sets it)");
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    let sb = Sandbox { store: p.join("store"), data: p.join("data"), config: p.join("config"), home: p.join("home"), bundle: p.join("unused"), public_key: p.join("unused.pub"), _root: root };
    std::fs::create_dir_all(&sb.home).unwrap();
    let port = free_port();
    let _registry = start_registry(port);
    let address = format!("http://127.0.0.1:{port}");
    let seed = sb.home.join("seed-store");
    let pushes = [vec!["import", model.to_str().unwrap(), "--name", "gemma3:270m", "--link"], vec!["push", "gemma3:270m"], vec!["cp", "gemma3:270m", "gemma3:second"], vec!["push", "gemma3:second"]];
    for args in pushes {
        let out = Command::new(cli()).args(&args).env("AIRLOCK_MODELS", &seed).env("AIRLOCK_REGISTRY", &address).env("DOCKER_CONFIG", sb.home.join(".docker")).output().unwrap();
        assert!(out.status.success(), "airlock {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    let driver = Driver::start(&sb);
    let (c, _) = driver.launch().await;
    click(&c, "[data-testid='nav-models']").await;
    assert!(c.find(Locator::Css("[data-testid='pull-form']")).await.is_err(), "a pull field without a configured registry");
    click(&c, "[data-testid='nav-settings']").await;
    // A new registry (plain HTTP here) is trusted only after a native confirmation: Cancel keeps none.
    let registry_input = wait_for(&c, "[data-testid='registry-input']").await;
    registry_input.send_keys(&address).await.unwrap();
    click(&c, "[data-testid='registry-save']").await;
    answer_confirmation("Use this site registry?", None);
    wait_until(&c, "the field is back to no registry", "return document.querySelector(\"[data-testid='registry-input']\").value === '';").await;
    registry_input.send_keys(&address).await.unwrap();
    click(&c, "[data-testid='registry-save']").await;
    answer_confirmation("Use this site registry?", Some("u"));
    wait_until(&c, "the registry is saved", "return document.body.innerText.includes('Saved.');").await;

    click(&c, "[data-testid='nav-models']").await;
    // A scheme in the name could downgrade the site registry: refused before any connection.
    let field = wait_for(&c, "[data-testid='pull-name']").await;
    field.send_keys("https://gemma3:270m").await.unwrap();
    click(&c, "[data-testid='pull-submit']").await;
    let refused = wait_for(&c, "[data-testid='pull-error']").await.text().await.unwrap();
    assert!(refused.contains("scheme"), "a name with a scheme is refused: {refused}");
    field.clear().await.unwrap();
    field.send_keys("gemma3:270m").await.unwrap();
    click(&c, "[data-testid='pull-submit']").await;
    let result = wait_for(&c, "[data-testid='pull-result']").await.text().await.unwrap();
    assert!(result.contains("Pulled gemma3:270m"), "{result}");
    wait_until(&c, "the model is listed", "return document.body.innerText.includes('gemma3:270m');").await;
    screenshot(&c, "models-pulled-from-registry").await;

    // The app's API server pulls from the app's registry under the app's signature policy: with
    // Settings at "require", a local client cannot pull the unsigned model the window could.
    click(&c, "[data-testid='nav-settings']").await;
    wait_for(&c, "[data-testid='signature-policy']").await.select_by_value("require").await.unwrap();
    let api_port = free_port();
    switch_api_server_on(&c, api_port, Some("a")).await;
    let refused = http_post(api_port, "/api/pull", r#"{"model":"gemma3:second","stream":false}"#);
    assert!(refused.starts_with("HTTP/1.1 400") && refused.contains("not signed"), "the app's server follows the app's policy: {refused}");
    let pushed = http_post(api_port, "/api/push", r#"{"model":"gemma3:270m","stream":false}"#);
    assert!(pushed.starts_with("HTTP/1.1 403"), "the app's server never pushes: {pushed}");
    c.close().await.unwrap();

    let verify = Command::new(cli()).arg("verify").env("AIRLOCK_MODELS", &sb.store).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let list = Command::new(cli()).args(["list", "--json"]).env("AIRLOCK_MODELS", &sb.store).output().unwrap();
    let seed_list = Command::new(cli()).args(["list", "--json"]).env("AIRLOCK_MODELS", &seed).output().unwrap();
    let id = |o: &std::process::Output| serde_json::from_slice::<Value>(&o.stdout).unwrap()[0]["id"].clone();
    assert_eq!(id(&list), id(&seed_list), "the same model ID as the seeding machine's");
}
