//! WebAuthn without a browser: a software authenticator (`soft_authenticator`)
//! answers the server's real options, so registration, the second step after
//! the password and passwordless sign-in run end to end over HTTP, and the
//! attacks can be forged: a replayed challenge, a wrong origin, a signature
//! counter that goes back, user verification missing, an expired ceremony,
//! another account's credential. Refusals are audited.

use serde_json::Value;

use oxidp::db::models::sessions;

use crate::helpers::{PASSWORD, TestApp, browser, cookie_value, csrf_of, spawn_app, text_of};
use crate::soft_authenticator::{Flags, SoftAuthenticator};

fn origin(app: &TestApp) -> String {
    app.config.issuer.clone()
}

async fn page_csrf(app: &TestApp, b: &reqwest::Client, path: &str) -> String {
    let page = b.get(app.url(path)).send().await.unwrap();
    assert_eq!(page.status(), 200, "GET {path}");
    csrf_of(&page.text().await.unwrap())
}

async fn options(app: &TestApp, b: &reqwest::Client, path: &str, csrf: &str) -> reqwest::Response {
    b.post(app.url(path))
        .form(&[("csrf_token", csrf)])
        .send()
        .await
        .unwrap()
}

async fn options_json(app: &TestApp, b: &reqwest::Client, path: &str, csrf: &str) -> Value {
    let response = options(app, b, path, csrf).await;
    assert_eq!(response.status(), 200, "POST {path}");
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

/// Adds `soft` to the signed-in browser's account; returns the form post's response.
async fn register(
    app: &TestApp,
    b: &reqwest::Client,
    soft: &mut SoftAuthenticator,
    name: &str,
    flags: Flags,
) -> reqwest::Response {
    let csrf = page_csrf(app, b, "/account/passkeys/new").await;
    let options = options_json(app, b, "/account/passkeys/options", &csrf).await;
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["residentKey"], "required",
        "asks for a discoverable credential"
    );
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["userVerification"],
        "required"
    );
    let credential = soft.register(&options, &origin(app), flags);
    b.post(app.url("/account/passkeys"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", name),
            ("credential", credential.to_string().as_str()),
        ])
        .send()
        .await
        .unwrap()
}

async fn registered(app: &TestApp, username: &str, name: &str) -> (reqwest::Client, SoftAuthenticator) {
    let b = app.signed_in(username).await;
    let mut soft = SoftAuthenticator::new();
    let done = register(app, &b, &mut soft, name, Flags::default()).await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "/account?done=passkey-added");
    (b, soft)
}

/// The password step; the browser is parked at /login/mfa.
async fn password_step(app: &TestApp, username: &str) -> reqwest::Client {
    let b = browser();
    let response = app.login(&b, username, PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/login/mfa");
    b
}

/// The second step with `soft`, answering from `answer_origin`.
async fn second_step(
    app: &TestApp,
    b: &reqwest::Client,
    soft: &mut SoftAuthenticator,
    answer_origin: &str,
    flags: Flags,
) -> reqwest::Response {
    let csrf = page_csrf(app, b, "/login/mfa").await;
    let options = options_json(app, b, "/login/mfa/passkey/options", &csrf).await;
    let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
    assert_eq!(allowed.len(), 1);
    assert_eq!(
        super::soft_authenticator::b64_decode_any(allowed[0]["id"].as_str().unwrap()),
        super::soft_authenticator::b64_decode_any(&soft.credential_id_b64()),
        "the account's key is the one allowed"
    );
    let credential = soft.assert(&options, answer_origin, flags);
    b.post(app.url("/login/mfa/passkey"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("credential", credential.to_string().as_str()),
        ])
        .send()
        .await
        .unwrap()
}

/// Starts a passwordless sign-in; returns (csrf, options, the ceremony cookie value).
async fn passwordless_options(app: &TestApp, b: &reqwest::Client) -> (String, Value, String) {
    let csrf = page_csrf(app, b, "/login").await;
    let response = options(app, b, "/login/passkey/options", &csrf).await;
    assert_eq!(response.status(), 200);
    let cookie = cookie_value(&response, "oxidp_webauthn").expect("the ceremony is bound to this browser");
    (csrf, response.json().await.unwrap(), cookie)
}

async fn passwordless_post(app: &TestApp, b: &reqwest::Client, csrf: &str, credential: &Value) -> reqwest::Response {
    b.post(app.url("/login/passkey"))
        .form(&[
            ("csrf_token", csrf),
            ("credential", credential.to_string().as_str()),
            ("return_to", "/account"),
        ])
        .send()
        .await
        .unwrap()
}

async fn session_amr(app: &TestApp, username: &str) -> Vec<String> {
    let user = app.state.db.clone();
    let name = username.to_owned();
    let rows = user
        .run(move |conn| {
            let user = oxidp::db::models::users::find_by_username(conn, &name)?.expect("user");
            sessions::list_for_user(conn, &user.id)
        })
        .await
        .unwrap();
    let newest = rows.iter().max_by_key(|r| r.created_at).expect("a session");
    newest.amr.split(' ').map(str::to_owned).collect()
}

async fn audit_actions(app: &TestApp) -> Vec<(String, String)> {
    oxidp::audit::query(&app.state.db, Default::default(), 200)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.details))
        .collect()
}

#[tokio::test]
async fn a_registered_key_is_the_second_step_after_the_password() {
    let app = spawn_app().await;
    let (b, mut soft) = registered(&app, "ana", "Blue YubiKey").await;
    let account = b.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let listed = text_of(&account, "#passkeys").expect("the account page lists keys");
    assert!(account.contains("Blue YubiKey"), "{listed}");
    assert!(listed.contains("never"), "not used yet: {listed}");
    // Turning off an authenticator app does not claim the keys stop being asked for.
    let confirm = b
        .get(app.url("/account/mfa/disable"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(confirm.contains("still ask for one of"), "{confirm}");

    let other = password_step(&app, "ana").await;
    let page = other
        .get(app.url("/login/mfa"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"passkey-verify\""), "the key button is offered");
    assert!(!page.contains("Verification code"), "no authenticator app was set up");
    let done = second_step(&app, &other, &mut soft, &origin(&app), Flags::default()).await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "/account");
    assert!(cookie_value(&done, "oxidp_session").is_some(), "a new session id");
    assert_eq!(other.get(app.url("/account")).send().await.unwrap().status(), 200);
    let amr = session_amr(&app, "ana").await;
    assert!(
        amr.contains(&"pwd".to_owned()) && amr.contains(&"hwk".to_owned()) && amr.contains(&"mfa".to_owned()),
        "{amr:?}"
    );

    let account = other
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text_of(&account, "#passkeys").unwrap().contains("never"),
        "last use is shown"
    );
    let actions = audit_actions(&app).await;
    assert!(actions.iter().any(|(a, _)| a == "mfa.webauthn.register"));
    assert!(actions.iter().any(|(a, _)| a == "mfa.webauthn.use"));
}

#[tokio::test]
async fn passwordless_sign_in_with_a_discoverable_passkey() {
    let app = spawn_app().await;
    let (_, mut soft) = registered(&app, "ben", "Phone").await;

    let b = browser();
    let (csrf, options, _) = passwordless_options(&app, &b).await;
    assert!(
        options["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "the browser picks the passkey: {options}"
    );
    assert!(
        options.get("mediation").is_none_or(Value::is_null),
        "a modal prompt, not autofill"
    );
    let credential = soft.assert(&options, &origin(&app), Flags::default());
    let done = passwordless_post(&app, &b, &csrf, &credential).await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "/account");
    let account = b.get(app.url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 200);
    let amr = session_amr(&app, "ben").await;
    assert!(!amr.contains(&"pwd".to_owned()), "no password: {amr:?}");
    assert!(
        amr.contains(&"mfa".to_owned()) && amr.contains(&"user".to_owned()),
        "{amr:?}"
    );
}

#[tokio::test]
async fn a_challenge_is_answered_once_and_expires_after_five_minutes() {
    let app = spawn_app().await;
    let (_, mut soft) = registered(&app, "cyd", "Key").await;

    // First use succeeds.
    let b = browser();
    let (csrf, options, ceremony) = passwordless_options(&app, &b).await;
    let credential = soft.assert(&options, &origin(&app), Flags::default());
    assert_eq!(passwordless_post(&app, &b, &csrf, &credential).await.status(), 303);

    // An attacker who captured the cookies and the signed answer replays both.
    let login = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = login.get(app.url("/login")).send().await.unwrap();
    let csrf_cookie = cookie_value(&page, "oxidp_csrf").unwrap();
    let replay_csrf = csrf_of(&page.text().await.unwrap());
    let replay = login
        .post(app.url("/login/passkey"))
        .header("cookie", format!("oxidp_csrf={csrf_cookie}; oxidp_webauthn={ceremony}"))
        .form(&[
            ("csrf_token", replay_csrf.as_str()),
            ("credential", credential.to_string().as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 422);
    let html = replay.text().await.unwrap();
    assert!(html.contains("expired or was already used"), "{html}");

    // The same answer against a fresh challenge is refused too (it signed the old one).
    let b = browser();
    let (csrf, _, _) = passwordless_options(&app, &b).await;
    let refused = passwordless_post(&app, &b, &csrf, &credential).await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("could not be used to sign in"));

    // A ceremony left for more than five minutes is gone.
    let b = browser();
    let (csrf, options, _) = passwordless_options(&app, &b).await;
    app.clock.advance(301);
    let late = soft.assert(&options, &origin(&app), Flags::default());
    assert_eq!(passwordless_post(&app, &b, &csrf, &late).await.status(), 422);
    assert_eq!(
        b.get(app.url("/account")).send().await.unwrap().status(),
        303,
        "not signed in"
    );
}

#[tokio::test]
async fn wrong_origin_counter_regression_and_missing_user_verification_are_refused_and_audited() {
    let app = spawn_app().await;
    let (_, mut soft) = registered(&app, "dee", "Key").await;

    // A phishing site's origin.
    let b = password_step(&app, "dee").await;
    let phished = second_step(&app, &b, &mut soft, "http://localhost.evil.example", Flags::default()).await;
    assert_eq!(phished.status(), 422);
    assert!(phished.text().await.unwrap().contains("could not be verified"));
    assert_eq!(b.get(app.url("/account")).send().await.unwrap().status(), 303);

    // An assertion scoped to another relying party id (its rp id hash differs).
    let b = password_step(&app, "dee").await;
    let csrf = page_csrf(&app, &b, "/login/mfa").await;
    let mut options = options_json(&app, &b, "/login/mfa/passkey/options", &csrf).await;
    options["publicKey"]["rpId"] = Value::from("evil.example");
    let credential = soft.assert(&options, &origin(&app), Flags::default());
    let other_rp = b
        .post(app.url("/login/mfa/passkey"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("credential", credential.to_string().as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(other_rp.status(), 422);

    // User verification missing (presence only).
    let presence_only = Flags {
        user_verified: false,
        ..Flags::default()
    };
    let b = password_step(&app, "dee").await;
    assert_eq!(
        second_step(&app, &b, &mut soft, &origin(&app), presence_only)
            .await
            .status(),
        422
    );

    // Two good uses move the counter forward; a clone with an older counter is refused.
    for _ in 0..2 {
        let b = password_step(&app, "dee").await;
        assert_eq!(
            second_step(&app, &b, &mut soft, &origin(&app), Flags::default())
                .await
                .status(),
            303
        );
    }
    let used = soft.counter();
    soft.set_counter(used - 2);
    let b = password_step(&app, "dee").await;
    assert_eq!(
        second_step(&app, &b, &mut soft, &origin(&app), Flags::default())
            .await
            .status(),
        422
    );

    let failures: Vec<String> = audit_actions(&app)
        .await
        .into_iter()
        .filter(|(a, _)| a == "mfa.webauthn.failure")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(failures.len(), 4, "{failures:?}");
    let all = failures.join(" ");
    assert!(all.contains("Origin") || all.contains("origin"), "{all}");
    assert!(all.contains("NotVerified"), "{all}");
    assert!(all.contains("RPIDHash"), "{all}");
    assert!(all.contains("Compromise") || all.contains("ounter"), "{all}");

    // Registration without user verification is refused as well.
    let b = app.signed_in("dee2").await;
    let mut weak = SoftAuthenticator::new();
    let refused = register(&app, &b, &mut weak, "Weak", presence_only).await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("was not added"));
}

#[tokio::test]
async fn another_accounts_key_cannot_be_the_second_step() {
    let app = spawn_app().await;
    let (_, mut eves) = registered(&app, "eve", "Eve's key").await;
    registered(&app, "fay", "Fay's key").await;
    let b = password_step(&app, "fay").await;
    let csrf = page_csrf(&app, &b, "/login/mfa").await;
    let options = options_json(&app, &b, "/login/mfa/passkey/options", &csrf).await;
    let credential = eves.assert(&options, &origin(&app), Flags::default());
    let refused = b
        .post(app.url("/login/mfa/passkey"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("credential", credential.to_string().as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    assert_eq!(b.get(app.url("/account")).send().await.unwrap().status(), 303);
}

#[tokio::test]
async fn adding_needs_a_recent_sign_in_and_keys_can_be_renamed_and_removed_after_reauthentication() {
    let app = spawn_app().await;
    let (b, _) = registered(&app, "gus", "Old name").await;
    let mut second = SoftAuthenticator::new();
    assert_eq!(
        register(&app, &b, &mut second, "Laptop", Flags::default())
            .await
            .status(),
        303
    );

    // The same authenticator twice is refused.
    let again = register(&app, &b, &mut second, "Laptop again", Flags::default()).await;
    assert_eq!(again.status(), 422);

    let account = b.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_of(&account);
    let document = scraper::Html::parse_document(&account);
    let selector = scraper::Selector::parse("#passkeys form").unwrap();
    let first = document
        .select(&selector)
        .next()
        .unwrap()
        .value()
        .attr("action")
        .unwrap()
        .to_owned();
    let id = first
        .trim_start_matches("/account/passkeys/")
        .trim_end_matches("/rename")
        .to_owned();

    // Rename, and a bad name.
    let renamed = b
        .post(app.url(&first))
        .form(&[("csrf_token", csrf.as_str()), ("name", "Blue key")])
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 303);
    let empty = b
        .post(app.url(&first))
        .form(&[("csrf_token", csrf.as_str()), ("name", "  ")])
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
    let account = b.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(account.contains("Blue key") && !account.contains("Old name"));

    // Six minutes later: adding and removing ask for the password first.
    app.clock.advance(360);
    let new = b.get(app.url("/account/passkeys/new")).send().await.unwrap();
    assert_eq!(new.status(), 303);
    assert_eq!(
        new.headers()["location"],
        "/login?prompt=login&return_to=%2Faccount%2Fpasskeys%2Fnew"
    );
    let stale = options(&app, &b, "/account/passkeys/options", &csrf).await;
    assert_eq!(stale.status(), 403);
    assert_eq!(stale.headers()["content-type"], "application/problem+json");
    let delete_path = format!("/account/passkeys/{id}/delete");
    let ask = b.get(app.url(&delete_path)).send().await.unwrap();
    assert_eq!(ask.status(), 303);
    let direct = b
        .post(app.url(&delete_path))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 303, "not removed without re-authentication");
    assert!(
        direct.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?prompt=login")
    );

    // Sign in again (password, then the remaining key as the second step) and remove it.
    let page = b
        .get(app.url("/login?prompt=login&return_to=%2Faccount"))
        .send()
        .await
        .unwrap();
    let csrf = csrf_of(&page.text().await.unwrap());
    let again = app.post_login(&b, &csrf, "gus", PASSWORD, Some("/account")).await;
    assert_eq!(again.headers()["location"], "/login/mfa");
    let done = second_step_any(&app, &b, &mut second).await;
    assert_eq!(done.status(), 303);
    let confirm = b.get(app.url(&delete_path)).send().await.unwrap();
    assert_eq!(confirm.status(), 200);
    let csrf = csrf_of(&confirm.text().await.unwrap());
    let removed = b
        .post(app.url(&delete_path))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(removed.headers()["location"], "/account?done=passkey-removed");
    let account = b.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(!account.contains("Blue key") && account.contains("Laptop"));
    assert!(
        audit_actions(&app)
            .await
            .iter()
            .any(|(a, _)| a == "mfa.webauthn.delete")
    );
}

/// The second step when the account has several keys (any one of them answers).
async fn second_step_any(app: &TestApp, b: &reqwest::Client, soft: &mut SoftAuthenticator) -> reqwest::Response {
    let csrf = page_csrf(app, b, "/login/mfa").await;
    let options = options_json(app, b, "/login/mfa/passkey/options", &csrf).await;
    let credential = soft.assert(&options, &origin(app), Flags::default());
    b.post(app.url("/login/mfa/passkey"))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("credential", credential.to_string().as_str()),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn options_requests_need_the_form_token_and_a_pending_sign_in() {
    let app = spawn_app().await;
    let b = browser();
    let _ = page_csrf(&app, &b, "/login").await;
    let forged = options(&app, &b, "/login/passkey/options", "forged").await;
    assert_eq!(forged.status(), 403);
    assert_eq!(forged.headers()["content-type"], "application/problem+json");
    let csrf = page_csrf(&app, &b, "/login").await;
    let nothing_pending = options(&app, &b, "/login/mfa/passkey/options", &csrf).await;
    assert_eq!(nothing_pending.status(), 401);
    let body: Value = nothing_pending.json().await.unwrap();
    assert_eq!(body["status"], 401);
    let anonymous = options(&app, &b, "/account/passkeys/options", &csrf).await;
    assert_eq!(
        anonymous.status(),
        303,
        "signed-in pages send people to the sign-in page"
    );
}

#[tokio::test]
async fn the_second_step_offers_what_the_person_has_and_recovery_codes_only_while_they_exist() {
    let app = spawn_app().await;
    let (b, _soft) = registered(&app, "cleo", "Desk key").await;
    let page = mfa_page(&app, "cleo").await;
    assert!(page.contains("id=\"passkey-verify\""), "{page}");
    assert!(
        !page.contains("Use a recovery code") && !page.contains("Recovery code"),
        "a passkey-only account has no recovery codes to offer: {page}"
    );

    // An authenticator app brings recovery codes: both steps are offered.
    crate::mfa::enrol(&app, &b).await;
    let page = mfa_page(&app, "cleo").await;
    assert!(
        page.contains("id=\"passkey-verify\"") && page.contains("Verification code"),
        "{page}"
    );

    // Turning the app off ends its recovery codes, and the page stops offering them.
    let confirm = crate::mfa::turn_off(&app, &b).await;
    assert!(confirm.contains("still ask for one of"), "{confirm}");
    let page = mfa_page(&app, "cleo").await;
    assert!(page.contains("id=\"passkey-verify\""));
    assert!(
        !page.contains("Verification code") && !page.contains("Recovery code"),
        "{page}"
    );
}

/// The second-step page after the password, as HTML.
async fn mfa_page(app: &TestApp, username: &str) -> String {
    let b = password_step(app, username).await;
    b.get(app.url("/login/mfa")).send().await.unwrap().text().await.unwrap()
}

/// Issue 19 item 1: a removed passkey is a credential change — the other browser
/// is signed out and no refresh token from before works, `offline_access` included.
#[tokio::test]
async fn removing_a_passkey_ends_the_other_sessions_and_every_refresh_token() {
    let app = spawn_app().await;
    let b = app.signed_in("alice").await;
    let other = browser();
    assert_eq!(app.login(&other, "alice", PASSWORD).await.status(), 303);
    let rp = app.web_client().await;
    let (code, verifier) = app.code_for(&rp, &other, "alice", "openid offline_access").await;
    let offline: Value = app.redeem(&rp, &code, &verifier).await.json().await.unwrap();
    let mut soft = SoftAuthenticator::new();
    assert_eq!(
        register(&app, &b, &mut soft, "Blue key", Flags::default())
            .await
            .status(),
        303
    );

    let account = b.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let document = scraper::Html::parse_document(&account);
    let selector = scraper::Selector::parse("#passkeys form").unwrap();
    let action = document
        .select(&selector)
        .next()
        .unwrap()
        .value()
        .attr("action")
        .unwrap();
    let id = action
        .trim_start_matches("/account/passkeys/")
        .trim_end_matches("/rename");
    let delete_path = format!("/account/passkeys/{id}/delete");
    let confirm = b.get(app.url(&delete_path)).send().await.unwrap();
    assert_eq!(confirm.status(), 200);
    let csrf = csrf_of(&confirm.text().await.unwrap());
    let removed = b
        .post(app.url(&delete_path))
        .form(&[("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(removed.headers()["location"], "/account?done=passkey-removed");

    assert_eq!(b.get(app.url("/account")).send().await.unwrap().status(), 200);
    assert_eq!(other.get(app.url("/account")).send().await.unwrap().status(), 303);
    let refreshed = app
        .token(
            &rp,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", offline["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(refreshed.status(), 400);
    let access = offline["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(&rp, access).await, serde_json::json!({"active": false}));
}
