//! Refresh-token rotation with the RFC 9700 §4.14.2 reuse grace window
//! (`tokens.refresh_reuse_grace_secs`): a retried refresh whose response was lost
//! gets the same successor; a replay outside the window, or after the successor
//! was used, still revokes the family.

use diesel::prelude::*;
use oxidp::db::schema::{grants, refresh_tokens};

use crate::helpers::{PASSWORD, TestApp, TestClient, browser, spawn_app, spawn_app_with};

/// A signed-in alice, `client`'s first refresh token and its grant id.
async fn first_refresh_token(app: &TestApp, client: &TestClient) -> String {
    app.create_user("alice", PASSWORD).await;
    let (code, verifier) = app.code_for(client, &browser(), "alice", "openid offline_access").await;
    let tokens: serde_json::Value = app.redeem(client, &code, &verifier).await.json().await.unwrap();
    tokens["refresh_token"].as_str().unwrap().to_owned()
}

async fn refresh(app: &TestApp, client: &TestClient, token: &str) -> (u16, serde_json::Value) {
    let response = app
        .token(client, &[("grant_type", "refresh_token"), ("refresh_token", token)])
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

/// (refresh-token rows, revoked?) of the only grant in the database.
async fn family(app: &TestApp) -> (i64, bool) {
    app.state
        .db
        .run(|conn| {
            let revoked: Option<i64> = grants::table.select(grants::revoked_at).first(conn)?;
            let rows: i64 = refresh_tokens::table.count().get_result(conn)?;
            Ok((rows, revoked.is_some()))
        })
        .await
        .unwrap()
}

async fn audit_count(app: &TestApp, action: &str) -> usize {
    oxidp::audit::query(&app.state.db, Default::default(), 500)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == action)
        .count()
}

#[tokio::test]
async fn a_refresh_retried_within_the_grace_window_gets_the_same_successor() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let rt1 = first_refresh_token(&app, &client).await;
    let (status, first) = refresh(&app, &client, &rt1).await;
    assert_eq!(status, 200, "{first}");
    let rt2 = first["refresh_token"].as_str().unwrap().to_owned();

    // The response above was "lost": the client retries with the same token.
    app.clock.advance(app.config.tokens.refresh_reuse_grace_secs - 1);
    let (status, retry) = refresh(&app, &client, &rt1).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry["refresh_token"], rt2.as_str(), "the same successor");
    let access = retry["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(&client, access).await["active"], true);
    assert_eq!(family(&app).await, (2, false), "no second successor, family intact");
    assert_eq!(audit_count(&app, "token.refresh_retry").await, 1);

    // The successor works and rotates as usual.
    let (status, third) = refresh(&app, &client, &rt2).await;
    assert_eq!(status, 200, "{third}");
    assert_ne!(third["refresh_token"], rt2.as_str());
}

#[tokio::test]
async fn a_refresh_replayed_after_the_grace_window_revokes_the_family() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let rt1 = first_refresh_token(&app, &client).await;
    let (_, first) = refresh(&app, &client, &rt1).await;
    let rt2 = first["refresh_token"].as_str().unwrap().to_owned();
    let at2 = first["access_token"].as_str().unwrap().to_owned();

    app.clock.advance(app.config.tokens.refresh_reuse_grace_secs);
    let (status, replay) = refresh(&app, &client, &rt1).await;
    assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")));
    assert!(family(&app).await.1, "family revoked");
    let (status, _) = refresh(&app, &client, &rt2).await;
    assert_eq!(status, 400, "the successor died with its family");
    assert_eq!(app.introspect(&client, &at2).await["active"], false);
    assert_eq!(audit_count(&app, "token.refresh_replay").await, 1);
}

#[tokio::test]
async fn a_refresh_replayed_after_its_successor_was_used_revokes_the_family() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let rt1 = first_refresh_token(&app, &client).await;
    let (_, first) = refresh(&app, &client, &rt1).await;
    let rt2 = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = refresh(&app, &client, &rt2).await;
    assert_eq!(status, 200);
    let rt3 = second["refresh_token"].as_str().unwrap().to_owned();

    // Still within the window, but the client evidently got rt2: rt1 is a replay.
    let (status, replay) = refresh(&app, &client, &rt1).await;
    assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")));
    assert!(family(&app).await.1, "family revoked");
    let (status, _) = refresh(&app, &client, &rt3).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn another_client_cannot_collect_the_successor_within_the_grace_window() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let other = app.web_client().await;
    let rt1 = first_refresh_token(&app, &client).await;
    let (_, first) = refresh(&app, &client, &rt1).await;
    let rt2 = first["refresh_token"].as_str().unwrap().to_owned();

    let (status, stolen) = refresh(&app, &other, &rt1).await;
    assert_eq!((status, stolen["error"].as_str()), (400, Some("invalid_grant")));
    assert!(stolen.get("refresh_token").is_none());
    assert_eq!(family(&app).await, (2, false));
    let (status, _) = refresh(&app, &client, &rt2).await;
    assert_eq!(status, 200, "the rightful client's successor still works");
}

#[tokio::test]
async fn twenty_parallel_presentations_of_one_refresh_token_get_one_successor() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let rt = first_refresh_token(&app, &client).await;
    let form = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str())];
    let attempts = (0..20).map(|_| app.token(&client, &form));
    let mut successors = Vec::new();
    for response in futures_util::future::join_all(attempts).await {
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        successors.push(body["refresh_token"].as_str().unwrap().to_owned());
    }
    successors.dedup();
    assert_eq!(successors.len(), 1, "every presentation got the same successor");
    assert_eq!(family(&app).await, (2, false), "one rotation; family intact");
    assert_eq!(audit_count(&app, "token.refresh").await, 1);
    assert_eq!(audit_count(&app, "token.refresh_retry").await, 19);
    let (status, _) = refresh(&app, &client, &successors[0]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_zero_grace_window_treats_every_second_presentation_as_a_replay() {
    let app = spawn_app_with(|c| c.tokens.refresh_reuse_grace_secs = 0).await;
    let client = app.web_client().await;
    let rt1 = first_refresh_token(&app, &client).await;
    let (status, _) = refresh(&app, &client, &rt1).await;
    assert_eq!(status, 200);
    let (status, replay) = refresh(&app, &client, &rt1).await;
    assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")));
    assert!(family(&app).await.1, "family revoked");
}

#[tokio::test]
async fn successors_are_stored_sealed_never_in_clear() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let rt1 = first_refresh_token(&app, &client).await;
    let (_, first) = refresh(&app, &client, &rt1).await;
    let rt2 = first["refresh_token"].as_str().unwrap().to_owned();
    let stored: Vec<Option<String>> = app
        .state
        .db
        .run(|conn| {
            Ok(refresh_tokens::table
                .select(refresh_tokens::successor_sealed)
                .load(conn)?)
        })
        .await
        .unwrap();
    let sealed: Vec<&String> = stored.iter().flatten().collect();
    assert_eq!(sealed.len(), 1);
    assert!(!sealed[0].contains(&rt2), "the successor is not stored in clear");
}
