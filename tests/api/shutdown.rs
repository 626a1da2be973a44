//! Graceful shutdown of the real binaries (issue 16, rolling restarts): on SIGTERM
//! `/readyz` answers 503 at once while every other route still serves, for
//! `http.drain_secs`; then the process closes its listener and exits cleanly.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{KES, PEPPER, spawn_app};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const DRAIN_SECS: u64 = 3;

fn start(args: &[&str], dir: &std::path::Path, env: &[(&str, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_oxidp"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OXIDP_DATA_DIR", dir)
        .env("OXIDP_PEPPER", PEPPER)
        .env("OXIDP_KEY_ENCRYPTION_SECRET", KES)
        .env("OXIDP_ADMIN__BOOTSTRAP", "false")
        .env("OXIDP_METRICS__BIND", "off")
        .env("OXIDP_HTTP__WORKERS", "1")
        .env("OXIDP_HTTP__DRAIN_SECS", DRAIN_SECS.to_string())
        .env("OXIDP_LOG__LEVEL", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start oxidp")
}

/// Kills the child if the test fails before it exits on its own.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn status_of(url: &str) -> Option<u16> {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn wait_for(url: &str, want: u16, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if status_of(url).await == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// SIGTERM → `/readyz` 503 within a second, `other` still 200 throughout the
/// drain, then a clean exit no sooner than the drain and the listener closed.
async fn drains_then_exits(child: Child, base: &str, other: &str) {
    let mut running = Running(Some(child));
    let pid = running.0.as_ref().unwrap().id() as i32;
    assert!(
        wait_for(&format!("{base}/readyz"), 200, Duration::from_secs(60)).await,
        "the instance never became ready"
    );
    let signalled = Instant::now();
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(
        wait_for(&format!("{base}/readyz"), 503, Duration::from_secs(1)).await,
        "/readyz still answered ready after SIGTERM"
    );
    // Requests keep being served while the balancer drains the instance.
    while signalled.elapsed() < Duration::from_millis(DRAIN_SECS * 1000 - 700) {
        assert_eq!(
            status_of(&format!("{base}{other}")).await,
            Some(200),
            "{other} during the drain"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut child = running.0.take().unwrap();
    let exited = tokio::task::spawn_blocking(move || {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > until {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap()
    .expect("the process did not exit after the drain");
    assert!(exited.success(), "exit status {exited:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(DRAIN_SECS),
        "exited {:?} after SIGTERM, before the drain ended",
        signalled.elapsed()
    );
    assert_eq!(
        status_of(&format!("{base}/healthz")).await,
        None,
        "the listener is closed"
    );
}

#[tokio::test]
async fn the_idp_reports_not_ready_then_drains_then_exits_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = start(
        &["serve"],
        dir.path(),
        &[
            ("OXIDP_BIND", format!("127.0.0.1:{port}")),
            ("OXIDP_ISSUER", format!("http://localhost:{port}")),
        ],
    );
    drains_then_exits(child, &base, "/.well-known/openid-configuration").await;
}

#[tokio::test]
async fn commerce_reports_not_ready_then_drains_then_exits_on_sigterm() {
    let idp = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = start(
        &["commerce", "serve"],
        dir.path(),
        &[
            ("OXIDP_ISSUER", idp.config.issuer.clone()),
            ("OXIDP_COMMERCE__BIND", format!("127.0.0.1:{port}")),
            ("OXIDP_COMMERCE__PUBLIC_URL", format!("http://localhost:{port}")),
            ("OXIDP_COMMERCE__INTROSPECTION", "off".to_owned()),
        ],
    );
    drains_then_exits(child, &base, "/v1/catalog/products").await;
}
