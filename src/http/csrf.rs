//! CSRF protection for every form: a random cookie and, in the form, its HMAC under
//! a server key (signed double submit). A cross-site page can neither read the
//! cookie nor compute the HMAC. POSTs whose `Origin` is another site are refused too.

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
    pub token: String,
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

fn sign(key: &[u8; 32], cookie: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"csrf\0");
    mac.update(cookie.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
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
        ready(Ok(Csrf {
            token: sign(&state.csrf_key, &value),
            new_cookie,
        }))
    }
}

/// Checks a submitted form: same-origin (when the browser says where it came from)
/// and a token matching the cookie.
pub fn verify(req: &HttpRequest, state: &AppState, submitted: &str) -> Result<(), PageError> {
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
    let expected = sign(&state.csrf_key, cookie.value());
    use subtle::ConstantTimeEq;
    if expected.as_bytes().ct_eq(submitted.as_bytes()).into() {
        Ok(())
    } else {
        tracing::warn!("form refused: CSRF token mismatch");
        Err(PageError::Forbidden("csrf token mismatch"))
    }
}
