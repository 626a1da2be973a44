//! `login.trusted_proxies`: behind a trusted proxy each client keeps its own sign-in
//! budget, found in `X-Forwarded-For`; without one, or by prepending addresses to
//! the header, a client cannot pick the address it is counted under.

use crate::helpers::{PASSWORD, TestApp, browser, spawn_app_with};

/// Only the per-address limiter matters here: two attempts per address, then 429.
fn two_per_address(c: &mut oxidp::config::Config) {
    c.login.ip_per_minute = 1;
    c.login.ip_burst = 2;
    c.login.delay_after = 100;
    c.login.stuffing_usernames = 1_000;
    c.login.deny_score = 1_000;
}

/// A wrong-password sign-in with `forwarded` as `X-Forwarded-For`; the status.
async fn attempt(app: &TestApp, forwarded: &str) -> u16 {
    let b = browser();
    let csrf = app.login_csrf(&b).await;
    b.post(app.url("/login"))
        .header("x-forwarded-for", forwarded)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", "hank"),
            ("password", "bad guess"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_budget() {
    // The tests connect from 127.0.0.1: that is the proxy.
    let app = spawn_app_with(|c| {
        two_per_address(c);
        c.login.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    app.create_user("hank", PASSWORD).await;
    assert_eq!(attempt(&app, "203.0.113.1").await, 200);
    assert_eq!(attempt(&app, "203.0.113.1").await, 200);
    assert_eq!(
        attempt(&app, "203.0.113.1").await,
        429,
        "the first client's budget is spent"
    );
    assert_eq!(
        attempt(&app, "203.0.113.2").await,
        200,
        "another client behind the proxy"
    );
    // The right-most address the proxy did not add is the client: prepending a
    // fresh address to the header does not give the first client a new budget.
    assert_eq!(attempt(&app, "198.51.100.99, 203.0.113.1").await, 429);
}

#[tokio::test]
async fn without_a_trusted_proxy_the_header_is_ignored() {
    let app = spawn_app_with(two_per_address).await;
    app.create_user("hank", PASSWORD).await;
    assert_eq!(attempt(&app, "203.0.113.1").await, 200);
    assert_eq!(attempt(&app, "203.0.113.2").await, 200);
    assert_eq!(
        attempt(&app, "203.0.113.3").await,
        429,
        "a made-up X-Forwarded-For is not a new address"
    );
}
