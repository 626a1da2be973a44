//! Outage drills: the IdP stops; commerce keeps serving valid tokens from its
//! caches and its persisted key set, also after a restart; too stale a key set
//! stops serving; the IdP comes back with a key rotated meanwhile.

use std::net::TcpListener;

use oxidp::clock::Clock;
use oxidp::oidc::keys::SigningAlg;
use serde_json::Value;

use super::{commerce_client_with_ttl, spawn_commerce, token_of};
use crate::helpers::{jwt_claims, spawn_app, spawn_app_sharing_on};

#[tokio::test]
async fn commerce_serves_through_an_idp_outage_and_a_restart_then_picks_up_a_rotated_key() {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |c| {
        c.commerce.jwks_refresh_secs = 3600;
        c.commerce.jwks_max_stale_secs = 4 * 3600;
    })
    .await;
    let client = commerce_client_with_ttl(&idp, "catalog-reader", &["commerce:products:read"], 6 * 3600).await;
    let used = token_of(&idp, &client).await;
    let unused = token_of(&idp, &client).await;
    let for_restart = token_of(&idp, &client).await;
    assert_eq!(commerce.get("/v1/sellers", Some(&used)).await.status(), 200);

    // The IdP goes down.
    idp.server.stop(false).await;
    assert!(reqwest::get(idp.url("/jwks")).await.is_err(), "the IdP is down");
    assert!(commerce.rs.keys.refresh().await.is_err(), "a refresh now fails");
    assert_eq!(
        commerce.get("/v1/sellers", Some(&used)).await.status(),
        200,
        "cached token"
    );
    assert_eq!(
        commerce.get("/v1/sellers", Some(&unused)).await.status(),
        200,
        "key set in memory"
    );

    // Commerce restarts during the outage: the persisted key set serves.
    let commerce = commerce.restart().await;
    let ready: Value = commerce.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["key_set"]["source"], "database", "{ready}");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(commerce.get("/v1/sellers", Some(&for_restart)).await.status(), 200);

    // Two hours on, still down: stale, still serving (metrics count it).
    idp.clock.advance(2 * 3600);
    assert_eq!(commerce.get("/v1/sellers", Some(&for_restart)).await.status(), 200);
    let ready: Value = commerce.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["key_set"]["state"], "stale", "{ready}");
    assert!(oxidp::resource_server::RsMetrics::get(&commerce.rs.metrics.served_stale) >= 1);

    // During the outage the IdP's key is rotated; then the IdP comes back on its address.
    let now = idp.clock.now();
    oxidp::oidc::keys::rotate(&idp.state.db, &idp.state.secrets, SigningAlg::ES256, now, 0, 86_400)
        .await
        .unwrap();
    let back = spawn_app_sharing_on(
        &idp,
        TcpListener::bind(("127.0.0.1", idp.port)).expect("the IdP's port is free"),
    )
    .await;
    let new_token = token_of(&back, &client).await;
    let old_kid = header_kid(&for_restart);
    assert_ne!(header_kid(&new_token), old_kid, "signed with the rotated key");
    assert_eq!(jwt_claims(&new_token)["iss"], jwt_claims(&used)["iss"]);
    let before = commerce.jwks_fetches();
    assert_eq!(commerce.get("/v1/sellers", Some(&new_token)).await.status(), 200);
    let fetched = commerce.jwks_fetches() - before;
    assert!((1..=2).contains(&fetched), "the new kid cost {fetched} fetches");
    let ready: Value = commerce.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(ready["key_set"]["state"], "fresh", "{ready}");
}

#[tokio::test]
async fn past_max_stale_nothing_is_trusted_until_the_idp_answers() {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |c| {
        c.commerce.jwks_refresh_secs = 600;
        c.commerce.jwks_max_stale_secs = 3600;
    })
    .await;
    let client = commerce_client_with_ttl(&idp, "catalog-reader", &["commerce:products:read"], 4 * 3600).await;
    let cached = token_of(&idp, &client).await;
    let fresh = token_of(&idp, &client).await;
    assert_eq!(commerce.get("/v1/sellers", Some(&cached)).await.status(), 200);
    idp.server.stop(false).await;
    idp.clock.advance(3601);
    for token in [&cached, &fresh] {
        let response = commerce.get("/v1/sellers", Some(token)).await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }
    assert_eq!(commerce.get("/readyz", None).await.status(), 503);
    // A restart does not revive a key set older than the limit either.
    let commerce = commerce.restart().await;
    assert_eq!(commerce.get("/v1/sellers", Some(&fresh)).await.status(), 503);
}

fn header_kid(token: &str) -> String {
    use base64::Engine;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// Instances sharing a database store the same issuer's key set at the same time
/// (each refreshes on its own schedule, and all at once when the IdP comes back):
/// every store succeeds and the row holds one writer's complete set.
#[tokio::test]
async fn instances_storing_the_key_set_at_once_all_succeed() {
    use oxidp::resource_server::storage;
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let db = commerce.database_pool(8);
    let issuer = "https://issuer.example.com";
    for round in 0..10_i64 {
        let stores: Vec<_> = (0..8_i64)
            .map(|writer| {
                let db = db.clone();
                tokio::spawn(async move {
                    let jwks = format!(r#"{{"keys":[],"writer":{writer}}}"#);
                    db.transaction(move |conn| storage::save(conn, issuer, &jwks, round * 100 + writer))
                        .await
                })
            })
            .collect();
        for store in stores {
            store.await.unwrap().expect("storing the key set");
        }
        let (jwks, fetched_at) = db
            .run(move |conn| storage::load(conn, issuer))
            .await
            .unwrap()
            .expect("a stored key set");
        let writer = fetched_at - round * 100;
        assert!((0..8).contains(&writer), "round {round}: fetched_at {fetched_at}");
        assert_eq!(
            jwks,
            format!(r#"{{"keys":[],"writer":{writer}}}"#),
            "one writer's complete row"
        );
    }
}
