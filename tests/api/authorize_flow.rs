//! The authorization endpoint's user-facing behaviour: prompts, consent memory,
//! response modes, and two instances sharing one database.

use std::collections::HashMap;

use crate::helpers::{PASSWORD, REDIRECT_URI, browser, csrf_of, pkce_pair, spawn_app, spawn_app_sharing};

fn params(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

#[tokio::test]
async fn consent_is_asked_once_remembered_and_asked_again_for_new_scopes() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let person = browser();
    let (_, challenge) = pkce_pair();
    let pkce = [
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];

    // First time: sign-in, then consent.
    let mut first = vec![("scope", "openid email"), ("state", "a")];
    first.extend(pkce);
    let back = app
        .follow_to_client(&person, &app.authorize_url(&client, &first), "alice", PASSWORD)
        .await;
    assert!(params(&back).contains_key("code"));

    // Same scopes again: straight back with a code, no page in between.
    let response = person.get(app.authorize_url(&client, &first)).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT_URI));
    assert!(params(&location).contains_key("code"));

    // A new scope: consent again, and the page names the client and the scope.
    let mut wider = vec![("scope", "openid email phone"), ("state", "b")];
    wider.extend(pkce);
    let response = person.get(app.authorize_url(&client, &wider)).send().await.unwrap();
    let consent = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(consent.starts_with("/consent?request="), "{consent}");
    let page = person
        .get(app.url(&consent))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Example Shop"));
    assert!(page.contains("Your phone number"));

    // Deny: access_denied at the client, with state and iss.
    let request = consent.split('=').nth(1).unwrap();
    let denied = person
        .post(app.url("/consent"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("request", request),
            ("decision", "deny"),
        ])
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(denied.headers()["location"].to_str().unwrap()).unwrap();
    let p = params(&location);
    assert_eq!(p["error"], "access_denied");
    assert_eq!(p["state"], "b");
    assert_eq!(p["iss"], app.config.issuer());
    // The request is gone: replaying the consent form does nothing.
    let replay = person
        .post(app.url("/consent"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("request", request),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    assert!(replay.headers().get("location").is_none());

    // prompt=consent forces the page even for granted scopes.
    let mut forced = first.clone();
    forced.push(("prompt", "consent"));
    let response = person.get(app.authorize_url(&client, &forced)).send().await.unwrap();
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/consent?")
    );
}

#[tokio::test]
async fn prompt_none_login_and_max_age() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app
        .create_client(oxidp::oauth::clients::ClientSpec {
            name: Some("First party".into()),
            redirect_uris: Some(vec![REDIRECT_URI.into()]),
            require_consent: Some(false),
            ..Default::default()
        })
        .await;
    let person = browser();
    let (_, challenge) = pkce_pair();
    let base = [
        ("scope", "openid"),
        ("state", "s"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];

    // A first-party client skips consent entirely.
    let back = app
        .follow_to_client(&person, &app.authorize_url(&client, &base), "alice", PASSWORD)
        .await;
    assert!(params(&back).contains_key("code"));

    // prompt=none with a session and nothing to ask: silent success.
    let mut none = base.to_vec();
    none.push(("prompt", "none"));
    let response = person.get(app.authorize_url(&client, &none)).send().await.unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(params(&location).contains_key("code"));

    // prompt=login: the sign-in page again, even though a session exists.
    let mut login = base.to_vec();
    login.push(("prompt", "login"));
    let response = person.get(app.authorize_url(&client, &login)).send().await.unwrap();
    let to_login = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to_login.starts_with("/login?") && to_login.contains("prompt=login"),
        "{to_login}"
    );
    let page = person.get(app.url(&to_login)).send().await.unwrap();
    assert_eq!(page.status(), 200, "the sign-in form is shown, not skipped");
    let back = app
        .follow_to_client(&person, &app.authorize_url(&client, &login), "alice", PASSWORD)
        .await;
    assert!(params(&back).contains_key("code"));

    // max_age: an old authentication must be refreshed; prompt=none then fails.
    app.clock.advance(120);
    let mut aged = base.to_vec();
    aged.push(("max_age", "60"));
    let response = person.get(app.authorize_url(&client, &aged)).send().await.unwrap();
    assert!(response.headers()["location"].to_str().unwrap().starts_with("/login?"));
    aged.push(("prompt", "none"));
    let response = person.get(app.authorize_url(&client, &aged)).send().await.unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(params(&location)["error"], "login_required");

    // login_hint prefills the username.
    let mut hinted = base.to_vec();
    hinted.push(("login_hint", "bob.hinted"));
    let anonymous = browser();
    let response = anonymous.get(app.authorize_url(&client, &hinted)).send().await.unwrap();
    let to_login = response.headers()["location"].to_str().unwrap().to_owned();
    let page = anonymous
        .get(app.url(&to_login))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("value=\"bob.hinted\""), "{page}");
}

#[tokio::test]
async fn consent_required_for_prompt_none_and_form_post_mode() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let person = app.signed_in("bob").await;
    let (_, challenge) = pkce_pair();
    let base = [
        ("scope", "openid"),
        ("state", "s"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let mut none = base.to_vec();
    none.push(("prompt", "none"));
    let response = person.get(app.authorize_url(&client, &none)).send().await.unwrap();
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(params(&location)["error"], "consent_required");

    // form_post: an HTML form posting code, state and iss to the redirect URI.
    let mut form_post = base.to_vec();
    form_post.push(("response_mode", "form_post"));
    let response = person.get(app.authorize_url(&client, &form_post)).send().await.unwrap();
    let consent = response.headers()["location"].to_str().unwrap().to_owned();
    let page = person
        .get(app.url(&consent))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let request = consent.split('=').nth(1).unwrap();
    let response = person
        .post(app.url("/consent"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("request", request),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let document = scraper::Html::parse_document(&html);
    let form = document
        .select(&scraper::Selector::parse("form#form-post").unwrap())
        .next()
        .unwrap();
    assert_eq!(form.value().attr("action"), Some(REDIRECT_URI));
    assert_eq!(form.value().attr("method"), Some("post"));
    let fields: HashMap<String, String> = document
        .select(&scraper::Selector::parse("form#form-post input").unwrap())
        .map(|i| {
            (
                i.value().attr("name").unwrap().to_owned(),
                i.value().attr("value").unwrap().to_owned(),
            )
        })
        .collect();
    assert!(fields.contains_key("code"));
    assert_eq!(fields["state"], "s");
    assert_eq!(fields["iss"], app.config.issuer());
    assert!(html.contains("/static/js/form-post.js"));
}

#[tokio::test]
async fn withdrawing_consent_revokes_the_clients_tokens() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let person = browser();
    let (code, verifier) = app.code_for(&client, &person, "alice", "openid offline_access").await;
    let tokens: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();

    let account = person
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(account.contains("Example Shop"));
    let response = person
        .post(app.url("/account/consents/revoke"))
        .form(&[
            ("csrf_token", csrf_of(&account).as_str()),
            ("client_id", client.id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/account?done=consent");
    assert_eq!(
        app.introspect(&client, tokens["access_token"].as_str().unwrap()).await["active"],
        false
    );
    let refresh = app
        .token(
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(
        refresh.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    // Next time, consent is asked again.
    let (_, challenge) = pkce_pair();
    let response = person
        .get(app.authorize_url(
            &client,
            &[
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/consent?")
    );
}

#[tokio::test]
async fn any_instance_can_serve_any_step_of_a_flow() {
    let a = spawn_app().await;
    let b = spawn_app_sharing(&a).await;
    a.create_user("alice", PASSWORD).await;
    let client = a.web_client().await;
    let person = browser();
    let (verifier, challenge) = pkce_pair();

    // /authorize on A sends the person to sign in; the sign-in happens on B.
    let start = a.authorize_url(
        &client,
        &[
            ("scope", "openid"),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let response = person.get(&start).send().await.unwrap();
    let to_login = response.headers()["location"].to_str().unwrap().to_owned();
    let page = person.get(b.url(&to_login)).send().await.unwrap().text().await.unwrap();
    let return_to = url::Url::parse(&b.url(&to_login))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .unwrap()
        .1
        .into_owned();
    let signed_in = b
        .post_login(&person, &csrf_of(&page), "alice", PASSWORD, Some(&return_to))
        .await;
    // The session cookie was set for 127.0.0.1; both instances read it. Continue on A.
    let next = signed_in.headers()["location"].to_str().unwrap().to_owned();
    let response = person.get(a.url(&next)).send().await.unwrap();
    let consent = response.headers()["location"].to_str().unwrap().to_owned();
    // Consent page on B, decision posted to A.
    let page = person.get(b.url(&consent)).send().await.unwrap().text().await.unwrap();
    let request = consent.split('=').nth(1).unwrap();
    let response = person
        .post(a.url("/consent"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("request", request),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    let code = params(&back)["code"].clone();
    // Token from B, userinfo from A.
    let tokens: serde_json::Value = b.redeem(&client, &code, &verifier).await.json().await.unwrap();
    assert_eq!(a.userinfo_status(tokens["access_token"].as_str().unwrap()).await.0, 200);
}
