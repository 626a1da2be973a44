//! Errors of the HTTP layer, in the format their audience reads: an HTML page for
//! people, JSON for machine endpoints. Causes are logged, never shown.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::accounts::AccountError;
use crate::authn::login::LoginError;
use crate::db::DbError;
use crate::views;

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

impl From<DbError> for PageError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(cause) => PageError::Unavailable(cause),
            DbError::NotFound => PageError::NotFound,
            other => PageError::Internal(other.into()),
        }
    }
}

impl From<LoginError> for PageError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::Db(db) => db.into(),
            LoginError::InvalidCredentials { .. } => PageError::Forbidden("invalid credentials"),
            LoginError::RateLimited { retry_after } => PageError::TooManyRequests { retry_after },
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

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> Self {
        PageError::Internal(anyhow::anyhow!("template: {error}"))
    }
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
            PageError::TooManyRequests { retry_after } => {
                let mut response = html_error(
                    status,
                    "Too many attempts",
                    &format!(
                        "There were too many sign-in attempts from your network or for this account. Wait {} and try again.",
                        crate::http::handlers::login::wait_phrase(*retry_after as i64)
                    ),
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_str(&retry_after.to_string()).unwrap_or(HeaderValue::from_static("60")),
                );
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

/// Renders the error page; falls back to plain text if the template itself fails.
pub fn html_error(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    let body = views::ErrorPage::new(status.as_u16(), title, message).render_page();
    let mut response = HttpResponse::build(status);
    response.insert_header(no_store());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("30")));
    }
    match body {
        Ok(html) => response.content_type("text/html; charset=utf-8").body(html),
        Err(_) => response
            .content_type("text/plain; charset=utf-8")
            .body(format!("{title}\n\n{message}\n")),
    }
}

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

impl From<DbError> for ApiError {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(cause) => ApiError::Unavailable(cause),
            DbError::NotFound => ApiError::NotFound,
            other => ApiError::Internal(other.into()),
        }
    }
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
        let status = self.status_code();
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
        problem(status, detail)
    }
}

/// An RFC 9457 problem document.
pub fn problem(status: StatusCode, detail: &str) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    response.insert_header(no_store());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("30")));
    }
    response
        .content_type("application/problem+json")
        .json(serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        }))
}

pub fn no_store() -> (header::HeaderName, HeaderValue) {
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

pub fn urlencode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// An OAuth protocol error as the token, revocation and introspection endpoints
/// answer it: RFC 6749 §5.2 JSON, `no-store`, 401 + `WWW-Authenticate` for
/// `invalid_client`, 503/500 for server-side trouble.
#[derive(Debug)]
pub struct OAuthJsonError(pub crate::oauth::error::OAuthError);

impl std::fmt::Display for OAuthJsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<crate::oauth::error::OAuthError> for OAuthJsonError {
    fn from(error: crate::oauth::error::OAuthError) -> Self {
        Self(error)
    }
}

impl ResponseError for OAuthJsonError {
    fn status_code(&self) -> StatusCode {
        use crate::oauth::error::OAuthError as E;
        match self.0 {
            E::InvalidClient(_) => StatusCode::UNAUTHORIZED,
            E::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            E::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            E::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            E::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response
            .insert_header(no_store())
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        if matches!(self.0, crate::oauth::error::OAuthError::InvalidClient(_)) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oxidp\""),
            ));
        }
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("30")));
        }
        if let crate::oauth::error::OAuthError::SlowDown { retry_after } = self.0 {
            response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        response.json(serde_json::json!({
            "error": self.0.code(),
            "error_description": self.0.description(),
        }))
    }
}

/// RFC 6750 §3 errors of bearer-protected endpoints.
#[derive(Debug)]
pub struct BearerHttpError(pub crate::oidc::userinfo::BearerError);

impl std::fmt::Display for BearerHttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<crate::oidc::userinfo::BearerError> for BearerHttpError {
    fn from(error: crate::oidc::userinfo::BearerError) -> Self {
        Self(error)
    }
}

fn quote(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

impl ResponseError for BearerHttpError {
    fn status_code(&self) -> StatusCode {
        use crate::oidc::userinfo::BearerError as E;
        match self.0 {
            E::Missing | E::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            E::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            E::InsufficientScope(_) => StatusCode::FORBIDDEN,
            E::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            E::Server => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        use crate::oidc::userinfo::BearerError as E;
        let (code, description) = match &self.0 {
            E::Missing => (None, None),
            E::InvalidRequest(d) => (Some("invalid_request"), Some((*d).to_owned())),
            E::InvalidToken(d) => (Some("invalid_token"), Some(d.clone())),
            E::InsufficientScope(scope) => (
                Some("insufficient_scope"),
                Some(format!("the token lacks the `{scope}` scope")),
            ),
            E::Unavailable => {
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The database cannot be reached; retry later.",
                );
            }
            E::Server => return problem(StatusCode::INTERNAL_SERVER_ERROR, "An unexpected error occurred."),
        };
        let mut challenge = String::from("Bearer realm=\"oxidp\"");
        if let Some(code) = code {
            challenge.push_str(&format!(", error=\"{code}\""));
        }
        if let Some(d) = &description {
            challenge.push_str(&format!(", error_description=\"{}\"", quote(d)));
        }
        if let E::InsufficientScope(scope) = &self.0 {
            challenge.push_str(&format!(", scope=\"{}\"", quote(scope)));
        }
        let mut response = HttpResponse::build(self.status_code());
        response
            .insert_header(no_store())
            .insert_header((header::WWW_AUTHENTICATE, challenge));
        match code {
            Some(code) => response.json(serde_json::json!({ "error": code, "error_description": description })),
            None => response.finish(),
        }
    }
}

/// Errors of the admin API: RFC 9457 problem+json; authentication and permission
/// failures also carry an RFC 6750 `WWW-Authenticate` challenge.
#[derive(Debug)]
pub struct AdminHttpError(pub crate::admin::AdminError);

impl std::fmt::Display for AdminHttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: Into<crate::admin::AdminError>> From<E> for AdminHttpError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

impl ResponseError for AdminHttpError {
    fn status_code(&self) -> StatusCode {
        use crate::admin::AdminError as E;
        match self.0 {
            E::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            E::Forbidden(_) | E::Escalation(_) => StatusCode::FORBIDDEN,
            E::BadRequest(_) => StatusCode::BAD_REQUEST,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Conflict { .. } => StatusCode::CONFLICT,
            E::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            E::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        use crate::admin::AdminError as E;
        let status = self.status_code();
        let (detail, challenge, code) = match &self.0 {
            E::Unauthenticated(None) => (
                "An access token is required.".to_owned(),
                Some("Bearer realm=\"oxidp\"".to_owned()),
                None,
            ),
            E::Unauthenticated(Some(why)) => (
                format!("The access token is not valid: {why}."),
                Some(format!(
                    "Bearer realm=\"oxidp\", error=\"invalid_token\", error_description=\"{}\"",
                    quote(why)
                )),
                Some("invalid_token"),
            ),
            E::Forbidden(permission) => (
                format!("The access token lacks the permission {permission}."),
                Some(format!(
                    "Bearer realm=\"oxidp\", error=\"insufficient_scope\", scope=\"{permission}\""
                )),
                Some("insufficient_scope"),
            ),
            E::Escalation(permission) => (
                format!(
                    "The change needs the permission {permission}, which the caller does not hold itself \
                     (only a holder of {} may hand out permissions beyond its own).",
                    crate::admin::perm::ROLES_ESCALATE
                ),
                None,
                Some("escalation_refused"),
            ),
            E::BadRequest(d) | E::NotFound(d) => (d.clone(), None, None),
            E::Conflict { code, detail } => (detail.clone(), None, Some(*code)),
            E::Unavailable => ("The database cannot be reached; retry later.".to_owned(), None, None),
            E::Internal(cause) => {
                tracing::error!(error = ?cause, "admin API internal error");
                ("An unexpected error occurred.".to_owned(), None, None)
            }
        };
        let mut response = HttpResponse::build(status);
        response.insert_header(no_store());
        if let Some(challenge) = challenge {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("30")));
        }
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        });
        if let Some(code) = code {
            body["code"] = serde_json::json!(code);
        }
        if let E::Escalation(permission) = &self.0 {
            body["missing_permission"] = serde_json::json!(permission);
        }
        response.content_type("application/problem+json").json(body)
    }
}
