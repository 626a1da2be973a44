//! A small W3C WebDriver client over `reqwest` for real-browser tests: headless
//! Debian Chromium driven by `chromedriver` (installed by `.ci/run`). Each
//! `Browser` starts its own chromedriver on a free port and ends it on drop.
//! Screenshots go to `target/screenshots/` (test artifacts).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the WebDriver session makes chromedriver quit Chromium; killing
        // chromedriver alone would leave the browser processes running.
        self.end_session();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Chromium binary (`CHROMIUM`, default Debian's).
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Reports a skipped test on the real stderr: `eprintln!` would be captured by
/// the test harness and shown only if the test failed.
fn skipped(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().filter(|name| *name != "main").unwrap_or("browser test");
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test} — {reason}");
}

impl Browser {
    /// `DELETE /session/{id}` over a plain blocking socket (usable from `Drop`).
    fn end_session(&self) {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://");
        let Ok(mut stream) = std::net::TcpStream::connect(address) else {
            return;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(15)));
        let request = format!(
            "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.session
        );
        if stream.write_all(request.as_bytes()).is_ok() {
            let mut reply = Vec::new();
            let _ = stream.read_to_end(&mut reply);
        }
    }

    /// Starts headless Chromium, or returns `None` when chromedriver or Chromium
    /// is not installed and `OXIDP_REQUIRE_BROWSER` is unset, so a newcomer's
    /// `cargo test` passes before installing a browser; the skip is then written
    /// straight to stderr (`SKIPPED: <test> — …`), past the test harness's output
    /// capture, so it shows in every run. `.ci/run` installs Chromium and sets
    /// `OXIDP_REQUIRE_BROWSER=1`: there a missing browser fails the test.
    pub async fn start() -> Option<Self> {
        let driver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let installed = Command::new(&driver)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && std::path::Path::new(&chromium()).exists();
        if !installed {
            assert!(
                std::env::var_os("OXIDP_REQUIRE_BROWSER").is_none(),
                "chromium/chromedriver not found: install Debian's chromium and chromium-driver"
            );
            skipped("chromium/chromedriver not found (apt-get install chromium chromium-driver; .ci/run does)");
            return None;
        }
        Some(Self::launch(&driver).await)
    }

    async fn launch(driver: &str) -> Self {
        let port = free_port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let binary = chromium();
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": binary,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--window-size=1280,900", "--no-first-run", "--disable-extensions"]
                }
            }}
        });
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {response}"))
            .to_owned();
        Self {
            driver,
            base,
            session,
            http,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut request = self.http.request(method, url);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let value: Value = request.send().await.unwrap().json().await.unwrap();
        if value["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", value["value"]);
        }
        value["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    pub async fn script(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Waits until `script` (a JS expression) is truthy; returns false on timeout.
    pub async fn wait_for(&self, expression: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let script = format!("return !!({expression});");
        while Instant::now() < deadline {
            if self.script(&script).await == Value::Bool(true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs a Chrome DevTools Protocol command in the current tab (chromedriver's
    /// `goog/cdp/execute`), e.g. `WebAuthn.addVirtualAuthenticator`.
    pub async fn cdp(&self, command: &str, params: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({ "cmd": command, "params": params })),
        )
        .await
    }

    /// Saves a PNG screenshot as `target/screenshots/{name}.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        use base64::Engine;
        let data = self.call(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        path
    }
}
