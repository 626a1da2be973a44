//! Protocol errors of the authorization and token endpoints, with their codes
//! from RFC 6749, RFC 7009 and OpenID Connect Core. No HTTP types here: the
//! `http` layer turns them into JSON bodies, redirects or pages.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// RFC 6749 §4.1.2.1 / §5.2: a parameter is missing, repeated, malformed or unsupported.
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    /// RFC 6749 §5.2 `invalid_request`: the body is larger than `http.max_body_bytes`
    /// (answered with 413, RFC 9110 §15.5.14).
    #[error("invalid_request: request body too large")]
    RequestTooLarge { limit: usize },
    /// RFC 6749 §5.2: client authentication failed (answered with 401).
    #[error("invalid_client: {0}")]
    InvalidClient(&'static str),
    /// RFC 6749 §5.2: the grant is invalid, expired, revoked, used, or issued to another client.
    #[error("invalid_grant: {0}")]
    InvalidGrant(&'static str),
    /// RFC 6749 §4.1.2.1 / §5.2: this client may not use this grant or response type.
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(&'static str),
    /// RFC 6749 §5.2.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// RFC 6749 §4.1.2.1: only `code` is supported.
    #[error("unsupported_response_type")]
    UnsupportedResponseType,
    /// RFC 6749 §3.3: a requested scope is unknown or not allowed for this client.
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// RFC 6749 §4.1.2.1: the person (or the server) refused.
    #[error("access_denied: {0}")]
    AccessDenied(&'static str),
    /// RFC 8707 §2: the `resource` parameter is not an acceptable target.
    #[error("invalid_target: {0}")]
    InvalidTarget(String),
    /// RFC 7009 §2.2.1.
    #[error("unsupported_token_type")]
    UnsupportedTokenType,
    /// OIDC Core §3.1.2.6: `prompt=none` but the person must sign in.
    #[error("login_required")]
    LoginRequired,
    /// OIDC Core §3.1.2.6: `prompt=none` but the person must interact (e.g. a second factor).
    #[error("interaction_required")]
    InteractionRequired,
    /// OIDC Core §3.1.2.6: `prompt=none` but the person must consent.
    #[error("consent_required")]
    ConsentRequired,
    /// OIDC Core §6: `request` objects are not supported.
    #[error("request_not_supported")]
    RequestNotSupported,
    /// OIDC Core §6: `request_uri` is not supported.
    #[error("request_uri_not_supported")]
    RequestUriNotSupported,
    /// RFC 8628 §3.5 `slow_down` (registered for the token endpoint): too many failed
    /// client authentications for this client id or address; answered with 429.
    #[error("slow_down")]
    SlowDown { retry_after: u64 },
    /// RFC 6749 §4.1.2.1 / §5.2: the server cannot answer now (database down).
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable,
    /// RFC 6749 §4.1.2.1: an unexpected condition; the cause is logged, not sent.
    #[error("server_error")]
    ServerError,
}

impl OAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) | OAuthError::RequestTooLarge { .. } => "invalid_request",
            OAuthError::InvalidClient(_) => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::UnauthorizedClient(_) => "unauthorized_client",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::UnsupportedResponseType => "unsupported_response_type",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::AccessDenied(_) => "access_denied",
            OAuthError::InvalidTarget(_) => "invalid_target",
            OAuthError::UnsupportedTokenType => "unsupported_token_type",
            OAuthError::LoginRequired => "login_required",
            OAuthError::InteractionRequired => "interaction_required",
            OAuthError::ConsentRequired => "consent_required",
            OAuthError::RequestNotSupported => "request_not_supported",
            OAuthError::RequestUriNotSupported => "request_uri_not_supported",
            OAuthError::SlowDown { .. } => "slow_down",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
        }
    }

    /// Human-readable text for `error_description` (never internals).
    pub fn description(&self) -> String {
        match self {
            OAuthError::InvalidRequest(d) | OAuthError::InvalidScope(d) | OAuthError::InvalidTarget(d) => d.clone(),
            OAuthError::InvalidClient(d)
            | OAuthError::InvalidGrant(d)
            | OAuthError::UnauthorizedClient(d)
            | OAuthError::AccessDenied(d) => (*d).to_owned(),
            OAuthError::RequestTooLarge { limit } => format!("the request body is larger than {limit} bytes"),
            OAuthError::UnsupportedGrantType => "the grant type is not supported".to_owned(),
            OAuthError::UnsupportedResponseType => "only response_type=code is supported".to_owned(),
            OAuthError::UnsupportedTokenType => "this token type cannot be revoked".to_owned(),
            OAuthError::LoginRequired => "the user must sign in".to_owned(),
            OAuthError::InteractionRequired => "the user must interact with the authorization server".to_owned(),
            OAuthError::ConsentRequired => "the user must consent".to_owned(),
            OAuthError::RequestNotSupported => "request objects are not supported".to_owned(),
            OAuthError::RequestUriNotSupported => "request_uri is not supported".to_owned(),
            OAuthError::SlowDown { retry_after } => {
                format!("too many failed client authentications; retry in {retry_after} s")
            }
            OAuthError::TemporarilyUnavailable => "the server is temporarily unavailable".to_owned(),
            OAuthError::ServerError => "an unexpected error occurred".to_owned(),
        }
    }
}

impl From<crate::db::DbError> for OAuthError {
    fn from(error: crate::db::DbError) -> Self {
        if error.is_unavailable() {
            tracing::error!(%error, "database unavailable");
            OAuthError::TemporarilyUnavailable
        } else {
            tracing::error!(%error, "database error");
            OAuthError::ServerError
        }
    }
}

impl From<anyhow::Error> for OAuthError {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!(error = ?error, "internal error");
        OAuthError::ServerError
    }
}
