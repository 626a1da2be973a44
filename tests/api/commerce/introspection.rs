//! Introspection on revocation-sensitive routes, through the real servers: a token
//! revoked at oxidp is refused where it matters and still served locally elsewhere;
//! with the IdP down the circuit breaker opens after 5 failures (visible in
//! `/metrics`), the `local` fallback serves, `deny` answers 503 + Retry-After; with
//! the IdP back and 30 s passed, the half-open probe closes the breaker.

use std::net::TcpListener;

use oxidp::config::{Config, IntrospectionFallback, IntrospectionMode};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{AUDIENCE, CommerceTest, challenge, commerce_client, spawn_commerce, token_of};
use crate::helpers::{TestApp, spawn_app, spawn_app_sharing_on};

/// Registers the client commerce introspects as (its audience is the commerce API,
/// so oxidp answers for tokens issued to that audience) and turns introspection on.
async fn with_introspection(
    idp: &TestApp,
    mode: IntrospectionMode,
    fallback: IntrospectionFallback,
) -> impl FnOnce(&mut Config) {
    let client = idp
        .create_client(oxidp::oauth::clients::ClientSpec {
            name: Some("commerce introspection".into()),
            grant_types: Some(vec!["client_credentials".into()]),
            audience: Some(AUDIENCE.to_owned()),
            ..Default::default()
        })
        .await;
    move |c: &mut Config| {
        c.commerce.introspection = mode;
        c.commerce.introspection_client_id = Some(client.id.clone());
        c.commerce.introspection_client_secret = Some(SecretString::from(client.secret.clone().unwrap()));
        c.commerce.introspection_fallback = fallback;
    }
}

async fn create_seller(commerce: &CommerceTest, token: &str, name: &str) -> reqwest::Response {
    commerce
        .send(
            reqwest::Method::POST,
            "/v1/sellers",
            token,
            None,
            json!({"name": name, "kind": "INTERNAL", "contact": {"email": "ops@shop.example"}}),
        )
        .await
}

/// One sample of the commerce `/metrics` exposition ("name" or "name{labels}").
async fn metric(commerce: &CommerceTest, sample: &str) -> u64 {
    let body = commerce.get("/metrics", None).await.text().await.unwrap();
    body.lines()
        .find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{sample} not in /metrics:\n{body}"))
}

async fn breaker_state(commerce: &CommerceTest) -> String {
    let body = commerce.get("/metrics", None).await.text().await.unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with("commerce_introspection_breaker_state{"))
        .expect("breaker gauge");
    line.split('"').nth(1).unwrap().to_owned()
}

#[tokio::test]
async fn commerce_refuses_a_revoked_token_on_sensitive_routes_but_reads_still_verify_locally() {
    let idp = spawn_app().await;
    let configure = with_introspection(&idp, IntrospectionMode::Sensitive, IntrospectionFallback::Local).await;
    let commerce = spawn_commerce(&idp, configure).await;
    let admin = commerce_client(&idp, "seller-admin", &["commerce:sellers:admin"]).await;
    let token = token_of(&idp, &admin).await;

    assert_eq!(create_seller(&commerce, &token, "Before").await.status(), 201);
    assert_eq!(
        metric(&commerce, "commerce_requests_served_total{path=\"introspection\"}").await,
        1
    );
    assert_eq!(create_seller(&commerce, &token, "Cached").await.status(), 201);
    assert_eq!(
        metric(
            &commerce,
            "commerce_requests_served_total{path=\"introspection-cache\"}"
        )
        .await,
        1
    );

    // Revoked at oxidp (RFC 7009) by the client it was issued to.
    let revoked = reqwest::Client::new()
        .post(idp.url("/revoke"))
        .basic_auth(&admin.id, admin.secret.as_deref())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    // The cached "active" answer lives at most introspection_cache_secs (10).
    idp.clock.advance(11);

    let refused = create_seller(&commerce, &token, "After").await;
    assert_eq!(refused.status(), 401);
    assert!(
        challenge(&refused).contains("error=\"invalid_token\""),
        "{}",
        challenge(&refused)
    );
    assert_eq!(
        refused.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    assert_eq!(metric(&commerce, "commerce_introspection_inactive_total").await, 1);
    // The "inactive" answer is cached too: a retry does not ask the IdP again.
    let calls = metric(&commerce, "commerce_introspection_calls_total").await;
    assert_eq!(create_seller(&commerce, &token, "Again").await.status(), 401);
    assert_eq!(metric(&commerce, "commerce_introspection_calls_total").await, calls);

    // A non-sensitive read is still served on local verification.
    let local_before = metric(&commerce, "commerce_requests_served_total{path=\"local\"}").await;
    assert_eq!(commerce.get("/v1/sellers", Some(&token)).await.status(), 200);
    assert_eq!(
        metric(&commerce, "commerce_requests_served_total{path=\"local\"}").await,
        local_before + 1
    );

    // A token that was never revoked keeps working on the sensitive route.
    let other = token_of(&idp, &admin).await;
    assert_eq!(create_seller(&commerce, &other, "Other").await.status(), 201);
}

#[tokio::test]
async fn commerce_introspection_all_checks_reads_too() {
    let idp = spawn_app().await;
    let configure = with_introspection(&idp, IntrospectionMode::All, IntrospectionFallback::Local).await;
    let commerce = spawn_commerce(&idp, configure).await;
    let admin = commerce_client(&idp, "seller-admin", &["commerce:sellers:admin"]).await;
    let token = token_of(&idp, &admin).await;
    assert_eq!(commerce.get("/v1/sellers", Some(&token)).await.status(), 200);
    let revoked = reqwest::Client::new()
        .post(idp.url("/revoke"))
        .basic_auth(&admin.id, admin.secret.as_deref())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    idp.clock.advance(11);
    assert_eq!(commerce.get("/v1/sellers", Some(&token)).await.status(), 401);
}

/// Stops the IdP, lets the cached answer expire, and sends sensitive requests until
/// the breaker has seen 5 consecutive failures. Returns the responses' statuses.
async fn fail_five_times(idp: &TestApp, commerce: &CommerceTest, token: &str) -> Vec<u16> {
    idp.server.stop(false).await;
    assert!(reqwest::get(idp.url("/jwks")).await.is_err(), "the IdP is down");
    idp.clock.advance(11);
    let mut statuses = Vec::new();
    for i in 0..5 {
        assert_eq!(breaker_state(commerce).await, "closed", "before failure {i}");
        statuses.push(
            create_seller(commerce, token, &format!("Outage {i}"))
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(metric(commerce, "commerce_introspection_failures_total").await, 5);
    assert_eq!(breaker_state(commerce).await, "open");
    assert_eq!(metric(commerce, "commerce_introspection_breaker_opened_total").await, 1);
    statuses
}

#[tokio::test]
async fn commerce_breaker_opens_after_five_failures_serves_by_local_fallback_and_a_probe_closes_it() {
    let idp = spawn_app().await;
    let configure = with_introspection(&idp, IntrospectionMode::Sensitive, IntrospectionFallback::Local).await;
    let commerce = spawn_commerce(&idp, configure).await;
    let admin = commerce_client(&idp, "seller-admin", &["commerce:sellers:admin"]).await;
    let token = token_of(&idp, &admin).await;
    assert_eq!(create_seller(&commerce, &token, "Up").await.status(), 201);
    let calls_up = metric(&commerce, "commerce_introspection_calls_total").await;

    let statuses = fail_five_times(&idp, &commerce, &token).await;
    assert_eq!(statuses, vec![201; 5], "the local fallback serves while the IdP fails");

    // Open: served by fallback without calling the IdP.
    let calls = metric(&commerce, "commerce_introspection_calls_total").await;
    assert_eq!(calls, calls_up + 5);
    for i in 0..3 {
        assert_eq!(
            create_seller(&commerce, &token, &format!("Open {i}")).await.status(),
            201
        );
    }
    assert_eq!(metric(&commerce, "commerce_introspection_calls_total").await, calls);
    assert_eq!(
        metric(&commerce, "commerce_requests_served_total{path=\"fallback\"}").await,
        8
    );

    // The IdP comes back, but the breaker stays open until 30 s have passed.
    let _back = spawn_app_sharing_on(
        &idp,
        TcpListener::bind(("127.0.0.1", idp.port)).expect("the IdP's port is free"),
    )
    .await;
    idp.clock.advance(29);
    assert_eq!(create_seller(&commerce, &token, "Still open").await.status(), 201);
    assert_eq!(metric(&commerce, "commerce_introspection_calls_total").await, calls);
    assert_eq!(breaker_state(&commerce).await, "open");

    // 30 s after opening: one probe, it succeeds, the breaker closes.
    idp.clock.advance(1);
    assert_eq!(create_seller(&commerce, &token, "Probe").await.status(), 201);
    assert_eq!(metric(&commerce, "commerce_introspection_calls_total").await, calls + 1);
    assert_eq!(breaker_state(&commerce).await, "closed");
    assert_eq!(
        metric(&commerce, "commerce_introspection_breaker_closed_total").await,
        1
    );
    assert_eq!(
        metric(&commerce, "commerce_requests_served_total{path=\"fallback\"}").await,
        9
    );
    assert_eq!(
        metric(&commerce, "commerce_requests_served_total{path=\"introspection\"}").await,
        2
    );
}

#[tokio::test]
async fn commerce_breaker_with_deny_fallback_answers_503_with_retry_after_and_reads_still_serve() {
    let idp = spawn_app().await;
    let configure = with_introspection(&idp, IntrospectionMode::Sensitive, IntrospectionFallback::Deny).await;
    let commerce = spawn_commerce(&idp, configure).await;
    let admin = commerce_client(&idp, "seller-admin", &["commerce:sellers:admin"]).await;
    let token = token_of(&idp, &admin).await;
    assert_eq!(create_seller(&commerce, &token, "Up").await.status(), 201);

    let statuses = fail_five_times(&idp, &commerce, &token).await;
    assert_eq!(statuses, vec![503; 5], "deny: the issuer could not be asked");

    let denied = create_seller(&commerce, &token, "Open").await;
    assert_eq!(denied.status(), 503);
    let retry_after: i64 = denied.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=30).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(
        denied.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: Value = denied.json().await.unwrap();
    assert_eq!(problem["status"], 503);
    assert_eq!(metric(&commerce, "commerce_introspection_denied_total").await, 6);
    assert_eq!(
        metric(&commerce, "commerce_requests_served_total{path=\"fallback\"}").await,
        0
    );
    // Reads do not need the issuer.
    assert_eq!(commerce.get("/v1/sellers", Some(&token)).await.status(), 200);

    let _back = spawn_app_sharing_on(
        &idp,
        TcpListener::bind(("127.0.0.1", idp.port)).expect("the IdP's port is free"),
    )
    .await;
    idp.clock.advance(30);
    assert_eq!(create_seller(&commerce, &token, "Probe").await.status(), 201);
    assert_eq!(breaker_state(&commerce).await, "closed");
}

#[tokio::test]
async fn commerce_refuses_to_start_with_introspection_on_but_no_client() {
    let idp = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::base_config(dir.path());
    config.commerce.database_url = Some(format!("sqlite://{}", dir.path().join("c.db").display()));
    config.commerce.issuer = Some(idp.config.issuer.clone());
    assert_eq!(
        config.commerce.introspection,
        IntrospectionMode::Sensitive,
        "the default"
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let error = oxidp::commerce::CommerceApp::with_listener(&config, idp.clock.clone(), listener)
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("commerce.introspection_client_id"),
        "{error}"
    );
}
