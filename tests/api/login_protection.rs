//! Risk-based sign-in protection: exact cluster-wide counters, exponential delays,
//! lockout and unlock, the known-device exemption, credential stuffing under a
//! hash budget, 429 formats, and the audit trail.

use std::sync::Arc;

use oxidp::authn::risk;
use oxidp::db::models::logins;

use crate::helpers::{PASSWORD, TestApp, browser, spawn_app_sharing, spawn_app_with, text_of};

fn realistic(c: &mut oxidp::config::Config) {
    c.login.delay_after = 5;
    c.login.lockout_after = 8;
    c.login.stuffing_usernames = 10;
    c.login.deny_score = 60;
}

async fn failures(app: &TestApp, username: &str) -> Option<logins::ThrottleRow> {
    let key = risk::username_key(&app.state.login_key, username);
    app.state
        .db
        .run(move |conn| logins::find_throttle(conn, &key))
        .await
        .unwrap()
}

/// Submits the sign-in form; returns (status, error text shown).
async fn attempt(app: &TestApp, b: &reqwest::Client, username: &str, password: &str) -> (u16, Option<String>) {
    let response = app.login(b, username, password).await;
    let status = response.status().as_u16();
    let html = response.text().await.unwrap();
    (status, text_of(&html, "#login-error"))
}

#[tokio::test]
async fn fifty_parallel_wrong_passwords_on_two_instances_add_exactly_fifty() {
    let a = spawn_app_with(|_| {}).await;
    let b = spawn_app_sharing(&a).await;
    a.create_user("victim", PASSWORD).await;
    let a = Arc::new(a);
    let b = Arc::new(b);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let client = browser();
            let (status, error) = attempt(&app, &client, "victim", "wrong password guess").await;
            assert_eq!(status, 200);
            assert!(error.is_some());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(failures(&a, "victim").await.unwrap().failures, 50);
    // A success resets the counter.
    assert_eq!(a.login(&browser(), "victim", PASSWORD).await.status(), 303);
    assert_eq!(failures(&a, "victim").await.map_or(0, |t| t.failures), 0);
}

#[tokio::test]
async fn delays_grow_then_the_account_locks_until_unlocked_and_unknown_users_look_the_same() {
    let app = spawn_app_with(realistic).await;
    app.create_user("dave", PASSWORD).await;
    let b = browser();
    for n in 1..=4 {
        let (_, error) = attempt(&app, &b, "dave", "bad guess").await;
        assert_eq!(
            error.as_deref(),
            Some("The username or password is not correct."),
            "failure {n}"
        );
    }
    // The 5th failure starts the delay: 1 s.
    let (_, error) = attempt(&app, &b, "dave", "bad guess").await;
    assert!(error.unwrap().contains("try again in 1 second"));
    // Within the delay even the right password is refused, without computing a hash.
    let hashes = app.state.hasher.computed();
    let (status, error) = attempt(&app, &b, "dave", PASSWORD).await;
    assert_eq!(status, 200);
    assert!(error.unwrap().contains("Too many attempts"));
    assert_eq!(app.state.hasher.computed(), hashes, "no hash while delayed");
    // Then 2 s, 4 s: the clock decides.
    app.clock.advance(2);
    let (_, error) = attempt(&app, &b, "dave", "bad guess").await;
    assert!(error.unwrap().contains("try again in 2 seconds"));
    app.clock.advance(3);
    let (_, error) = attempt(&app, &b, "dave", "bad guess").await;
    assert!(error.unwrap().contains("try again in 4 seconds"));
    app.clock.advance(5);
    // 8th failure: locked (lockout_after = 8 here; 100 by default).
    attempt(&app, &b, "dave", "bad guess").await;
    let row = failures(&app, "dave").await.unwrap();
    assert_eq!(row.failures, 8);
    assert!(row.locked_at.is_some());
    app.clock.advance(86_400);
    let (status, locked_error) = attempt(&app, &browser(), "dave", PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(
        locked_error.as_deref(),
        Some("The username or password is not correct.")
    );

    // An unknown username that fails as often gets exactly the same treatment.
    let u = browser();
    let mut unknown = Vec::new();
    for _ in 0..8 {
        unknown.push(attempt(&app, &u, "nobody-at-all", "bad guess").await);
        app.clock.advance(300);
    }
    let (status, error) = attempt(&app, &u, "nobody-at-all", PASSWORD).await;
    assert_eq!((status, error), (200, locked_error.clone()));
    assert!(unknown[4].1.as_deref().unwrap().contains("try again in 1 second"));

    // The administrator unlocks (CLI); the person signs in.
    let out = app.cli_json(&["user", "unlock", "dave", "--json"], None);
    assert_eq!(out["unlocked"], true);
    assert_eq!(app.login(&browser(), "dave", PASSWORD).await.status(), 303);

    // Lockouts, failures and the unlock are in the audit log, with risk reasons.
    let events = app.cli_json(&["audit", "--limit", "500", "--json"], None);
    let events = events.as_array().unwrap();
    let count = |action: &str| events.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("login.lockout"), 2, "dave and the unknown name");
    assert_eq!(count("user.unlock"), 1);
    assert!(count("login.failure") >= 16);
    let refused = events
        .iter()
        .find(|e| e["action"] == "login.failure" && e["details"]["outcome"] == "delayed")
        .expect("a delayed attempt");
    assert!(refused["details"]["risk"].is_number());
    assert!(
        !events.iter().any(|e| e.to_string().contains("nobody-at-all")),
        "attempted names are not stored"
    );
}

#[tokio::test]
async fn a_password_reset_lifts_the_lock() {
    let app = spawn_app_with(realistic).await;
    app.create_user("erin", PASSWORD).await;
    for _ in 0..8 {
        attempt(&app, &browser(), "erin", "bad guess").await;
        app.clock.advance(600);
    }
    assert!(failures(&app, "erin").await.unwrap().locked_at.is_some());
    app.cli_json(
        &["user", "set-password", "erin", "--password-stdin", "--json"],
        Some("a brand new pass phrase 9\n"),
    );
    assert_eq!(
        app.login(&browser(), "erin", "a brand new pass phrase 9")
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn a_known_device_is_not_locked_out_by_failures_elsewhere() {
    let app = spawn_app_with(realistic).await;
    app.create_user("fran", PASSWORD).await;
    let laptop = browser();
    let first = app.login(&laptop, "fran", PASSWORD).await;
    assert_eq!(first.status(), 303);
    let device = crate::helpers::cookie_value(&first, "oxidp_device").expect("device cookie");

    // An attacker elsewhere locks the account.
    for _ in 0..8 {
        attempt(&app, &browser(), "fran", "bad guess").await;
        app.clock.advance(600);
    }
    assert!(failures(&app, "fran").await.unwrap().locked_at.is_some());
    let (_, error) = attempt(&app, &browser(), "fran", PASSWORD).await;
    assert!(error.is_some(), "the attacker's browser stays locked out");

    // Fran, on her laptop (a new session, the same device cookie), signs in.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    jar.add_cookie_str(
        &format!("oxidp_device={device}; Path=/"),
        &app.url("/").parse().unwrap(),
    );
    let again = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(app.login(&again, "fran", PASSWORD).await.status(), 303);
    // A forged device cookie is worthless.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let forged = format!("{}.{}", device.split('.').next().unwrap(), "0".repeat(64));
    jar.add_cookie_str(
        &format!("oxidp_device={forged}; Path=/"),
        &app.url("/").parse().unwrap(),
    );
    let forger = reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (_, error) = attempt(&app, &forger, "fran", PASSWORD).await;
    assert!(error.is_some());
}

#[tokio::test]
async fn one_address_spraying_a_thousand_usernames_costs_at_most_thirty_hashes() {
    let app = Arc::new(spawn_app_with(realistic).await);
    app.create_user("gail", PASSWORD).await;
    let before = app.state.hasher.computed();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let b = browser();
            let csrf = app.login_csrf(&b).await;
            for i in (worker..1000).step_by(8) {
                let response = app
                    .post_login(&b, &csrf, &format!("user{i}"), "Summer2026!", None)
                    .await;
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let spent = app.state.hasher.computed() - before;
    assert!(spent <= 30, "{spent} hashes for 1,000 usernames");
    // The counter is exported for monitoring.
    let metrics = reqwest::get(app.metrics_url()).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("# TYPE oxidp_password_hashes_total counter"));
    let exported: u64 = metrics
        .lines()
        .find(|l| l.starts_with("oxidp_password_hashes_total "))
        .and_then(|l| l.split(' ').nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(exported, app.state.hasher.computed());
    assert!(metrics.contains("oxidp_login_attempts_total{result=\"refused\"}"));
    // The refusals name their reason.
    let events = oxidp::audit::query(&app.state.db, Default::default(), 5).await.unwrap();
    assert!(
        events.iter().any(|e| e.details.contains("credential_stuffing")),
        "{events:?}"
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_as_a_page_and_as_oauth_json() {
    let app = spawn_app_with(|c| {
        c.login.ip_per_minute = 1;
        c.login.ip_burst = 3;
        c.login.client_failures_per_minute = 2;
    })
    .await;
    app.create_user("hank", PASSWORD).await;
    let b = browser();
    for _ in 0..3 {
        assert_eq!(attempt(&app, &b, "hank", "bad guess").await.0, 200);
    }
    let response = app.login(&b, "hank", PASSWORD).await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.text().await.unwrap().contains("Too many attempts"));

    // /token: failed client authentications per client id run out, then slow_down.
    let client = app.web_client().await;
    let wrong = crate::helpers::TestClient {
        secret: Some("not-the-secret".into()),
        ..client.clone()
    };
    for _ in 0..3 {
        let r = app.token(&wrong, &[("grant_type", "client_credentials")]).await;
        assert_eq!(r.status(), 401);
    }
    let blocked = app.token(&client, &[("grant_type", "client_credentials")]).await;
    assert_eq!(blocked.status(), 429);
    assert!(blocked.headers().contains_key("retry-after"));
    assert_eq!(blocked.headers()["cache-control"], "no-store");
    let body: serde_json::Value = blocked.json().await.unwrap();
    assert_eq!(body["error"], "slow_down");
}

#[tokio::test]
async fn sign_ins_carry_explainable_risk_and_show_on_the_account_page() {
    let app = spawn_app_with(realistic).await;
    app.create_user("iris", PASSWORD).await;
    let b = browser();
    attempt(&app, &b, "iris", "bad guess").await;
    assert_eq!(app.login(&b, "iris", PASSWORD).await.status(), 303);
    let events = oxidp::audit::query(
        &app.state.db,
        oxidp::db::models::audit::AuditFilter {
            action: Some("login.success".into()),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    let details: serde_json::Value = serde_json::from_str(&events[0].details).unwrap();
    assert_eq!(details["reasons"], serde_json::json!(["new_device"]));
    assert_eq!(details["risk"], 10);
    let html = b.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let history = html.split_once("Recent sign-ins").unwrap().1;
    assert!(
        history.contains("Signed in") && history.contains("Wrong password"),
        "{history}"
    );
}
