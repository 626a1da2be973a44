//! CSRF protection for every form: a random cookie and, in the form, its HMAC under
//! a server key (signed double submit), bound to the browser's session: the HMAC
//! covers the SHA-256 of the session cookie when there is one, so a cookie and
//! token pair planted from another browser (the attacker's own) does not validate
//! against the victim's session. Before sign-in the token is bound to the CSRF
//! cookie alone (the pre-session cookie), and so is the sign-in form's token
//! always (`pre_session`), so a session cookie that changes between showing and
//! posting the form (session fixation, rotated at sign-in) cannot block sign-in. A cross-site page can neither read the
//! cookies nor compute the HMAC. POSTs whose `Origin` is another site are refused too.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::future::{Ready, ready};

use crate::http::cookies;
use crate::http::error::PageError;
use crate::state::AppState;

/// The token to put in forms, and the cookie to set if the browser had none.
pub struct Csrf {
    /// For every form of a (possibly) signed-in page: bound to the session.
    pub token: String,
    /// For the sign-in form only: bound to the CSRF cookie alone.
    pub pre_session: String,
    new_cookie: Option<String>,
}

impl Csrf {
    /// Adds the CSRF cookie to a response when it was just minted.
    pub fn apply(&self, state: &AppState, response: &mut actix_web::HttpResponse) {
        if let Some(value) = &self.new_cookie {
            let _ = response.add_cookie(&cookies::build(&state.config, cookies::CSRF, value.clone()));
        }
    }
}

/// A form whose only field is its CSRF token (confirmation buttons).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    csrf_token: String,
}

impl CsrfForm {
    pub fn token(&self) -> &str {
        &self.csrf_token
    }
}

/// HMAC(csrf_key, "csrf" ‖ CSRF cookie ‖ SHA-256(session cookie) or nothing).
fn sign(key: &[u8; 32], cookie: &str, session: Option<&str>) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"csrf\0");
    mac.update(cookie.as_bytes());
    mac.update(b"\0");
    if let Some(session) = session {
        mac.update(crate::crypto::sha256_hex(session).as_bytes());
    }
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// The session cookie the token is bound to (its value, hashed by `sign`).
fn session_binding(req: &HttpRequest, state: &AppState) -> Option<String> {
    req.cookie(&cookies::name(&state.config, cookies::SESSION))
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

impl FromRequest for Csrf {
    type Error = PageError;
    type Future = Ready<Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Err(PageError::Internal(anyhow::anyhow!("no app state"))));
        };
        let existing = req
            .cookie(&cookies::name(&state.config, cookies::CSRF))
            .map(|c| c.value().to_owned())
            .filter(|v| v.len() >= 43);
        let (value, new_cookie) = match existing {
            Some(value) => (value, None),
            None => {
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                let value = URL_SAFE_NO_PAD.encode(bytes);
                (value.clone(), Some(value))
            }
        };
        let session = session_binding(req, state);
        ready(Ok(Csrf {
            token: sign(&state.csrf_key, &value, session.as_deref()),
            pre_session: sign(&state.csrf_key, &value, None),
            new_cookie,
        }))
    }
}

/// Checks a submitted form: same-origin (when the browser says where it came from)
/// and a token matching the CSRF cookie and the session cookie it was issued with.
pub fn verify(req: &HttpRequest, state: &AppState, submitted: &str) -> Result<(), PageError> {
    check(req, state, submitted, &[true])
}

/// Checks the sign-in form, whose token (`Csrf::pre_session`) is bound to the CSRF
/// cookie only: a browser's session cookie may change before it signs in. A token
/// bound to the current session is accepted too (it is the stronger of the two).
pub fn verify_pre_session(req: &HttpRequest, state: &AppState, submitted: &str) -> Result<(), PageError> {
    check(req, state, submitted, &[false, true])
}

/// Same-origin checks, then the token against the cookies, bound to the session
/// or not as each of `bindings` says (the first match wins).
fn check(req: &HttpRequest, state: &AppState, submitted: &str, bindings: &[bool]) -> Result<(), PageError> {
    // Fetch Metadata: browsers say outright when a request comes from another site.
    if req
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        tracing::warn!("form refused: cross-site POST (Sec-Fetch-Site)");
        return Err(PageError::Forbidden("cross-site form"));
    }
    // Our pages send `Referrer-Policy: no-referrer`, under which browsers serialize
    // the Origin of their own same-origin form posts as `null` (Fetch §3.1): that
    // says nothing either way, and the signed token below decides.
    if let Some(origin) = req
        .headers()
        .get(actix_web::http::header::ORIGIN)
        .filter(|o| o.as_bytes() != b"null")
    {
        let issuer = state.config.issuer_url().map_err(|e| PageError::Internal(e.into()))?;
        let expected = issuer.origin().ascii_serialization();
        if origin.as_bytes() != expected.as_bytes() {
            tracing::warn!("form refused: cross-origin POST");
            return Err(PageError::Forbidden("cross-origin form"));
        }
    }
    let Some(cookie) = req.cookie(&cookies::name(&state.config, cookies::CSRF)) else {
        tracing::warn!("form refused: no CSRF cookie");
        return Err(PageError::Forbidden("missing csrf cookie"));
    };
    let session = session_binding(req, state);
    use subtle::ConstantTimeEq;
    let matches = |bind_session: bool| -> bool {
        let session = session.as_deref().filter(|_| bind_session);
        sign(&state.csrf_key, cookie.value(), session)
            .as_bytes()
            .ct_eq(submitted.as_bytes())
            .into()
    };
    if bindings.iter().any(|&bind| matches(bind)) {
        Ok(())
    } else {
        tracing::warn!("form refused: CSRF token mismatch");
        Err(PageError::Forbidden("csrf token mismatch"))
    }
}
