//! `prompt=consent`, `prompt=login` and `max_age` (OIDC Core §3.1.2.1): each asks
//! once per request and then lets the request finish, however long the person took.

use std::collections::HashMap;

use oxidp::clock::Clock;

use crate::helpers::{PASSWORD, TestApp, TestClient, browser, csrf_of, jwt_claims, pkce_pair, spawn_app};

/// What a browser went through to reach the client.
struct Outcome {
    /// The client's redirect URI with its query.
    back: url::Url,
    /// Sign-in forms submitted.
    sign_ins: usize,
    /// Consent pages answered.
    consents: usize,
}

impl Outcome {
    fn query(&self) -> HashMap<String, String> {
        self.back.query_pairs().into_owned().collect()
    }
}

/// Follows redirects from `start` like a person: signs in when asked, allows
/// when asked; `pause` seconds pass after each sign-in (the person is slow).
/// Gives up after 8 sign-ins or consents: that is a loop.
async fn drive(app: &TestApp, person: &reqwest::Client, start: &str, pause: i64) -> Outcome {
    let (mut sign_ins, mut consents) = (0, 0);
    let mut response = person.get(start).send().await.unwrap();
    for _ in 0..30 {
        let status = response.status();
        let Some(location) = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
        else {
            panic!("stuck at {status}: {}", response.text().await.unwrap());
        };
        let location = if location.starts_with('/') {
            app.url(&location)
        } else {
            location
        };
        let url = url::Url::parse(&location).unwrap();
        if !location.starts_with(&app.address) {
            return Outcome {
                back: url,
                sign_ins,
                consents,
            };
        }
        assert!(
            sign_ins < 8 && consents < 8,
            "loop: {sign_ins} sign-ins, {consents} consents"
        );
        response = match url.path() {
            "/login" => {
                let page = person.get(&location).send().await.unwrap().text().await.unwrap();
                let return_to = scraper::Html::parse_document(&page)
                    .select(&scraper::Selector::parse(r#"input[name="return_to"]"#).unwrap())
                    .next()
                    .expect("the sign-in form")
                    .value()
                    .attr("value")
                    .unwrap()
                    .to_owned();
                sign_ins += 1;
                let signed_in = app
                    .post_login(person, &csrf_of(&page), "alice", PASSWORD, Some(&return_to))
                    .await;
                app.clock.advance(pause);
                signed_in
            }
            "/consent" => {
                let page = person.get(&location).send().await.unwrap().text().await.unwrap();
                let request = url.query_pairs().find(|(k, _)| k == "request").unwrap().1.into_owned();
                consents += 1;
                person
                    .post(app.url("/consent"))
                    .form(&[
                        ("csrf_token", csrf_of(&page).as_str()),
                        ("request", request.as_str()),
                        ("decision", "allow"),
                    ])
                    .send()
                    .await
                    .unwrap()
            }
            _ => person.get(&location).send().await.unwrap(),
        };
    }
    panic!("too many redirects");
}

fn start(app: &TestApp, client: &TestClient, extra: &[(&str, &str)]) -> (String, String) {
    let (verifier, challenge) = pkce_pair();
    let mut params = vec![
        ("scope", "openid offline_access"),
        ("state", "st"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    params.extend_from_slice(extra);
    (app.authorize_url(client, &params), verifier)
}

/// alice, signed in, who has already allowed the web client once.
async fn consented(app: &TestApp) -> (reqwest::Client, TestClient) {
    let client = app.web_client().await;
    let person = app.signed_in("alice").await;
    let (url, _) = start(app, &client, &[]);
    let first = drive(app, &person, &url, 0).await;
    assert_eq!((first.sign_ins, first.consents), (0, 1));
    assert!(first.query().contains_key("code"));
    (person, client)
}

/// The `auth_time` in the ID token the code yields.
async fn auth_time_of(app: &TestApp, client: &TestClient, outcome: &Outcome, verifier: &str) -> i64 {
    let code = &outcome.query()["code"];
    let tokens: serde_json::Value = app.redeem(client, code, verifier).await.json().await.unwrap();
    jwt_claims(tokens["id_token"].as_str().unwrap())["auth_time"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn prompt_consent_is_asked_once_per_request_then_a_code_is_issued() {
    let app = spawn_app().await;
    let (person, client) = consented(&app).await;
    let (url, verifier) = start(&app, &client, &[("prompt", "consent")]);
    let outcome = drive(&app, &person, &url, 0).await;
    assert_eq!(outcome.back.path(), "/cb");
    assert_eq!((outcome.sign_ins, outcome.consents), (0, 1), "asked exactly once");
    assert_eq!(outcome.query()["state"], "st");
    let code = &outcome.query()["code"];
    let tokens: serde_json::Value = app.redeem(&client, code, &verifier).await.json().await.unwrap();
    assert!(tokens["refresh_token"].is_string(), "offline_access granted: {tokens}");
    // With prompt=none as well as consent given already, nothing is asked.
    let (url, _) = start(&app, &client, &[("prompt", "none")]);
    assert!(drive(&app, &person, &url, 0).await.query().contains_key("code"));
}

#[tokio::test]
async fn prompt_login_asks_for_the_password_once_per_request() {
    let app = spawn_app().await;
    let (person, client) = consented(&app).await;
    app.clock.advance(30);
    let (url, verifier) = start(&app, &client, &[("prompt", "login consent")]);
    let before = app.clock.now();
    let outcome = drive(&app, &person, &url, 3).await;
    assert_eq!((outcome.sign_ins, outcome.consents), (1, 1), "once each");
    let auth_time = auth_time_of(&app, &client, &outcome, &verifier).await;
    assert!(auth_time >= before, "auth_time is the new sign-in");
}

#[tokio::test]
async fn max_age_zero_forces_a_sign_in_even_in_the_same_second() {
    let app = spawn_app().await;
    let (person, client) = consented(&app).await;
    // No time has passed since the sign-in: max_age=0 still means "sign in again".
    let (url, verifier) = start(&app, &client, &[("max_age", "0")]);
    let first = person.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 303);
    let location = first.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("/login?") && location.contains("prompt=login"),
        "{location}"
    );
    // The person takes 2 s to sign in; that sign-in satisfies this request's max_age.
    let outcome = drive(&app, &person, &url, 2).await;
    assert_eq!((outcome.sign_ins, outcome.consents), (1, 0), "one sign-in, no loop");
    let signed_in_at = app.clock.now() - 2;
    assert_eq!(auth_time_of(&app, &client, &outcome, &verifier).await, signed_in_at);
}

#[tokio::test]
async fn prompt_none_with_max_age_zero_is_login_required() {
    let app = spawn_app().await;
    let (person, client) = consented(&app).await;
    let (url, _) = start(&app, &client, &[("prompt", "none"), ("max_age", "0")]);
    let outcome = drive(&app, &person, &url, 0).await;
    assert_eq!(outcome.sign_ins, 0);
    assert_eq!(outcome.query()["error"], "login_required");
    assert_eq!(outcome.query()["state"], "st");
    assert!(!outcome.query().contains_key("code"));
}

#[tokio::test]
async fn a_sign_in_made_for_the_request_satisfies_its_max_age_however_slow() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    app.create_user("alice", PASSWORD).await;
    // Not signed in yet; the sign-in, consent and return take longer than max_age.
    for (max_age, pause) in [("0", 1), ("5", 30)] {
        let person = browser();
        let (url, verifier) = start(&app, &client, &[("max_age", max_age)]);
        let outcome = drive(&app, &person, &url, pause).await;
        assert_eq!(outcome.sign_ins, 1, "max_age={max_age}: signed in once");
        assert!(auth_time_of(&app, &client, &outcome, &verifier).await > 0);
    }
    // An old session still has to sign in again for a short max_age.
    let person = browser();
    let (url, _) = start(&app, &client, &[]);
    drive(&app, &person, &url, 0).await;
    app.clock.advance(60);
    let (url, _) = start(&app, &client, &[("max_age", "30")]);
    let outcome = drive(&app, &person, &url, 5).await;
    assert_eq!(outcome.sign_ins, 1, "re-authenticated once");
}
