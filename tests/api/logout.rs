//! RP-Initiated Logout.

use crate::helpers::{PASSWORD, browser, csrf_of, spawn_app};

async fn signed_in_with_id_token(
    app: &crate::helpers::TestApp,
) -> (reqwest::Client, crate::helpers::TestClient, String) {
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let person = browser();
    let (code, verifier) = app.code_for(&client, &person, "alice", "openid offline_access").await;
    let tokens: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    (person, client, tokens["id_token"].as_str().unwrap().to_owned())
}

fn logout_url(app: &crate::helpers::TestApp, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&app.url("/logout")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

#[tokio::test]
async fn id_token_hint_signs_out_and_returns_to_a_registered_uri_with_state() {
    let app = spawn_app().await;
    let (person, _, id_token) = signed_in_with_id_token(&app).await;
    let response = person
        .get(logout_url(
            &app,
            &[
                ("id_token_hint", &id_token),
                ("post_logout_redirect_uri", "https://client.example.com/bye"),
                ("state", "st"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "https://client.example.com/bye?state=st"
    );
    assert_eq!(
        person.get(app.url("/account")).send().await.unwrap().status(),
        303,
        "signed out"
    );
}

#[tokio::test]
async fn unregistered_post_logout_uri_is_not_followed() {
    let app = spawn_app().await;
    let (person, _, id_token) = signed_in_with_id_token(&app).await;
    for uri in [
        "https://evil.example/bye",
        "https://client.example.com/bye/",
        "https://client.example.com/cb",
    ] {
        let response = person
            .get(logout_url(
                &app,
                &[("id_token_hint", &id_token), ("post_logout_redirect_uri", uri)],
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{uri}");
        assert!(response.headers().get("location").is_none());
        assert!(response.text().await.unwrap().contains("You are signed out"));
    }
}

#[tokio::test]
async fn without_a_hint_the_person_is_asked_first() {
    let app = spawn_app().await;
    let (person, client, _) = signed_in_with_id_token(&app).await;
    let url = logout_url(
        &app,
        &[
            ("client_id", &client.id),
            ("post_logout_redirect_uri", "https://client.example.com/bye"),
            ("state", "st"),
        ],
    );
    let response = person.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("Sign out?") && page.contains("Example Shop"));
    // Still signed in: a third-party link alone cannot sign anyone out.
    assert_eq!(person.get(app.url("/account")).send().await.unwrap().status(), 200);
    // An RP POST without our CSRF token also only asks.
    let posted = person
        .post(app.url("/logout"))
        .form(&[("client_id", client.id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    assert_eq!(person.get(app.url("/account")).send().await.unwrap().status(), 200);
    // Confirming signs out and follows the registered redirect.
    let response = person
        .post(app.url("/logout"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("client_id", client.id.as_str()),
            ("post_logout_redirect_uri", "https://client.example.com/bye"),
            ("state", "st"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "https://client.example.com/bye?state=st"
    );
    assert_eq!(person.get(app.url("/account")).send().await.unwrap().status(), 303);
}

#[tokio::test]
async fn a_hint_for_someone_else_or_a_forged_hint_does_not_sign_out() {
    let app = spawn_app().await;
    let (_, client, alice_token) = signed_in_with_id_token(&app).await;
    let bob = app.signed_in("bob").await;
    let response = bob
        .get(logout_url(&app, &[("id_token_hint", &alice_token)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("Sign out?"));
    assert_eq!(bob.get(app.url("/account")).send().await.unwrap().status(), 200);

    let forged = format!("{}x", alice_token);
    let response = bob
        .get(logout_url(&app, &[("id_token_hint", &forged)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    // Mismatched client_id and hint audience.
    let other = app.web_client().await;
    let response = bob
        .get(logout_url(
            &app,
            &[("id_token_hint", &alice_token), ("client_id", &other.id)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let _ = client;
}

#[tokio::test]
async fn signing_out_ends_session_bound_refresh_tokens_but_not_offline_ones() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    oxidp::oauth::clients::update(
        &app.state.db,
        &app.state.clients,
        app.state.clock.now(),
        &oxidp::audit::Actor::system(),
        &client.id,
        oxidp::oauth::clients::ClientSpec {
            refresh_without_offline_access: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let person = browser();
    let (code, verifier) = app.code_for(&client, &person, "alice", "openid").await;
    let online: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    let (code, verifier) = app.code_for(&client, &person, "alice", "openid offline_access").await;
    let offline: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    let page = person
        .get(app.url("/logout"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    person
        .post(app.url("/logout"))
        .form(&[("csrf_token", csrf_of(&page))])
        .send()
        .await
        .unwrap();
    let refresh = |t: &serde_json::Value| t["refresh_token"].as_str().unwrap().to_owned();
    let r = app
        .token(
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh(&online))],
        )
        .await;
    assert_eq!(r.status(), 400, "session-bound refresh token ended with the session");
    let r = app
        .token(
            &client,
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh(&offline))],
        )
        .await;
    assert_eq!(r.status(), 200, "offline_access outlives the session");
}

#[tokio::test]
async fn an_id_token_from_an_earlier_session_asks_before_signing_out() {
    let app = spawn_app().await;
    let (person, _, old_token) = signed_in_with_id_token(&app).await;
    // The hint's own session ends at once.
    let response = person
        .get(logout_url(&app, &[("id_token_hint", &old_token)]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("You are signed out"));
    // Signed in again: a new OP session, same person.
    assert_eq!(app.login(&person, "alice", PASSWORD).await.status(), 303);
    let response = person
        .get(logout_url(
            &app,
            &[
                ("id_token_hint", &old_token),
                ("post_logout_redirect_uri", "https://client.example.com/bye"),
                ("state", "st"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the person is asked, not signed out");
    assert!(response.headers().get("location").is_none());
    let page = response.text().await.unwrap();
    assert!(page.contains(r#"name="csrf_token""#), "a confirmation form");
    assert_eq!(
        person.get(app.url("/account")).send().await.unwrap().status(),
        200,
        "the new session is still there"
    );
    // Confirming signs out and follows the verified redirect.
    let confirmed = person
        .post(app.url("/logout"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("id_token_hint", old_token.as_str()),
            ("post_logout_redirect_uri", "https://client.example.com/bye"),
            ("state", "st"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 303);
    assert_eq!(
        confirmed.headers()["location"],
        "https://client.example.com/bye?state=st"
    );
    assert_eq!(person.get(app.url("/account")).send().await.unwrap().status(), 303);
}
