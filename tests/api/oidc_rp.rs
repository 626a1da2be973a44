//! A real relying party (the `openidconnect` and `oauth2` crates) against oxidp:
//! discovery → authorize with PKCE → sign-in and consent forms → code → tokens →
//! ID token verified against JWKS → userinfo → refresh → revoke → introspect.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenIntrospectionResponse, TokenResponse,
};

use crate::helpers::{PASSWORD, browser, spawn_app};

fn rp_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn openidconnect_relying_party_full_flow() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let registered = app.web_client().await;
    let http = rp_http();

    let issuer = IssuerUrl::new(app.config.issuer()).unwrap();
    let metadata = CoreProviderMetadata::discover_async(issuer, &http)
        .await
        .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(registered.id.clone()),
        Some(ClientSecret::new(registered.secret.clone().unwrap())),
    )
    .set_redirect_uri(RedirectUrl::new(registered.redirect_uri.clone()).unwrap())
    .set_introspection_url(IntrospectionUrl::new(app.url("/introspect")).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf_state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();

    // The person signs in and consents in the browser.
    let person = browser();
    let start = auth_url
        .as_str()
        .replace(&format!("http://localhost:{}", app.port), &app.address);
    let back = app.follow_to_client(&person, &start, "alice", PASSWORD).await;
    assert!(back.as_str().starts_with(&registered.redirect_uri));
    let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(
        params.get("state").map(String::as_str),
        Some(csrf_state.secret().as_str())
    );
    assert_eq!(
        params.get("iss").map(String::as_str),
        Some(app.config.issuer().as_str()),
        "RFC 9207"
    );

    // The RP exchanges the code.
    let tokens = client
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    let id_token = tokens.id_token().expect("id_token");
    let id_verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = id_token
        .claims(&id_verifier, &nonce)
        .expect("id_token verifies against JWKS");
    assert_eq!(claims.preferred_username().map(|u| u.as_str()), Some("alice"));
    assert_eq!(claims.email().map(|e| e.as_str()), Some("alice@example.com"));
    assert!(claims.auth_time().is_some());
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&id_verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    let sub = claims.subject().to_string();

    // Userinfo through the RP.
    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), sub);
    assert_eq!(info.email().map(|e| e.as_str()), Some("alice@example.com"));

    // Refresh (rotation): a new refresh token each time.
    let first_refresh = tokens
        .refresh_token()
        .expect("offline_access gives a refresh token")
        .clone();
    let refreshed = client
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    let second_refresh = refreshed.refresh_token().unwrap().clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());

    // Introspection of the new access token.
    let introspection = client
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await
        .expect("introspect");
    assert!(introspection.active());
    assert_eq!(introspection.sub(), Some(sub.as_str()));

    // Revoke the refresh token: the whole grant ends, access tokens included.
    // (The crate only revokes over https, so this request is made by hand, RFC 7009 §2.1.)
    let revoked = http
        .post(app.url("/revoke"))
        .basic_auth(&registered.id, registered.secret.as_deref())
        .form(&[
            ("token", second_refresh.secret().as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let after = client
        .introspect(refreshed.access_token())
        .request_async(&http)
        .await
        .unwrap();
    assert!(!after.active());
    let refused = client
        .exchange_refresh_token(&second_refresh)
        .unwrap()
        .request_async(&http)
        .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn oauth2_crate_client_credentials() {
    use oauth2::basic::BasicClient;
    use oauth2::{AuthUrl, TokenUrl};
    let app = spawn_app().await;
    let registered = app.web_client().await;
    let client = BasicClient::new(oauth2::ClientId::new(registered.id.clone()))
        .set_client_secret(oauth2::ClientSecret::new(registered.secret.clone().unwrap()))
        .set_auth_uri(AuthUrl::new(app.url("/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(app.url("/token")).unwrap());
    let http = rp_http();
    let token = client
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new("api:read".into()))
        .request_async(&http)
        .await
        .expect("client_credentials");
    assert_eq!(token.scopes().unwrap()[0].as_str(), "api:read");
    assert!(token.refresh_token().is_none());
    let introspected = app.introspect(&registered, token.access_token().secret()).await;
    assert_eq!(introspected["active"], true);
    assert_eq!(introspected["sub"], registered.id.as_str());
    assert_eq!(introspected["client_id"], registered.id.as_str());

    // Scopes the client may not have are refused.
    let refused = client
        .exchange_client_credentials()
        .add_scope(oauth2::Scope::new("admin".into()))
        .request_async(&http)
        .await;
    assert!(
        matches!(refused, Err(oauth2::RequestTokenError::ServerResponse(ref e)) if e.error().as_ref() == "invalid_scope")
    );
}

#[tokio::test]
async fn per_client_id_token_algorithms_verify_through_the_relying_party() {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let http = rp_http();
    for (alg, expected) in [
        ("RS256", CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
        ("EdDSA", CoreJwsSigningAlgorithm::EdDsa),
        ("ES256", CoreJwsSigningAlgorithm::EcdsaP256Sha256),
    ] {
        let registered = app
            .create_client(oxidp::oauth::clients::ClientSpec {
                redirect_uris: Some(vec![crate::helpers::REDIRECT_URI.into()]),
                id_token_alg: Some(alg.into()),
                require_consent: Some(false),
                ..Default::default()
            })
            .await;
        let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(app.config.issuer()).unwrap(), &http)
            .await
            .unwrap();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(registered.id.clone()),
            Some(ClientSecret::new(registered.secret.clone().unwrap())),
        )
        .set_redirect_uri(RedirectUrl::new(registered.redirect_uri.clone()).unwrap());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (auth_url, _, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .url();
        let start = auth_url
            .as_str()
            .replace(&format!("http://localhost:{}", app.port), &app.address);
        let back = app.follow_to_client(&browser(), &start, "alice", PASSWORD).await;
        let code = back.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&http)
            .await
            .unwrap();
        let id_token = tokens.id_token().unwrap();
        assert_eq!(id_token.signing_alg().unwrap(), &expected, "{alg}");
        let verifier = client.id_token_verifier().set_allowed_algs(vec![expected.clone()]);
        let claims = id_token
            .claims(&verifier, &nonce)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(claims.auth_context_ref().map(|a| a.as_str()), Some("urn:oxidp:acr:pwd"));
        let hash = AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(claims.access_token_hash(), Some(&hash), "{alg} at_hash");
    }
}

/// OIDC Core §11: an RP asking for `offline_access` sends `prompt=consent`; with
/// `max_age=0` as well, the person signs in once and consents once, in the same
/// second as the earlier sign-in, and the RP gets its refresh token.
#[tokio::test]
async fn openidconnect_relying_party_with_offline_access_prompt_consent_and_max_age_zero() {
    use openidconnect::core::CoreAuthPrompt;

    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let registered = app.web_client().await;
    let http = rp_http();
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(app.config.issuer()).unwrap(), &http)
        .await
        .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(registered.id.clone()),
        Some(ClientSecret::new(registered.secret.clone().unwrap())),
    )
    .set_redirect_uri(RedirectUrl::new(registered.redirect_uri.clone()).unwrap());
    let person = browser();
    let local = |url: &url::Url| {
        url.as_str()
            .replace(&format!("http://localhost:{}", app.port), &app.address)
    };
    // A first sign-in and consent.
    let (first_url, _, _) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(PkceCodeChallenge::new_random_sha256().0)
        .url();
    app.follow_to_client(&person, &local(&first_url), "alice", PASSWORD)
        .await;
    // The RP asks again, the way OIDC Core §11 tells it to.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf_state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("offline_access".into()))
        .add_prompt(CoreAuthPrompt::Consent)
        .set_max_age(std::time::Duration::from_secs(0))
        .set_pkce_challenge(challenge)
        .url();
    let back = app
        .follow_to_client(&person, &local(&auth_url), "alice", PASSWORD)
        .await;
    let params: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(params.get("state"), Some(csrf_state.secret()));
    let tokens = client
        .exchange_code(AuthorizationCode::new(params["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange");
    assert!(tokens.refresh_token().is_some(), "offline_access granted");
    let id_verifier = client
        .id_token_verifier()
        .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    let claims = tokens
        .id_token()
        .expect("id_token")
        .claims(&id_verifier, &nonce)
        .expect("id_token verifies");
    assert!(claims.auth_time().is_some(), "max_age asks for auth_time");
}
