//! The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2) as a pipeline of
//! named checks moving a raw parameter map to a validated `AuthorizationRequest`,
//! then a decision (sign in, consent, issue a code, or fail) and the code itself.
//!
//! Until the client and redirect URI are verified, errors are shown to the person
//! (`AuthorizeError::Page`) and never redirected (RFC 6749 §4.1.2.1).

use serde::{Deserialize, Serialize};

use crate::authn::session::Authenticated;
use crate::crypto;
use crate::db::models::{codes, consents};
use crate::domain::Scopes;
use crate::oauth::clients::{Client, GrantType};
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::oauth::pkce::CodeChallenge;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    Query,
    FormPost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prompt {
    None,
    Login,
    Consent,
    SelectAccount,
}

/// A validated authorization request; stored as JSON while the person signs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub scope: Scopes,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Vec<Prompt>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub acr_values: Vec<String>,
    /// `sub` of a valid `id_token_hint`.
    pub id_token_hint_sub: Option<String>,
    /// RFC 8707 resource indicator.
    pub resource: Option<String>,
    /// The browser session that existed when the request first arrived; a
    /// `prompt=login` is satisfied by any other (newer) session, since every
    /// sign-in starts a new one.
    #[serde(default)]
    pub session_at_request: Option<String>,
    /// The session whose person answered this request's consent page. Recorded on
    /// the stored request with the consent, so `prompt=consent` is asked once per
    /// request (OIDC Core §3.1.2.1), not again after it was just given.
    #[serde(default)]
    pub consent_given_by: Option<String>,
    /// SHA-256 of the binding cookie of the browser that started the request
    /// (kept in its own column, not in the serialized parameters).
    #[serde(skip)]
    pub browser_hash: Option<String>,
}

impl AuthorizationRequest {
    /// True when `cookie` (the browser's binding cookie) is the one that started
    /// this request. A request without a binding belongs to no browser.
    pub fn started_by(&self, cookie: Option<&str>) -> bool {
        use subtle::ConstantTimeEq;
        match (&self.browser_hash, cookie) {
            (Some(bound), Some(cookie)) => crypto::sha256_hex(cookie).as_bytes().ct_eq(bound.as_bytes()).into(),
            _ => false,
        }
    }
}

/// Where and how to answer the client.
#[derive(Debug, Clone)]
pub struct ClientResponse {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub params: Vec<(&'static str, String)>,
}

impl ClientResponse {
    /// The redirect URI with the parameters appended to its query (RFC 6749 §3.1.2).
    pub fn location(&self) -> String {
        let mut url = self.redirect_uri.clone();
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.params.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&query);
        url
    }
}

#[derive(Debug)]
pub enum AuthorizeError {
    /// Shown to the person: the client or redirect URI cannot be trusted.
    Page(String),
    /// Sent to the verified redirect URI.
    Redirect(ClientResponse),
    /// The database is unavailable or something unexpected happened.
    Server(OAuthError),
}

impl From<crate::db::DbError> for AuthorizeError {
    fn from(error: crate::db::DbError) -> Self {
        AuthorizeError::Server(error.into())
    }
}

/// Builds the error answer for a verified redirect URI (state and `iss` included).
pub fn error_response(state: &AppState, request: &AuthorizationRequest, error: &OAuthError) -> ClientResponse {
    response_for(
        state,
        &request.redirect_uri,
        request.response_mode,
        request.state.as_deref(),
        error,
    )
}

fn response_for(
    state: &AppState,
    redirect_uri: &str,
    mode: ResponseMode,
    client_state: Option<&str>,
    error: &OAuthError,
) -> ClientResponse {
    let mut params = vec![
        ("error", error.code().to_owned()),
        ("error_description", error.description()),
    ];
    if let Some(s) = client_state {
        params.push(("state", s.to_owned()));
    }
    params.push(("iss", state.config.issuer()));
    ClientResponse {
        redirect_uri: redirect_uri.to_owned(),
        mode,
        params,
    }
}

/// Parses and checks an authorization request.
pub async fn parse(
    state: &AppState,
    params: &Params,
) -> Result<(AuthorizationRequest, std::sync::Arc<Client>), AuthorizeError> {
    // check_client
    let client_id = params.get("client_id").ok_or_else(|| {
        AuthorizeError::Page("The request does not say which application is asking (client_id is missing).".into())
    })?;
    let client = state
        .clients
        .get(&state.db, client_id)
        .await?
        .ok_or_else(|| AuthorizeError::Page("The application that sent you here is not registered.".into()))?;
    // check_redirect_uri
    let redirect_uri = match params.get("redirect_uri") {
        Some(requested) => client
            .redirect_uri_matching(requested)
            .map(|_| requested.to_owned())
            .ok_or_else(|| {
                AuthorizeError::Page("The application asked to send you to an address it has not registered.".into())
            })?,
        // OIDC Core §3.1.2.1: an OpenID request must name its redirect_uri (an
        // empty value counts as omitted, RFC 6749 §3.1).
        None if params.get("scope").is_some_and(|s| s.split(' ').any(|v| v == "openid")) => {
            return Err(AuthorizeError::Page(
                "The request does not say where to return (redirect_uri is required for OpenID Connect).".into(),
            ));
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].as_str().to_owned(),
        None => {
            return Err(AuthorizeError::Page(
                "The request does not say where to return (redirect_uri is missing).".into(),
            ));
        }
    };
    let client_state = params.get("state");
    if client_state.is_some_and(|s| s.len() > 2048) {
        return Err(AuthorizeError::Page(
            "The request's state parameter is too long.".into(),
        ));
    }
    // check_response_mode
    let mode = match params.get("response_mode") {
        None | Some("query") => ResponseMode::Query,
        Some("form_post") => ResponseMode::FormPost,
        Some(_) => {
            let e = OAuthError::InvalidRequest("unsupported response_mode".into());
            return Err(AuthorizeError::Redirect(response_for(
                state,
                &redirect_uri,
                ResponseMode::Query,
                client_state,
                &e,
            )));
        }
    };
    let fail =
        |error: OAuthError| AuthorizeError::Redirect(response_for(state, &redirect_uri, mode, client_state, &error));
    // check_request_object
    if params.get("request").is_some() {
        return Err(fail(OAuthError::RequestNotSupported));
    }
    if params.get("request_uri").is_some() {
        return Err(fail(OAuthError::RequestUriNotSupported));
    }
    // check_response_type: implicit and hybrid flows are refused (RFC 9700 §2.1.2).
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => return Err(fail(OAuthError::UnsupportedResponseType)),
        None => {
            return Err(fail(OAuthError::InvalidRequest(
                "missing parameter `response_type`".into(),
            )));
        }
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(fail(OAuthError::UnauthorizedClient(
            "this client may not use the authorization code flow",
        )));
    }
    // check_pkce
    let code_challenge = match params.get("code_challenge") {
        Some(challenge) => Some(
            CodeChallenge::parse(challenge, params.get("code_challenge_method"))
                .map_err(fail)?
                .as_str()
                .to_owned(),
        ),
        None if params.get("code_challenge_method").is_some() => {
            return Err(fail(OAuthError::InvalidRequest(
                "code_challenge_method without code_challenge".into(),
            )));
        }
        None if client.is_public() => {
            return Err(fail(OAuthError::InvalidRequest(
                "PKCE (code_challenge with S256) is required for public clients".into(),
            )));
        }
        None => None,
    };
    // check_scope
    let scope = Scopes::parse(params.get("scope").unwrap_or_default())
        .map_err(|e| fail(OAuthError::InvalidScope(e.to_string())))?;
    if scope.is_empty() {
        return Err(fail(OAuthError::InvalidScope("scope is required".into())));
    }
    let unknown = scope.difference(&client.scopes);
    if !unknown.is_empty() {
        return Err(fail(OAuthError::InvalidScope(format!(
            "not allowed for this client: {}",
            unknown.join(" ")
        ))));
    }
    // check_prompt
    let mut prompt = Vec::new();
    for value in params
        .get("prompt")
        .unwrap_or_default()
        .split(' ')
        .filter(|v| !v.is_empty())
    {
        prompt.push(match value {
            "none" => Prompt::None,
            "login" => Prompt::Login,
            "consent" => Prompt::Consent,
            "select_account" => Prompt::SelectAccount,
            _ => {
                return Err(fail(OAuthError::InvalidRequest(format!(
                    "unsupported prompt value `{value}`"
                ))));
            }
        });
    }
    if prompt.contains(&Prompt::None) && prompt.len() > 1 {
        return Err(fail(OAuthError::InvalidRequest(
            "prompt=none cannot be combined with other values".into(),
        )));
    }
    let max_age = match params.get("max_age") {
        Some(v) => Some(v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            fail(OAuthError::InvalidRequest(
                "max_age must be a non-negative integer".into(),
            ))
        })?),
        None => None,
    };
    let nonce = params.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512) {
        return Err(fail(OAuthError::InvalidRequest("nonce is too long".into())));
    }
    let id_token_hint_sub = match params.get("id_token_hint") {
        Some(hint) => Some(crate::oidc::id_token::subject_of_hint(state, hint).ok_or_else(|| {
            fail(OAuthError::InvalidRequest(
                "id_token_hint is not a valid ID token from this server".into(),
            ))
        })?),
        None => None,
    };
    let resource = match params.get("resource") {
        Some(r) => {
            let ok = url::Url::parse(r).is_ok_and(|u| u.fragment().is_none() && !u.cannot_be_a_base());
            if !ok {
                return Err(fail(OAuthError::InvalidTarget(
                    "resource must be an absolute URI without fragment".into(),
                )));
            }
            Some(r.to_owned())
        }
        None => None,
    };
    let request = AuthorizationRequest {
        client_id: client.id.to_string(),
        redirect_uri,
        response_mode: mode,
        state: client_state.map(str::to_owned),
        scope,
        nonce,
        code_challenge,
        prompt,
        max_age,
        login_hint: params.get("login_hint").map(|h| h.chars().take(64).collect()),
        acr_values: params
            .get("acr_values")
            .map(|v| v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
        id_token_hint_sub,
        resource,
        session_at_request: None,
        consent_given_by: None,
        browser_hash: None,
    };
    Ok((request, client))
}

/// What the endpoint does next for a (possibly signed-in) person.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Show the sign-in page; `force` = even though a session exists.
    Login {
        force: bool,
    },
    Consent,
    Issue,
    Fail(OAuthError),
    /// The person is signed in but must pass a second factor first.
    StepUp,
}

/// Decides the next step. `stored_at` is when the request was stored to wait for
/// sign-in or consent (`None` when it has just arrived).
pub async fn decide(
    state: &AppState,
    request: &AuthorizationRequest,
    client: &Client,
    session: Option<&Authenticated>,
    stored_at: Option<i64>,
) -> Result<Step, OAuthError> {
    let none = request.prompt.contains(&Prompt::None);
    let Some(auth) = session else {
        return Ok(if none {
            Step::Fail(OAuthError::LoginRequired)
        } else {
            Step::Login { force: false }
        });
    };
    let now = state.clock.now();
    let auth_time = auth.session.auth_time;
    // OIDC Core §3.1.2.1: `prompt=login` and `max_age` ask for an active
    // re-authentication; `max_age=0` is equivalent to `prompt=login`.
    let wants_login =
        request.prompt.contains(&Prompt::Login) || request.max_age.is_some_and(|max| max == 0 || now - auth_time > max);
    // A sign-in made for this very request satisfies it, however long ago it was:
    // a session other than the one the request arrived with, authenticated after
    // the request was stored. Both facts are fixed once true, so this cannot loop.
    let signed_in_for_request = stored_at.is_some_and(|stored_at| {
        request.session_at_request.as_deref() != Some(auth.session.id.as_str()) && auth_time >= stored_at
    });
    let other_user = request
        .id_token_hint_sub
        .as_ref()
        .is_some_and(|sub| *sub != auth.user.id);
    if (wants_login && !signed_in_for_request) || other_user {
        return Ok(if none {
            Step::Fail(OAuthError::LoginRequired)
        } else {
            Step::Login { force: true }
        });
    }
    // Step-up (OIDC Core §3.1.2.1 acr_values): MFA asked for and not yet done in this session.
    let wants_mfa = client.require_mfa || request.acr_values.iter().any(|a| a == ACR_MFA);
    if wants_mfa && !auth.session.amr.split(' ').any(|m| m == "mfa") {
        if none {
            return Ok(Step::Fail(OAuthError::InteractionRequired));
        }
        return Ok(if crate::authn::mfa::is_enrolled(&state.db, &auth.user.id).await? {
            Step::StepUp
        } else {
            Step::Fail(OAuthError::AccessDenied(
                "a second factor is required and the user has none",
            ))
        });
    }
    if client.require_consent {
        // `prompt=consent` is answered once per request, by this session.
        let consent_asked = request.prompt.contains(&Prompt::Consent)
            && request.consent_given_by.as_deref() != Some(auth.session.id.as_str());
        let (user_id, client_id) = (auth.user.id.clone(), client.id.to_string());
        let granted = state
            .db
            .run(move |conn| consents::find(conn, &user_id, &client_id))
            .await?
            .map(|c| Scopes::parse(&c.scope).unwrap_or_default());
        let covered = granted.is_some_and(|g| request.scope.is_subset(&g));
        if consent_asked || !covered {
            return Ok(if none {
                Step::Fail(OAuthError::ConsentRequired)
            } else {
                Step::Consent
            });
        }
    }
    Ok(Step::Issue)
}

/// Stores a request that must wait for sign-in or consent; returns its id.
pub async fn store(state: &AppState, request: &AuthorizationRequest) -> Result<(String, i64), OAuthError> {
    let now = state.clock.now();
    let row = codes::RequestRow {
        id: crypto::random_token(),
        client_id: request.client_id.clone(),
        params: serde_json::to_string(request).map_err(anyhow::Error::from)?,
        created_at: now,
        expires_at: now + state.config.tokens.request_ttl_secs,
        browser_hash: request.browser_hash.clone(),
    };
    let id = row.id.clone();
    state.db.run(move |conn| codes::insert_request(conn, &row)).await?;
    Ok((id, now))
}

/// A stored request, if it exists and has not expired.
pub async fn load(state: &AppState, id: &str) -> Result<Option<(AuthorizationRequest, i64)>, OAuthError> {
    let now = state.clock.now();
    let key = id.to_owned();
    let row = state.db.run(move |conn| codes::find_request(conn, &key, now)).await?;
    Ok(row.and_then(|r| {
        serde_json::from_str::<AuthorizationRequest>(&r.params)
            .ok()
            .map(|mut req| {
                req.browser_hash = r.browser_hash;
                (req, r.created_at)
            })
    }))
}

/// Records consent to the request's scopes (merged with earlier consent) and, on
/// the stored request `request_id`, that this session answered its consent page.
/// Returns the request as updated.
pub async fn record_consent(
    state: &AppState,
    request_id: &str,
    mut request: AuthorizationRequest,
    auth: &Authenticated,
) -> Result<AuthorizationRequest, OAuthError> {
    let now = state.clock.now();
    request.consent_given_by = Some(auth.session.id.clone());
    let params = serde_json::to_string(&request).map_err(anyhow::Error::from)?;
    let (request_id, user_id, client_id, scope) = (
        request_id.to_owned(),
        auth.user.id.clone(),
        request.client_id.clone(),
        request.scope.clone(),
    );
    state
        .db
        .transaction(move |conn| {
            let earlier = consents::find(conn, &user_id, &client_id)?
                .map(|c| Scopes::parse(&c.scope).unwrap_or_default())
                .unwrap_or_default();
            consents::save(conn, &user_id, &client_id, &earlier.union(&scope).to_string(), now)?;
            codes::update_request_params(conn, &request_id, &params)
        })
        .await?;
    Ok(request)
}

/// Issues the code (single use, `tokens.code_ttl_secs`) and consumes the stored
/// request, so one request yields at most one code. Returns the client's answer.
pub async fn issue_code(
    state: &AppState,
    request: &AuthorizationRequest,
    auth: &Authenticated,
    stored_id: Option<String>,
) -> Result<ClientResponse, AuthorizeError> {
    let code = crypto::random_token();
    let now = state.clock.now();
    let row = codes::CodeRow {
        code_hash: crypto::sha256_hex(&code),
        client_id: request.client_id.clone(),
        user_id: auth.user.id.clone(),
        session_id: auth.session.id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scope.to_string(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        auth_time: auth.session.auth_time,
        amr: auth.session.amr.clone(),
        acr: Some(acr_for(&auth.session.amr).to_owned()),
        created_at: now,
        expires_at: now + state.config.tokens.code_ttl_secs,
        used_at: None,
        resource: request.resource.clone(),
    };
    let consumed = state
        .db
        .transaction(move |conn| {
            if let Some(id) = stored_id
                && !codes::delete_request(conn, &id)?
            {
                return Ok(false);
            }
            codes::insert_code(conn, &row)?;
            Ok(true)
        })
        .await?;
    if !consumed {
        return Err(AuthorizeError::Page(
            "This sign-in request was already completed. Return to the application and start again.".into(),
        ));
    }
    let mut params = vec![("code", code)];
    if let Some(s) = &request.state {
        params.push(("state", s.clone()));
    }
    params.push(("iss", state.config.issuer()));
    Ok(ClientResponse {
        redirect_uri: request.redirect_uri.clone(),
        mode: request.response_mode,
        params,
    })
}

/// Authentication context classes (OIDC Core §2 `acr`), advertised in discovery.
pub const ACR_PASSWORD: &str = "urn:oxidp:acr:pwd";
pub const ACR_MFA: &str = "urn:oxidp:acr:mfa";

/// Forgets a stored request that ends without a code (denied, or failed).
pub async fn discard(state: &AppState, id: &str) -> Result<(), OAuthError> {
    let id = id.to_owned();
    state.db.run(move |conn| codes::delete_request(conn, &id)).await?;
    Ok(())
}

/// The `acr` a session's authentication methods (RFC 8176 `amr` values) achieve.
pub fn acr_for(amr: &str) -> &'static str {
    let methods: Vec<&str> = amr.split(' ').collect();
    if methods.contains(&"mfa") {
        ACR_MFA
    } else {
        ACR_PASSWORD
    }
}

/// Scope descriptions for the consent page.
pub fn describe_scope(scope: &str) -> (String, String) {
    let (title, text) = match scope {
        "openid" => ("Know who you are", "Your account identifier at this service."),
        "profile" => ("Your profile", "Your name, nickname, picture, locale and time zone."),
        "email" => ("Your e-mail address", "Your e-mail address and whether it is verified."),
        "phone" => ("Your phone number", "Your phone number and whether it is verified."),
        "address" => ("Your postal address", "The address on your account."),
        "offline_access" => ("Stay connected", "Keep access while you are not using the application."),
        "roles" => ("Your roles", "The roles and permissions assigned to you."),
        other if crate::rbac::hierarchy::is_permission_name(other) => {
            return (
                format!("Permission {other}"),
                "Act with this permission of yours, if your roles grant it.".to_owned(),
            );
        }
        other => {
            return (
                other.to_owned(),
                "Access on your behalf as described by the application.".to_owned(),
            );
        }
    };
    (title.to_owned(), text.to_owned())
}

/// Withdraws a person's consent for a client and revokes every grant (refresh
/// tokens and the access tokens from them) that client holds for the person.
pub async fn withdraw_consent(state: &AppState, user_id: &str, client_id: &str) -> Result<bool, OAuthError> {
    let now = state.clock.now();
    let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
    Ok(state
        .db
        .transaction(move |conn| {
            let existed = consents::delete(conn, &user_id, &client_id)?;
            crate::db::models::grants::revoke_for_user_client(conn, &user_id, &client_id, now)?;
            Ok(existed)
        })
        .await?)
}
