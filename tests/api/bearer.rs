//! Userinfo as an RFC 6750 protected resource, and forged or misused tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::helpers::{PASSWORD, TestApp, TestClient, browser, spawn_app};

async fn user_tokens(app: &TestApp, client: &TestClient, scope: &str) -> serde_json::Value {
    let (code, verifier) = app.code_for(client, &browser(), "alice", scope).await;
    let response = app.redeem(client, &code, &verifier).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let mut it = token.split('.');
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    let payload = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    (header, payload)
}

#[tokio::test]
async fn userinfo_returns_claims_by_scope() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let narrow = user_tokens(&app, &client, "openid").await;
    let response = reqwest::Client::new()
        .get(app.url("/userinfo"))
        .bearer_auth(narrow["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let claims: serde_json::Value = response.json().await.unwrap();
    assert!(claims["sub"].is_string());
    assert!(claims.get("email").is_none(), "no email without the email scope");

    let wide = user_tokens(&app, &client, "openid profile email").await;
    // POST with the token in the form body works too (RFC 6750 §2.2).
    let response = reqwest::Client::new()
        .post(app.url("/userinfo"))
        .form(&[("access_token", wide["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    let claims: serde_json::Value = response.json().await.unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["name"], "alice Example");

    // The access token is an RFC 9068 JWT.
    let (header, payload) = parts(wide["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "ES256");
    for claim in [
        "iss",
        "sub",
        "aud",
        "client_id",
        "scope",
        "jti",
        "iat",
        "exp",
        "auth_time",
    ] {
        assert!(payload.get(claim).is_some(), "{claim} missing");
    }
    // The ID token per OIDC Core.
    let (header, payload) = parts(wide["id_token"].as_str().unwrap());
    assert_eq!(header["typ"], "JWT");
    for claim in [
        "iss",
        "sub",
        "aud",
        "azp",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "amr",
        "at_hash",
        "sid",
    ] {
        assert!(payload.get(claim).is_some(), "{claim} missing from the id_token");
    }
    assert_eq!(payload["amr"], serde_json::json!(["pwd"]));
}

#[tokio::test]
async fn forged_expired_and_misused_tokens_are_refused_with_rfc6750_errors() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let tokens = user_tokens(&app, &client, "openid email").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    assert_eq!(app.userinfo_status(&access).await.0, 200);
    let (header, payload) = parts(&access);
    let signing_input_sig = access.rsplit('.').next().unwrap().to_owned();

    // alg=none.
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg": "none", "typ": "at+jwt", "kid": header["kid"]})),
        b64(&payload)
    );
    // HS256 keyed with our own public key (the JWKS document and the key JSON).
    let jwks: serde_json::Value = reqwest::get(app.url("/jwks")).await.unwrap().json().await.unwrap();
    let public_key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap()
        .to_string();
    let hs_header = serde_json::json!({"alg": "HS256", "typ": "at+jwt", "kid": header["kid"]});
    let signing_input = format!("{}.{}", b64(&hs_header), b64(&payload));
    let hs256 = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(public_key.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    // Unknown kid, and a tampered payload with the original signature.
    let unknown_kid = format!(
        "{}.{}.{signing_input_sig}",
        b64(&serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "not-ours"})),
        b64(&payload)
    );
    let mut widened = payload.clone();
    widened["scope"] = serde_json::json!("openid email admin");
    let tampered = format!(
        "{}.{}.{signing_input_sig}",
        access.split('.').next().unwrap(),
        b64(&widened)
    );

    for (name, token) in [
        ("alg none", none),
        ("HS256 with our public key", hs256),
        ("unknown kid", unknown_kid),
        ("tampered payload", tampered),
        ("id_token as access token", id_token),
        ("garbage", "abc.def".to_owned()),
    ] {
        let (status, challenge) = app.userinfo_status(&token).await;
        assert_eq!(status, 401, "{name}");
        assert!(
            challenge.starts_with("Bearer realm=\"oxidp\", error=\"invalid_token\""),
            "{name}: {challenge}"
        );
    }

    // No token: a bare challenge.
    let response = reqwest::get(app.url("/userinfo")).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"oxidp\"");
    // Token in the URL: refused.
    let response = reqwest::get(app.url(&format!("/userinfo?access_token={access}")))
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Two ways at once.
    let response = reqwest::Client::new()
        .post(app.url("/userinfo"))
        .bearer_auth(&access)
        .form(&[("access_token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_request")
    );

    // Expired.
    app.clock.advance(app.state.config.tokens.access_token_ttl_secs + 1);
    let (status, challenge) = app.userinfo_status(&access).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("expired"), "{challenge}");
}

#[tokio::test]
async fn scope_and_subject_rules_at_userinfo() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    // A token without `openid`: 403 insufficient_scope.
    let tokens = user_tokens(&app, &client, "api:read").await;
    let (status, challenge) = app.userinfo_status(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 403);
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    // A client_credentials token has no user.
    let response = app.token(&client, &[("grant_type", "client_credentials")]).await;
    let cc: serde_json::Value = response.json().await.unwrap();
    assert_eq!(app.userinfo_status(cc["access_token"].as_str().unwrap()).await.0, 401);
    // A disabled user's token stops working.
    let tokens = user_tokens(&app, &client, "openid").await;
    oxidp::accounts::set_disabled(&app.state, &oxidp::audit::Actor::system(), "alice", true)
        .await
        .unwrap();
    assert_eq!(
        app.userinfo_status(tokens["access_token"].as_str().unwrap()).await.0,
        401
    );
}

#[tokio::test]
async fn clients_can_revoke_and_introspect_only_their_own_tokens() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let a = app.web_client().await;
    let b = app.web_client().await;
    let tokens = user_tokens(&app, &a, "openid offline_access").await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();

    // B sees nothing and revokes nothing.
    assert_eq!(app.introspect(&b, access).await, serde_json::json!({"active": false}));
    assert_eq!(app.introspect(&b, refresh).await, serde_json::json!({"active": false}));
    for token in [access, refresh] {
        let response = reqwest::Client::new()
            .post(app.url("/revoke"))
            .basic_auth(&b.id, b.secret.as_deref())
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap()["error"],
            "unauthorized_client"
        );
    }
    assert_eq!(app.introspect(&a, access).await["active"], true);
    assert_eq!(app.introspect(&a, refresh).await["active"], true);

    // Unauthenticated introspection is refused.
    let response = reqwest::Client::new()
        .post(app.url("/introspect"))
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // A revokes its access token: introspection and userinfo agree.
    let response = reqwest::Client::new()
        .post(app.url("/revoke"))
        .basic_auth(&a.id, a.secret.as_deref())
        .form(&[("token", access), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.introspect(&a, access).await["active"], false);
    assert_eq!(app.userinfo_status(access).await.0, 401);
    // Unknown tokens revoke "successfully" (RFC 7009 §2.2).
    let response = reqwest::Client::new()
        .post(app.url("/revoke"))
        .basic_auth(&a.id, a.secret.as_deref())
        .form(&[("token", "never-issued")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Expired tokens are inactive.
    app.clock.advance(3600);
    let fresh = app
        .token(&a, &[("grant_type", "client_credentials")])
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    app.clock.advance(app.state.config.tokens.access_token_ttl_secs + 1);
    assert_eq!(
        app.introspect(&a, fresh["access_token"].as_str().unwrap()).await["active"],
        false
    );
}
