//! Session lifecycle over HTTP: the expiry banner's data, "Stay signed in",
//! absolute limits, returning to the interrupted place (a form, a consent page of
//! an /authorize flow), ending sessions from the account page, single session.

use crate::helpers::{PASSWORD, TestApp, browser, csrf_of, spawn_app, spawn_app_with};

async fn account_html(app: &TestApp, b: &reqwest::Client) -> String {
    let response = b.get(app.url("/account")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

fn attr(html: &str, selector: &str, name: &str) -> Option<String> {
    let document = scraper::Html::parse_document(html);
    let sel = scraper::Selector::parse(selector).unwrap();
    document
        .select(&sel)
        .next()
        .and_then(|e| e.value().attr(name).map(str::to_owned))
}

#[tokio::test]
async fn stay_signed_in_extends_the_idle_timeout() {
    let app = spawn_app().await;
    let b = app.signed_in("ana").await;
    let html = account_html(&app, &b).await;
    assert_eq!(attr(&html, "#session-timer", "data-remaining").as_deref(), Some("1800"));
    assert_eq!(attr(&html, "#session-timer", "data-warn").as_deref(), Some("300"));
    assert_eq!(
        attr(&html, "#session-timer", "data-extendable").as_deref(),
        Some("true")
    );
    assert!(
        attr(&html, "#session-timer", "hidden").is_some(),
        "hidden until the warning window"
    );
    let csrf = csrf_of(&html);

    app.clock.advance(1700);
    let extended = b
        .post(app.url("/session/extend?return_to=%2Faccount"))
        .header("accept", "application/json")
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(extended.status(), 200);
    assert_eq!(extended.headers()["cache-control"], "no-store");
    let body: serde_json::Value = extended.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"remaining": 1800, "warn": 300, "extendable": true})
    );
    app.clock.advance(1700);
    assert_eq!(
        b.get(app.url("/account")).send().await.unwrap().status(),
        200,
        "still signed in"
    );

    // Without JavaScript the form posts and comes back to the page.
    let csrf = csrf_of(&account_html(&app, &b).await);
    let plain = b
        .post(app.url("/session/extend?return_to=%2Faccount%3Fdone%3Dx"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 303);
    assert_eq!(plain.headers()["location"], "/account?done=x");
    // Off-site return addresses are not followed.
    let evil = b
        .post(app.url("/session/extend?return_to=https%3A%2F%2Fevil.example%2F"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(evil.headers()["location"], "/account");
    // A forged request (no CSRF token) extends nothing.
    let forged = b
        .post(app.url("/session/extend"))
        .form(&[("csrf_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    // Idle past the timeout: the next action lands on the expired page and comes back.
    app.clock.advance(1801);
    let late = b
        .post(app.url("/session/extend?return_to=%2Faccount%3Fdone%3Dy"))
        .header("accept", "application/json")
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 303, "no JSON for an expired session: the script reloads");
    let location = late.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/login?return_to=%2Faccount%3Fdone%3Dy&expired=1");
}

#[tokio::test]
async fn near_the_absolute_limit_the_banner_cannot_extend_and_shows_without_javascript() {
    let app = spawn_app_with(|c| {
        c.session.idle_timeout_secs = 1800;
        c.session.absolute_timeout_secs = 3600;
    })
    .await;
    let b = app.signed_in("ben").await;
    app.clock.advance(1500);
    account_html(&app, &b).await;
    app.clock.advance(1500);
    let html = account_html(&app, &b).await;
    assert_eq!(attr(&html, "#session-timer", "data-remaining").as_deref(), Some("600"));
    assert_eq!(
        attr(&html, "#session-timer", "data-extendable").as_deref(),
        Some("false")
    );
    app.clock.advance(400);
    let html = account_html(&app, &b).await;
    assert!(
        attr(&html, "#session-timer", "hidden").is_none(),
        "inside the window: visible without JS"
    );
    assert!(
        html.contains("Your session ends in <strong class=\"session-countdown\">3:20</strong>"),
        "{html}"
    );
    assert!(
        !html.contains("Stay signed in"),
        "activity cannot pass the absolute limit"
    );
    app.clock.advance(201);
    let response = b.get(app.url("/account")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert!(response.headers()["location"].to_str().unwrap().ends_with("expired=1"));
}

#[tokio::test]
async fn an_authorize_flow_interrupted_by_expiry_resumes_after_signing_in_again() {
    let app = spawn_app().await;
    app.create_user("cleo", PASSWORD).await;
    let client = app.web_client().await;
    let b = browser();
    let (_verifier, challenge) = crate::helpers::pkce_pair();
    let start = app.authorize_url(
        &client,
        &[
            ("scope", "openid profile"),
            ("state", "s-123"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    // Sign in through the flow, stop at the consent page.
    let first = b.get(&start).send().await.unwrap();
    let login = first.headers()["location"].to_str().unwrap().to_owned();
    let page = b.get(app.url(&login)).send().await.unwrap().text().await.unwrap();
    let return_to = attr(&page, r#"input[name="return_to"]"#, "value").unwrap();
    let signed = app
        .post_login(&b, &csrf_of(&page), "cleo", PASSWORD, Some(&return_to))
        .await;
    let resume = signed.headers()["location"].to_str().unwrap().to_owned();
    let consent = b.get(app.url(&resume)).send().await.unwrap();
    let consent_url = consent.headers()["location"].to_str().unwrap().to_owned();
    assert!(consent_url.starts_with("/consent?request="));
    let consent_page = b.get(app.url(&consent_url)).send().await.unwrap().text().await.unwrap();
    assert!(
        !consent_url.contains("scope") && !consent_url.contains("code_challenge"),
        "parameters stay server-side"
    );

    // The person walks away; then presses "Allow".
    app.clock.advance(app.config.session.idle_timeout_secs + 1);
    let request_id = consent_url.trim_start_matches("/consent?request=").to_owned();
    let allow = b
        .post(app.url(&consent_url))
        .form(&[
            ("csrf_token", csrf_of(&consent_page).as_str()),
            ("request", request_id.as_str()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(allow.status(), 303);
    let expired_login = allow.headers()["location"].to_str().unwrap().to_owned();
    assert!(expired_login.contains("expired=1"), "{expired_login}");
    let page = b
        .get(app.url(&expired_login))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Your session has expired"));
    let back = attr(&page, r#"input[name="return_to"]"#, "value").unwrap();
    assert_eq!(back, consent_url);

    // Signing in again brings the consent page back, and the flow completes.
    let signed = app.post_login(&b, &csrf_of(&page), "cleo", PASSWORD, Some(&back)).await;
    assert_eq!(signed.headers()["location"], consent_url.as_str());
    let consent_page = b.get(app.url(&consent_url)).send().await.unwrap().text().await.unwrap();
    let allowed = b
        .post(app.url(&consent_url))
        .form(&[
            ("csrf_token", csrf_of(&consent_page).as_str()),
            ("request", request_id.as_str()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    let url = url::Url::parse(allowed.headers()["location"].to_str().unwrap()).unwrap();
    assert!(url.as_str().starts_with(crate::helpers::REDIRECT_URI), "{url}");
    let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "s-123");
    assert!(pairs.contains_key("code"));
}

#[tokio::test]
async fn people_end_one_session_or_all_the_others() {
    let app = spawn_app().await;
    app.create_user("dina", PASSWORD).await;
    let laptop = browser();
    let phone = browser();
    let tablet = browser();
    for b in [&laptop, &phone, &tablet] {
        assert_eq!(app.login(b, "dina", PASSWORD).await.status(), 303);
    }
    let html = account_html(&app, &laptop).await;
    let csrf = csrf_of(&html);
    let ids: Vec<String> = {
        let document = scraper::Html::parse_document(&html);
        let sel = scraper::Selector::parse(r#"input[name="session"]"#).unwrap();
        document
            .select(&sel)
            .map(|e| e.value().attr("value").unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids.len(), 3);
    // Someone else's (or an unknown) session id is refused.
    let unknown = laptop
        .post(app.url("/account/sessions/end"))
        .form(&[("csrf_token", csrf.as_str()), ("session", "not-a-session")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // End every other session: phone and tablet are signed out, the laptop stays.
    let others = laptop
        .post(app.url("/account/sessions/end-others"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(others.headers()["location"], "/account?done=sessions");
    assert_eq!(phone.get(app.url("/account")).send().await.unwrap().status(), 303);
    assert_eq!(tablet.get(app.url("/account")).send().await.unwrap().status(), 303);
    let html = laptop
        .get(app.url("/account?done=sessions"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("signed out everywhere else"));
    // Ending the current session signs this browser out.
    let mine = attr(&html, r#"input[name="session"]"#, "value").unwrap();
    let end = laptop
        .post(app.url("/account/sessions/end"))
        .form(&[("csrf_token", csrf_of(&html).as_str()), ("session", mine.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(end.headers()["location"], "/login");
    assert_eq!(laptop.get(app.url("/account")).send().await.unwrap().status(), 303);
}

#[tokio::test]
async fn single_session_mode_ends_older_sessions_and_their_refresh_tokens() {
    let app = spawn_app_with(|c| c.session.single_session = true).await;
    app.create_user("eve", PASSWORD).await;
    let client = app.web_client().await;
    let first = browser();
    let (code, verifier) = app.code_for(&client, &first, "eve", "openid").await;
    let tokens: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(app.userinfo_status(&access).await.0, 200);

    let second = browser();
    assert_eq!(app.login(&second, "eve", PASSWORD).await.status(), 303);
    assert_eq!(
        first.get(app.url("/account")).send().await.unwrap().status(),
        303,
        "older session ended"
    );
    assert_eq!(second.get(app.url("/account")).send().await.unwrap().status(), 200);
    assert_eq!(
        app.userinfo_status(&access).await.0,
        401,
        "tokens of the ended session are revoked"
    );
}

#[tokio::test]
async fn a_single_session_client_keeps_one_sign_in_per_person() {
    let app = &spawn_app().await;
    app.create_user("eve", PASSWORD).await;
    app.create_user("frank", PASSWORD).await;
    let strict = app.web_client().await;
    let relaxed = app.web_client().await;
    let out = app.cli_json(
        &["client", "update", &strict.id, "--single-session", "true", "--json"],
        None,
    );
    assert_eq!(out["single_session"], true);
    let scope = "openid offline_access";
    let redeem = |client, browser| async move {
        let (code, verifier) = app.code_for(client, browser, "eve", scope).await;
        let tokens: serde_json::Value = app.redeem(client, &code, &verifier).await.json().await.unwrap();
        tokens
    };
    let (laptop, phone) = (browser(), browser());
    let old = redeem(&strict, &laptop).await;
    let other_app = redeem(&relaxed, &laptop).await;
    let bystander = {
        let (code, verifier) = app.code_for(&strict, &browser(), "frank", scope).await;
        let tokens: serde_json::Value = app.redeem(&strict, &code, &verifier).await.json().await.unwrap();
        tokens
    };
    let new = redeem(&strict, &phone).await;

    let at = |t: &serde_json::Value| t["access_token"].as_str().unwrap().to_owned();
    let rt = |t: &serde_json::Value| t["refresh_token"].as_str().unwrap().to_owned();
    // The older sign-in at the strict client lost its tokens, even offline_access ones ...
    assert_eq!(app.userinfo_status(&at(&old)).await.0, 401);
    let refresh = |client, token: String| async move {
        app.token(client, &[("grant_type", "refresh_token"), ("refresh_token", &token)])
            .await
            .status()
    };
    assert_eq!(refresh(&strict, rt(&old)).await, 400);
    // ... the new one, the other application and the other person keep theirs.
    assert_eq!(app.userinfo_status(&at(&new)).await.0, 200);
    assert_eq!(app.userinfo_status(&at(&other_app)).await.0, 200);
    assert_eq!(app.userinfo_status(&at(&bystander)).await.0, 200);
    assert_eq!(refresh(&strict, rt(&new)).await, 200);
    assert_eq!(refresh(&relaxed, rt(&other_app)).await, 200);
    // The browser session itself is not ended: other applications still use it.
    assert_eq!(laptop.get(app.url("/account")).send().await.unwrap().status(), 200);
    let events = oxidp::audit::query(&app.state.db, Default::default(), 100)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.action == "token.authorization_code" && e.details.contains("\"superseded_grants\":1"))
    );
}
