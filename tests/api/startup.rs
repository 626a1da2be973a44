//! Starting up: what the configuration alone decides is settled before the
//! database is touched or secrets are written; an IP issuer runs without WebAuthn.

use std::process::{Command, Stdio};

use crate::helpers::{PASSWORD, browser, spawn_app_with};

/// `oxidp migrate` in an empty data directory with only `env` set.
fn migrate(dir: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_oxidp"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OXIDP_DATA_DIR", dir)
        .env("OXIDP_LOG__LEVEL", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run oxidp")
}

#[tokio::test]
async fn an_ip_issuer_starts_with_passkeys_off_and_says_so() {
    for issuer in ["http://127.0.0.1:8080", "http://[::1]:8080"] {
        let app = spawn_app_with(|c| c.issuer = issuer.to_owned()).await;
        assert!(app.state.webauthn.is_none(), "{issuer}");
        let discovery: serde_json::Value = reqwest::get(app.url("/.well-known/openid-configuration"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(discovery["issuer"], issuer);
        let page = reqwest::get(app.url("/login")).await.unwrap().text().await.unwrap();
        assert!(
            page.contains(r#"id="webauthn-off""#),
            "the sign-in page says passkeys are off"
        );
        assert!(!page.contains("data-webauthn-form"), "and offers none");
        assert!(!page.contains("webauthn.js"));
        // Passwords work as ever; the passkey pages say they are off.
        app.create_user("alice", PASSWORD).await;
        let person = browser();
        assert_eq!(app.login(&person, "alice", PASSWORD).await.status(), 303);
        let add = person.get(app.url("/account/passkeys/new")).send().await.unwrap();
        assert_eq!(add.status(), 200);
        let add = add.text().await.unwrap();
        assert!(add.contains(r#"id="webauthn-off""#) && !add.contains("data-webauthn-form"));
    }
}

#[test]
fn configuration_is_checked_before_the_database_or_secrets_are_written() {
    // WebAuthn demanded where it cannot work: refused, nothing written.
    let dir = tempfile::tempdir().unwrap();
    let output = migrate(
        dir.path(),
        &[
            ("OXIDP_ISSUER", "http://127.0.0.1:8080"),
            ("OXIDP_WEBAUTHN__ENABLED", "true"),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("webauthn.enabled"), "names the key: {stderr}");
    assert!(!dir.path().join("oxidp.db").exists(), "no database created");
    assert!(!dir.path().join("secrets.toml").exists(), "no secrets written");
    // An IP issuer alone is fine: WebAuthn is off, the rest starts.
    for issuer in ["http://127.0.0.1:8080", "http://[::1]:8080"] {
        let dir = tempfile::tempdir().unwrap();
        let output = migrate(dir.path(), &[("OXIDP_ISSUER", issuer)]);
        assert!(
            output.status.success(),
            "{issuer}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(dir.path().join("oxidp.db").exists());
    }
}
