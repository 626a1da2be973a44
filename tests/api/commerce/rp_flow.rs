//! A person signs in at a shop front end — a real relying party (the
//! `openidconnect` crate: discovery, authorization code with PKCE, ID token checked
//! against JWKS) registered for the commerce audience — and the commerce server
//! serves them with the permissions their role gives; a token the same person got
//! for another audience, and their ID token, are refused with an RFC 6750 challenge.

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::json;

use super::{AUDIENCE, CommerceTest, assert_cannot_create_sellers, challenge, spawn_commerce};
use crate::helpers::{PASSWORD, REDIRECT_URI, TestApp, TestClient, browser, jwt_claims, spawn_app};

/// A client configured from discovery: authorization and (maybe) token and
/// userinfo endpoints set.
type RelyingParty =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// What the relying party holds after a sign-in.
struct SignedIn {
    access_token: String,
    id_token: String,
    /// The `sub` of the verified ID token.
    subject: String,
}

/// A confidential web front end for `audience` (oxidp's own API when `None`).
async fn front_end(idp: &TestApp, audience: Option<&str>) -> TestClient {
    idp.create_client(oxidp::oauth::clients::ClientSpec {
        name: Some("Shop front end".into()),
        redirect_uris: Some(vec![REDIRECT_URI.into()]),
        grant_types: Some(vec!["authorization_code".into()]),
        scopes: Some("openid profile".into()),
        audience: audience.map(str::to_owned),
        ..Default::default()
    })
    .await
}

/// The relying party for `registered`, configured from oxidp's discovery document.
async fn relying_party(idp: &TestApp, registered: &TestClient, http: &reqwest::Client) -> RelyingParty {
    let issuer = IssuerUrl::new(idp.config.issuer()).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .expect("discovery");
    CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(registered.id.clone()),
        Some(ClientSecret::new(registered.secret.clone().unwrap())),
    )
    .set_redirect_uri(RedirectUrl::new(registered.redirect_uri.clone()).unwrap())
}

fn rp_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Runs the authorization-code flow with PKCE for `username` through a browser, and
/// returns the code with the verifier and nonce the relying party kept.
async fn authorize(idp: &TestApp, rp: &RelyingParty, username: &str) -> (String, PkceCodeVerifier, Nonce) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state, nonce) = rp
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    // The issuer says `localhost`; the browser talks to the bound address.
    let start = auth_url
        .as_str()
        .replace(&format!("http://localhost:{}", idp.port), &idp.address);
    let back = idp.follow_to_client(&browser(), &start, username, PASSWORD).await;
    assert!(back.as_str().starts_with(REDIRECT_URI), "{back}");
    let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(params.get("state"), Some(state.secret()), "the state comes back");
    (params["code"].clone(), verifier, nonce)
}

/// The whole sign-in: authorize, exchange the code with the PKCE verifier, verify
/// the ID token against the published keys.
async fn sign_in(idp: &TestApp, registered: &TestClient, username: &str) -> SignedIn {
    let http = rp_http();
    let rp = relying_party(idp, registered, &http).await;
    let (code, verifier, nonce) = authorize(idp, &rp, username).await;
    let tokens = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let id_verifier = rp
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("the ID token verifies against JWKS");
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some(username));
    SignedIn {
        access_token: tokens.access_token().secret().clone(),
        id_token: id_token.to_string(),
        subject: claims.subject().to_string(),
    }
}

/// Through oxidp's admin API: a role with `permissions` for the commerce audience,
/// assigned to `user_id`.
async fn give_role(idp: &TestApp, user_id: &str, role: &str, permissions: &[&str]) {
    let admin = idp.admin_token().await;
    let http = reqwest::Client::new();
    let created = http
        .post(idp.url("/admin/v1/roles"))
        .bearer_auth(&admin)
        .json(&json!({"name": role, "description": "commerce sign-in test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    for permission in permissions {
        let granted = http
            .put(idp.url(&format!("/admin/v1/roles/{role}/permissions/{permission}")))
            .bearer_auth(&admin)
            .json(&json!({"audience": AUDIENCE}))
            .send()
            .await
            .unwrap();
        assert_eq!(granted.status(), 201, "{}", granted.text().await.unwrap());
    }
    let assigned = http
        .put(idp.url(&format!("/admin/v1/users/{user_id}/roles/{role}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(assigned.status(), 201, "{}", assigned.text().await.unwrap());
}

/// oxidp and a commerce server trusting it; `alice` holds the `shopper` role,
/// which may read products in the commerce audience.
async fn alice_the_shopper() -> (TestApp, CommerceTest) {
    let idp = spawn_app().await;
    let commerce = spawn_commerce(&idp, |_| {}).await;
    let alice = idp.create_user("alice", PASSWORD).await;
    give_role(&idp, &alice.id, "shopper", &["commerce:products:read"]).await;
    (idp, commerce)
}

fn assert_invalid_token(response: &reqwest::Response, what: &str) {
    assert_eq!(response.status(), 401, "{what}");
    let c = challenge(response);
    assert!(
        c.starts_with(&format!(
            "Bearer realm=\"{AUDIENCE}\", error=\"invalid_token\", error_description="
        )),
        "{what}: {c}"
    );
}

#[tokio::test]
async fn a_person_signed_in_through_a_relying_party_is_served_with_their_role_permissions() {
    let (idp, commerce) = alice_the_shopper().await;
    let shop = front_end(&idp, Some(AUDIENCE)).await;

    let session = sign_in(&idp, &shop, "alice").await;
    let claims = jwt_claims(&session.access_token);
    assert_eq!(claims["aud"], json!([AUDIENCE]), "{claims}");
    assert_eq!(claims["sub"], session.subject.as_str(), "the person, not the client");
    assert_eq!(claims["client_id"], shop.id.as_str());
    assert_eq!(claims["permissions"], json!(["commerce:products:read"]), "{claims}");

    // What the role allows is served.
    let listed = commerce.get("/v1/sellers", Some(&session.access_token)).await;
    assert_eq!(listed.status(), 200, "{}", challenge(&listed));
    // What it does not is refused as insufficient_scope, naming the permission.
    assert_cannot_create_sellers(&commerce, &session.access_token).await;

    // The ID token of the same sign-in is for the front end, not an access token.
    assert_invalid_token(
        &commerce.get("/v1/sellers", Some(&session.id_token)).await,
        "an ID token",
    );
}

#[tokio::test]
async fn a_token_the_same_person_got_for_another_audience_is_refused() {
    let (idp, commerce) = alice_the_shopper().await;

    // A front end for oxidp's own API: a valid token, signed by the same keys,
    // for the same person — but not for commerce.
    let elsewhere = front_end(&idp, None).await;
    let session = sign_in(&idp, &elsewhere, "alice").await;
    let claims = jwt_claims(&session.access_token);
    assert_ne!(claims["aud"], json!([AUDIENCE]), "{claims}");
    assert!(claims.get("permissions").is_none(), "no commerce permissions: {claims}");
    assert_invalid_token(
        &commerce.get("/v1/sellers", Some(&session.access_token)).await,
        "another audience",
    );

    // The shop front end's token for the same person is accepted by the same server,
    // so the refusal above is the audience and nothing else.
    let shop = front_end(&idp, Some(AUDIENCE)).await;
    let accepted = sign_in(&idp, &shop, "alice").await;
    assert_eq!(
        commerce.get("/v1/sellers", Some(&accepted.access_token)).await.status(),
        200
    );
}

#[tokio::test]
async fn the_code_is_redeemed_only_with_the_pkce_verifier_it_was_issued_for() {
    let idp = spawn_app().await;
    idp.create_user("alice", PASSWORD).await;
    let shop = front_end(&idp, Some(AUDIENCE)).await;
    let http = rp_http();
    let rp = relying_party(&idp, &shop, &http).await;
    let (code, _verifier, _nonce) = authorize(&idp, &rp, "alice").await;
    // An attacker who intercepted the code but not the verifier (RFC 7636 §1).
    let stolen = rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(PkceCodeVerifier::new("x".repeat(64)))
        .request_async(&http)
        .await;
    let error = stolen.expect_err("a wrong verifier is refused");
    assert!(
        format!("{error:?}").contains("invalid_grant"),
        "RFC 7636 §4.6: {error:?}"
    );
}
