//! Errors of the HTTP layer, in the format their audience reads: an HTML page for
//! people (`PageError`), RFC 9457 problem+json for machine endpoints (`ApiError`,
//! the admin API's `AdminHttpError`), RFC 6749 §5.2 JSON for the OAuth back
//! channel (`OAuthJsonError`) and RFC 6750 challenges for bearer-protected
//! endpoints (`BearerHttpError`). Every answer is built by one of the builders at
//! the end (`html_error`, `problem`, `retry_after`, and `http_common`'s `Problem`
//! and `bearer_challenge`); the conversions from domain errors are together in
//! one section. Causes are logged, never shown.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::accounts::AccountError;
use crate::admin::AdminError;
use crate::authn::mfa::MfaError;
use crate::authn::webauthn::PasskeyError;
use crate::db::DbError;
use crate::http::pages::{urlencode, wait_phrase};
pub use crate::http_common::no_store;
use crate::http_common::{Problem, bearer_challenge, set_retry_after};
use crate::oauth::error::OAuthError;
use crate::oidc::userinfo::BearerError;
use crate::views;

/// The `realm` of oxidp's own RFC 6750 challenges.
const REALM: &str = "oxidp";
/// How long a 503 asks clients to wait.
pub const UNAVAILABLE_RETRY_SECS: u64 = 30;

// ---- pages for people ----

/// An error shown to a person as a page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The body is larger than `http.max_body_bytes` (or 16 KiB for forms).
    #[error("payload too large")]
    TooLarge,
    /// The form did not carry a valid CSRF token, or came from another origin.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    /// Over a rate limit: 429 with `Retry-After`.
    #[error("too many requests")]
    TooManyRequests { retry_after: u64 },
    /// The page needs a signed-in person; they are sent to the sign-in page.
    #[error("sign-in required")]
    SignInRequired { return_to: String, expired: bool },
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound => StatusCode::NOT_FOUND,
            PageError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            PageError::SignInRequired { .. } => StatusCode::SEE_OTHER,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (title, message) = match self {
            PageError::SignInRequired { return_to, expired } => {
                let mut location = format!("/login?return_to={}", urlencode(return_to));
                if *expired {
                    location.push_str("&expired=1");
                }
                return HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, location))
                    .insert_header(no_store())
                    .finish();
            }
            PageError::BadRequest(message) => ("Something is wrong with that request", message.clone()),
            PageError::TooLarge => ("That was too much", "The form is too large to be accepted.".to_owned()),
            PageError::Forbidden(_) => (
                "This form has expired",
                "For your security the form could not be accepted. Go back, reload the page and try again.".to_owned(),
            ),
            PageError::NotFound => ("Page not found", "There is nothing at this address.".to_owned()),
            PageError::TooManyRequests { retry_after: wait } => {
                let message = format!(
                    "There were too many sign-in attempts from your network or for this account. Wait {} and try again.",
                    wait_phrase(*wait as i64)
                );
                let mut response = html_error(status, "Too many attempts", &message);
                retry_after(&mut response, Some(*wait));
                return response;
            }
            PageError::Unavailable(cause) => {
                tracing::error!(%cause, "database unavailable");
                (
                    "Temporarily unavailable",
                    "We cannot reach our database right now. Please try again in a minute.".to_owned(),
                )
            }
            PageError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                (
                    "Something went wrong",
                    "An unexpected error occurred. Please try again.".to_owned(),
                )
            }
        };
        html_error(status, title, &message)
    }
}

// ---- problem+json for machine endpoints ----

/// An error of a machine endpoint as RFC 9457 problem+json.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("service unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let detail = match self {
            ApiError::NotFound => "No resource at this address.",
            ApiError::Unavailable(cause) => {
                tracing::error!(%cause, "database unavailable");
                "The database cannot be reached; retry later."
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                "An unexpected error occurred."
            }
        };
        problem(self.status_code(), detail)
    }
}

// ---- RFC 6749 §5.2 JSON for the OAuth back channel ----

/// An OAuth protocol error as the token, revocation and introspection endpoints
/// answer it: RFC 6749 §5.2 JSON, `no-store`, 401 + `WWW-Authenticate` for
/// `invalid_client`, 429 + `Retry-After` for `slow_down`, 503/500 for
/// server-side trouble.
#[derive(Debug)]
pub struct OAuthJsonError(pub OAuthError);

impl std::fmt::Display for OAuthJsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for OAuthJsonError {
    fn status_code(&self) -> StatusCode {
        match self.0 {
            OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            OAuthError::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OAuthError::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            OAuthError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthError::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        builder
            .insert_header(no_store())
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        if let OAuthError::InvalidClient(_) = self.0 {
            builder.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oxidp\""),
            ));
        }
        let mut response = builder.json(serde_json::json!({
            "error": self.0.code(),
            "error_description": self.0.description(),
        }));
        let wait = match self.0 {
            OAuthError::SlowDown { retry_after } => Some(retry_after),
            _ => None,
        };
        retry_after(&mut response, wait);
        response
    }
}

// ---- RFC 6750 §3 for bearer-protected endpoints ----

/// RFC 6750 §3 errors of bearer-protected endpoints (userinfo).
#[derive(Debug)]
pub struct BearerHttpError(pub BearerError);

impl std::fmt::Display for BearerHttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for BearerHttpError {
    fn status_code(&self) -> StatusCode {
        match self.0 {
            BearerError::Missing | BearerError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            BearerError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            BearerError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            BearerError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            BearerError::Server => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (code, description, scope) = match &self.0 {
            BearerError::Missing => (None, None, None),
            BearerError::InvalidRequest(d) => (Some("invalid_request"), Some((*d).to_owned()), None),
            BearerError::InvalidToken(d) => (Some("invalid_token"), Some(d.clone()), None),
            BearerError::InsufficientScope(scope) => (
                Some("insufficient_scope"),
                Some(format!("the token lacks the `{scope}` scope")),
                Some(*scope),
            ),
            BearerError::Unavailable => {
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database cannot be reached; retry later.",
                );
            }
            BearerError::Server => return problem(StatusCode::INTERNAL_SERVER_ERROR, "An unexpected error occurred."),
        };
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header(no_store()).insert_header((
            header::WWW_AUTHENTICATE,
            bearer_challenge(REALM, code, description.as_deref(), scope),
        ));
        match code {
            Some(code) => response.json(serde_json::json!({ "error": code, "error_description": description })),
            None => response.finish(),
        }
    }
}

// ---- the admin API ----

/// Errors of the admin API: RFC 9457 problem+json; authentication and permission
/// failures also carry an RFC 6750 `WWW-Authenticate` challenge.
#[derive(Debug)]
pub struct AdminHttpError(pub AdminError);

impl std::fmt::Display for AdminHttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for AdminHttpError {
    fn status_code(&self) -> StatusCode {
        match self.0 {
            AdminError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            AdminError::Forbidden(_) | AdminError::Escalation(_) => StatusCode::FORBIDDEN,
            AdminError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict { .. } => StatusCode::CONFLICT,
            AdminError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (detail, challenge, code) = match &self.0 {
            AdminError::Unauthenticated(None) => (
                "An access token is required.".to_owned(),
                Some(bearer_challenge(REALM, None, None, None)),
                None,
            ),
            AdminError::Unauthenticated(Some(why)) => (
                format!("The access token is not valid: {why}."),
                Some(bearer_challenge(REALM, Some("invalid_token"), Some(why), None)),
                Some("invalid_token"),
            ),
            AdminError::Forbidden(permission) => (
                format!("The access token lacks the permission {permission}."),
                Some(bearer_challenge(
                    REALM,
                    Some("insufficient_scope"),
                    None,
                    Some(permission),
                )),
                Some("insufficient_scope"),
            ),
            AdminError::Escalation(permission) => (
                format!(
                    "The change needs the permission {permission}, which the caller does not hold itself \
                     (only a holder of {} may hand out permissions beyond its own).",
                    crate::admin::perm::ROLES_ESCALATE
                ),
                None,
                Some("escalation_refused"),
            ),
            AdminError::BadRequest(d) | AdminError::NotFound(d) => (d.clone(), None, None),
            AdminError::Conflict { code, detail } => (detail.clone(), None, Some(*code)),
            AdminError::Unavailable => ("The database cannot be reached; retry later.".to_owned(), None, None),
            AdminError::Internal(cause) => {
                tracing::error!(error = ?cause, "admin API internal error");
                ("An unexpected error occurred.".to_owned(), None, None)
            }
        };
        let mut problem = Problem::new(status, detail).challenge(challenge);
        if let Some(code) = code {
            problem = problem.member("code", code);
        }
        if let AdminError::Escalation(permission) = &self.0 {
            problem = problem.member("missing_permission", permission);
        }
        let mut response = problem.response();
        retry_after(&mut response, None);
        response
    }
}

// ---- from domain errors ----

impl From<DbError> for PageError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(cause) => PageError::Unavailable(cause),
            DbError::NotFound => PageError::NotFound,
            other => PageError::Internal(other.into()),
        }
    }
}

impl From<AccountError> for PageError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Db(db) => db.into(),
            AccountError::NotFound => PageError::NotFound,
            AccountError::Internal(e) => PageError::Internal(e),
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

impl From<MfaError> for PageError {
    fn from(error: MfaError) -> Self {
        match error {
            MfaError::Db(db) => db.into(),
            MfaError::Internal(e) => PageError::Internal(e),
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

impl From<PasskeyError> for PageError {
    fn from(error: PasskeyError) -> Self {
        match error {
            PasskeyError::Db(db) => db.into(),
            PasskeyError::Internal(e) => PageError::Internal(e),
            PasskeyError::NotFound => PageError::NotFound,
            other => PageError::BadRequest(other.to_string()),
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> Self {
        PageError::Internal(anyhow::anyhow!("template: {error}"))
    }
}

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(cause) => ApiError::Unavailable(cause),
            DbError::NotFound => ApiError::NotFound,
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<OAuthError> for OAuthJsonError {
    fn from(error: OAuthError) -> Self {
        Self(error)
    }
}

impl From<BearerError> for BearerHttpError {
    fn from(error: BearerError) -> Self {
        Self(error)
    }
}

impl<E: Into<AdminError>> From<E> for AdminHttpError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

// ---- builders ----

/// `Retry-After` on every answer that has one: the limiter's own `wait`, else
/// `UNAVAILABLE_RETRY_SECS` on a 503.
pub fn retry_after(response: &mut HttpResponse, wait: Option<u64>) {
    match wait {
        Some(secs) => set_retry_after(response, secs),
        None if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
            set_retry_after(response, UNAVAILABLE_RETRY_SECS)
        }
        None => {}
    }
}

/// An RFC 9457 problem document (a 503 says when to retry).
pub fn problem(status: StatusCode, detail: impl Into<String>) -> HttpResponse {
    let mut response = Problem::new(status, detail).response();
    retry_after(&mut response, None);
    response
}

/// Renders the error page; falls back to plain text if the template itself fails.
pub fn html_error(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let body = views::ErrorPage::new(status.as_u16(), title, message).render_page();
    let mut builder = HttpResponse::build(status);
    builder.insert_header(no_store());
    let mut response = match body {
        Ok(html) => builder.content_type("text/html; charset=utf-8").body(html),
        Err(_) => builder
            .content_type("text/plain; charset=utf-8")
            .body(format!("{title}\n\n{message}\n")),
    };
    retry_after(&mut response, None);
    response
}
