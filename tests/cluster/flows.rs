//! Flows through the balancer whose consecutive requests land on different IdP
//! instances, and the single-use rules raced across instances.

use std::sync::Arc;

use serde_json::Value;

use crate::fixture::Suite;
use crate::soft_authenticator::{Flags, SoftAuthenticator};
use crate::topology::http;
use crate::web::{
    Browser, PASSWORD, REDIRECT_URI, Trail, authorize_url, code_of, csrf_of, jwt_parts, served_by, text_of, token,
    totp_at, unix_now,
};

/// Redeems `code` through the balancer, noting the instance in `trail`.
async fn redeem(suite: &Suite, trail: &Trail, code: &str, verifier: &str) -> Value {
    let response = token(
        &http(),
        &suite.cluster.idp_url,
        &suite.web,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ],
    )
    .await;
    trail.note("POST /token (code)", &response);
    assert_eq!(response.status(), 200, "code redemption");
    response.json().await.unwrap()
}

async fn userinfo(suite: &Suite, trail: &Trail, access: &str) -> Value {
    let response = http()
        .get(format!("{}/userinfo", suite.cluster.idp_url))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    trail.note("GET /userinfo", &response);
    assert_eq!(response.status(), 200, "userinfo");
    response.json().await.unwrap()
}

async fn refresh(suite: &Suite, refresh_token: &str) -> reqwest::Response {
    token(
        &http(),
        &suite.cluster.idp_url,
        &suite.web,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)],
    )
    .await
}

/// alice enrols an authenticator app; then a relying party's authorization request
/// (PKCE) runs through sign-in, the TOTP step, consent, code redemption and
/// userinfo, each request wherever the balancer sends it.
pub async fn code_flow_with_pkce_consent_and_totp(suite: Arc<Suite>) {
    let c = &suite.cluster;
    let trail = Trail::default();
    let enrolling = Browser::new(&c.idp_url, &trail);
    assert_eq!(enrolling.password_sign_in("alice", None).await.status(), 303);
    let page = enrolling.page("/account/mfa/totp").await;
    let secret = text_of(&page, "#totp-secret").expect("the key is shown");
    let done = enrolling
        .post(
            "/account/mfa/totp",
            &[
                ("csrf_token", csrf_of(&page).as_str()),
                ("code", totp_at(&secret, unix_now()).as_str()),
            ],
        )
        .await;
    assert_eq!(done.status(), 200, "TOTP enrolment confirmed");

    let person = Browser::new(&c.idp_url, &trail);
    let (start, verifier) = authorize_url(&c.idp_url, &suite.web, "openid profile email offline_access");
    // The next time step's code: the enrolment's code cannot be used twice.
    let next_code = || totp_at(&secret, unix_now() + 30);
    let back = person.follow_to_client(&start, "alice", Some(&next_code)).await;
    let code = code_of(&back);
    let steps: Vec<String> = trail.entries().into_iter().map(|(what, _)| what).collect();
    for step in ["POST /login", "POST /login/mfa", "GET /consent", "POST /consent"] {
        assert!(
            steps.iter().any(|s| s == step),
            "the flow went through {step}: {steps:?}"
        );
    }
    let tokens = redeem(&suite, &trail, &code, &verifier).await;
    let (id_claims, _) = jwt_parts(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(id_claims["nonce"], "n-1");
    assert_eq!(id_claims["aud"], suite.web.id.as_str());
    let amr: Vec<&str> = id_claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(amr.contains(&"otp") && amr.contains(&"mfa"), "amr {amr:?}");
    let claims = userinfo(&suite, &trail, tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(claims["sub"], id_claims["sub"]);
    assert_eq!(claims["email"], "alice@example.com");
    // A PKCE verifier that does not match is refused on every instance.
    let (start, _) = authorize_url(&c.idp_url, &suite.web, "openid");
    let code = code_of(&person.follow_to_client(&start, "alice", None).await);
    let wrong = token(
        &http(),
        &c.idp_url,
        &suite.web,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    trail.note("POST /token (wrong verifier)", &wrong);
    assert_eq!(wrong.status(), 400, "another request's verifier");
    trail.assert_spread("code flow with TOTP and consent", 3);
}

/// Six rotations of one refresh token, each wherever the balancer sends it; a
/// rotated-away token is refused everywhere.
pub async fn refresh_rotation_alternates_instances(suite: Arc<Suite>) {
    let trail = Trail::default();
    let first = suite.bob_tokens().await["refresh_token"].as_str().unwrap().to_owned();
    let mut current = first.clone();
    let mut seen = vec![first.clone()];
    for _ in 0..6 {
        let response = refresh(&suite, &current).await;
        trail.note("refresh", &response);
        assert_eq!(response.status(), 200, "refresh on {}", served_by(&response));
        let body: Value = response.json().await.unwrap();
        current = body["refresh_token"].as_str().unwrap().to_owned();
        assert!(!seen.contains(&current), "a new refresh token each time");
        seen.push(current.clone());
        userinfo(&suite, &trail, body["access_token"].as_str().unwrap()).await;
    }
    trail.assert_spread("refresh rotation (+ userinfo with each new access token)", 3);
    // The first token, long rotated away (and outside the grace window for retries
    // of a lost answer, since its successor was used): a replay; the family dies.
    let replay = refresh(&suite, &first).await;
    assert_eq!(replay.status(), 400, "a replayed refresh token");
    let after = refresh(&suite, &current).await;
    assert_eq!(after.status(), 400, "the family was revoked on every instance");
}

/// One code, presented six times at once through the balancer: exactly one token
/// response, and (RFC 6749 §4.1.2) the reuse revokes what it issued.
pub async fn code_redeemed_concurrently(suite: Arc<Suite>) {
    let (code, verifier) = suite.bob_code().await;
    let attempts = (0..6).map(|_| {
        let (suite, code, verifier) = (suite.clone(), code.clone(), verifier.clone());
        async move {
            let response = token(
                &http(),
                &suite.cluster.idp_url,
                &suite.web,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", REDIRECT_URI),
                    ("code_verifier", &verifier),
                ],
            )
            .await;
            let instance = served_by(&response);
            let status = response.status().as_u16();
            (status, instance, response.json::<Value>().await.unwrap())
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let summary: Vec<(u16, &str)> = results.iter().map(|(s, i, _)| (*s, i.as_str())).collect();
    println!("  six concurrent redemptions: {summary:?}");
    let mut instances: Vec<&str> = results.iter().map(|(_, i, _)| i.as_str()).collect();
    instances.sort();
    instances.dedup();
    assert!(
        instances.len() >= 2,
        "the redemptions reached one instance only: {summary:?}"
    );
    let winners: Vec<&Value> = results
        .iter()
        .filter(|(s, _, _)| *s == 200)
        .map(|(_, _, b)| b)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one redemption succeeds: {summary:?}");
    for (status, _, body) in &results {
        if *status != 200 {
            assert_eq!(
                (*status, body["error"].as_str()),
                (400, Some("invalid_grant")),
                "{body}"
            );
        }
    }
    let refresh_token = winners[0]["refresh_token"].as_str().unwrap();
    let after = refresh(&suite, refresh_token).await;
    assert_eq!(after.status(), 400, "the reuse revoked the winner's grant");
}

/// One refresh token, presented six times at once through the balancer: within the
/// reuse grace window (tests/api/refresh_grace.rs) every presentation gets the same
/// single successor; one rotation is stored; the family stays usable.
pub async fn refresh_replayed_concurrently(suite: Arc<Suite>) {
    let rt = suite.bob_tokens().await["refresh_token"].as_str().unwrap().to_owned();
    let rows_before = suite.cluster.count("SELECT count(*) AS n FROM refresh_tokens");
    let retries_before = suite
        .cluster
        .count("SELECT count(*) AS n FROM audit_events WHERE action = 'token.refresh_retry'");
    let attempts = (0..6).map(|_| {
        let (suite, rt) = (suite.clone(), rt.clone());
        async move {
            let response = refresh(&suite, &rt).await;
            let instance = served_by(&response);
            let status = response.status().as_u16();
            (status, instance, response.json::<Value>().await.unwrap())
        }
    });
    let results = futures_util::future::join_all(attempts).await;
    let summary: Vec<(u16, &str)> = results.iter().map(|(s, i, _)| (*s, i.as_str())).collect();
    println!("  six concurrent refreshes: {summary:?}");
    let mut instances: Vec<&str> = results.iter().map(|(_, i, _)| i.as_str()).collect();
    instances.sort();
    instances.dedup();
    assert!(
        instances.len() >= 2,
        "the refreshes reached one instance only: {summary:?}"
    );
    let mut successors: Vec<&str> = Vec::new();
    for (status, instance, body) in &results {
        assert_eq!(*status, 200, "within the grace window on {instance}: {body}");
        successors.push(body["refresh_token"].as_str().unwrap());
    }
    successors.sort();
    successors.dedup();
    assert_eq!(successors.len(), 1, "one successor for every presentation");
    assert_eq!(
        suite.cluster.count("SELECT count(*) AS n FROM refresh_tokens") - rows_before,
        1,
        "one rotation stored"
    );
    assert_eq!(
        suite
            .cluster
            .count("SELECT count(*) AS n FROM audit_events WHERE action = 'token.refresh_retry'")
            - retries_before,
        5,
        "five presentations were answered as retries"
    );
    let next = refresh(&suite, successors[0]).await;
    assert_eq!(next.status(), 200, "the family is intact");
}

/// A passkey registered (options on one instance, the answer on another), then a
/// passwordless sign-in and a second step after the password the same way, then a
/// code flow from the passwordless session: WebAuthn ceremony state is not kept by
/// one instance.
pub async fn webauthn_ceremonies(suite: Arc<Suite>) {
    let c = &suite.cluster;
    c.cli_json(
        &[
            "user",
            "create",
            "--username",
            "carol",
            "--email",
            "carol@example.com",
            "--email-verified",
            "--password-stdin",
            "--json",
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let trail = Trail::default();
    let origin = c.idp_url.clone();
    let b = Browser::new(&c.idp_url, &trail);
    assert_eq!(b.password_sign_in("carol", None).await.status(), 303);
    let mut soft = SoftAuthenticator::new();
    let csrf = csrf_of(&b.page("/account/passkeys/new").await);
    let options = b
        .post("/account/passkeys/options", &[("csrf_token", csrf.as_str())])
        .await;
    assert_eq!(options.status(), 200, "registration options");
    let options: Value = options.json().await.unwrap();
    let credential = soft.register(&options, &origin, Flags::default());
    let added = b
        .post(
            "/account/passkeys",
            &[
                ("csrf_token", csrf.as_str()),
                ("name", "Cluster key"),
                ("credential", credential.to_string().as_str()),
            ],
        )
        .await;
    assert_eq!(added.status(), 303, "registration");
    assert_eq!(added.headers()["location"], "/account?done=passkey-added");

    let other = Browser::new(&c.idp_url, &trail);
    let csrf = csrf_of(&other.page("/login").await);
    let options = other
        .post("/login/passkey/options", &[("csrf_token", csrf.as_str())])
        .await;
    assert_eq!(options.status(), 200, "sign-in options");
    let options: Value = options.json().await.unwrap();
    let credential = soft.assert(&options, &origin, Flags::default());
    let signed_in = other
        .post(
            "/login/passkey",
            &[
                ("csrf_token", csrf.as_str()),
                ("credential", credential.to_string().as_str()),
                ("return_to", "/account"),
            ],
        )
        .await;
    assert_eq!(signed_in.status(), 303, "passwordless sign-in");
    assert_eq!(signed_in.headers()["location"], "/account");
    assert_eq!(other.get("/account").await.status(), 200, "signed in");

    // The key as the second step after the password, the same way.
    let third = Browser::new(&c.idp_url, &trail);
    let password = third.password_sign_in("carol", None).await;
    assert_eq!(password.status(), 303);
    assert_eq!(
        password.headers()["location"],
        "/login/mfa",
        "a second step is asked for"
    );
    let csrf = csrf_of(&third.page("/login/mfa").await);
    let options = third
        .post("/login/mfa/passkey/options", &[("csrf_token", csrf.as_str())])
        .await;
    assert_eq!(options.status(), 200, "second-step options");
    let options: Value = options.json().await.unwrap();
    let credential = soft.assert(&options, &origin, Flags::default());
    let second = third
        .post(
            "/login/mfa/passkey",
            &[
                ("csrf_token", csrf.as_str()),
                ("credential", credential.to_string().as_str()),
            ],
        )
        .await;
    assert_eq!(second.status(), 303, "second step with the key");
    assert_eq!(third.get("/account").await.status(), 200, "signed in");

    let (start, verifier) = authorize_url(&c.idp_url, &suite.web, "openid email");
    let code = code_of(&other.follow_to_client(&start, "carol", None).await);
    let tokens = redeem(&suite, &trail, &code, &verifier).await;
    let (claims, _) = jwt_parts(tokens["id_token"].as_str().unwrap());
    let amr: Vec<&str> = claims["amr"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !amr.contains(&"pwd") && amr.contains(&"mfa"),
        "a passkey sign-in: {amr:?}"
    );
    trail.assert_spread("WebAuthn registration, passwordless sign-in, second step, code flow", 3);
}
