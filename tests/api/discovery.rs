//! Discovery metadata, JWKS, CORS, and signing-key rotation.

use oxidp::clock::Clock;

use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
async fn discovery_metadata_is_complete() {
    let app = spawn_app().await;
    let response = reqwest::get(app.url("/.well-known/openid-configuration"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let m: serde_json::Value = response.json().await.unwrap();
    let issuer = app.config.issuer();
    assert_eq!(m["issuer"], issuer);
    assert_eq!(m["authorization_endpoint"], format!("{issuer}/authorize"));
    assert_eq!(m["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(m["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(m["end_session_endpoint"], format!("{issuer}/logout"));
    assert_eq!(m["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    for alg in ["ES256", "RS256", "EdDSA"] {
        assert!(
            m["id_token_signing_alg_values_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == alg)
        );
    }
    for method in ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"] {
        assert!(
            m["token_endpoint_auth_methods_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == method)
        );
    }
    for grant in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(
            m["grant_types_supported"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == grant)
        );
    }
    // RFC 8414 location serves the same document.
    let oauth: serde_json::Value = reqwest::get(app.url("/.well-known/oauth-authorization-server"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(oauth, m);
}

#[tokio::test]
async fn jwks_publishes_public_keys_only() {
    let app = spawn_app().await;
    let response = reqwest::get(app.url("/jwks")).await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/jwk-set+json");
    assert!(
        response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public")
    );
    let jwks: serde_json::Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let algs: Vec<&str> = keys.iter().map(|k| k["alg"].as_str().unwrap()).collect();
    for alg in ["ES256", "RS256", "EdDSA"] {
        assert!(algs.contains(&alg), "{algs:?}");
    }
    for key in keys {
        assert!(key["kid"].is_string());
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "private part {private} published");
        }
    }
}

#[tokio::test]
async fn cors_on_machine_endpoints_but_never_on_authorize() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    for path in ["/.well-known/openid-configuration", "/jwks"] {
        let response = http
            .get(app.url(path))
            .header("origin", "https://spa.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["access-control-allow-origin"], "*", "{path}");
    }
    for path in ["/token", "/userinfo", "/revoke", "/introspect"] {
        let preflight = http
            .request(reqwest::Method::OPTIONS, app.url(path))
            .header("origin", "https://spa.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{path}: {}", preflight.status());
        assert_eq!(preflight.headers()["access-control-allow-origin"], "*", "{path}");
    }
    let response = http
        .get(app.url("/authorize"))
        .header("origin", "https://spa.example")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("access-control-allow-origin").is_none());
    let preflight = http
        .request(reqwest::Method::OPTIONS, app.url("/authorize"))
        .header("origin", "https://spa.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.headers().get("access-control-allow-origin").is_none());
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn key_rotation_publishes_ahead_and_keeps_old_tokens_valid() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let old_token = cc_token(&app, &client).await;
    let old_kid = kid_of(&old_token);

    // Rotate through the CLI (another process), as an operator would.
    let rotated = app.cli_json(&["keys", "rotate", "--alg", "ES256", "--json"], None);
    let new_kid = rotated[0]["kid"].as_str().unwrap().to_owned();
    app.state
        .keys
        .refresh(&app.state.db, &app.state.secrets, app.clock.now())
        .await
        .unwrap();

    // Published at once, but not used yet.
    let jwks: serde_json::Value = reqwest::get(app.url("/jwks")).await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&new_kid.as_str()) && kids.contains(&old_kid.as_str()));
    assert_eq!(kid_of(&cc_token(&app, &client).await), old_kid);

    // After the publish-ahead delay the new key signs; old tokens still verify.
    // (+60 s: the CLI read the real clock a moment after this test's clock started.)
    app.clock.advance(app.config.keys.publish_ahead_secs + 60);
    app.state
        .keys
        .refresh(&app.state.db, &app.state.secrets, app.clock.now())
        .await
        .unwrap();
    let fresh = cc_token(&app, &client).await;
    assert_eq!(kid_of(&fresh), new_kid);
    assert_eq!(app.introspect(&client, &fresh).await["active"], true);

    // The retired key leaves JWKS once every token it signed has expired.
    app.clock.advance(app.config.keys.retain_secs + 1);
    app.state
        .keys
        .refresh(&app.state.db, &app.state.secrets, app.clock.now())
        .await
        .unwrap();
    let jwks: serde_json::Value = reqwest::get(app.url("/jwks")).await.unwrap().json().await.unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kid"] != old_kid.as_str())
    );
    // `keys list` (real clock) shows both keys with their schedule.
    let listed = app.cli_json(&["keys", "list", "--json"], None);
    let new = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == new_kid.as_str())
        .unwrap();
    assert_eq!(new["status"], "published (signs later)");
    let old = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == old_kid.as_str())
        .unwrap();
    assert_eq!(old["retires_at"], new["activates_at"]);
}

async fn cc_token(app: &crate::helpers::TestApp, client: &crate::helpers::TestClient) -> String {
    app.token(client, &[("grant_type", "client_credentials")])
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}
