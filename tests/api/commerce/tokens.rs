//! Token verification through the real servers: what is accepted, every forgery
//! refused with an RFC 6750 challenge, a forged-`kid` flood that does not
//! become a flood of JWKS requests, and a new key published a moment late.

use base64::Engine;
use futures_util::StreamExt;
use oxidp::clock::Clock;
use oxidp::oidc::keys::SigningAlg;
use serde_json::{Value, json};

use super::{AUDIENCE, assert_cannot_create_sellers, challenge, commerce_client, spawn_commerce, token_of};
use crate::helpers::{jwt_claims, spawn_app, spawn_app_sharing};

fn b64(value: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value)
}

#[tokio::test]
async fn commerce_accepts_an_oxidp_client_credentials_token_and_checks_permissions() {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let reader = commerce_client(&idp, "catalog-reader", &["commerce:products:read"]).await;
    let token = token_of(&idp, &reader).await;
    assert_eq!(jwt_claims(&token)["aud"], json!([AUDIENCE]));

    let ok = commerce.get("/v1/sellers", Some(&token)).await;
    assert_eq!(ok.status(), 200);

    // No token: 401 with a challenge that carries no error (RFC 6750 §3.1).
    let none = commerce.get("/v1/sellers", None).await;
    assert_eq!(none.status(), 401);
    assert_eq!(challenge(&none), format!("Bearer realm=\"{AUDIENCE}\""));
    assert_eq!(none.headers()["content-type"], "application/problem+json");

    // A token without the permission: 403 insufficient_scope naming it.
    assert_cannot_create_sellers(&commerce, &token).await;

    // /v1/me: the caller as the token names it, from the token alone.
    let me = commerce.get("/v1/me", Some(&token)).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers()["cache-control"], "no-store");
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["sub"], reader.id.as_str());
    assert_eq!(me["client_id"], reader.id.as_str());
    assert_eq!(me["service_account"], true);
    assert_eq!(me["permissions"], json!(["commerce:products:read"]));
    assert_eq!(me["expires_at"], jwt_claims(&token)["exp"]);
    assert_eq!(commerce.get("/v1/me", None).await.status(), 401);

    // The same token again is served from the verified-token cache.
    let hits = oxidp::resource_server::RsMetrics::get(&commerce.rs.metrics.token_cache_hits);
    assert_eq!(commerce.get("/v1/sellers", Some(&token)).await.status(), 200);
    assert!(oxidp::resource_server::RsMetrics::get(&commerce.rs.metrics.token_cache_hits) > hits);
}

#[tokio::test]
async fn forged_and_misdirected_tokens_are_refused_with_invalid_token() {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let client = commerce_client(&idp, "catalog-reader", &["commerce:products:read"]).await;
    let good = token_of(&idp, &client).await;
    let claims = jwt_claims(&good);
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(good.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    let kid = header["kid"].as_str().unwrap().to_owned();
    let sign = |typ: &str, edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut map = claims.as_object().unwrap().clone();
        edit(&mut map);
        oxidp::oauth::tokens::sign(&idp.state, SigningAlg::ES256, typ, map).unwrap()
    };

    // HS256 "signed" with the published public key as the HMAC secret (algorithm confusion).
    let jwks: Value = reqwest::get(idp.url("/jwks")).await.unwrap().json().await.unwrap();
    let public = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap()
        .to_string();
    let mut hs_header = josekit::jws::JwsHeader::new();
    hs_header.set_token_type("at+jwt");
    hs_header.set_key_id(&kid);
    let hs256 = josekit::jwt::encode_with_signer(
        &josekit::jwt::JwtPayload::from_map(claims.as_object().unwrap().clone()).unwrap(),
        &hs_header,
        &josekit::jws::HS256.signer_from_bytes(public.as_bytes()).unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "at+jwt", "kid": kid})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let parts: Vec<&str> = good.split('.').collect();
    let mut elevated = claims.clone();
    elevated["permissions"] = json!(["commerce:sellers:admin"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(elevated.to_string().as_bytes()), parts[2]);
    let other_audience = idp
        .client_token(&client, &[("resource", "https://other.example.com/")])
        .await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let cases: Vec<(&str, String)> = vec![
        ("wrong typ", sign("JWT", &|_| {})),
        ("an ID token type", sign("id+jwt", &|_| {})),
        ("alg none", none),
        ("HS256 with the public key", hs256),
        ("tampered payload", tampered),
        ("wrong audience", other_audience),
        (
            "wrong issuer",
            sign("at+jwt", &|m| {
                m.insert("iss".into(), "https://evil.example.com".into());
            }),
        ),
        (
            "no client_id",
            sign("at+jwt", &|m| {
                m.remove("client_id");
            }),
        ),
        (
            "not yet valid",
            sign("at+jwt", &|m| {
                m.insert("nbf".into(), json!(idp.clock.now() + 300));
            }),
        ),
        ("not a JWT", "abc.def".to_owned()),
    ];
    for (what, token) in &cases {
        let response = commerce.get("/v1/sellers", Some(token)).await;
        assert_eq!(response.status(), 401, "{what}");
        let c = challenge(&response);
        assert!(
            c.starts_with(&format!(
                "Bearer realm=\"{AUDIENCE}\", error=\"invalid_token\", error_description="
            )),
            "{what}: {c}"
        );
    }

    // Expired: the good token, once its lifetime and the 60 s skew have passed.
    assert_eq!(commerce.get("/v1/sellers", Some(&good)).await.status(), 200);
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    idp.clock.advance(ttl + 61);
    let expired = commerce.get("/v1/sellers", Some(&good)).await;
    assert_eq!(expired.status(), 401, "a cached token expires too");
    assert!(challenge(&expired).contains("expired"), "{}", challenge(&expired));
}

#[tokio::test]
async fn a_flood_of_forged_kids_does_not_become_a_flood_of_jwks_requests() {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let client = commerce_client(&idp, "catalog-reader", &["commerce:products:read"]).await;
    let good = token_of(&idp, &client).await;
    let payload = good.split('.').nth(1).unwrap().to_owned();
    let before = commerce.jwks_fetches();

    let http = reqwest::Client::new();
    let statuses: Vec<u16> = futures_util::stream::iter(0..10_000)
        .map(|i| {
            let header = b64(json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("forged-{i}")})
                .to_string()
                .as_bytes());
            let token = format!("{header}.{payload}.c2lnbmF0dXJl");
            let request = http.get(commerce.url("/v1/sellers")).bearer_auth(token);
            async move { request.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 401));
    let fetched = commerce.jwks_fetches() - before;
    assert!(fetched <= 2, "10,000 forged kids caused {fetched} JWKS fetches");
    assert!(oxidp::resource_server::RsMetrics::get(&commerce.rs.metrics.jwks_refetch_suppressed) >= 9_990);
    // Genuine tokens are unaffected, and after jwks_min_refetch_secs refetching is allowed again.
    assert_eq!(commerce.get("/v1/sellers", Some(&good)).await.status(), 200);
    idp.clock.advance(commerce.config.commerce.jwks_min_refetch_secs);
    let header = b64(json!({"alg": "ES256", "typ": "at+jwt", "kid": "forged-again"})
        .to_string()
        .as_bytes());
    let forged = format!("{header}.{payload}.c2lnbmF0dXJl");
    let at = commerce.jwks_fetches();
    assert_eq!(commerce.get("/v1/sellers", Some(&forged)).await.status(), 401);
    // The new window's two: the first, and the second it waited for.
    assert_eq!(commerce.jwks_fetches(), at + 2);
}

/// A key rotated at once (`keys rotate --now`) reaches a cluster's IdP instances
/// a moment apart: a token of the new key can arrive while the instance commerce
/// asks still publishes the old set. That request is not refused: it waits for
/// the window's second refetch, half a second later, which finds the key (the
/// test clock stands still, so nothing else could). The window allows no third.
#[tokio::test]
async fn a_key_published_a_moment_late_is_picked_up_by_the_second_refetch() {
    let idp = spawn_app().await;
    let signer = spawn_app_sharing(&idp).await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let client = commerce_client(&idp, "catalog-reader", &["commerce:products:read"]).await;
    let now = idp.clock.now();
    oxidp::oidc::keys::rotate(&idp.state.db, &idp.state.secrets, SigningAlg::ES256, now, 0, 86_400)
        .await
        .unwrap();
    // `signer` re-reads its keys and signs with the new one; `idp`, the issuer
    // commerce fetches from, has not (on SQLite nothing tells it; on PostgreSQL
    // its listener may already have, and then the first refetch finds the key).
    signer
        .state
        .keys
        .refresh(&signer.state.db, &signer.state.secrets, now)
        .await
        .unwrap();
    let token = token_of(&signer, &client).await;
    let before = commerce.jwks_fetches();
    let started = std::time::Instant::now();
    let first = {
        let (url, token) = (commerce.url("/v1/sellers"), token.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // Once commerce made its first refetch, the issuer catches up.
    while commerce.jwks_fetches() == before && started.elapsed() < std::time::Duration::from_secs(5) {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    idp.state
        .keys
        .refresh(&idp.state.db, &idp.state.secrets, now)
        .await
        .unwrap();
    assert_eq!(first.await.unwrap(), 200, "the request waited for the second refetch");
    let fetched = commerce.jwks_fetches() - before;
    assert!((1..=2).contains(&fetched), "{fetched} fetches");

    let payload = token.split('.').nth(1).unwrap().to_owned();
    let header = b64(json!({"alg": "ES256", "typ": "at+jwt", "kid": "forged-after"})
        .to_string()
        .as_bytes());
    let forged = format!("{header}.{payload}.c2lnbmF0dXJl");
    let at = commerce.jwks_fetches();
    assert_eq!(commerce.get("/v1/sellers", Some(&forged)).await.status(), 401);
    if fetched == 2 {
        assert_eq!(commerce.jwks_fetches(), at, "two refetches in the window at most");
    }
}

#[tokio::test]
async fn without_any_key_set_protected_routes_answer_503_and_the_public_catalog_works() {
    let idp = spawn_app().await;
    // An issuer nobody listens on: no key set can be fetched, none is persisted.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_issuer = format!("http://127.0.0.1:{}", dead.local_addr().unwrap().port());
    drop(dead);
    let commerce = spawn_commerce(&idp, |c| c.commerce.issuer = Some(dead_issuer)).await;
    let client = commerce_client(&idp, "catalog-reader", &["commerce:products:read"]).await;
    let token = token_of(&idp, &client).await;

    let response = commerce.get("/v1/sellers", Some(&token)).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert_eq!(commerce.get("/v1/catalog/products", None).await.status(), 200);
    let ready = commerce.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["key_set"]["state"], "none");
    assert_eq!(commerce.get("/healthz", None).await.status(), 200);
}

#[tokio::test]
async fn a_persons_token_from_the_code_flow_acts_as_that_person() {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let actor = oxidp::audit::Actor::system();
    let admin = token_of(
        &idp,
        &super::commerce_client(&idp, "commerce-admin", &["commerce:sellers:admin"]).await,
    )
    .await;
    oxidp::rbac::create_role(idp.state.rbac_change(), &actor, "seller-staff", "")
        .await
        .unwrap();
    oxidp::rbac::grant(
        idp.state.rbac_change(),
        &actor,
        "seller-staff",
        "commerce:products:write",
        Some(AUDIENCE),
    )
    .await
    .unwrap();
    let carol = idp.create_user("carol", crate::helpers::PASSWORD).await;
    oxidp::rbac::assign(
        idp.state.rbac_change(),
        &actor,
        oxidp::rbac::Subject::User("carol".into()),
        "seller-staff",
    )
    .await
    .unwrap();
    let app = idp
        .create_client(oxidp::oauth::clients::ClientSpec {
            name: Some("Seller portal".into()),
            redirect_uris: Some(vec![crate::helpers::REDIRECT_URI.into()]),
            grant_types: Some(vec!["authorization_code".into()]),
            scopes: Some("openid".into()),
            audience: Some(AUDIENCE.to_owned()),
            require_consent: Some(false),
            ..Default::default()
        })
        .await;
    let (code, verifier) = idp.code_for(&app, &crate::helpers::browser(), "carol", "openid").await;
    let tokens: Value = idp.redeem(&app, &code, &verifier).await.json().await.unwrap();
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_claims(&token);
    assert_eq!(claims["sub"], carol.id.as_str());
    assert_ne!(claims["sub"], claims["client_id"], "a person, not a service account");
    let me: Value = commerce.get("/v1/me", Some(&token)).await.json().await.unwrap();
    assert_eq!(me["sub"], carol.id.as_str());
    assert_eq!(me["service_account"], false);
    assert_eq!(me["permissions"], json!(["commerce:products:write"]));

    let seller: Value = commerce
        .send(
            reqwest::Method::POST,
            "/v1/sellers",
            &admin,
            None,
            json!({"name": "Carol's", "kind": "INTERNAL", "contact": {"email": "c@example.com"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let seller_id = seller["id"].as_str().unwrap();
    let product = json!({"seller_id": seller_id, "name": "Mug", "category": "kitchen", "type": "REALTIME",
                         "price": {"amount_minor": 900, "currency": "EUR"}});
    let before = commerce
        .send(reqwest::Method::POST, "/v1/products", &token, None, product.clone())
        .await;
    assert_eq!(before.status(), 403, "not a member yet");
    let added = commerce
        .send(
            reqwest::Method::PUT,
            &format!("/v1/sellers/{seller_id}/members/{}", carol.id),
            &admin,
            None,
            json!({}),
        )
        .await;
    assert_eq!(added.status(), 200);
    let created = commerce
        .send(reqwest::Method::POST, "/v1/products", &token, None, product)
        .await;
    assert_eq!(created.status(), 201);
}
