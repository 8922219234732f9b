//! End to end: the real `airlock-desktop` window under Xvfb, driven through `tauri-driver` and
//! `WebKitWebDriver`, on the real test model. scripts/test.sh starts Xvfb, installs tauri-driver
//! and fetches the model; run alone with
//! `DISPLAY=:99 AIRLOCK_TEST_MODEL=… AIRLOCK_BIN=target/release/airlock
//! AIRLOCK_DESKTOP_BIN=target/release/airlock-desktop cargo test -p airlock-e2e -- --nocapture`.
//!
//! One test, as a user goes: empty store → every file dialog opens for real (GTK, answered with
//! `xdotool` as a person types: Ctrl+L, the path, Return; or Escape) and the window keeps
//! answering while it is open and after → Import bundle… through the dialog → progress, then the
//! model in the list (and Export… through the save dialog, and a signature policy that refuses it) → Hardware shows the CPU and why there
//! is no GPU → Chat: a reply streams in, Stop works, a killed model process shows an error and
//! Retry answers → Settings: the API server comes up → the app is killed with a draft typed →
//! restart: the conversation and the draft are still there. Paths typed into the window, trusting
//! a key and a weaker signature policy go through the app's native confirmations, answered
//! Cancel (nothing changes) and OK (it goes ahead). Screenshots of each page are written, and the
//! figures the issue asks for are printed (never asserted: machines here are noisy).

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// The binaries under test, built by `cargo build` as a user builds them (scripts/test.sh).
fn built(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| panic!("{variable} must name the built binary (scripts/test.sh sets it)"))
}

/// The CLI, for the connected side's steps and checks.
fn cli() -> String {
    built("AIRLOCK_BIN")
}

/// The app under test.
fn app_binary() -> String {
    built("AIRLOCK_DESKTOP_BIN")
}

/// Whether the binaries under test carry ggml's Vulkan module (`airlock --version` lists it).
fn built_with_vulkan() -> bool {
    let out = Command::new(cli()).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("GPU backends:") && l.to_ascii_lowercase().contains("vulkan"))
}
const WAIT: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn tool(name: &str) -> PathBuf {
    let home_bin = dirs::home_dir().unwrap_or_default().join(".cargo/bin").join(name);
    if home_bin.is_file() {
        return home_bin;
    }
    PathBuf::from(name)
}

/// Everything the app sees: an empty store, its own data and config, and a home folder (where
/// the file dialogs start).
struct Sandbox {
    _root: tempfile::TempDir,
    store: PathBuf,
    data: PathBuf,
    config: PathBuf,
    home: PathBuf,
    bundle: PathBuf,
    /// A minisign public key to trust through the key dialog.
    public_key: PathBuf,
}

impl Sandbox {
    /// Makes a bundle folder of the test model with the CLI (the connected side's job).
    fn new(model: &Path) -> Self {
        let root = tempfile::tempdir().unwrap();
        let p = root.path();
        let (store, data, config, home, bundle) = (p.join("store"), p.join("data"), p.join("config"), p.join("home"), p.join("bundle"));
        std::fs::create_dir_all(&home).unwrap();
        let packer = p.join("packer-store");
        let run = |args: &[&str]| {
            let out = Command::new(cli()).args(args).env("AIRLOCK_MODELS", &packer).env("AIRLOCK_CONFIG", &config).output().unwrap();
            assert!(out.status.success(), "airlock {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&["import", model.to_str().unwrap(), "--name", "gemma3:270m"]);
        run(&["export", "gemma3:270m", "--out", bundle.to_str().unwrap()]);
        let key = p.join("friend");
        run(&["keygen", "--unencrypted", "--out", key.to_str().unwrap()]);
        Sandbox { _root: root, store, data, config, home, bundle, public_key: key.with_extension("pub") }
    }
}

/// tauri-driver on a free port, with the app's environment; on drop, it and everything it
/// started (WebKitWebDriver, an app left running) are killed as one process group.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(sb: &Sandbox) -> Self {
        Self::start_with(sb, &[])
    }

    /// With `env` added to the app's environment.
    fn start_with(sb: &Sandbox, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = Command::new(tool("tauri-driver"))
            .envs(env.iter().copied())
            .args(["--port", &port.to_string(), "--native-port", &free_port().to_string()])
            .env("AIRLOCK_MODELS", &sb.store)
            .env("AIRLOCK_CONFIG", &sb.config)
            .env("HOME", &sb.home)
            // GTK's file chooser saves its settings through GSettings; without a session bus
            // (Xvfb here) dconf would warn on every change.
            .env("GSETTINGS_BACKEND", "memory")
            .env("XDG_DATA_HOME", &sb.data)
            .env("AIRLOCK_THREADS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("tauri-driver not found: `cargo install tauri-driver --locked` (scripts/test.sh does)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tauri-driver did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }

    /// Starts the app (a WebDriver session) and waits until its UI is ready; returns the
    /// client and the milliseconds from asking for the window to the UI being interactive.
    async fn launch(&self) -> (Client, f64) {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("wry"));
        caps.insert("tauri:options".into(), json!({ "application": app_binary() }));
        let started = Instant::now();
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("WebDriver session (is DISPLAY set and Xvfb running? is webkit2gtk-driver installed?)");
        wait_for(&client, "[data-ready='true']").await;
        (client, started.elapsed().as_secs_f64() * 1e3)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        unsafe { libc::kill(group, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(300));
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

async fn wait_for(c: &Client, css: &str) -> Element {
    wait_for_within(c, css, WAIT).await
}

/// [`wait_for`] with a longer limit, for work that grows with a loaded machine (a kit's copy).
async fn wait_for_within(c: &Client, css: &str, limit: Duration) -> Element {
    match c.wait().at_most(limit).every(Duration::from_millis(50)).for_element(Locator::Css(css)).await {
        Ok(e) => e,
        Err(e) => {
            let page = c.execute("return document.body.innerText;", vec![]).await.map(|v| v.as_str().unwrap_or_default().to_string()).unwrap_or_default();
            panic!("waiting for {css}: {e}\nthe window shows:\n{page}")
        }
    }
}

async fn click(c: &Client, css: &str) {
    wait_for(c, css).await.click().await.unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

/// Clicks Stop if a reply is still streaming (it may end by itself at any moment); returns
/// whether it did.
async fn click_stop(c: &Client) -> bool {
    let clicked = c.execute("const b = document.querySelector(\"[data-testid='stop']\"); if (b) b.click(); return !!b;", vec![]).await.unwrap();
    clicked == json!(true)
}

/// Polls a script until it returns `true`.
async fn wait_until(c: &Client, what: &str, script: &str) {
    wait_until_within(c, what, script, WAIT).await
}

/// [`wait_until`] with a longer limit, for work that slows down with a loaded machine.
async fn wait_until_within(c: &Client, what: &str, script: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if c.execute(script, vec![]).await.unwrap() == json!(true) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    let dir = std::env::var_os("AIRLOCK_SCREENSHOT_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    println!("screenshot: {}", dir.join(format!("{name}.png")).display());
}

/// A plain HTTP GET on loopback; the whole response.
fn http_get(port: u16, path: &str) -> String {
    http(port, &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"))
}

fn http_post(port: u16, path: &str, body: &str) -> String {
    http(port, &format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()))
}

/// Sends a raw request to the app's API on loopback; returns the whole response.
fn http(port: u16, raw: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    conn.write_all(raw.as_bytes()).unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    response
}

/// On the Settings page: ticks the API server's switch, sets `port`, applies, and answers the
/// native confirmation (`proceed`: its button's mnemonic, `None`: Cancel). Once answered OK, waits
/// until the server runs.
async fn switch_api_server_on(c: &Client, port: u16, proceed: Option<&str>) {
    let enabled = wait_for(c, "[data-testid='api-enabled']").await;
    if !enabled.is_selected().await.unwrap() {
        enabled.click().await.unwrap();
    }
    let port_field = wait_for(c, "[data-testid='api-port']").await;
    port_field.clear().await.unwrap();
    port_field.send_keys(&port.to_string()).await.unwrap();
    click(c, "[data-testid='api-apply']").await;
    answer_confirmation("Allow programs to use the API?", proceed);
    if proceed.is_some() {
        wait_until(c, "the API server runs", &format!("return document.querySelector(\"[data-testid='api-status']\").textContent.includes('127.0.0.1:{port}');")).await;
    }
}

/// The app's processes started by this test, by kind: "app" (`airlock-desktop`), "webkit" (its
/// web and network processes), "runner" (the model process). WebKitWebDriver is the test's.
fn app_processes(sandbox_data: &Path) -> Vec<(u32, &'static str)> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let ours = environ.split(|b| *b == 0).any(|kv| kv == format!("XDG_DATA_HOME={}", sandbox_data.display()).as_bytes());
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        let name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let is_runner = cmdline.split(|b| *b == 0).nth(1) == Some(b"runner".as_slice());
        let kind = match name.as_str() {
            _ if !ours => continue,
            "WebKitWebDriver" => continue,
            n if n.starts_with("airlock-desktop") && is_runner => "runner",
            n if n.starts_with("airlock-desktop") => "app",
            n if n.starts_with("WebKit") => "webkit",
            _ => continue,
        };
        pids.push((pid, kind));
    }
    pids
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// Addresses of every TCP socket a process holds (from /proc/net/tcp{,6} by socket inode).
fn tcp_endpoints(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).filter_map(|l| l.to_string_lossy().strip_prefix("socket:[").map(|s| s.trim_end_matches(']').to_string())).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && inodes.iter().any(|i| i == f[9]) {
                out.push(format!("{} {}", f[1], f[2]));
            }
        }
    }
    out
}

/// A /proc/net/tcp address (hex IP:port) is loopback (127.0.0.0/8, ::1, ::ffff:127.x) or unset.
fn is_loopback_or_unset(hex: &str) -> bool {
    let ip = hex.split(':').next().unwrap_or_default();
    match ip.len() {
        8 => ip.ends_with("7F") || ip == "00000000",
        32 => ip == "00000000000000000000000001000000" || ip == "00000000000000000000000000000000" || (ip.starts_with("0000000000000000FFFF0000") && ip.ends_with("7F")),
        _ => false,
    }
}

// ---- Native dialogs, answered as a person would (xdotool sends real X key events) -----------

fn xdotool(args: &[&str]) -> String {
    let out = Command::new("xdotool").args(args).output().expect("xdotool (Debian package xdotool) is needed to answer the GTK dialogs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The X windows whose title contains `title` and that are on screen.
fn windows_titled(title: &str) -> Vec<String> {
    // xdotool matches a regular expression: the title's punctuation is meant literally.
    let pattern: String = title.chars().flat_map(|c| if c.is_ascii_punctuation() { vec!['\\', c] } else { vec![c] }).collect();
    xdotool(&["search", "--onlyvisible", "--name", &pattern]).split_whitespace().map(str::to_owned).collect()
}

/// Waits for the one dialog titled `title` to appear; returns its window.
fn wait_for_dialog(title: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(w) = windows_titled(title).pop() {
            // Let GTK map and focus its widgets before keys arrive.
            std::thread::sleep(Duration::from_millis(500));
            return w;
        }
        if Instant::now() >= deadline {
            let shown: Vec<String> = windows_titled("").iter().map(|w| xdotool(&["getwindowname", w]).trim().to_string()).collect();
            panic!("no dialog titled {title:?} appeared; windows on screen: {shown:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_dialog_gone(title: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !windows_titled(title).is_empty() {
        assert!(Instant::now() < deadline, "the dialog {title:?} did not close");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Answers the open dialog `window`: types `path` into GTK's location field (Ctrl+L, or the name
/// field of a save dialog) and presses Return; `None` presses Escape (cancel).
fn answer_dialog(window: &str, title: &str, path: Option<&Path>) {
    xdotool(&["windowfocus", "--sync", window]);
    match path {
        Some(p) => {
            xdotool(&["key", "--clearmodifiers", "ctrl+l"]);
            std::thread::sleep(Duration::from_millis(200));
            xdotool(&["key", "--clearmodifiers", "ctrl+a"]);
            // A folder is typed as GTK completes it, with a trailing slash.
            let typed = if p.is_dir() { format!("{}/", p.display()) } else { p.display().to_string() };
            xdotool(&["type", "--delay", "5", &typed]);
            std::thread::sleep(Duration::from_millis(300));
            xdotool(&["key", "--clearmodifiers", "Return"]);
            // In a folder chooser the first Return may only open the typed folder; a person
            // presses it again to choose it.
            std::thread::sleep(Duration::from_millis(1500));
            if !windows_titled(title).is_empty() {
                xdotool(&["key", "--clearmodifiers", "Return"]);
            }
        }
        None => {
            xdotool(&["key", "--clearmodifiers", "Escape"]);
        }
    }
    wait_for_dialog_gone(title);
}

/// Answers the app's native confirmation titled `title`: `Some(key)` presses the button that
/// goes ahead by its mnemonic (Alt+key, as GTK labels it `_Import`), `None` presses Escape
/// (Cancel), as a person would.
fn answer_confirmation(title: &str, proceed: Option<&str>) {
    let window = wait_for_dialog(title);
    xdotool(&["windowfocus", "--sync", &window]);
    match proceed {
        Some(key) => xdotool(&["key", "--clearmodifiers", &format!("alt+{key}")]),
        None => xdotool(&["key", "--clearmodifiers", "Escape"]),
    };
    wait_for_dialog_gone(title);
    println!("confirmation {title:?} answered {}", if proceed.is_some() { "OK" } else { "Cancel" });
}

/// The window's web view answers a script within a second: its event loop is not blocked (a
/// dialog waited for on the main thread freezes it for good). Returns the milliseconds taken.
async fn assert_answers(c: &Client, after: &str) -> f64 {
    let t = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(1), c.execute("return document.readyState;", vec![])).await;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(matches!(answer, Ok(Ok(_))), "the window did not answer within a second {after}");
    ms
}

/// Navigates to `page` and back to where the test was: the window reacts to clicks after `after`.
async fn assert_navigates(c: &Client, page: &str, back: &str, after: &str) {
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), async {
        click(c, &format!("[data-testid='nav-{page}']")).await;
        wait_for(c, &format!("[data-testid='page-{page}']")).await;
        click(c, &format!("[data-testid='nav-{back}']")).await;
        wait_for(c, &format!("[data-testid='page-{back}']")).await;
    })
    .await
    .unwrap_or_else(|_| panic!("the window did not react to navigation {after}"));
    println!("navigation {after}: {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
}

/// Opens a dialog by clicking `button`, checks the window still answers while it is open, and
/// answers it with `path` (or cancels); then checks the window answers again.
async fn through_dialog(c: &Client, button: &str, title: &str, path: Option<&Path>) {
    click(c, button).await;
    let window = wait_for_dialog(title);
    let open_ms = assert_answers(c, &format!("while the dialog {title:?} is open")).await;
    answer_dialog(&window, title, path);
    let after_ms = assert_answers(c, &format!("after the dialog {title:?} closed")).await;
    println!("dialog {title:?}: the window answered in {open_ms:.0} ms while open, {after_ms:.0} ms after ({})", if path.is_some() { "answered by typing" } else { "cancelled" });
}

/// One app window at a time: the tests type into GTK dialogs with xdotool, which a second window
/// taking the focus would steal.
pub(crate) static ONE_WINDOW: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_hardware_chat_and_restart() {
    let _one_window = ONE_WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let model = std::env::var_os("AIRLOCK_TEST_MODEL").map(PathBuf::from).expect("AIRLOCK_TEST_MODEL must name the test model (scripts/test.sh sets it)");
    assert!(std::env::var_os("DISPLAY").is_some(), "DISPLAY must name a running X server (scripts/test.sh starts Xvfb :99)");
    let sb = Sandbox::new(&model);
    let driver = Driver::start(&sb);

    // ---- First start: an empty store.
    let (c, start_ms) = driver.launch().await;
    polish_steps::first_run(&c, &sb.store).await;
    click(&c, "[data-testid='nav-models']").await;
    assert!(c.find_all(Locator::Css("[data-testid='model-row']")).await.unwrap().is_empty(), "the store starts empty");

    // Import file…, cancelled: the page is as it was, and the window still reacts.
    through_dialog(&c, "[data-testid='import-file']", "Import a bundle (.zip", None).await;
    assert!(c.find_all(Locator::Css("[data-testid='model-row']")).await.unwrap().is_empty(), "a cancelled dialog imports nothing");
    for gone in ["import-progress", "import-result", "import-error", "action-error"] {
        assert!(c.find_all(Locator::Css(&format!("[data-testid='{gone}']"))).await.unwrap().is_empty(), "nothing shown after a cancel ({gone})");
    }
    assert_navigates(&c, "hardware", "models", "after a cancelled dialog").await;

    // A path typed into the field (as a page showing model output could write it) is read only
    // after the app's own dialog, naming it, says yes: Cancel there, and nothing is imported.
    wait_for(&c, "[data-testid='import-path']").await.send_keys(sb.bundle.to_str().unwrap()).await.unwrap();
    click(&c, "[data-testid='import-path-submit']").await;
    wait_for_dialog("Import from a typed path?");
    assert_answers(&c, "while the confirmation is open").await;
    answer_confirmation("Import from a typed path?", None);
    let declined = wait_for(&c, "[data-testid='import-result']").await.text().await.unwrap();
    assert!(declined.contains("Nothing was imported"), "a declined typed path imports nothing: {declined}");
    assert!(c.find_all(Locator::Css("[data-testid='model-row']")).await.unwrap().is_empty(), "the store is still empty");

    // Import bundle…, clicked twice in a row: one dialog. The bundle folder is typed into it.
    click(&c, "[data-testid='import-bundle']").await;
    let _ = c.execute("document.querySelector(\"[data-testid='import-bundle']\").click(); return true;", vec![]).await;
    let title = "Import a folder";
    let window = wait_for_dialog(title);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(windows_titled(title).len(), 1, "two clicks open one dialog");
    assert_answers(&c, "while the import dialog is open").await;
    answer_dialog(&window, title, Some(&sb.bundle));
    println!("import dialog answered by typing {}", sb.bundle.display());
    let mut saw_progress = false;
    let deadline = Instant::now() + WAIT;
    loop {
        if !c.find_all(Locator::Css("[data-testid='import-progress']")).await.unwrap().is_empty() {
            saw_progress = true;
        }
        if !c.find_all(Locator::Css("[data-testid='import-result']")).await.unwrap().is_empty() {
            break;
        }
        if let Ok(e) = c.find(Locator::Css("[data-testid='import-error']")).await {
            panic!("import failed: {}", e.text().await.unwrap());
        }
        assert!(Instant::now() < deadline, "the import did not finish");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let result = wait_for(&c, "[data-testid='import-result']").await.text().await.unwrap();
    assert!(result.contains("gemma3:270m"), "the result names the model: {result}");
    let row = wait_for(&c, "[data-testid='model-row'][data-name='gemma3:270m']").await;
    let row_text = row.text().await.unwrap();
    assert!(row_text.contains("Q4_K_M") && row_text.contains("268"), "the list shows quantisation and parameters: {row_text}");
    println!("import progress panel seen: {saw_progress}");
    assert_navigates(&c, "hardware", "models", "after the import dialog").await;
    screenshot(&c, "models").await;
    library_steps::import_folder(&c, &sb.home, &sb.store).await;

    // The store folder opens in the file manager (or says why not) without blocking the window.
    click(&c, "[data-testid='open-store']").await;
    assert_answers(&c, "after Open store folder").await;

    // Export… the model to a zip named in the save dialog (the key and folder dialogs open and
    // are cancelled), then require signatures in Settings: the same, unsigned bundle is now
    // refused with a reason.
    let zip = sb.bundle.with_file_name("exported.zip");
    click(&c, "[data-testid='export-open']").await;
    let choice = wait_for(&c, "[data-testid='export-model'][value='gemma3:270m']").await;
    if !choice.is_selected().await.unwrap() {
        choice.click().await.unwrap();
    }
    through_dialog(&c, "[data-testid='export-pick-key']", "Sign with a secret key", None).await;
    through_dialog(&c, "[data-testid='export-pick-folder']", "Export to a new bundle folder", None).await;
    through_dialog(&c, "[data-testid='export-pick-file']", "Export to a .zip", Some(&zip)).await;
    let out = wait_for(&c, "[data-testid='export-out']").await.prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(out, zip.to_str().unwrap(), "the save dialog's answer fills the output path");
    click(&c, "[data-testid='export-start']").await;
    let exported = wait_for(&c, "[data-testid='export-result']").await.text().await.unwrap();
    assert!(exported.contains("exported.zip"), "the result names the file: {exported}");
    assert!(std::fs::metadata(&zip).unwrap().len() > 200_000_000, "the zip holds the model");
    // Export… again, as a transfer kit (Airlock itself with the model) into a new folder; the
    // CLI on the far side verifies it.
    let kit = sb.bundle.with_file_name("kit");
    click(&c, "[data-testid='export-open']").await;
    let choice = wait_for(&c, "[data-testid='export-model'][value='gemma3:270m']").await;
    if !choice.is_selected().await.unwrap() {
        choice.click().await.unwrap();
    }
    click(&c, "[data-testid='export-kit']").await;
    wait_for(&c, "[data-testid='export-out']").await.send_keys(kit.to_str().unwrap()).await.unwrap();
    click(&c, "[data-testid='export-start']").await;
    // Typed, not chosen: the app asks first; OK goes ahead.
    answer_confirmation("Export to a typed path?", Some("e"));
    let written = wait_for_within(&c, "[data-testid='export-result']", Duration::from_secs(600)).await.text().await.unwrap();
    assert!(written.contains("Transfer kit") && written.contains("SHA256SUMS"), "the result lists the kit: {written}");
    let verified = Command::new(cli()).args(["kit", "verify", kit.to_str().unwrap()]).output().unwrap();
    assert!(verified.status.success(), "the kit verifies: {}", String::from_utf8_lossy(&verified.stderr));

    click(&c, "[data-testid='nav-settings']").await;
    let version = wait_for(&c, "[data-testid='version']").await.text().await.unwrap();
    assert!(version.contains(env!("CARGO_PKG_VERSION")) && version.contains("CPU variants"), "Settings shows the version line: {version}");
    through_dialog(&c, "[data-testid='trust-add']", "Trust a signing key", None).await;
    assert!(c.find_all(Locator::Css("[data-testid='trusted-key']")).await.unwrap().is_empty(), "a cancelled key dialog trusts nothing");
    // A key chosen in the dialog is trusted only after the app's confirmation naming its ID.
    through_dialog(&c, "[data-testid='trust-add']", "Trust a signing key", Some(&sb.public_key)).await;
    answer_confirmation("Trust this signing key?", Some("t"));
    wait_for(&c, "[data-testid='trusted-key']").await;
    wait_for(&c, "[data-testid='signature-policy']").await.select_by_value("require").await.unwrap();
    click(&c, "[data-testid='nav-models']").await;
    wait_for(&c, "[data-testid='import-path']").await.send_keys(zip.to_str().unwrap()).await.unwrap();
    click(&c, "[data-testid='import-path-submit']").await;
    answer_confirmation("Import from a typed path?", Some("i"));
    let refusal = wait_for(&c, "[data-testid='import-error']").await.text().await.unwrap();
    assert!(refusal.contains("not signed"), "an unsigned bundle is refused under `require`: {refusal}");
    // Switching signatures off asks first; Cancel keeps `require`.
    click(&c, "[data-testid='nav-settings']").await;
    wait_for(&c, "[data-testid='signature-policy']").await.select_by_value("off").await.unwrap();
    answer_confirmation("Lower the signature policy?", None);
    wait_until(&c, "the policy is back at require", "return document.querySelector(\"[data-testid='signature-policy']\").value === 'require';").await;

    // ---- Hardware: the CPU, and in words why there is no GPU.
    click(&c, "[data-testid='nav-hardware']").await;
    let cpu = wait_for(&c, "[data-testid='hw-cpu']").await.text().await.unwrap();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let model_name = cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string()).unwrap_or_default();
    assert!(cpu.contains(&model_name), "the CPU model {model_name:?} is shown: {cpu}");
    let reason = wait_for(&c, "[data-testid='hw-no-gpu-reason']").await.text().await.unwrap();
    assert!(reason.to_lowercase().contains("gpu"), "a reason in words: {reason}");
    let fit = wait_for(&c, "[data-testid='hw-fit'][data-name='gemma3:270m']").await;
    assert_eq!(fit.attr("data-verdict").await.unwrap().as_deref(), Some("cpu_only"));
    screenshot(&c, "hardware").await;

    // ---- Chat: a reply streams in, and Stop ends it.
    click(&c, "[data-testid='nav-chat']").await;
    click(&c, "[data-testid='new-chat']").await;
    wait_for(&c, "[data-testid='model-picker']").await.select_by_value("gemma3:270m").await.unwrap();
    // A base model usually keeps counting, so the reply is still streaming when Stop is clicked;
    // when a sampled reply ends early anyway, Regenerate gives it another go.
    let prompt = "Counting: 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,";
    wait_for(&c, "[data-testid='chat-input']").await.send_keys(prompt).await.unwrap();
    click(&c, "[data-testid='send']").await;
    let reply_css = "[data-testid='message'][data-role='assistant']";
    let last_reply = format!("const m = [...document.querySelectorAll(\"{reply_css}\")].pop();");
    let mut measured = None;
    for attempt in 0..5 {
        if attempt > 0 {
            click(&c, "[data-testid='regenerate']").await;
        }
        wait_until(&c, "a reply starts", &format!("{last_reply} return !!m && m.dataset.streaming === 'true';")).await;
        wait_until(
            &c,
            "the reply streams",
            &format!("{last_reply} return m.querySelector(\"[data-testid='message-content']\").textContent.trim().length > 20 || m.dataset.streaming === 'false';"),
        )
        .await;
        let stream_started = Instant::now();
        let tokens_at_start: f64 = c.execute("return (window.__airlockStreamStats || {tokens: 0}).tokens;", vec![]).await.unwrap().as_f64().unwrap_or(0.0);
        // A measurement window, not a speed limit: a busy machine may take minutes for 100 tokens.
        let hundred = format!("{last_reply} return (window.__airlockStreamStats || {{tokens: 0}}).tokens >= {} || m.dataset.streaming === 'false';", tokens_at_start + 100.0);
        wait_until_within(&c, "100 tokens have streamed", &hundred, Duration::from_secs(300)).await;
        let stream_ms = stream_started.elapsed().as_secs_f64() * 1e3;
        let tokens_streamed = c.execute("return (window.__airlockStreamStats || {tokens: 0}).tokens;", vec![]).await.unwrap().as_f64().unwrap_or(0.0) - tokens_at_start;
        let streamed_before_stop = Instant::now();
        if click_stop(&c).await {
            wait_until(&c, "the reply stops", &format!("{last_reply} return m.dataset.streaming === 'false';")).await;
            measured = Some((stream_ms, tokens_streamed, streamed_before_stop.elapsed().as_secs_f64() * 1e3));
            break;
        }
        wait_until(&c, "the reply is done", &format!("{last_reply} return m.dataset.streaming === 'false';")).await;
        println!("the reply ended by itself before Stop (attempt {attempt}); regenerating");
    }
    let (stream_ms, tokens_streamed, stop_ms) = measured.expect("a reply long enough to stop came within five tries");
    let reply = c.find_all(Locator::Css(reply_css)).await.unwrap().pop().unwrap().text().await.unwrap();
    assert!(!reply.trim().is_empty());
    let reply_stats = wait_for(&c, "[data-testid='message-stats']").await.text().await.unwrap();
    assert!(reply_stats.contains("tokens/s"), "tokens/s under the reply: {reply_stats}");
    screenshot(&c, "chat").await;
    vision_steps::a_pasted_image_needs_a_vision_model(&c, "gemma3:270m").await;
    // The context bar under the composer: the reply's prompt + reply tokens of the model's context.
    let context = wait_for(&c, "[data-testid='context-numbers']").await.text().await.unwrap();
    let counts: Vec<u64> = context.split(|ch: char| !ch.is_ascii_digit() && ch != ',').filter_map(|n| n.replace(',', "").parse().ok()).collect();
    assert!(counts.len() >= 2 && counts[0] > 0 && counts[1] >= counts[0], "the context bar shows used / total tokens: {context}");
    // Chat settings take their ranges from the backend's table (temperature 0–5), not the UI's own.
    click(&c, "[data-testid='chat-settings-toggle']").await;
    wait_until(&c, "the parameter ranges come from the backend", "const t = document.querySelector(\"[data-testid='param-temperature']\"); return t && t.max === '5' && t.min === '0';").await;
    click(&c, "[data-testid='chat-settings-toggle']").await;
    // At the smallest window size the layout holds: no horizontal overflow.
    let size = c.get_window_size().await.unwrap();
    c.set_window_size(720, 600).await.unwrap();
    wait_until(&c, "no horizontal overflow at 720×600", "return window.innerWidth <= 760 && document.documentElement.scrollWidth <= window.innerWidth;").await;
    c.set_window_size(size.0 as u32, size.1 as u32).await.unwrap();
    polish_steps::after_reply(&c, &sb.data, &sb.home.join("conversation.md"), prompt).await;

    // The model process dies mid-reply: the error shows inline, and Retry answers again.
    wait_for(&c, "[data-testid='chat-input']").await.send_keys("Counting on: 11, 12, 13, 14, 15,").await.unwrap();
    click(&c, "[data-testid='send']").await;
    wait_until(&c, "the second reply streams", &format!("const m = [...document.querySelectorAll(\"{reply_css}\")].pop(); return m.dataset.streaming === 'true' && m.querySelector(\"[data-testid='message-content']\").textContent.trim().length > 0;")).await;
    let runners: Vec<u32> = app_processes(&sb.data).into_iter().filter(|(_, k)| *k == "runner").map(|(p, _)| p).collect();
    assert_eq!(runners.len(), 1, "one model process");
    unsafe { libc::kill(runners[0] as i32, libc::SIGKILL) };
    let error = wait_for(&c, "[data-testid='message-error']").await.text().await.unwrap();
    assert!(error.contains("exited") || error.contains("model process"), "the crash is explained: {error}");
    click(&c, "[data-testid='retry']").await;
    wait_until(&c, "the retried reply streams", &format!("const m = [...document.querySelectorAll(\"{reply_css}\")].pop(); return m.dataset.streaming === 'true' && m.textContent.trim().length > 0 && !document.querySelector(\"[data-testid='message-error']\");")).await;
    click(&c, "[data-testid='stop']").await;
    wait_until(&c, "the retried reply stops", &format!("return [...document.querySelectorAll(\"{reply_css}\")].pop().dataset.streaming === 'false';")).await;
    docs_steps::attach_a_document_and_see_its_source(&c, &sb.home, &sb.data).await;

    // Figures: the UI's own cost per streamed token, from the real web view.
    let stats: Value = c.execute("return window.__airlockStreamStats || null;", vec![]).await.unwrap();
    let (tokens, render_ms) = (stats["tokens"].as_f64().unwrap_or(0.0), stats["renderMs"].as_f64().unwrap_or(0.0));
    assert!(tokens > 0.0, "the UI counted the streamed tokens: {stats}");

    // Settings page (and the screenshot the README shows).
    click(&c, "[data-testid='nav-settings']").await;
    let store_path = wait_for(&c, "[data-testid='store-path']").await.text().await.unwrap();
    assert!(store_path.contains(sb.store.to_str().unwrap()), "the store location is shown: {store_path}");

    // The local API server, switched on in Settings: the same API as `airlock serve`.
    let api_port = free_port();
    // Opening the API to every program here asks natively first; Cancel leaves it off.
    switch_api_server_on(&c, api_port, None).await;
    wait_until(&c, "the switch is off again", "return !document.querySelector(\"[data-testid='api-enabled']\").checked;").await;
    assert!(std::net::TcpStream::connect(("127.0.0.1", api_port)).is_err(), "a cancelled confirmation started the server");
    switch_api_server_on(&c, api_port, Some("a")).await;
    let tags = http_get(api_port, "/api/tags");
    assert!(tags.starts_with("HTTP/1.1 200") && tags.contains("gemma3:270m"), "GET /api/tags: {tags}");
    screenshot(&c, "settings").await;

    // Idle: memory of the app's processes, and no connection anywhere but loopback.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = app_processes(&sb.data);
    assert!(pids.iter().any(|(_, k)| *k == "app"), "found the app's process: {pids:?}");
    let rss_of = |kind: &str| pids.iter().filter(|(_, k)| *k == kind).map(|(p, _)| rss_kib(*p)).sum::<u64>() as f64 / 1024.0;
    let (app_mib, webkit_mib, runner_mib) = (rss_of("app"), rss_of("webkit"), rss_of("runner"));
    // The chat model's runner, and its embedding runner when documents were attached.
    let runners = pids.iter().filter(|(_, k)| *k == "runner").count();
    for (pid, _) in &pids {
        for endpoint in tcp_endpoints(*pid) {
            let mut ends = endpoint.split(' ');
            let (local, remote) = (ends.next().unwrap(), ends.next().unwrap());
            assert!(is_loopback_or_unset(local) && is_loopback_or_unset(remote), "process {pid} has a non-loopback connection {endpoint}");
        }
    }
    // Type a message without sending it, then kill the app outright (no chance to save on exit).
    click(&c, "[data-testid='nav-chat']").await;
    let draft = "an unsent draft";
    wait_for(&c, "[data-testid='chat-input']").await.send_keys(draft).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (pid, kind) in app_processes(&sb.data) {
        if kind == "app" {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    // End the dead session so the driver takes a new one.
    let _ = tokio::time::timeout(Duration::from_secs(10), c.close()).await;

    // ---- Restart: the conversation and the draft are still there.
    tools_steps::import_tool_model(&sb.store);
    let (c, restart_ms) = driver.launch().await;
    click(&c, "[data-testid='nav-chat']").await;
    wait_for(&c, "[data-testid='conversation']").await;
    wait_until(
        &c,
        "the conversation is restored",
        &format!("return [...document.querySelectorAll(\"[data-testid='message'][data-role='user']\")].some(m => m.textContent.includes({prompt:?}));"),
    )
    .await;
    let restored = c.find_all(Locator::Css(reply_css)).await.unwrap();
    assert!(restored.len() >= 2, "the replies are restored too");
    let typed = wait_for(&c, "[data-testid='chat-input']").await.prop("value").await.unwrap().unwrap_or_default();
    assert_eq!(typed, draft, "the draft survived the kill");
    tools_steps::a_tool_call_approved_in_the_window(&c, &sb.home).await;
    c.close().await.unwrap();
    drop(driver);

    // ---- A GPU: Mesa's software Vulkan device (lavapipe) listed for ggml. The Hardware page
    // shows it and the model's full offload; a reply runs there and says so; the device's bar
    // holds the loaded model.
    if built_with_vulkan() {
        let gpu = Driver::start_with(&sb, &[("GGML_VK_VISIBLE_DEVICES", "0")]);
        let (c, _) = gpu.launch().await;
        click(&c, "[data-testid='nav-hardware']").await;
        let device = wait_for(&c, "[data-testid='hw-gpu']").await.text().await.unwrap();
        assert!(device.contains("llvmpipe") && device.contains("Vulkan0"), "the Vulkan device is listed: {device}");
        let fit = wait_for(&c, "[data-testid='hw-fit'][data-name='gemma3:270m']").await;
        assert_eq!(fit.attr("data-verdict").await.unwrap().as_deref(), Some("full_gpu"));
        click(&c, "[data-testid='nav-chat']").await;
        click(&c, "[data-testid='new-chat']").await;
        wait_for(&c, "[data-testid='model-picker']").await.select_by_value("gemma3:270m").await.unwrap();
        wait_for(&c, "[data-testid='chat-input']").await.send_keys("Counting: 1, 2, 3,").await.unwrap();
        click(&c, "[data-testid='send']").await;
        wait_until(&c, "a reply streams from the GPU", &format!("const m = [...document.querySelectorAll(\"{reply_css}\")].pop(); return !!m && m.dataset.streaming === 'true' && m.querySelector(\"[data-testid='message-content']\").textContent.trim().length > 0;")).await;
        click_stop(&c).await;
        let runs_on = wait_for(&c, "[data-testid='message-runs-on']").await.text().await.unwrap();
        assert_eq!(runs_on, "100% GPU", "the reply says where it ran");
        click(&c, "[data-testid='nav-hardware']").await;
        click(&c, "[data-testid='hw-refresh']").await;
        wait_for(&c, "[data-testid='hw-gpu-segment'][data-model='gemma3:270m']").await;
        let loaded = wait_for(&c, "[data-testid='hw-loaded'][data-name='gemma3:270m']").await.text().await.unwrap();
        assert!(loaded.contains("100% GPU (Vulkan0"), "{loaded}");
        screenshot(&c, "hardware-gpu").await;
        c.close().await.unwrap();
    }

    println!("\n== desktop figures (this machine, this run) ==");
    println!("window start to interactive: first start {start_ms:.0} ms, restart {restart_ms:.0} ms (WebDriver session request → UI ready)");
    println!("idle memory (RSS): app process {app_mib:.1} MiB, its WebKit processes {webkit_mib:.1} MiB, {runners} model runner(s) {runner_mib:.1} MiB");
    let per_token_ms = render_ms / tokens.max(1.0);
    let interval_ms = stream_ms / tokens_streamed.max(1.0);
    println!(
        "UI update cost per streamed token: {per_token_ms:.3} ms over {tokens} tokens = {:.3} of the {interval_ms:.1} ms between tokens at this run's {:.1} tokens/s",
        per_token_ms / interval_ms,
        1e3 / interval_ms
    );
    println!("the reply's own figures, as shown under it: {reply_stats}");
    println!("stop: the reply ended {stop_ms:.0} ms after Stop was clicked");
}
mod registry_pull;
mod docs_steps;
mod library_steps;
mod polish_steps;
mod tools_steps;
mod vision_steps;
