//! The second step's consecutive-failure counter (issue 20): TOTP and recovery
//! codes together, reserved in the database before each check, exponential
//! delay, TOTP lockout at `login.second_step_lockout_after` (50), lifted by a
//! recovery code or an administrator; counted exactly under concurrency on two
//! instances; reported on `/account` and in the risk signals.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use oxidp::clock::Clock;
use oxidp::db::models::mfa as mfa_rows;

use crate::helpers::{PASSWORD, TestApp, browser, csrf_of, spawn_app, spawn_app_sharing, spawn_app_with, text_of};
use crate::mfa::{code_at, enrol, password_step, submit_code};

/// A code that is not valid now (nor one step either side).
fn wrong_code(secret: &str, now: i64) -> String {
    let valid: Vec<String> = [-30, 0, 30].iter().map(|d| code_at(secret, now + d)).collect();
    ["000000", "111111", "222222", "333333"]
        .iter()
        .map(|c| (*c).to_owned())
        .find(|c| !valid.contains(c))
        .unwrap()
}

fn checks(apps: &[&TestApp]) -> u64 {
    apps.iter()
        .map(|a| a.state.metrics.second_step_checks.load(Ordering::Relaxed))
        .sum()
}

async fn counter(app: &TestApp, user_id: &str) -> mfa_rows::MfaThrottleRow {
    let id = user_id.to_owned();
    app.state
        .db
        .run(move |conn| mfa_rows::find_throttle(conn, &id))
        .await
        .unwrap()
        .expect("a counter row")
}

async fn count_events(app: &TestApp, action: &str) -> usize {
    oxidp::audit::query(
        &app.state.db,
        oxidp::db::models::audit::AuditFilter {
            action: Some(action.into()),
            ..Default::default()
        },
        1000,
    )
    .await
    .unwrap()
    .len()
}

#[tokio::test]
async fn two_hundred_wrong_codes_over_days_lock_totp_after_fifty_checks_and_a_recovery_code_lifts_it() {
    let app = spawn_app_with(|c| c.login.second_step_delay_after = 3).await;
    let user = app.create_user("tess", PASSWORD).await;
    let b = browser();
    assert_eq!(app.login(&b, "tess", PASSWORD).await.status(), 303);
    let (secret, codes) = enrol(&app, &b).await;
    let before = checks(&[&app]);
    let mut statuses = Vec::new();
    // One guess every 1,000 s (longer than the longest delay): about 2.3 days.
    for _ in 0..200 {
        app.clock.advance(1000);
        let parked = password_step(&app, "tess").await;
        let code = wrong_code(&secret, app.clock.now());
        statuses.push(submit_code(&app, &parked, &code).await.status().as_u16());
    }
    assert_eq!(checks(&[&app]) - before, 50, "at most 50 codes checked");
    assert!(statuses[..50].iter().all(|s| *s == 422), "{statuses:?}");
    assert!(statuses[50..].iter().all(|s| *s == 403), "{statuses:?}");
    let row = counter(&app, &user.id).await;
    assert_eq!(row.failures, 50);
    assert!(row.locked_at.is_some());
    assert_eq!(count_events(&app, "mfa.lockout").await, 1);

    // Locked: even the right TOTP code is refused, unchecked, with a clear page.
    app.clock.advance(1000);
    let parked = password_step(&app, "tess").await;
    let refused = submit_code(&app, &parked, &code_at(&secret, app.clock.now())).await;
    assert_eq!(refused.status(), 403);
    let html = refused.text().await.unwrap();
    assert!(text_of(&html, "#code-error").unwrap().contains("locked"), "{html}");
    assert_eq!(checks(&[&app]) - before, 50);

    // A recovery code still works (TOTP guesses caused the lock) and lifts it.
    assert_eq!(submit_code(&app, &parked, &codes[0]).await.status(), 303);
    let account = parked
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        text_of(&account, "#second-step-failures").map(|t| t.split_whitespace().collect::<Vec<_>>().join(" ")),
        Some(
            "201 failed second-step attempts since your last sign-in. If that was not you, someone knows your \
             password: change it."
                .to_owned()
        )
    );
    app.clock.advance(60);
    let parked = password_step(&app, "tess").await;
    assert_eq!(
        submit_code(&app, &parked, &code_at(&secret, app.clock.now()))
            .await
            .status(),
        303
    );
    assert_eq!(counter(&app, &user.id).await.failures, 0);
    // The next sign-in reports nothing new.
    let account = parked
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text_of(&account, "#second-step-failures").is_none());
}

#[tokio::test]
async fn sixty_parallel_wrong_codes_on_two_instances_check_exactly_fifty() {
    // No delay (the test default is 100): only the lockout at 50 limits.
    let a = spawn_app().await;
    let b = spawn_app_sharing(&a).await;
    let user = a.create_user("uma", PASSWORD).await;
    let setup = browser();
    assert_eq!(a.login(&setup, "uma", PASSWORD).await.status(), 303);
    let (secret, _) = enrol(&a, &setup).await;
    a.clock.advance(120);
    let parked = Arc::new(password_step(&a, "uma").await);
    let page = parked
        .get(a.url("/login/mfa"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = csrf_of(&page);
    let code = wrong_code(&secret, a.clock.now());
    let before = checks(&[&a, &b]);
    let urls = [a.url("/login/mfa"), b.url("/login/mfa")];
    let attempts = (0..60).map(|i| {
        parked
            .post(&urls[i % 2])
            .form(&[("csrf_token", csrf.as_str()), ("code", code.as_str())])
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 422).count(), 50, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 403).count(), 10, "{statuses:?}");
    assert_eq!(checks(&[&a, &b]) - before, 50);
    let row = counter(&a, &user.id).await;
    assert_eq!((row.failures, row.since_sign_in), (50, 60));
    assert!(row.locked_at.is_some());
    assert_eq!(count_events(&a, "mfa.failure").await, 50);
    assert_eq!(count_events(&a, "mfa.lockout").await, 1);
}

#[tokio::test]
async fn an_administrator_unlocks_the_second_step_and_failures_raise_the_risk() {
    let app = spawn_app_with(|c| c.login.second_step_lockout_after = 5).await;
    let user = app.create_user("vic", PASSWORD).await;
    let setup = browser();
    assert_eq!(app.login(&setup, "vic", PASSWORD).await.status(), 303);
    let (secret, _) = enrol(&app, &setup).await;
    let lock = || async {
        app.clock.advance(60);
        let parked = password_step(&app, "vic").await;
        for _ in 0..5 {
            let code = wrong_code(&secret, app.clock.now());
            assert_eq!(submit_code(&app, &parked, &code).await.status(), 422);
        }
        let right = code_at(&secret, app.clock.now());
        assert_eq!(submit_code(&app, &parked, &right).await.status(), 403);
        parked
    };
    lock().await;
    // The failures are a risk signal of the next password step.
    let events = oxidp::audit::query(
        &app.state.db,
        oxidp::db::models::audit::AuditFilter {
            action: Some("login.success".into()),
            ..Default::default()
        },
        1,
    )
    .await
    .unwrap();
    let parked = password_step(&app, "vic").await;
    let newest = oxidp::audit::query(
        &app.state.db,
        oxidp::db::models::audit::AuditFilter {
            action: Some("login.success".into()),
            ..Default::default()
        },
        1,
    )
    .await
    .unwrap();
    assert_ne!(events[0].id, newest[0].id);
    assert!(newest[0].details.contains("second_step_failures"), "{newest:?}");

    // The admin API unlocks.
    let token = app.admin_token().await;
    let response = reqwest::Client::new()
        .post(app.url(&format!("/admin/v1/users/{}/unlock", user.id)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let right = code_at(&secret, app.clock.now());
    assert_eq!(submit_code(&app, &parked, &right).await.status(), 303);

    // So does the CLI.
    lock().await;
    let out = app.cli_json(&["user", "unlock", "vic", "--json"], None);
    assert_eq!(out["unlocked"], true);
    app.clock.advance(30);
    let parked = password_step(&app, "vic").await;
    let right = code_at(&secret, app.clock.now());
    assert_eq!(submit_code(&app, &parked, &right).await.status(), 303);
    assert_eq!(count_events(&app, "user.unlock").await, 2);
}
