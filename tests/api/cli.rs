use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use base64::Engine;
use sha2::Sha256;

use crate::helpers::{browser, spawn_app};

#[tokio::test]
async fn user_commands_manage_accounts_with_json_output() {
    let app = spawn_app().await;
    let created = app.cli_json(
        &[
            "user",
            "create",
            "--username",
            "Carol",
            "--email",
            "Carol@Example.com",
            "--name",
            "Carol C",
            "--password-stdin",
            "--json",
        ],
        Some("violet kettle marsh 41\n"),
    );
    assert_eq!(created["username"], "carol");
    assert_eq!(created["email"], "carol@example.com");
    assert_eq!(created["password_scheme"], "argon2id");
    assert!(created.get("password_hash").is_none(), "hashes are never printed");
    let id = created["id"].as_str().unwrap().to_owned();

    let listed = app.cli_json(&["user", "list", "--json"], None);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let shown = app.cli_json(&["user", "show", &id, "--json"], None);
    assert_eq!(shown["username"], "carol");

    // Duplicate username, bad e-mail, weak password: clear errors, non-zero exit.
    let dup = app.cli(&["user", "create", "--username", "carol", "--no-password"], None);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already taken"));
    let bad_email = app.cli(
        &[
            "user",
            "create",
            "--username",
            "dave",
            "--email",
            "nope",
            "--no-password",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&bad_email.stderr).contains("email"));
    let weak = app.cli(
        &["user", "create", "--username", "erin", "--password-stdin"],
        Some("password1234\n"),
    );
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("too common"));
    // Without a terminal and without --password-stdin, no password is guessed.
    let no_tty = app.cli(&["user", "create", "--username", "frank"], None);
    assert!(String::from_utf8_lossy(&no_tty.stderr).contains("--password-stdin"));

    // Sign-in works with the CLI-set password; disable blocks it, enable restores it.
    let client = browser();
    assert_eq!(
        app.login(&client, "carol", "violet kettle marsh 41").await.status(),
        303
    );
    let disabled = app.cli_json(&["user", "disable", "carol", "--json"], None);
    assert_eq!(disabled["disabled"], true);
    assert_eq!(
        client.get(app.url("/account")).send().await.unwrap().status(),
        303,
        "sessions ended"
    );
    assert_eq!(
        app.login(&browser(), "carol", "violet kettle marsh 41").await.status(),
        200
    );
    app.cli_json(&["user", "enable", "carol", "--json"], None);
    assert_eq!(
        app.login(&browser(), "carol", "violet kettle marsh 41").await.status(),
        303
    );

    // set-password applies the history.
    let reuse = app.cli(
        &["user", "set-password", "carol", "--password-stdin"],
        Some("violet kettle marsh 41\n"),
    );
    assert!(!reuse.status.success());
    assert!(String::from_utf8_lossy(&reuse.stderr).contains("recently"));
    let changed = app.cli_json(
        &["user", "set-password", "carol", "--password-stdin", "--json"],
        Some("amber canyon drift 72\n"),
    );
    assert_eq!(changed["password_changed"], true);
    assert_eq!(
        app.login(&browser(), "carol", "amber canyon drift 72").await.status(),
        303
    );

    let missing = app.cli(&["user", "show", "nobody-here"], None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such user"));

    // Every change made from the CLI is in the audit log, with the CLI as actor.
    let events = oxidp::audit::query(&app.state.db, Default::default(), 100)
        .await
        .unwrap();
    let actions: Vec<&str> = events
        .iter()
        .filter(|e| e.actor == "cli")
        .map(|e| e.action.as_str())
        .collect();
    for action in ["user.create", "user.disable", "user.enable", "user.set_password"] {
        assert!(actions.contains(&action), "{action} not audited: {actions:?}");
    }
    // The refused password change left no event.
    assert_eq!(actions.iter().filter(|a| **a == "user.set_password").count(), 1);
}

#[tokio::test]
async fn imported_legacy_hashes_are_upgraded_at_first_sign_in() {
    let app = spawn_app().await;
    let bcrypt_hash = bcrypt::hash("legacy bcrypt secret 1", 6).unwrap();
    let mut derived = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(b"legacy pbkdf2 secret 2", b"saltysalt", 10_000, &mut derived);
    let django = format!(
        "pbkdf2_sha256$10000$saltysalt${}",
        base64::engine::general_purpose::STANDARD.encode(derived)
    );
    let file = app.dir.path().join("users.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n{}\n{}\n",
            serde_json::json!({"username": "old-bcrypt", "email": "b@example.com", "password_hash": bcrypt_hash, "name": "Bee"}),
            serde_json::json!({"username": "old-django", "password_hash": django}),
            serde_json::json!({"username": "broken", "password_hash": "md5$abc"}),
            "this is not json",
        ),
    )
    .unwrap();
    let output = app.cli(
        &[
            "user",
            "import",
            file.to_str().unwrap(),
            "--allow-weak-legacy",
            "--json",
        ],
        None,
    );
    assert!(!output.status.success(), "failed lines make the exit non-zero");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["imported"], 2);
    assert_eq!(report["failed"], 2);
    assert!(
        report["results"][2]["error"]
            .as_str()
            .unwrap()
            .contains("unsupported password hash")
    );
    assert_eq!(report["results"][3]["line"], 4);
    // Each imported account is audited, in the transaction that created it.
    let events = oxidp::audit::query(&app.state.db, Default::default(), 100)
        .await
        .unwrap();
    let imported: Vec<_> = events
        .iter()
        .filter(|e| e.action == "user.import" && e.actor == "cli")
        .collect();
    assert_eq!(imported.len(), 2);

    for (user, password, scheme) in [
        ("old-bcrypt", "legacy bcrypt secret 1", "bcrypt (wrapped in argon2id)"),
        (
            "old-django",
            "legacy pbkdf2 secret 2",
            "pbkdf2-sha256 (wrapped in argon2id)",
        ),
    ] {
        assert_eq!(
            app.cli_json(&["user", "show", user, "--json"], None)["password_scheme"],
            scheme
        );
        // A wrong password neither signs in nor upgrades.
        assert_eq!(app.login(&browser(), user, "not the password").await.status(), 200);
        assert_eq!(
            app.cli_json(&["user", "show", user, "--json"], None)["password_scheme"],
            scheme
        );
        // The right one signs in and the hash becomes argon2id.
        assert_eq!(app.login(&browser(), user, password).await.status(), 303);
        assert_eq!(
            app.cli_json(&["user", "show", user, "--json"], None)["password_scheme"],
            "argon2id"
        );
        // And it still works afterwards, now through argon2id.
        assert_eq!(app.login(&browser(), user, password).await.status(), 303);
    }
    assert_eq!(
        app.cli_json(&["user", "show", "old-bcrypt", "--json"], None)["name"],
        "Bee"
    );
}

fn oxidp() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oxidp"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

#[test]
fn bad_configuration_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = oxidp()
        .args(["migrate"])
        .env("OXIDP_DATA_DIR", dir.path())
        .env("OXIDP_SESSION__IDLE_TIMEOUT_SECS", "half an hour")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("session.idle_timeout_secs"), "{stderr}");

    let file = dir.path().join("oxidp.toml");
    std::fs::write(&file, "[argon2]\nmemory_kib = 1024\n").unwrap();
    let output = oxidp()
        .args(["--config", file.to_str().unwrap(), "migrate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("argon2.memory_kib"));

    let output = oxidp()
        .args(["migrate"])
        .env("OXIDP_DATABASE_URL", "mysql://x")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("database_url"));
}

#[test]
fn secrets_are_generated_once_and_a_different_pepper_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = oxidp()
        .args(["migrate"])
        .env("OXIDP_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("GENERATED NEW SERVER SECRETS"));
    let secrets = dir.path().join("secrets.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let first = std::fs::read_to_string(&secrets).unwrap();
    // A second start reuses them quietly.
    let output = oxidp()
        .args(["migrate"])
        .env("OXIDP_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(!String::from_utf8_lossy(&output.stderr).contains("GENERATED"));
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), first);
    // An instance configured with another pepper refuses to start.
    let output = oxidp()
        .args(["migrate"])
        .env("OXIDP_DATA_DIR", dir.path())
        .env("OXIDP_PEPPER", "a-completely-different-pepper-value-0123456789")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`pepper`"), "{stderr}");
}

#[test]
fn the_binary_serves_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = oxidp()
        .env("OXIDP_DATA_DIR", dir.path())
        .env("OXIDP_BIND", "127.0.0.1:0")
        // The metrics listener's default port may be taken by another server here.
        .env("OXIDP_METRICS__BIND", "127.0.0.1:0")
        .env("OXIDP_LOG__FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut admin_password = None;
    let port = loop {
        let line = lines.next().expect("server log ends before listening").unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log lines");
        if let Some(p) = event["initial_password"].as_str() {
            admin_password = Some(p.to_owned());
        }
        if event["message"] == "oxidp is listening" {
            break event["port"].as_u64().unwrap();
        }
    };
    // First start on an empty database: the administrator's password, once.
    assert!(admin_password.is_some_and(|p| p.len() >= 20));
    let health = raw_http::blocking_get(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(health, 200);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit after SIGTERM: {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("oxidp stopped")), "{rest:?}");
}

/// A tiny blocking GET for the one test that runs outside tokio.
mod raw_http {
    pub fn blocking_get(url: &str) -> u16 {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}
