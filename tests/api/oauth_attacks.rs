//! Attacks on the authorization and token endpoints.

use std::collections::HashMap;

use crate::helpers::{PASSWORD, REDIRECT_URI, TestClient, browser, pkce_pair, spawn_app};

fn query_of(url: &url::Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// Redirect URIs that must not match `https://client.example.com/cb` or the loopback
/// `http://127.0.0.1/native-cb`.
const MUTATIONS: &[&str] = &[
    "https://client.example.com/cb/",
    "https://client.example.com/cb/.",
    "https://client.example.com/CB",
    "https://client.example.com/Cb",
    "https://CLIENT.example.com/cb",
    "HTTPS://client.example.com/cb",
    "https://client.example.com/cb?x=1",
    "https://client.example.com/cb?",
    "https://client.example.com/cb?redirect_uri=https://evil.example",
    "https://client.example.com/cb#frag",
    "https://client.example.com/cb%2f",
    "https://client.example.com/cb/..;/",
    "https://client.example.com/cb/../cb",
    "https://client.example.com/cb/%2e%2e/",
    "https://client.example.com/%2e%2e/cb",
    "https://client.example.com/%2E%2E/cb",
    "https://client.example.com//cb",
    "https://client.example.com:443/cb",
    "https://client.example.com:8443/cb",
    "http://client.example.com/cb",
    "https://client.example.com.evil.example/cb",
    "https://evil.example/cb",
    "https://evil.example@client.example.com/cb",
    "https://client.example.com@evil.example/cb",
    "https://client.example.com%40evil.example/cb",
    "https://client.example.com\\@evil.example/cb",
    "https://client.example.com\\cb",
    "https:/client.example.com/cb",
    "https://client.example.com/cb&x=1",
    "https://client.example.com/cb;x",
    "https://client.example.com/cb%00",
    "https://client.example.com/cb%0d%0aLocation:%20https://evil.example",
    "https://cl\u{0456}ent.example.com/cb",
    "https://xn--clent-7ve.example.com/cb",
    "https://client.example.com./cb",
    " https://client.example.com/cb",
    "https://client.example.com/cb%20",
    "https://client.example.com/cb/extra",
    "https://client.example.com/c",
    "https://client.example.com",
    "javascript://client.example.com/cb",
    "//client.example.com/cb",
    "/cb",
    "client.example.com/cb",
    "data:text/html,<script>alert(1)</script>",
    "http://127.0.0.1.evil.example/native-cb",
    "http://127.0.0.1:8080@evil.example/native-cb",
    "http://127.0.0.1:8080/native-cb/",
    "http://127.0.0.1:8080/native-cb?x",
    "http://localhost:8080/native-cb",
    "http://[::1]:8080/native-cb",
    "http://127.0.0.2/native-cb",
    "https://127.0.0.1/native-cb",
    "http://127.0.0.1:/native-cb",
    "http://127.0.0.1:99999999/native-cb",
];

#[tokio::test]
async fn redirect_uri_mutations_get_an_error_page_and_never_a_redirect() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let (_, challenge) = pkce_pair();
    assert!(MUTATIONS.len() >= 40);
    let http = browser();
    for mutation in MUTATIONS {
        let mut attacker = client.clone();
        attacker.redirect_uri = (*mutation).to_owned();
        let url = app.authorize_url(
            &attacker,
            &[
                ("scope", "openid"),
                ("state", "s"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 400, "{mutation:?}");
        assert!(response.headers().get("location").is_none(), "{mutation:?} redirected");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    // Repeating redirect_uri (one good, one bad) is refused too.
    let url = format!(
        "{}&redirect_uri={}",
        app.authorize_url(&client, &[("scope", "openid")]),
        "https%3A%2F%2Fevil.example%2Fcb"
    );
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn unknown_client_and_missing_redirect_get_an_error_page() {
    let app = spawn_app().await;
    let http = browser();
    for query in [
        "client_id=nope&redirect_uri=https%3A%2F%2Fclient.example.com%2Fcb&response_type=code&scope=openid",
        "redirect_uri=https%3A%2F%2Fclient.example.com%2Fcb&response_type=code&scope=openid",
    ] {
        let response = http.get(app.url(&format!("/authorize?{query}"))).send().await.unwrap();
        assert_eq!(response.status(), 400);
        assert!(response.headers().get("location").is_none());
    }
    // A client with two redirect URIs must say which one.
    let client = app.web_client().await;
    let response = http
        .get(app.url(&format!(
            "/authorize?client_id={}&response_type=code&scope=openid",
            client.id
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
}

#[tokio::test]
async fn loopback_redirects_may_use_any_port() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let mut client = app.web_client().await;
    client.redirect_uri = "http://127.0.0.1:51234/native-cb".into();
    let (code, verifier) = app.code_for(&client, &browser(), "alice", "openid").await;
    let response = app.redeem(&client, &code, &verifier).await;
    assert_eq!(response.status(), 200);
}

async fn error_redirect(
    app: &crate::helpers::TestApp,
    client: &TestClient,
    extra: &[(&str, &str)],
) -> HashMap<String, String> {
    let response = browser().get(app.authorize_url(client, extra)).send().await.unwrap();
    assert_eq!(response.status(), 303, "{extra:?}");
    let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
    assert!(location.as_str().starts_with(REDIRECT_URI));
    query_of(&location)
}

#[tokio::test]
async fn protocol_errors_after_redirect_verification_go_back_to_the_client() {
    let app = spawn_app().await;
    let web = app.web_client().await;
    let public = app.public_client().await;
    let (_, challenge) = pkce_pair();
    type Case<'a> = (&'a TestClient, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            &web,
            vec![
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (
            &web,
            vec![("scope", "openid"), ("code_challenge", &challenge)],
            "invalid_request",
        ),
        (&public, vec![("scope", "openid")], "invalid_request"),
        (&web, vec![("scope", "openid admin")], "invalid_scope"),
        (&web, vec![("scope", "")], "invalid_scope"),
        (
            &web,
            vec![("scope", "openid"), ("prompt", "none login")],
            "invalid_request",
        ),
        (&web, vec![("scope", "openid"), ("max_age", "-1")], "invalid_request"),
        (
            &web,
            vec![("scope", "openid"), ("request", "eyJhbGciOiJub25lIn0.e30.")],
            "request_not_supported",
        ),
        (
            &web,
            vec![("scope", "openid"), ("request_uri", "https://evil.example/r")],
            "request_uri_not_supported",
        ),
        (&web, vec![("scope", "openid"), ("prompt", "none")], "login_required"),
        (
            &web,
            vec![("scope", "openid"), ("id_token_hint", "not.a.token")],
            "invalid_request",
        ),
        (
            &web,
            vec![("scope", "openid"), ("resource", "not a uri")],
            "invalid_target",
        ),
    ];
    for (client, mut extra, expected) in cases {
        extra.push(("state", "st-1"));
        let params = error_redirect(&app, client, &extra).await;
        assert_eq!(params.get("error").map(String::as_str), Some(expected), "{extra:?}");
        assert_eq!(params.get("state").map(String::as_str), Some("st-1"));
        assert_eq!(params.get("iss"), Some(&app.config.issuer()));
        assert!(!params.contains_key("code"));
    }
    // Implicit and hybrid flows are refused.
    for response_type in ["token", "id_token", "code id_token", "code token"] {
        let url = app.authorize_url(&web, &[("scope", "openid"), ("state", "s")]).replace(
            "response_type=code",
            &format!("response_type={}", response_type.replace(' ', "+")),
        );
        let response = browser().get(url).send().await.unwrap();
        let location = url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        assert_eq!(
            query_of(&location)["error"],
            "unsupported_response_type",
            "{response_type}"
        );
    }
}

#[tokio::test]
async fn pkce_is_enforced_at_the_token_endpoint() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let person = browser();

    // Wrong verifier, then missing verifier: refused (and the code still works after).
    let (code, verifier) = app.code_for(&client, &person, "alice", "openid").await;
    let (other_verifier, _) = pkce_pair();
    let wrong = app.redeem(&client, &code, &other_verifier).await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(
        wrong.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let missing = app
        .token(
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
            ],
        )
        .await;
    assert_eq!(
        missing.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(app.redeem(&client, &code, &verifier).await.status(), 200);

    // Downgrade: a code issued without a challenge, redeemed with a verifier.
    let start = app.authorize_url(&client, &[("scope", "openid"), ("state", "s")]);
    let back = app.follow_to_client(&person, &start, "alice", PASSWORD).await;
    let code = query_of(&back)["code"].clone();
    let downgrade = app.redeem(&client, &code, &verifier).await;
    assert_eq!(
        downgrade.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn codes_are_bound_to_client_and_redirect_uri_and_expire() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let a = app.web_client().await;
    let b = app.web_client().await;
    let person = browser();
    let (code, verifier) = app.code_for(&a, &person, "alice", "openid").await;

    let stolen = app.redeem(&b, &code, &verifier).await;
    assert_eq!(
        stolen.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let other_redirect = app
        .token(
            &a,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1/native-cb"),
                ("code_verifier", &verifier),
            ],
        )
        .await;
    assert_eq!(
        other_redirect.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    let (late, late_verifier) = app.code_for(&a, &person, "alice", "openid").await;
    app.clock.advance(app.config.tokens.code_ttl_secs + 1);
    let expired = app.redeem(&a, &late, &late_verifier).await;
    assert_eq!(
        expired.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn a_reused_code_fails_and_revokes_the_first_tokens() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let (code, verifier) = app
        .code_for(&client, &browser(), "alice", "openid offline_access")
        .await;
    let first: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    let access = first["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(&client, access).await["active"], true);

    let second = app.redeem(&client, &code, &verifier).await;
    assert_eq!(second.status(), 400);
    assert_eq!(
        second.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(app.introspect(&client, access).await["active"], false);
    assert_eq!(app.userinfo_status(access).await.0, 401);
    let refresh = app
        .token(
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", first["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(
        refresh.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn fifty_concurrent_redemptions_yield_exactly_one_success_which_is_then_revoked() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let (code, verifier) = app
        .code_for(&client, &browser(), "alice", "openid offline_access")
        .await;
    let attempts = (0..50).map(|_| app.redeem(&client, &code, &verifier));
    let responses = futures_util::future::join_all(attempts).await;
    let mut successes = Vec::new();
    for response in responses {
        match response.status().as_u16() {
            200 => successes.push(response.json::<serde_json::Value>().await.unwrap()),
            400 => assert_eq!(
                response.json::<serde_json::Value>().await.unwrap()["error"],
                "invalid_grant"
            ),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(successes.len(), 1);
    let access = successes[0]["access_token"].as_str().unwrap();
    assert_eq!(
        app.introspect(&client, access).await["active"],
        false,
        "reuse revoked the first tokens"
    );
    // One issuance and 49 replays, each audited.
    let events = oxidp::audit::query(&app.state.db, Default::default(), 500)
        .await
        .unwrap();
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(count("token.authorization_code"), 1);
    assert_eq!(count("token.code_replay"), 49);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_replay_kills_the_family() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let (code, verifier) = app
        .code_for(&client, &browser(), "alice", "openid offline_access")
        .await;
    let tokens: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    let rt1 = tokens["refresh_token"].as_str().unwrap().to_owned();

    let refresh = |rt: String| {
        let app = &app;
        let client = &client;
        async move {
            app.token(client, &[("grant_type", "refresh_token"), ("refresh_token", &rt)])
                .await
        }
    };
    let second: serde_json::Value = refresh(rt1.clone()).await.json().await.unwrap();
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2);
    let at2 = second["access_token"].as_str().unwrap().to_owned();
    assert!(second["id_token"].is_string());

    // Narrowing the scope is allowed, widening is not (and does not burn the token).
    let wider = app
        .token(
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt2),
                ("scope", "openid email"),
            ],
        )
        .await;
    assert_eq!(
        wider.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_scope"
    );

    // The old token again, after the reuse grace window: refused, and the whole family dies.
    app.clock.advance(app.config.tokens.refresh_reuse_grace_secs + 1);
    let replay = refresh(rt1).await;
    assert_eq!(
        replay.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let after = refresh(rt2).await;
    assert_eq!(
        after.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    assert_eq!(app.introspect(&client, &at2).await["active"], false);

    // Another client cannot use this client's refresh token.
    let other = app.web_client().await;
    let (code, verifier) = app
        .code_for(&client, &browser(), "alice", "openid offline_access")
        .await;
    let tokens: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    let stolen = app
        .token(
            &other,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(
        stolen.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn refresh_tokens_need_offline_access_unless_the_client_says_otherwise() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let client = app.web_client().await;
    let (code, verifier) = app.code_for(&client, &browser(), "alice", "openid").await;
    let tokens: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    assert!(tokens.get("refresh_token").is_none());

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
    let (code, verifier) = app.code_for(&client, &browser(), "alice", "openid").await;
    let tokens: serde_json::Value = app.redeem(&client, &code, &verifier).await.json().await.unwrap();
    assert!(tokens["refresh_token"].is_string());

    // The family has an absolute lifetime.
    app.clock.advance(app.config.tokens.refresh_token_ttl_secs + 1);
    let late = app
        .token(
            &client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(
        late.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_grant"
    );
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc6749() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let http = reqwest::Client::new();
    let secret = client.secret.clone().unwrap();

    // Bad credentials: 401 with WWW-Authenticate.
    let response = http
        .post(app.url("/token"))
        .basic_auth(&client.id, Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_client"
    );

    // Unknown client, no authentication, a public-client claim by a confidential client.
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "nope"),
            ("client_secret", "x"),
        ],
        vec![("grant_type", "client_credentials")],
        vec![("grant_type", "client_credentials"), ("client_id", client.id.as_str())],
    ] {
        let response = http.post(app.url("/token")).form(&form).send().await.unwrap();
        assert_eq!(response.status(), 401, "{form:?}");
    }
    // client_secret_post when client_secret_basic was registered.
    let response = http
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client.id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "invalid_request"),
        (
            vec![("grant_type", "password"), ("username", "a"), ("password", "b")],
            "unsupported_grant_type",
        ),
        (
            vec![("grant_type", "urn:ietf:params:oauth:grant-type:device_code")],
            "unsupported_grant_type",
        ),
        (vec![("grant_type", "authorization_code")], "invalid_request"),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("code", "made-up"),
                ("redirect_uri", REDIRECT_URI),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "refresh_token"), ("refresh_token", "made-up")],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "client_credentials"), ("scope", "bad\"scope")],
            "invalid_scope",
        ),
    ];
    for (form, expected) in cases {
        let response = http
            .post(app.url("/token"))
            .basic_auth(&client.id, Some(&secret))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{form:?}");
        assert_eq!(response.headers()["cache-control"], "no-store");
        assert_eq!(
            response.json::<serde_json::Value>().await.unwrap()["error"],
            expected,
            "{form:?}"
        );
    }
    // Repeated parameters and a JSON body.
    let repeated = http
        .post(app.url("/token"))
        .basic_auth(&client.id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(
        repeated.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let json = http
        .post(app.url("/token"))
        .basic_auth(&client.id, Some(&secret))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_request"
    );
    // A public client may not use client_credentials.
    let public = app.public_client().await;
    let response = app.token(&public, &[("grant_type", "client_credentials")]).await;
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["error"],
        "unauthorized_client"
    );
}

/// OIDC Core §3.1.2.1: an OpenID request must name its redirect_uri; an empty
/// value is no value (RFC 6749 §3.1), so it is refused on a page, not defaulted.
#[tokio::test]
async fn an_empty_redirect_uri_in_an_openid_request_gets_an_error_page() {
    let app = spawn_app().await;
    let client = app.public_client().await;
    let (_, challenge) = pkce_pair();
    let person = app.signed_in("alice").await;
    for redirect in [Some(""), None] {
        let mut url = url::Url::parse(&app.url("/authorize")).unwrap();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &client.id);
            if let Some(r) = redirect {
                q.append_pair("redirect_uri", r);
            }
            q.append_pair("response_type", "code");
            q.append_pair("scope", "openid");
            q.append_pair("code_challenge", &challenge);
            q.append_pair("code_challenge_method", "S256");
        }
        let response = person.get(url.as_str()).send().await.unwrap();
        assert_eq!(response.status(), 400, "{redirect:?}");
        assert!(response.headers().get("location").is_none(), "{redirect:?} redirected");
        assert!(response.text().await.unwrap().contains("redirect_uri"));
    }
    // A plain OAuth request may still omit it when one URI is registered (RFC 6749 §3.1.2.3).
    let url = format!(
        "{}?client_id={}&response_type=code&scope=profile&code_challenge={challenge}&code_challenge_method=S256",
        app.url("/authorize"),
        client.id
    );
    let response = person.get(&url).send().await.unwrap();
    assert_ne!(response.status(), 400);
}

/// RFC 8252 §7.3 lets loopback redirects choose the port, not an invalid one.
#[tokio::test]
async fn loopback_redirect_ports_must_be_valid_and_canonical() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let (_, challenge) = pkce_pair();
    let person = app.signed_in("alice").await;
    for port in [":0", ":00", ":99999", ":65536", ":0080", ":08080", ":+80"] {
        let mut attacker = client.clone();
        attacker.redirect_uri = format!("http://127.0.0.1{port}/native-cb");
        let url = app.authorize_url(
            &attacker,
            &[
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        let response = person.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 400, "{port}");
        assert!(response.headers().get("location").is_none(), "{port} redirected");
    }
    for port in [":1", ":80", ":65535"] {
        let mut native = client.clone();
        native.redirect_uri = format!("http://127.0.0.1{port}/native-cb");
        let url = app.authorize_url(
            &native,
            &[
                ("scope", "openid"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ],
        );
        assert_eq!(person.get(&url).send().await.unwrap().status(), 303, "{port}");
    }
}
