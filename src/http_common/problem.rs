//! RFC 9457 problem documents, and the two headers every error answer shares.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

/// `Cache-Control: no-store`: no error or token answer may be cached.
pub fn no_store() -> (HeaderName, HeaderValue) {
    (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

/// `Retry-After: secs` (RFC 9110 §10.2.3), the one way every answer sets it.
pub fn set_retry_after(response: &mut HttpResponse, secs: u64) {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
}

/// An RFC 9457 problem document: `type`, `title` (the status's reason phrase),
/// `status`, `detail`, plus extension members; `no-store` always, and optionally
/// an RFC 6750 challenge and `Retry-After`.
#[derive(Debug, Clone)]
pub struct Problem {
    status: StatusCode,
    detail: String,
    members: Map<String, Value>,
    challenge: Option<String>,
    retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            members: Map::new(),
            challenge: None,
            retry_after: None,
        }
    }

    /// An extension member (RFC 9457 §3.2), e.g. `code` or `current_status`.
    pub fn member(mut self, name: &str, value: impl serde::Serialize) -> Self {
        self.members.insert(name.to_owned(), json!(value));
        self
    }

    /// A `WWW-Authenticate` challenge (see `bearer_challenge`).
    pub fn challenge(mut self, challenge: Option<String>) -> Self {
        self.challenge = challenge;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let Value::Object(fields) = &mut body {
            fields.extend(self.members.clone());
        }
        body
    }

    pub fn response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        builder.insert_header(no_store());
        if let Some(challenge) = &self.challenge {
            builder.insert_header((header::WWW_AUTHENTICATE, challenge.as_str()));
        }
        let mut response = builder.content_type("application/problem+json").json(self.body());
        if let Some(secs) = self.retry_after {
            set_retry_after(&mut response, secs);
        }
        response
    }
}

impl From<Problem> for HttpResponse {
    fn from(problem: Problem) -> Self {
        problem.response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_rfc_9457_members_and_extensions() {
        let problem = Problem::new(StatusCode::CONFLICT, "taken").member("code", "duplicate");
        assert_eq!(
            problem.body(),
            json!({"type": "about:blank", "title": "Conflict", "status": 409, "detail": "taken", "code": "duplicate"})
        );
    }

    #[test]
    fn response_carries_headers() {
        let response = Problem::new(StatusCode::TOO_MANY_REQUESTS, "slow down")
            .challenge(Some("Bearer realm=\"x\"".into()))
            .retry_after(7)
            .response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers();
        assert_eq!(headers.get(header::RETRY_AFTER).unwrap(), "7");
        assert_eq!(headers.get(header::CACHE_CONTROL).unwrap(), "no-store");
        assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer realm=\"x\"");
        assert_eq!(headers.get(header::CONTENT_TYPE).unwrap(), "application/problem+json");
    }
}
