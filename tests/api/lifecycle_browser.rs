//! The session lifecycle in a real browser (headless Chromium): the warning
//! appears with a countdown, "Stay signed in" extends in place, an expired
//! session leads to the expired page, and signing in again resumes an
//! interrupted /authorize flow. Screenshots of each page are saved.

use std::time::Duration;

use crate::browser::Browser;
use crate::helpers::{PASSWORD, spawn_app_with};

/// 60 s idle timeout (the minimum) with a 57 s warning: the banner shows ~3 s after a page loads.
fn short_sessions(c: &mut oxidp::config::Config) {
    c.session.idle_timeout_secs = 60;
    c.session.warn_before_secs = 57;
}

fn local(app: &crate::helpers::TestApp, url: &str) -> String {
    url.replacen(&app.address, &format!("http://localhost:{}", app.port), 1)
}

#[tokio::test]
async fn warning_extend_expiry_and_return_to_an_authorize_flow_in_chromium() {
    let app = spawn_app_with(short_sessions).await;
    app.create_user("zoe", PASSWORD).await;
    let client = app.web_client().await;
    let Some(browser) = Browser::start().await else { return };

    // An application sends the person to /authorize; they sign in.
    let (_verifier, challenge) = crate::helpers::pkce_pair();
    let start = app.authorize_url(
        &client,
        &[
            ("scope", "openid profile"),
            ("state", "st-9"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    // Browsers talk to the issuer's origin (http://localhost:PORT): forms are origin-checked.
    browser.goto(&local(&app, &start)).await;
    assert!(browser.url().await.contains("/login"));
    browser.screenshot("login").await;
    browser.type_into("#username", "zoe").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    assert!(
        browser
            .wait_for("location.pathname === '/consent'", Duration::from_secs(10))
            .await
    );

    // The warning appears with a live countdown.
    assert!(
        browser
            .wait_for(
                "!document.getElementById('session-timer').hidden",
                Duration::from_secs(10)
            )
            .await,
        "the expiry warning appears"
    );
    let first = browser.text(".session-countdown").await;
    assert!(first.starts_with("0:5"), "{first}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = browser.text(".session-countdown").await;
    assert!(later < first, "counts down: {first} then {later}");
    assert!(browser.text("#session-timer").await.contains("Your session expires in"));
    browser.screenshot("expiry-warning").await;

    // "Stay signed in" extends in place: the banner goes away, the page stays.
    app.clock.advance(40);
    browser.click("#session-timer button").await;
    assert!(
        browser
            .wait_for(
                "document.getElementById('session-timer').hidden",
                Duration::from_secs(5)
            )
            .await,
        "the banner hides after extending"
    );
    assert_eq!(browser.script("return location.pathname").await, "/consent");
    // The server really extended it: 40 s later (past the original end) still signed in.
    app.clock.advance(40);
    // It reappears as the new deadline approaches, then the session lapses on the server.
    assert!(
        browser
            .wait_for(
                "!document.getElementById('session-timer').hidden",
                Duration::from_secs(10)
            )
            .await
    );
    app.clock.advance(61);
    // Any action now leads to the expired page: pressing "Allow".
    browser.click("button[value=allow]").await;
    assert!(
        browser
            .wait_for("location.pathname === '/login'", Duration::from_secs(10))
            .await
    );
    assert!(browser.text("h1").await.contains("Your session has expired"));
    browser.screenshot("session-expired").await;

    // Signing in again returns to the consent page of the same request; allowing
    // completes the flow at the client with the original state.
    browser.type_into("#username", "zoe").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    assert!(
        browser
            .wait_for("location.pathname === '/consent'", Duration::from_secs(10))
            .await
    );
    browser.click("button[value=allow]").await;
    // The client's address does not resolve here: the browser shows its own error
    // page, but WebDriver reports where it was sent.
    let mut landed = String::new();
    for _ in 0..50 {
        landed = browser.url().await;
        if landed.starts_with(crate::helpers::REDIRECT_URI) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        landed.starts_with(crate::helpers::REDIRECT_URI),
        "back at the client: {landed}"
    );
    let url = url::Url::parse(&browser.url().await).unwrap();
    let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "st-9");
    assert!(pairs.contains_key("code"));
}

#[tokio::test]
async fn when_the_countdown_ends_the_page_reloads_into_the_expired_page() {
    let app = spawn_app_with(short_sessions).await;
    app.create_user("yan", PASSWORD).await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .goto(&local(&app, &app.url("/login?return_to=%2Faccount")))
        .await;
    browser.type_into("#username", "yan").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    assert!(
        browser
            .wait_for("location.pathname === '/account'", Duration::from_secs(10))
            .await,
        "{}: {}",
        browser.url().await,
        browser.script("return document.body.innerText").await
    );
    browser.screenshot("account").await;
    // The server's clock moves past the idle timeout; the page's own countdown
    // (60 s of real time) runs out and reloads into the expired page.
    app.clock.advance(61);
    assert!(
        browser
            .wait_for("location.pathname === '/login'", Duration::from_secs(75))
            .await,
        "the page reloads when the countdown ends"
    );
    assert!(browser.text("h1").await.contains("Your session has expired"));
    let back = browser
        .script("return document.querySelector('input[name=return_to]').value")
        .await;
    assert_eq!(back, "/account");
}

#[tokio::test]
async fn two_step_verification_in_chromium_enrol_then_sign_in_with_a_code() {
    use oxidp::clock::Clock;
    let app = spawn_app_with(|_| {}).await;
    app.create_user("kim", PASSWORD).await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .goto(&local(&app, &app.url("/login?return_to=%2Faccount%2Fmfa%2Ftotp")))
        .await;
    browser.type_into("#username", "kim").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    assert!(
        browser
            .wait_for("location.pathname === '/account/mfa/totp'", Duration::from_secs(10))
            .await
    );
    assert!(
        browser
            .wait_for("document.querySelector('.qr svg') !== null", Duration::from_secs(5))
            .await
    );
    browser.screenshot("mfa-enrol").await;
    let secret = browser.text("#totp-secret").await;
    let code = totp_code(&secret, app.clock.now());
    browser.type_into("#code", &code).await;
    browser.click("form.stack button[type=submit]").await;
    assert!(
        browser
            .wait_for(
                "document.getElementById('recovery-codes') !== null",
                Duration::from_secs(10)
            )
            .await
    );
    browser.screenshot("mfa-recovery-codes").await;

    // Sign out, sign in again: the second step asks for the code.
    browser.click(".site-nav button").await;
    assert!(
        browser
            .wait_for(
                "location.pathname === '/login' || location.pathname === '/logout'",
                Duration::from_secs(10)
            )
            .await
    );
    browser.goto(&local(&app, &app.url("/login"))).await;
    browser.type_into("#username", "kim").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    assert!(
        browser
            .wait_for("location.pathname === '/login/mfa'", Duration::from_secs(10))
            .await
    );
    browser.screenshot("mfa-code").await;
    app.clock.advance(30);
    browser.type_into("#code", &totp_code(&secret, app.clock.now())).await;
    browser.click("button[type=submit]").await;
    assert!(
        browser
            .wait_for("location.pathname === '/account'", Duration::from_secs(10))
            .await
    );
    assert!(browser.text("#mfa-status").await.contains("On"));
}

fn totp_code(secret_b32: &str, unix: i64) -> String {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(totp_rs::Secret::try_from_base32(secret_b32).unwrap())
        .with_account_name("test")
        .build()
        .unwrap()
        .generate(unix as u64)
        .to_string()
}
