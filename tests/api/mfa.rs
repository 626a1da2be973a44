//! Two-step verification with TOTP, end to end: enrolment (QR + key, confirmation
//! by code), sign-in with a code, ±1 step skew, replay (also 10 concurrent),
//! the wrong-code limit, single-use recovery codes, the re-authentication gate,
//! and a relying party asking for MFA with `acr_values` (step-up without the
//! password) verified through the `openidconnect` crate. Codes are computed here
//! from the enrolled key and the injected clock.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthenticationContextClass, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

use oxidp::clock::Clock;

use crate::helpers::{PASSWORD, TestApp, browser, csrf_of, spawn_app, text_of};

pub(crate) fn code_at(secret_b32: &str, unix: i64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).expect("base32 key");
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_account_name("test")
        .build()
        .unwrap();
    totp.generate(unix as u64).to_string()
}

/// Sets up TOTP for a signed-in browser; returns (key, recovery codes).
pub(crate) async fn enrol(app: &TestApp, b: &reqwest::Client) -> (String, Vec<String>) {
    let page = b.get(app.url("/account/mfa/totp")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg"), "an inline QR code");
    let secret = text_of(&html, "#totp-secret").unwrap();
    assert!(secret.len() >= 32, "at least 160 bits: {secret}");
    let csrf = csrf_of(&html);
    // A wrong first code keeps the same key on screen.
    let wrong = b
        .post(app.url("/account/mfa/totp"))
        .form(&[("csrf_token", csrf.as_str()), ("code", "000000")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 422);
    assert_eq!(text_of(&wrong.text().await.unwrap(), "#totp-secret").unwrap(), secret);
    let code = code_at(&secret, app.clock.now());
    let done = b
        .post(app.url("/account/mfa/totp"))
        .form(&[("csrf_token", csrf.as_str()), ("code", code.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let html = done.text().await.unwrap();
    let document = scraper::Html::parse_document(&html);
    let sel = scraper::Selector::parse("#recovery-codes code").unwrap();
    let codes: Vec<String> = document.select(&sel).map(|e| e.text().collect()).collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// Turns the authenticator app off from a recently signed-in browser, through
/// the confirm page; returns that page's HTML.
pub(crate) async fn turn_off(app: &TestApp, b: &reqwest::Client) -> String {
    let confirm = b
        .get(app.url("/account/mfa/disable"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let off = b
        .post(app.url("/account/mfa/disable"))
        .form(&[("csrf_token", csrf_of(&confirm).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(off.headers()["location"], "/account?done=mfa-off");
    confirm
}

/// Password step; returns the browser parked at /login/mfa.
pub(crate) async fn password_step(app: &TestApp, username: &str) -> reqwest::Client {
    let b = browser();
    let response = app.login(&b, username, PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login/mfa");
    b
}

pub(crate) async fn submit_code(app: &TestApp, b: &reqwest::Client, code: &str) -> reqwest::Response {
    let page = b.get(app.url("/login/mfa")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csrf = csrf_of(&page.text().await.unwrap());
    b.post(app.url("/login/mfa"))
        .form(&[("csrf_token", csrf.as_str()), ("code", code)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn enrolment_then_every_sign_in_asks_for_a_code_and_rotates_the_session() {
    let app = spawn_app().await;
    let b = app.signed_in("mia").await;
    let (secret, _) = enrol(&app, &b).await;
    let account = b.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    assert_eq!(text_of(&account, "#recovery-remaining").as_deref(), Some("10"));

    app.clock.advance(30);
    let other = password_step(&app, "mia").await;
    // Until the code is in, there is no session.
    assert_eq!(other.get(app.url("/account")).send().await.unwrap().status(), 303);
    let ok = submit_code(&app, &other, &code_at(&secret, app.clock.now())).await;
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/account");
    assert!(
        crate::helpers::cookie_value(&ok, "oxidp_session").is_some(),
        "a new session id"
    );
    assert_eq!(other.get(app.url("/account")).send().await.unwrap().status(), 200);
    let events = oxidp::audit::query(&app.state.db, Default::default(), 50)
        .await
        .unwrap();
    assert!(events.iter().any(|e| e.action == "mfa.totp.enable"));
}

#[tokio::test]
async fn skew_of_one_step_and_replay_protection() {
    let app = spawn_app().await;
    let b = app.signed_in("noa").await;
    let (secret, _) = enrol(&app, &b).await;
    app.clock.advance(300);
    let now = app.clock.now();
    // One step late is accepted …
    let late = code_at(&secret, now - 30);
    assert_eq!(
        submit_code(&app, &password_step(&app, "noa").await, &late)
            .await
            .status(),
        303
    );
    // … but never twice.
    assert_eq!(
        submit_code(&app, &password_step(&app, "noa").await, &late)
            .await
            .status(),
        422
    );
    // Two steps off is refused.
    assert_eq!(
        submit_code(&app, &password_step(&app, "noa").await, &code_at(&secret, now - 90))
            .await
            .status(),
        422
    );
    // One step ahead is accepted.
    assert_eq!(
        submit_code(&app, &password_step(&app, "noa").await, &code_at(&secret, now + 30))
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn ten_concurrent_submissions_of_one_code_give_exactly_one_session() {
    let app = spawn_app().await;
    let b = app.signed_in("oli").await;
    let (secret, _) = enrol(&app, &b).await;
    app.clock.advance(120);
    let mut parked = Vec::new();
    for _ in 0..10 {
        let browser = password_step(&app, "oli").await;
        let page = browser
            .get(app.url("/login/mfa"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        parked.push((browser, csrf_of(&page)));
    }
    let code = code_at(&secret, app.clock.now());
    let attempts = parked.iter().map(|(browser, csrf)| {
        browser
            .post(app.url("/login/mfa"))
            .form(&[("csrf_token", csrf.as_str()), ("code", code.as_str())])
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 1, "{statuses:?}");
    // The replays are wrong codes: refused, and they count toward the limit (429 after five).
    assert!(statuses.iter().all(|s| matches!(s, 303 | 422 | 429)), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 422).count().min(5), 5, "{statuses:?}");
}

#[tokio::test]
async fn wrong_codes_bring_a_growing_wait_then_the_right_code_passes() {
    let app = crate::helpers::spawn_app_with(|c| c.login.second_step_delay_after = 3).await;
    let b = app.signed_in("pia").await;
    let (secret, _) = enrol(&app, &b).await;
    app.clock.advance(60);
    let parked = password_step(&app, "pia").await;
    for _ in 0..3 {
        assert_eq!(submit_code(&app, &parked, "123456").await.status(), 422);
    }
    let blocked = submit_code(&app, &parked, &code_at(&secret, app.clock.now())).await;
    assert_eq!(blocked.status(), 429);
    assert_eq!(blocked.headers()["retry-after"], "1");
    let html = blocked.text().await.unwrap();
    assert!(
        text_of(&html, "#code-error")
            .unwrap()
            .contains("Too many wrong codes. Wait")
    );
    app.clock.advance(2);
    assert_eq!(
        submit_code(&app, &parked, &code_at(&secret, app.clock.now()))
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn recovery_codes_work_once_and_the_count_goes_down() {
    let app = spawn_app().await;
    let b = app.signed_in("quin").await;
    let (_, codes) = enrol(&app, &b).await;
    let phone_lost = password_step(&app, "quin").await;
    let ok = submit_code(&app, &phone_lost, &codes[3].to_uppercase()).await;
    assert_eq!(ok.status(), 303);
    let account = phone_lost
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text_of(&account, "#recovery-remaining").as_deref(), Some("9"));
    let again = password_step(&app, "quin").await;
    assert_eq!(submit_code(&app, &again, &codes[3]).await.status(), 422);
    let events = oxidp::audit::query(&app.state.db, Default::default(), 50)
        .await
        .unwrap();
    let used = events
        .iter()
        .find(|e| e.action == "mfa.recovery_code.used")
        .expect("audited");
    assert!(used.details.contains("\"remaining\":9"));
}

#[tokio::test]
async fn turning_off_or_new_codes_need_a_recent_sign_in_then_continue() {
    let app = spawn_app().await;
    let b = app.signed_in("rui").await;
    let (secret, old_codes) = enrol(&app, &b).await;
    app.clock.advance(301);
    // Stale: the confirmation page sends the person to sign in again first.
    let gate = b.get(app.url("/account/mfa/disable")).send().await.unwrap();
    assert_eq!(gate.status(), 303);
    assert_eq!(
        gate.headers()["location"],
        "/login?prompt=login&return_to=%2Faccount%2Fmfa%2Fdisable"
    );
    let csrf = csrf_of(&b.get(app.url("/account")).send().await.unwrap().text().await.unwrap());
    let forced = b
        .post(app.url("/account/mfa/recovery"))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(
        forced.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?prompt=login")
    );
    // Password and code again, then back to the confirmation page.
    let page = b
        .get(app.url("/login?prompt=login&return_to=%2Faccount%2Fmfa%2Frecovery"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let step = app
        .post_login(&b, &csrf_of(&page), "rui", PASSWORD, Some("/account/mfa/recovery"))
        .await;
    assert_eq!(step.headers()["location"], "/login/mfa");
    let done = submit_code(&app, &b, &code_at(&secret, app.clock.now())).await;
    assert_eq!(done.headers()["location"], "/account/mfa/recovery");
    let confirm = b
        .get(app.url("/account/mfa/recovery"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let fresh = b
        .post(app.url("/account/mfa/recovery"))
        .form(&[("csrf_token", csrf_of(&confirm).as_str())])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!old_codes.iter().any(|c| fresh.contains(c.as_str())), "new codes");
    let old = password_step(&app, "rui").await;
    assert_eq!(
        submit_code(&app, &old, &old_codes[0]).await.status(),
        422,
        "old codes stopped working"
    );
    // Turning it off (still recent): sign-in needs only the password again.
    let confirm = turn_off(&app, &b).await;
    assert!(confirm.contains("only need your password"), "{confirm}");
    assert_eq!(
        app.login(&browser(), "rui", PASSWORD).await.headers()["location"],
        "/account"
    );
}

#[tokio::test]
async fn acr_values_step_up_without_the_password_shows_in_the_verified_id_token() {
    let app = spawn_app().await;
    let b = app.signed_in("sam").await;
    let (secret, _) = enrol(&app, &b).await;
    let registered = app.web_client().await;
    // A password-only session (sign in before enrolment … simulate with a fresh sign-in
    // that completes MFA, then a second client asking for MFA must not ask again).
    let rp_http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(app.config.issuer()).unwrap(), &rp_http)
        .await
        .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(registered.id.clone()),
        Some(ClientSecret::new(registered.secret.clone().unwrap())),
    )
    .set_redirect_uri(RedirectUrl::new(registered.redirect_uri.clone()).unwrap());
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, _state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_auth_context_value(AuthenticationContextClass::new("urn:oxidp:acr:mfa".into()))
        .set_pkce_challenge(challenge)
        .url();
    let start = auth_url
        .as_str()
        .replace(&format!("http://localhost:{}", app.port), &app.address);

    // `b` signed in with the password only (before enrolment): a step-up, no password.
    app.clock.advance(40);
    let first = b.get(&start).send().await.unwrap();
    assert_eq!(
        first.headers()["location"],
        "/login/mfa",
        "straight to the second factor"
    );
    let stepped = submit_code(&app, &b, &code_at(&secret, app.clock.now())).await;
    let resume = stepped.headers()["location"].to_str().unwrap().to_owned();
    assert!(resume.starts_with("/authorize/continue?request="));
    let back = app.follow_to_client(&b, &app.url(&resume), "sam", PASSWORD).await;
    let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    let tokens = client
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&rp_http)
        .await
        .unwrap();
    let id_token = tokens.id_token().unwrap();
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce)
        .expect("verified ID token");
    assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some("urn:oxidp:acr:mfa"));
    let amr: Vec<String> = claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|m| m.as_str().to_owned())
        .collect();
    assert_eq!(amr, ["pwd", "otp", "mfa"]);
    assert_eq!(
        claims.auth_time().unwrap().timestamp(),
        app.clock.now(),
        "the step-up is the last authentication"
    );

    // Without a second factor the request fails at the client, with the error.
    let plain = app.signed_in("tia").await;
    let refused = plain.get(&start).send().await.unwrap();
    let location = refused.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&registered.redirect_uri), "{location}");
    assert!(location.contains("error=access_denied"));
}

#[tokio::test]
async fn a_client_that_requires_mfa_gets_a_second_factor_for_every_sign_in() {
    let app = spawn_app().await;
    let b = app.signed_in("uma").await;
    let (secret, _) = enrol(&app, &b).await;
    let strict = app
        .create_client(oxidp::oauth::clients::ClientSpec {
            name: Some("Payroll".into()),
            redirect_uris: Some(vec![crate::helpers::REDIRECT_URI.into()]),
            require_consent: Some(false),
            require_mfa: Some(true),
            ..Default::default()
        })
        .await;
    let (verifier, challenge) = crate::helpers::pkce_pair();
    let start = app.authorize_url(
        &strict,
        &[
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    app.clock.advance(30);
    // A password-only session is stepped up, no acr_values needed.
    let first = b.get(&start).send().await.unwrap();
    assert_eq!(first.headers()["location"], "/login/mfa");
    let stepped = submit_code(&app, &b, &code_at(&secret, app.clock.now())).await;
    let resume = stepped.headers()["location"].to_str().unwrap().to_owned();
    let back = b.get(app.url(&resume)).send().await.unwrap();
    let location = url::Url::parse(back.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens: serde_json::Value = app.redeem(&strict, &code, &verifier).await.json().await.unwrap();
    let claims = crate::helpers::jwt_claims(tokens["id_token"].as_str().unwrap());
    assert_eq!(claims["acr"], "urn:oxidp:acr:mfa");
    // prompt=none cannot step up: interaction_required.
    let none = b
        .get(app.authorize_url(
            &strict,
            &[
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("prompt", "none"),
            ],
        ))
        .send()
        .await
        .unwrap();
    let location = none.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.contains("code="),
        "already stepped up in this session: {location}"
    );
    let plain = app.signed_in("vic").await;
    let refused = plain
        .get(app.authorize_url(
            &strict,
            &[
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("prompt", "none"),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert!(
        refused.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=interaction_required")
    );
}
