//! Issue 19 item 8: CSRF tokens are bound to the session they were issued for.
//! An attacker's own CSRF cookie and token pair (from their signed-in browser,
//! or from a signed-out one), planted in the victim's browser, is refused on
//! every state-changing endpoint; the victim's own forms keep working.

use std::sync::Arc;

use reqwest::cookie::Jar;

use crate::helpers::{PASSWORD, TestApp, browser, cookie_value, csrf_of, pkce_pair, step};

/// A browser whose cookie jar the test can write into (to plant cookies).
fn plantable_browser() -> (reqwest::Client, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (client, jar)
}

/// The attacker's CSRF cookie and the token of the form on `path`, loaded as the
/// first page of the attacker's browser (which sets the cookie).
async fn attacker_pair(app: &TestApp, attacker: &reqwest::Client, path: &str) -> (String, String) {
    let response = attacker.get(app.url(path)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cookie = cookie_value(&response, "oxidp_csrf").expect("first page sets the CSRF cookie");
    (cookie, csrf_of(&response.text().await.unwrap()))
}

/// The victim, signed in, with an authorization request pending consent.
struct Victim {
    browser: reqwest::Client,
    jar: Arc<Jar>,
    client_id: String,
    consent: String,
    request: String,
    own_token: String,
}

#[tokio::test]
async fn a_planted_csrf_pair_is_refused_on_every_state_changing_endpoint() {
    let app = crate::helpers::spawn_app().await;
    app.create_user("mallory", PASSWORD).await;
    app.create_user("victim", PASSWORD).await;
    let pairs = step("the attacker's pairs", attacker_pairs(&app)).await;
    let victim = step("the victim starts a consent", victim_with_pending_consent(&app)).await;
    step("planted pairs", planted_pairs_are_refused(&app, &victim, pairs)).await;
    step("the victim's own forms still work", own_forms_still_work(&app, &victim)).await;
}

/// The attacker's pairs: one from a signed-out page, one from their signed-in /account.
async fn attacker_pairs(app: &TestApp) -> [(String, String); 2] {
    let signed_out = browser();
    let pre_session = attacker_pair(app, &signed_out, "/login").await;
    let (mallory, _) = plantable_browser();
    let login_page = mallory.get(app.url("/login")).send().await.unwrap();
    let mallory_cookie = cookie_value(&login_page, "oxidp_csrf").unwrap();
    let csrf = csrf_of(&login_page.text().await.unwrap());
    assert_eq!(
        app.post_login(&mallory, &csrf, "mallory", PASSWORD, None)
            .await
            .status(),
        303
    );
    let account = mallory
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let signed_in = (mallory_cookie, csrf_of(&account));
    [pre_session, signed_in]
}

async fn victim_with_pending_consent(app: &TestApp) -> Victim {
    let (victim, jar) = plantable_browser();
    assert_eq!(app.login(&victim, "victim", PASSWORD).await.status(), 303);
    let client = app.web_client().await;
    let (_, challenge) = pkce_pair();
    let start = victim
        .get(app.authorize_url(
            &client,
            &[
                ("scope", "openid"),
                ("state", "v"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        ))
        .send()
        .await
        .unwrap();
    let consent = start.headers()["location"].to_str().unwrap().to_owned();
    let request = consent.trim_start_matches("/consent?request=").to_owned();
    assert!(consent.starts_with("/consent?request="), "{consent}");
    let sessions_page = victim
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let own_token = csrf_of(&sessions_page);
    Victim {
        browser: victim,
        jar,
        client_id: client.id,
        consent,
        request,
        own_token,
    }
}

async fn planted_pairs_are_refused(app: &TestApp, victim: &Victim, pairs: [(String, String); 2]) {
    let Victim {
        browser: victim,
        jar,
        client_id,
        request,
        ..
    } = victim;
    let endpoints: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "/account/password",
            vec![
                ("current_password", PASSWORD.into()),
                ("new_password", "an entirely new passphrase 42".into()),
                ("confirm_password", "an entirely new passphrase 42".into()),
            ],
        ),
        ("/account/sessions/end-others", vec![]),
        ("/account/sessions/end", vec![("session", "whatever".into())]),
        ("/session/extend", vec![]),
        ("/account/consents/revoke", vec![("client_id", client_id.clone())]),
        ("/account/mfa/totp", vec![("code", "123456".into())]),
        ("/account/mfa/recovery", vec![]),
        ("/account/mfa/disable", vec![]),
        ("/account/passkeys/options", vec![]),
        (
            "/consent",
            vec![("request", request.clone()), ("decision", "allow".into())],
        ),
        ("/logout", vec![]),
    ];
    let url = url::Url::parse(&app.address).unwrap();
    for (cookie, token) in &pairs {
        // Plant the attacker's cookie in the victim's browser (http: no __Host- prefix).
        jar.add_cookie_str(&format!("oxidp_csrf={cookie}; Path=/"), &url);
        for (path, fields) in &endpoints {
            let mut form = vec![("csrf_token", token.clone())];
            form.extend(fields.iter().cloned());
            let response = victim.post(app.url(path)).form(&form).send().await.unwrap();
            let status = response.status();
            let location = response.headers().get("location").cloned();
            let body = response.text().await.unwrap();
            assert_eq!(status, 403, "{path} accepted a planted CSRF pair: {body}");
            assert!(location.is_none(), "{path}");
        }
    }
}

async fn own_forms_still_work(app: &TestApp, victim: &Victim) {
    let Victim {
        browser: victim,
        consent,
        request,
        own_token,
        ..
    } = victim;
    // Still signed in, password unchanged, consent still pending: nothing happened.
    let account = victim.get(app.url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 200);
    // The victim's own token still fails with the planted cookie (it belongs to the old cookie)…
    let response = victim
        .post(app.url("/account/sessions/end-others"))
        .form(&[("csrf_token", own_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // …but a fresh page gives a working token, and the pending consent is intact.
    let page = victim.get(app.url(consent)).send().await.unwrap().text().await.unwrap();
    let allowed = victim
        .post(app.url("/consent"))
        .form(&[
            ("csrf_token", csrf_of(&page).as_str()),
            ("request", request.as_str()),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 303);
    assert!(
        allowed.headers()["location"].to_str().unwrap().contains("code="),
        "the victim's own consent works"
    );
    let fresh = victim
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = victim
        .post(app.url("/account/sessions/end-others"))
        .form(&[("csrf_token", csrf_of(&fresh).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "the victim's own fresh token works");
    // The password did not change.
    assert_eq!(app.login(&browser(), "victim", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn a_token_from_before_sign_in_does_not_survive_into_the_session() {
    let app = crate::helpers::spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let person = browser();
    // The sign-in form posts with its pre-session token (session rotation at sign-in works)…
    let login_token = app.login_csrf(&person).await;
    assert_eq!(
        app.post_login(&person, &login_token, "alice", PASSWORD, None)
            .await
            .status(),
        303
    );
    // …but that token does not authorize anything in the new session.
    let response = person
        .post(app.url("/account/sessions/end-others"))
        .form(&[("csrf_token", login_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Pages after sign-in render tokens that work.
    let page = person
        .get(app.url("/account"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = person
        .post(app.url("/logout"))
        .form(&[("csrf_token", csrf_of(&page).as_str())])
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), 403);
    assert_eq!(
        person.get(app.url("/account")).send().await.unwrap().status(),
        303,
        "signed out"
    );
}
