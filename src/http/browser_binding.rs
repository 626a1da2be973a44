//! Binds a pending /authorize request to the browser that started it: a random
//! cookie, minted once per browser session, whose SHA-256 is stored on every
//! request that browser starts (like the WebAuthn ceremony cookie). /authorize/continue,
//! /consent and the sign-in page that carries the request check it, so a link to
//! someone else's pending request shows a page, never the consent screen or a code.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};

use crate::crypto;
use crate::http::cookies;
use crate::http::error::html_error;
use crate::oauth::authorize::{self, AuthorizationRequest};
use crate::state::AppState;

/// This browser's binding cookie, and whether it was just minted (then set it).
pub struct BrowserBinding {
    value: String,
    minted: bool,
}

impl BrowserBinding {
    pub fn from_request(req: &HttpRequest, state: &AppState) -> Self {
        match presented(req, state) {
            Some(value) => Self { value, minted: false },
            None => Self {
                value: crypto::random_token(),
                minted: true,
            },
        }
    }

    /// What the request row stores.
    pub fn hash(&self) -> String {
        crypto::sha256_hex(&self.value)
    }

    /// Sets the cookie on the response when it was just minted.
    pub fn apply(&self, state: &AppState, response: &mut HttpResponse) {
        if self.minted {
            let _ = response.add_cookie(&cookies::build(&state.config, cookies::AUTHORIZE, self.value.clone()));
        }
    }
}

/// The binding cookie the browser sent, if any.
pub fn presented(req: &HttpRequest, state: &AppState) -> Option<String> {
    req.cookie(&cookies::name(&state.config, cookies::AUTHORIZE))
        .map(|c| c.value().to_owned())
        .filter(|v| v.len() >= 32)
}

/// True when this browser started the pending request (logs a refusal otherwise).
pub fn started_here(req: &HttpRequest, state: &AppState, request: &AuthorizationRequest) -> bool {
    let here = request.started_by(presented(req, state).as_deref());
    if !here {
        tracing::warn!(client_id = %request.client_id, "pending authorization request opened in another browser");
    }
    here
}

/// The page a browser gets for a request it did not start.
pub fn foreign_browser() -> HttpResponse {
    html_error(
        StatusCode::FORBIDDEN,
        "This sign-in request belongs to another browser",
        "For your security, a request to sign in to an application can only be continued in the browser \
         that started it. Return to the application in this browser and start again.",
    )
}

/// The pending request a sign-in page's `return_to` continues, if any.
pub fn pending_request_of(return_to: &str) -> Option<&str> {
    return_to
        .strip_prefix("/authorize/continue?request=")
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// On a sign-in step that continues a pending request: the page for a foreign
/// browser, shown up front (before any password is asked). Missing or expired
/// requests pass; /authorize/continue says they expired.
pub async fn refuse_foreign_return_to(req: &HttpRequest, state: &AppState, return_to: &str) -> Option<HttpResponse> {
    let id = pending_request_of(return_to)?;
    match authorize::load(state, id).await {
        Ok(Some((request, _))) if !started_here(req, state, &request) => Some(foreign_browser()),
        _ => None,
    }
}
