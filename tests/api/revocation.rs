//! Revocation when it matters (issue 19, items 1–5): a password change or reset,
//! a removed second factor, a disabled account and an administrator ending a
//! session all end what they must — other browsers' sessions and the refresh
//! tokens (session-bound and `offline_access`) — with an audit event; introspection
//! and userinfo reflect it; userinfo takes only tokens for oxidp's own audience.
//! Two browsers and two grants per person, through the real server.

use oxidp::clock::Clock;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TestClient, browser, csrf_of};

/// A web client that gets a refresh token with or without `offline_access`.
async fn rp(app: &TestApp) -> TestClient {
    app.create_client(oxidp::oauth::clients::ClientSpec {
        name: Some("Example Shop".into()),
        redirect_uris: Some(vec![crate::helpers::REDIRECT_URI.into()]),
        grant_types: Some(vec!["authorization_code".into(), "refresh_token".into()]),
        scopes: Some("openid profile offline_access".into()),
        refresh_without_offline_access: Some(true),
        ..Default::default()
    })
    .await
}

/// Tokens for `rp` through the front channel of the (signed-in) browser `b`.
async fn tokens(app: &TestApp, rp: &TestClient, b: &reqwest::Client, scope: &str) -> Value {
    let (code, verifier) = app.code_for(rp, b, "alice", scope).await;
    let response = app.redeem(rp, &code, &verifier).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn refresh(app: &TestApp, rp: &TestClient, token: &Value) -> (u16, Value) {
    let response = app
        .token(
            rp,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn signed_in_status(app: &TestApp, b: &reqwest::Client) -> u16 {
    b.get(app.url("/account")).send().await.unwrap().status().as_u16()
}

/// Alice signed in in two browsers, each with a session-bound grant, and an
/// `offline_access` grant from the second.
struct TwoBrowsers {
    rp: TestClient,
    first: reqwest::Client,
    second: reqwest::Client,
    first_tokens: Value,
    second_tokens: Value,
    offline: Value,
}

async fn two_browsers(app: &TestApp) -> TwoBrowsers {
    let rp = rp(app).await;
    let first = app.signed_in("alice").await;
    let second = browser();
    assert_eq!(app.login(&second, "alice", PASSWORD).await.status(), 303);
    let first_tokens = tokens(app, &rp, &first, "openid").await;
    let second_tokens = tokens(app, &rp, &second, "openid").await;
    let offline = tokens(app, &rp, &second, "openid offline_access").await;
    for t in [&first_tokens, &second_tokens, &offline] {
        assert!(t["refresh_token"].is_string());
    }
    TwoBrowsers {
        rp,
        first,
        second,
        first_tokens,
        second_tokens,
        offline,
    }
}

/// Every refresh token and access token of the set is dead, and stays dead.
async fn assert_all_revoked(app: &TestApp, s: &TwoBrowsers) {
    for t in [&s.first_tokens, &s.second_tokens, &s.offline] {
        let (status, body) = refresh(app, &s.rp, t).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_grant");
        let access = t["access_token"].as_str().unwrap();
        assert_eq!(app.introspect(&s.rp, access).await, json!({"active": false}));
        assert_eq!(app.userinfo_status(access).await.0, 401);
    }
}

/// The newest audit event with `action`, as `{actor, details}`.
async fn last_event(app: &TestApp, action: &str) -> Value {
    let events = oxidp::audit::query(&app.state.db, Default::default(), 500)
        .await
        .unwrap();
    let event = events
        .iter()
        .filter(|e| e.action == action)
        .max_by(|a, b| a.id.cmp(&b.id))
        .unwrap_or_else(|| panic!("no {action} event"));
    json!({
        "actor": event.actor,
        "details": serde_json::from_str::<Value>(&event.details).unwrap(),
    })
}

#[tokio::test]
async fn a_password_change_on_the_account_page_ends_the_other_sessions_and_every_refresh_token() {
    let app = crate::helpers::spawn_app().await;
    let s = two_browsers(&app).await;

    let html = s
        .first
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let new = "violet kettle marsh 41";
    let changed = s
        .first
        .post(app.url("/account/password"))
        .form(&[
            ("csrf_token", csrf_of(&html).as_str()),
            ("current_password", PASSWORD),
            ("new_password", new),
            ("confirm_password", new),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 303);

    // The browser that changed it stays signed in; the other one is out.
    assert_eq!(signed_in_status(&app, &s.first).await, 200);
    assert_eq!(signed_in_status(&app, &s.second).await, 303);
    // No refresh token from before the change works: session-bound or offline,
    // from this browser or the other.
    assert_all_revoked(&app, &s).await;
    let event = last_event(&app, "user.set_password").await;
    assert_eq!(event["details"]["sessions_ended"], 1, "{event}");
    assert_eq!(event["details"]["grants_revoked"], 3, "{event}");

    // Tokens obtained after the change work.
    let fresh = tokens(&app, &s.rp, &s.first, "openid").await;
    assert_eq!(refresh(&app, &s.rp, &fresh).await.0, 200);
}

#[tokio::test]
async fn a_password_reset_by_the_operator_ends_every_session_and_every_refresh_token() {
    let app = crate::helpers::spawn_app().await;
    let s = two_browsers(&app).await;
    let reset = app.cli_json(
        &["user", "set-password", "alice", "--password-stdin", "--json"],
        Some("amber canyon drift 72\n"),
    );
    assert_eq!(reset["password_changed"], true);
    assert_eq!(signed_in_status(&app, &s.first).await, 303);
    assert_eq!(signed_in_status(&app, &s.second).await, 303);
    assert_all_revoked(&app, &s).await;
    let event = last_event(&app, "user.set_password").await;
    assert_eq!(event["actor"], "cli");
    assert_eq!(event["details"]["sessions_ended"], 2, "{event}");
    assert_eq!(event["details"]["grants_revoked"], 3, "{event}");
}

#[tokio::test]
async fn turning_the_authenticator_app_off_ends_the_other_sessions_and_every_refresh_token() {
    let app = crate::helpers::spawn_app().await;
    let s = two_browsers(&app).await;
    crate::mfa::enrol(&app, &s.first).await;
    crate::mfa::turn_off(&app, &s.first).await;
    assert_eq!(signed_in_status(&app, &s.first).await, 200);
    assert_eq!(signed_in_status(&app, &s.second).await, 303);
    assert_all_revoked(&app, &s).await;
    let event = last_event(&app, "mfa.totp.disable").await;
    assert_eq!(event["details"]["sessions_ended"], 1, "{event}");
    assert_eq!(event["details"]["grants_revoked"], 3, "{event}");
}

async fn admin(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> u16 {
    let token = app.admin_token().await;
    let mut request = reqwest::Client::new().request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn disabling_revokes_every_refresh_token_for_good() {
    let app = crate::helpers::spawn_app().await;
    let s = two_browsers(&app).await;
    let patch = reqwest::Method::PATCH;
    let path = "/admin/v1/users/alice";
    assert_eq!(
        admin(&app, patch.clone(), path, Some(json!({"disabled": true}))).await,
        200
    );
    assert_eq!(admin(&app, patch, path, Some(json!({"disabled": false}))).await, 200);
    // Enabled again, but nothing issued before the disable comes back.
    assert_eq!(signed_in_status(&app, &s.first).await, 303);
    assert_eq!(signed_in_status(&app, &s.second).await, 303);
    assert_all_revoked(&app, &s).await;
    let event = last_event(&app, "user.disable").await;
    assert_eq!(event["details"]["grants_revoked"], 3, "{event}");
    // She can sign in again and get new tokens.
    let again = browser();
    assert_eq!(app.login(&again, "alice", PASSWORD).await.status(), 303);
    let fresh = tokens(&app, &s.rp, &again, "openid offline_access").await;
    assert_eq!(refresh(&app, &s.rp, &fresh).await.0, 200);
}

#[tokio::test]
async fn an_administrator_ending_a_session_revokes_that_sessions_refresh_tokens() {
    let app = crate::helpers::spawn_app().await;
    let s = two_browsers(&app).await;
    let sid = oxidp::oauth::tokens::verify_access_token(&app.state, s.second_tokens["access_token"].as_str().unwrap())
        .unwrap()
        .sid
        .unwrap();
    let delete = reqwest::Method::DELETE;
    assert_eq!(
        admin(
            &app,
            delete.clone(),
            &format!("/admin/v1/users/alice/sessions/{sid}"),
            None
        )
        .await,
        204
    );
    // The second browser's session and its session-bound grant are gone ...
    assert_eq!(signed_in_status(&app, &s.second).await, 303);
    let (status, body) = refresh(&app, &s.rp, &s.second_tokens).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let access = s.second_tokens["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(&s.rp, access).await, json!({"active": false}));
    // ... like a sign-out: the first browser and the offline grant are untouched.
    assert_eq!(signed_in_status(&app, &s.first).await, 200);
    let (status, first) = refresh(&app, &s.rp, &s.first_tokens).await;
    assert_eq!(status, 200);
    let (status, offline) = refresh(&app, &s.rp, &s.offline).await;
    assert_eq!(status, 200);

    // Ending all of them takes the first browser's grant too.
    assert_eq!(admin(&app, delete, "/admin/v1/users/alice/sessions", None).await, 200);
    assert_eq!(signed_in_status(&app, &s.first).await, 303);
    let (status, _) = refresh(&app, &s.rp, &first).await;
    assert_eq!(status, 400);
    assert_eq!(refresh(&app, &s.rp, &offline).await.0, 200);
}

#[tokio::test]
async fn introspection_reflects_a_disabled_or_deleted_subject() {
    let app = crate::helpers::spawn_app().await;
    let s = two_browsers(&app).await;
    let access = s.first_tokens["access_token"].as_str().unwrap().to_owned();
    let refresh_token = s.offline["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(app.introspect(&s.rp, &access).await["active"], true);
    assert_eq!(app.introspect(&s.rp, &refresh_token).await["active"], true);

    // The account is switched off underneath the grants (as another instance or a
    // direct database change would): the grants themselves are still live.
    let alice = oxidp::accounts::find(&app.state, "alice").await.unwrap();
    let (id, now) = (alice.id.clone(), app.clock.now());
    app.state
        .db
        .run(move |conn| oxidp::db::models::users::set_disabled(conn, &id, true, now))
        .await
        .unwrap();
    assert_eq!(app.introspect(&s.rp, &access).await, json!({"active": false}));
    assert_eq!(app.introspect(&s.rp, &refresh_token).await, json!({"active": false}));
    assert_eq!(app.userinfo_status(&access).await.0, 401);

    // Enabled again: the same tokens are active again (nothing revoked them) ...
    let (id, now) = (alice.id.clone(), app.clock.now());
    app.state
        .db
        .run(move |conn| oxidp::db::models::users::set_disabled(conn, &id, false, now))
        .await
        .unwrap();
    assert_eq!(app.introspect(&s.rp, &access).await["active"], true);
    // ... but a revoked grant is inactive at introspection as at userinfo.
    let response = reqwest::Client::new()
        .post(app.url("/revoke"))
        .basic_auth(&s.rp.id, s.rp.secret.as_deref())
        .form(&[("token", s.first_tokens["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(app.introspect(&s.rp, &access).await, json!({"active": false}));
    assert_eq!(app.userinfo_status(&access).await.0, 401);
}

#[tokio::test]
async fn userinfo_refuses_a_token_issued_for_another_resource() {
    let app = crate::helpers::spawn_app().await;
    let rp = rp(&app).await;
    let b = app.signed_in("alice").await;
    let (verifier, challenge) = crate::helpers::pkce_pair();
    let start = app.authorize_url(
        &rp,
        &[
            ("scope", "openid profile"),
            ("state", "xyz"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", "https://commerce.example"),
        ],
    );
    let back = app.follow_to_client(&b, &start, "alice", PASSWORD).await;
    let code = back.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let response = app.redeem(&rp, &code, &verifier).await;
    assert_eq!(response.status(), 200);
    let foreign: Value = response.json().await.unwrap();
    let access = foreign["access_token"].as_str().unwrap();
    assert_eq!(
        crate::helpers::jwt_claims(access)["aud"],
        json!(["https://commerce.example"])
    );

    let response = reqwest::Client::new()
        .get(app.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
    assert!(!response.text().await.unwrap().contains("alice"), "no profile claims");

    // The same person's token for oxidp's own audience (the issuer) is served.
    let own = tokens(&app, &rp, &b, "openid profile").await;
    let own_access = own["access_token"].as_str().unwrap();
    assert_eq!(
        crate::helpers::jwt_claims(own_access)["aud"],
        json!([app.config.issuer()])
    );
    assert_eq!(app.userinfo_status(own_access).await.0, 200);
}

#[tokio::test]
async fn a_password_reset_through_the_admin_api_ends_every_session_and_every_refresh_token() {
    let app = crate::helpers::spawn_app().await;
    let s = two_browsers(&app).await;
    let path = "/admin/v1/users/alice";
    // A password the policy refuses changes nothing.
    let weak = admin(
        &app,
        reqwest::Method::PATCH,
        path,
        Some(json!({"password": "password1234"})),
    )
    .await;
    assert_eq!(weak, 400);
    assert_eq!(signed_in_status(&app, &s.second).await, 200);
    assert_eq!(refresh(&app, &s.rp, &s.offline).await.0, 200);

    let reset = admin(
        &app,
        reqwest::Method::PATCH,
        path,
        Some(json!({"password": "amber canyon drift 72"})),
    )
    .await;
    assert_eq!(reset, 200);
    assert_eq!(signed_in_status(&app, &s.first).await, 303);
    assert_eq!(signed_in_status(&app, &s.second).await, 303);
    for t in [&s.first_tokens, &s.second_tokens] {
        assert_eq!(refresh(&app, &s.rp, t).await.0, 400);
    }
    let event = last_event(&app, "user.set_password").await;
    assert!(event["actor"].as_str().unwrap().starts_with("client:"), "{event}");
    assert_eq!(event["details"]["sessions_ended"], 2, "{event}");
    assert_eq!(event["details"]["grants_revoked"], 3, "{event}");
    assert_eq!(
        app.login(&browser(), "alice", "amber canyon drift 72").await.status(),
        303
    );
}
