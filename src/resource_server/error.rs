//! Bearer-token errors as RFC 6750 §3 challenges with RFC 9457 problem+json bodies.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::http_common::{Problem, bearer_challenge};

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
        let (error, description, scope) = match &self.kind {
            BearerErrorKind::Missing => (None, None, None),
            BearerErrorKind::InvalidRequest(why) => (Some("invalid_request"), Some(*why), None),
            BearerErrorKind::InvalidToken(why) => (Some("invalid_token"), Some(why.as_str()), None),
            BearerErrorKind::InsufficientScope(scope) => (
                Some("insufficient_scope"),
                Some("the token lacks the permission"),
                Some(scope.as_str()),
            ),
            BearerErrorKind::Unavailable { .. } | BearerErrorKind::IntrospectionUnavailable { .. } => return None,
        };
        Some(bearer_challenge(&self.realm, error, description, scope))
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
        let mut problem = Problem::new(self.status_code(), self.to_string()).challenge(self.challenge());
        if let BearerErrorKind::Unavailable { retry_after }
        | BearerErrorKind::IntrospectionUnavailable { retry_after } = self.kind
        {
            problem = problem.retry_after(retry_after.max(1) as u64);
        }
        problem.response()
    }
}

/// Finishes `response` as an RFC 9457 problem document.
pub fn problem(mut response: actix_web::HttpResponseBuilder, status: StatusCode, detail: &str) -> HttpResponse {
    response
        .content_type("application/problem+json")
        .json(Problem::new(status, detail).body())
}
