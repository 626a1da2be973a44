//! Client administration through the CLI, and client authentication methods.

use oxidp::clock::Clock;

use josekit::jwk::KeyPair;
use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::JwtPayload;

use crate::helpers::{TestClient, spawn_app};

#[tokio::test]
async fn client_cli_creates_shows_rotates_updates_and_deletes() {
    let app = spawn_app().await;
    let created = app.cli_json(
        &[
            "client",
            "create",
            "--id",
            "shop-web",
            "--name",
            "Shop",
            "--redirect-uri",
            "https://shop.example/cb",
            "--grant-type",
            "authorization_code",
            "--grant-type",
            "client_credentials",
            "--scopes",
            "openid api:read",
            "--json",
        ],
        None,
    );
    assert_eq!(created["client_id"], "shop-web");
    let secret = created["client_secret"].as_str().expect("secret shown once").to_owned();
    assert!(secret.len() >= 43, "≥ 256 bits");
    let shown = app.cli_json(&["client", "show", "shop-web", "--json"], None);
    assert!(shown.get("client_secret").is_none());
    assert_eq!(shown["redirect_uris"], serde_json::json!(["https://shop.example/cb"]));
    let listed = app.cli_json(&["client", "list", "--json"], None);
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let mut client = TestClient {
        id: "shop-web".into(),
        secret: Some(secret.clone()),
        redirect_uri: "https://shop.example/cb".into(),
    };
    assert_eq!(
        app.token(&client, &[("grant_type", "client_credentials")])
            .await
            .status(),
        200
    );

    // Rotation: the old secret stops working at once (this instance's cache is
    // bypassed by waiting out its short TTL).
    let rotated = app.cli_json(&["client", "rotate-secret", "shop-web", "--json"], None);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    tokio::time::sleep(std::time::Duration::from_secs(app.config.tokens.client_cache_secs + 1)).await;
    assert_eq!(
        app.token(&client, &[("grant_type", "client_credentials")])
            .await
            .status(),
        401
    );
    client.secret = Some(new_secret);
    assert_eq!(
        app.token(&client, &[("grant_type", "client_credentials")])
            .await
            .status(),
        200
    );

    // Update.
    let updated = app.cli_json(
        &[
            "client",
            "update",
            "shop-web",
            "--name",
            "Shop 2",
            "--first-party",
            "--json",
        ],
        None,
    );
    assert_eq!(updated["name"], "Shop 2");
    assert_eq!(updated["require_consent"], false);

    // Bad input names the field.
    let bad = app.cli(&["client", "create", "--redirect-uri", "http://evil.example/cb"], None);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("redirect_uris"));
    let bad = app.cli(
        &[
            "client",
            "create",
            "--auth-method",
            "none",
            "--grant-type",
            "client_credentials",
        ],
        None,
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("public client"));

    // Delete: tokens can no longer be obtained.
    app.cli_json(&["client", "delete", "shop-web", "--json"], None);
    tokio::time::sleep(std::time::Duration::from_secs(app.config.tokens.client_cache_secs + 1)).await;
    assert_eq!(
        app.token(&client, &[("grant_type", "client_credentials")])
            .await
            .status(),
        401
    );
    assert!(!app.cli(&["client", "show", "shop-web"], None).status.success());
}

#[tokio::test]
async fn client_secret_post_and_private_key_jwt_with_replay_protection() {
    let app = spawn_app().await;
    let post = app
        .create_client(oxidp::oauth::clients::ClientSpec {
            auth_method: Some("client_secret_post".into()),
            grant_types: Some(vec!["client_credentials".into()]),
            scopes: Some("api:read".into()),
            ..Default::default()
        })
        .await;
    let response = reqwest::Client::new()
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", post.id.as_str()),
            ("client_secret", post.secret.as_deref().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // private_key_jwt: the client holds the private key, oxidp only the public JWK.
    let pair = ES256.generate_key_pair().unwrap();
    let mut public = pair.to_jwk_public_key();
    public.set_key_id("client-key-1");
    let jwt_client = app
        .create_client(oxidp::oauth::clients::ClientSpec {
            auth_method: Some("private_key_jwt".into()),
            jwks: Some(serde_json::json!({ "keys": [serde_json::Value::Object(public.as_ref().clone())] })),
            grant_types: Some(vec!["client_credentials".into()]),
            scopes: Some("api:read".into()),
            ..Default::default()
        })
        .await;
    assert!(jwt_client.secret.is_none());
    let signer = {
        let mut s = ES256.signer_from_pem(pair.to_pem_private_key()).unwrap();
        s.set_key_id("client-key-1");
        s
    };
    let now = app.clock.now();
    let assertion = |jti: &str, aud: &str, exp: i64| {
        let mut payload = JwtPayload::new();
        payload.set_issuer(&jwt_client.id);
        payload.set_subject(&jwt_client.id);
        payload.set_audience(vec![aud]);
        payload.set_jwt_id(jti);
        payload.set_claim("exp", Some(serde_json::json!(exp))).unwrap();
        josekit::jwt::encode_with_signer(&payload, &JwsHeader::new(), &signer).unwrap()
    };
    let send = |assertion: String| {
        let app = &app;
        async move {
            reqwest::Client::new()
                .post(app.url("/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let token_endpoint = format!("{}/token", app.config.issuer());
    let good = assertion("jti-1", &token_endpoint, now + 60);
    assert_eq!(send(good.clone()).await, 200);
    assert_eq!(send(good).await, 401, "a replayed assertion is refused");
    assert_eq!(
        send(assertion("jti-2", "https://other.example/token", now + 60)).await,
        401,
        "wrong audience"
    );
    assert_eq!(send(assertion("jti-3", &token_endpoint, now - 1)).await, 401, "expired");
    assert_eq!(
        send(assertion("jti-4", &token_endpoint, now + 3600)).await,
        401,
        "too long-lived"
    );
    // Signed by a key the client never registered.
    let stranger = ES256.generate_key_pair().unwrap();
    let mut payload = JwtPayload::new();
    payload.set_issuer(&jwt_client.id);
    payload.set_subject(&jwt_client.id);
    payload.set_audience(vec![token_endpoint.as_str()]);
    payload.set_jwt_id("jti-5");
    payload.set_claim("exp", Some(serde_json::json!(now + 60))).unwrap();
    let forged = josekit::jwt::encode_with_signer(
        &payload,
        &JwsHeader::new(),
        &ES256.signer_from_pem(stranger.to_pem_private_key()).unwrap(),
    )
    .unwrap();
    assert_eq!(send(forged).await, 401);
    // A secret-based attempt for a private_key_jwt client is refused.
    let response = reqwest::Client::new()
        .post(app.url("/token"))
        .basic_auth(&jwt_client.id, Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// RFC 7515 §4.1.4 / OIDC Core §10.1: `kid` is needed only to choose among keys.
#[tokio::test]
async fn private_key_jwt_without_a_kid_match_is_accepted_when_the_key_is_unambiguous() {
    let app = spawn_app().await;
    let jwk_of = |pair: &josekit::jwk::alg::ec::EcKeyPair, kid: Option<&str>| {
        let mut public = pair.to_jwk_public_key();
        if let Some(kid) = kid {
            public.set_key_id(kid);
        }
        serde_json::Value::Object(public.as_ref().clone())
    };
    let client_with = |keys: Vec<serde_json::Value>| {
        let app = &app;
        async move {
            app.create_client(oxidp::oauth::clients::ClientSpec {
                auth_method: Some("private_key_jwt".into()),
                jwks: Some(serde_json::json!({ "keys": keys })),
                grant_types: Some(vec!["client_credentials".into()]),
                scopes: Some("api:read".into()),
                ..Default::default()
            })
            .await
        }
    };
    let token_endpoint = format!("{}/token", app.config.issuer());
    let mut n = 0;
    let mut send = |client: &TestClient, pair: &josekit::jwk::alg::ec::EcKeyPair, kid: Option<&str>| {
        n += 1;
        let mut payload = JwtPayload::new();
        payload.set_issuer(&client.id);
        payload.set_subject(&client.id);
        payload.set_audience(vec![token_endpoint.as_str()]);
        payload.set_jwt_id(format!("jti-{n}"));
        payload
            .set_claim("exp", Some(serde_json::json!(app.clock.now() + 60)))
            .unwrap();
        let mut header = JwsHeader::new();
        if let Some(kid) = kid {
            header.set_key_id(kid);
        }
        let signer = ES256.signer_from_pem(pair.to_pem_private_key()).unwrap();
        let assertion = josekit::jwt::encode_with_signer(&payload, &header, &signer).unwrap();
        let app = &app;
        async move {
            reqwest::Client::new()
                .post(app.url("/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let (k1, k2) = (ES256.generate_key_pair().unwrap(), ES256.generate_key_pair().unwrap());

    // One key with a kid; the assertion names none.
    let named = client_with(vec![jwk_of(&k1, Some("k1"))]).await;
    assert_eq!(send(&named, &k1, None).await, 200, "no kid, one registered key");
    assert_eq!(send(&named, &k1, Some("k1")).await, 200);
    assert_eq!(send(&named, &k1, Some("other")).await, 401, "a kid naming no key");
    assert_eq!(send(&named, &k2, None).await, 401, "signed by another key");

    // One key without a kid; the assertion names one.
    let anonymous = client_with(vec![jwk_of(&k1, None)]).await;
    assert_eq!(
        send(&anonymous, &k1, Some("laptop-2026")).await,
        200,
        "kid, key without one"
    );
    assert_eq!(send(&anonymous, &k1, None).await, 200);
    assert_eq!(send(&anonymous, &k2, Some("laptop-2026")).await, 401);

    // Two keys: the kid chooses; without it the choice is ambiguous.
    let two = client_with(vec![jwk_of(&k1, Some("k1")), jwk_of(&k2, Some("k2"))]).await;
    assert_eq!(send(&two, &k2, Some("k2")).await, 200);
    assert_eq!(send(&two, &k1, Some("k1")).await, 200);
    assert_eq!(send(&two, &k2, None).await, 401, "ambiguous without kid");
    let two_anonymous = client_with(vec![jwk_of(&k1, None), jwk_of(&k2, None)]).await;
    assert_eq!(send(&two_anonymous, &k1, Some("k1")).await, 401, "ambiguous");
    assert_eq!(send(&two_anonymous, &k1, None).await, 401, "ambiguous");
}
