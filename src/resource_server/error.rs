//! Bearer-token errors as RFC 6750 §3 challenges with RFC 9457 problem+json bodies.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerErrorKind {
    /// RFC 6750 §3.1: no credentials were sent; the challenge carries no `error`.
    Missing,
    /// RFC 6750 §3.1 `invalid_request`: a malformed Authorization header.
    InvalidRequest(&'static str),
    /// RFC 6750 §3.1 `invalid_token`: expired, revoked, malformed or otherwise invalid.
    InvalidToken(String),
    /// RFC 6750 §3.1 `insufficient_scope`: the token lacks the named permission.
    InsufficientScope(String),
    /// No key set is known yet (or it is too stale): try again later.
    Unavailable { retry_after: i64 },
    /// A revocation-sensitive route could not ask the issuer (introspection circuit
    /// breaker open, or the call failed) and `introspection_fallback = deny`.
    IntrospectionUnavailable { retry_after: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerError {
    pub realm: String,
    pub kind: BearerErrorKind,
}

impl BearerError {
    pub fn missing(realm: &str) -> Self {
        Self::new(realm, BearerErrorKind::Missing)
    }

    pub fn invalid_request(realm: &str, why: &'static str) -> Self {
        Self::new(realm, BearerErrorKind::InvalidRequest(why))
    }

    pub fn invalid_token(realm: &str, why: String) -> Self {
        Self::new(realm, BearerErrorKind::InvalidToken(why))
    }

    pub fn insufficient_scope(realm: &str, scope: &str) -> Self {
        Self::new(realm, BearerErrorKind::InsufficientScope(scope.to_owned()))
    }

    pub fn unavailable(realm: &str, retry_after: i64) -> Self {
        Self::new(realm, BearerErrorKind::Unavailable { retry_after })
    }

    pub fn unavailable_introspection(realm: &str, retry_after: i64) -> Self {
        Self::new(realm, BearerErrorKind::IntrospectionUnavailable { retry_after })
    }

    fn new(realm: &str, kind: BearerErrorKind) -> Self {
        Self {
            realm: realm.to_owned(),
            kind,
        }
    }

    fn challenge(&self) -> Option<String> {
        let quote = |s: &str| s.replace(['\\', '"'], "");
        let realm = quote(&self.realm);
        match &self.kind {
            BearerErrorKind::Missing => Some(format!("Bearer realm=\"{realm}\"")),
            BearerErrorKind::InvalidRequest(why) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{}\"",
                quote(why)
            )),
            BearerErrorKind::InvalidToken(why) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"",
                quote(why)
            )),
            BearerErrorKind::InsufficientScope(scope) => Some(format!(
                "Bearer realm=\"{realm}\", error=\"insufficient_scope\", error_description=\"the token lacks the permission\", scope=\"{}\"",
                quote(scope)
            )),
            BearerErrorKind::Unavailable { .. } | BearerErrorKind::IntrospectionUnavailable { .. } => None,
        }
    }
}

impl std::fmt::Display for BearerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            BearerErrorKind::Missing => write!(f, "A bearer token is required."),
            BearerErrorKind::InvalidRequest(why) => write!(f, "Malformed request: {why}."),
            BearerErrorKind::InvalidToken(why) => write!(f, "The access token is invalid: {why}."),
            BearerErrorKind::InsufficientScope(scope) => write!(f, "The access token lacks the permission {scope}."),
            BearerErrorKind::Unavailable { .. } => {
                write!(f, "The token issuer's keys are not known yet; try again shortly.")
            }
            BearerErrorKind::IntrospectionUnavailable { .. } => write!(
                f,
                "This operation needs the token issuer to confirm the token is still active, and it cannot be reached; try again shortly."
            ),
        }
    }
}

impl ResponseError for BearerError {
    fn status_code(&self) -> StatusCode {
        match self.kind {
            BearerErrorKind::Missing | BearerErrorKind::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            BearerErrorKind::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            BearerErrorKind::InsufficientScope(_) => StatusCode::FORBIDDEN,
            BearerErrorKind::Unavailable { .. } | BearerErrorKind::IntrospectionUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(challenge) = self.challenge() {
            response.insert_header((header::WWW_AUTHENTICATE, challenge));
        }
        if let BearerErrorKind::Unavailable { retry_after }
        | BearerErrorKind::IntrospectionUnavailable { retry_after } = self.kind
        {
            response.insert_header((header::RETRY_AFTER, retry_after.max(1).to_string()));
        }
        problem(response, self.status_code(), &self.to_string())
    }
}

/// Finishes `response` as an RFC 9457 problem document.
pub fn problem(mut response: actix_web::HttpResponseBuilder, status: StatusCode, detail: &str) -> HttpResponse {
    response
        .content_type("application/problem+json")
        .json(serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
        }))
}
