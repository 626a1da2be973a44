//! Commerce errors as HTTP: RFC 9457 problem+json; missing permissions as RFC 6750
//! `insufficient_scope` challenges.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::commerce::domain::CommerceError;
use crate::http_common::Problem;
use crate::resource_server::BearerError;
use crate::resource_server::error::problem;

/// An error answer of the commerce API.
#[derive(Debug)]
pub enum ApiError {
    Domain(CommerceError),
    Bearer(BearerError),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Domain(e) => e.fmt(f),
            ApiError::Bearer(e) => e.fmt(f),
        }
    }
}

impl From<BearerError> for ApiError {
    fn from(e: BearerError) -> Self {
        ApiError::Bearer(e)
    }
}

/// Carries the realm so a missing permission becomes the RFC 6750 challenge.
pub fn domain(realm: &str) -> impl Fn(CommerceError) -> ApiError + '_ {
    move |error| match error {
        CommerceError::MissingPermission(permission) => {
            ApiError::Bearer(BearerError::insufficient_scope(realm, permission))
        }
        other => ApiError::Domain(other),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Bearer(e) => e.status_code(),
            ApiError::Domain(e) => match e {
                CommerceError::NotFound(_) => StatusCode::NOT_FOUND,
                CommerceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
                CommerceError::MissingPermission(_) | CommerceError::Forbidden(_) => StatusCode::FORBIDDEN,
                CommerceError::TransitionRefused { .. }
                | CommerceError::OrderState { .. }
                | CommerceError::Conflict(_) => StatusCode::CONFLICT,
                CommerceError::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
                CommerceError::PreconditionRequired => StatusCode::PRECONDITION_REQUIRED,
                CommerceError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                CommerceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        let e = match self {
            ApiError::Bearer(e) => return e.error_response(),
            ApiError::Domain(e) => e,
        };
        let status = self.status_code();
        let mut response = HttpResponse::build(status);
        response.insert_header(("cache-control", "no-store"));
        let detail = match e {
            CommerceError::Internal(cause) => {
                tracing::error!(%cause, "commerce request failed");
                "An unexpected error occurred.".to_owned()
            }
            CommerceError::Unavailable => {
                response.insert_header(("retry-after", "5"));
                e.to_string()
            }
            other => other.to_string(),
        };
        if let CommerceError::TransitionRefused { current, .. } = e {
            let problem = Problem::new(status, detail).member("current_status", current.as_str());
            return response.content_type("application/problem+json").json(problem.body());
        }
        if let CommerceError::OrderState { current, .. } = e {
            let problem = Problem::new(status, detail).member("current_status", *current);
            return response.content_type("application/problem+json").json(problem.body());
        }
        problem(response, status, &detail)
    }
}

pub fn json_error(error: actix_web::error::JsonPayloadError) -> actix_web::Error {
    let detail = format!("the request body is not valid JSON for this route: {error}");
    actix_web::error::InternalError::from_response(
        error,
        problem(
            HttpResponse::build(StatusCode::BAD_REQUEST),
            StatusCode::BAD_REQUEST,
            &detail,
        ),
    )
    .into()
}

pub fn query_error(error: actix_web::error::QueryPayloadError) -> actix_web::Error {
    let detail = format!("invalid query parameters: {error}");
    actix_web::error::InternalError::from_response(
        error,
        problem(
            HttpResponse::build(StatusCode::BAD_REQUEST),
            StatusCode::BAD_REQUEST,
            &detail,
        ),
    )
    .into()
}
