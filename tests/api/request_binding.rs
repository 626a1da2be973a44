//! Issue 19 item 7: a pending /authorize request belongs to the browser that
//! started it. Another browser (another signed-in person) that opens its consent
//! page, posts its consent form, continues it or signs in for it gets a clear
//! page — never the consent screen, never a code.

use crate::helpers::{PASSWORD, REDIRECT_URI, TestApp, browser, csrf_of, pkce_pair, spawn_app};

const FOREIGN: &str = "belongs to another browser";

/// Starts a request in `person`'s browser and returns where the server sent it.
async fn start(app: &TestApp, person: &reqwest::Client, state: &str) -> String {
    let client = app.web_client().await;
    let (_, challenge) = pkce_pair();
    let url = app.authorize_url(
        &client,
        &[
            ("scope", "openid email"),
            ("state", state),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let response = person.get(url).send().await.unwrap();
    assert_eq!(response.status(), 303);
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn assert_foreign(status: reqwest::StatusCode, location: Option<&str>, page: &str) {
    assert_eq!(status, 403, "{page}");
    assert!(location.is_none(), "no redirect (no code) for a foreign browser");
    assert!(page.contains(FOREIGN), "{page}");
    assert!(!page.contains("name=\"decision\""), "no consent form: {page}");
}

async fn read(response: reqwest::Response) -> (reqwest::StatusCode, Option<String>, String) {
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, location, response.text().await.unwrap())
}

#[tokio::test]
async fn consent_of_a_pending_request_is_refused_in_another_browser() {
    let app = spawn_app().await;
    let mallory = app.signed_in("mallory").await;
    let bob = app.signed_in("bob").await;

    // Mallory starts a request in her browser and sends Bob the consent link.
    let consent = start(&app, &mallory, "mallory-state").await;
    assert!(consent.starts_with("/consent?request="), "{consent}");
    let request = consent.trim_start_matches("/consent?request=").to_owned();

    // Bob's browser: no consent screen.
    let (status, location, page) = read(bob.get(app.url(&consent)).send().await.unwrap()).await;
    assert_foreign(status, location.as_deref(), &page);
    // Posting the consent form with Bob's own valid CSRF token: refused, no code.
    let account = bob.get(app.url("/account")).send().await.unwrap().text().await.unwrap();
    let (status, location, page) = read(
        bob.post(app.url("/consent"))
            .form(&[
                ("csrf_token", csrf_of(&account).as_str()),
                ("request", request.as_str()),
                ("decision", "allow"),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_foreign(status, location.as_deref(), &page);
    // Continuing the request: refused too.
    let (status, location, page) = read(
        bob.get(app.url(&format!("/authorize/continue?request={request}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_foreign(status, location.as_deref(), &page);

    // Mallory's own browser still completes it, with her state and a code for her.
    let page = mallory
        .get(app.url(&consent))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"decision\""), "{page}");
    let allowed = mallory
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
    let back = url::Url::parse(allowed.headers()["location"].to_str().unwrap()).unwrap();
    assert!(back.as_str().starts_with(REDIRECT_URI));
    let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert!(params.contains_key("code"));
    assert_eq!(params["state"], "mallory-state");
}

#[tokio::test]
async fn sign_in_for_a_pending_request_is_refused_in_another_browser() {
    let app = spawn_app().await;
    app.create_user("carol", PASSWORD).await;
    let originator = browser();
    let login = start(&app, &originator, "s1").await;
    assert!(login.starts_with("/login?return_to="), "{login}");
    let return_to = url::Url::parse(&app.url(&login))
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "return_to")
        .unwrap()
        .1
        .into_owned();
    assert!(return_to.starts_with("/authorize/continue?request="), "{return_to}");

    // Another browser that opens the sign-in link gets the page, not the form…
    let other = browser();
    let (status, location, page) = read(other.get(app.url(&login)).send().await.unwrap()).await;
    assert_foreign(status, location.as_deref(), &page);
    assert!(!page.contains("name=\"password\""));
    // …and posting the sign-in form for it does not sign anyone in.
    let csrf = app.login_csrf(&other).await;
    let response = app.post_login(&other, &csrf, "carol", PASSWORD, Some(&return_to)).await;
    assert!(response.cookies().all(|c| c.name() != "oxidp_session"));
    let (status, location, page) = read(response).await;
    assert_foreign(status, location.as_deref(), &page);

    // The browser that started it signs in and gets its code.
    let back = app
        .follow_to_client(&originator, &app.url(&return_to), "carol", PASSWORD)
        .await;
    assert!(back.query_pairs().any(|(k, _)| k == "code"), "{back}");
}
