//! The `Idempotency-Key` header as HTTP: reading it (400 when a route requires it
//! and it is missing or malformed), and turning stored responses back into
//! responses. The rules live in `domain::idempotency`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use crate::commerce::domain::idempotency::{IdempotencyKey, StoredResponse};
use crate::resource_server::error::problem;

pub const HEADER: &str = "idempotency-key";

/// The request's key, or why it is missing or malformed (answer with `bad_request`).
pub fn required_key(req: &HttpRequest) -> Result<IdempotencyKey, String> {
    let Some(value) = req.headers().get(HEADER) else {
        return Err("this route requires an Idempotency-Key header".to_owned());
    };
    let value = value
        .to_str()
        .map_err(|_| "Idempotency-Key must be visible ASCII".to_owned())?;
    IdempotencyKey::parse(value).map_err(|e| e.to_string())
}

/// The request's key if it sent one (routes where the header is optional), or why
/// it is malformed (answer with `bad_request`).
pub fn optional_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, String> {
    if req.headers().contains_key(HEADER) {
        required_key(req).map(Some)
    } else {
        Ok(None)
    }
}

/// A 400 problem.
pub fn bad_request(detail: &str) -> HttpResponse {
    problem(
        HttpResponse::build(StatusCode::BAD_REQUEST),
        StatusCode::BAD_REQUEST,
        detail,
    )
}

/// A 400 problem for a body that is not the route's JSON.
pub fn bad_body(error: serde_json::Error) -> HttpResponse {
    bad_request(&format!("the request body is not valid JSON for this route: {error}"))
}

/// The stored response as sent the first time.
pub fn respond(stored: &StoredResponse) -> HttpResponse {
    let mut response =
        HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    for (name, value) in &stored.headers {
        response.insert_header((name.as_str(), value.as_str()));
    }
    response
        .insert_header(("cache-control", "no-store"))
        .body(stored.body.clone())
}

/// A replay: the first response again, marked as such.
pub fn replay(stored: &StoredResponse) -> HttpResponse {
    let mut response = respond(stored);
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
        actix_web::http::header::HeaderValue::from_static("true"),
    );
    response
}
