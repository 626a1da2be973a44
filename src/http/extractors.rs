//! Request extractors: who is signed in, and where the request came from.

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use std::future::{Ready, ready};

use crate::authn::session::{self, Authenticated, Lookup, Origin, SessionToken};
use crate::http::cookies;
use crate::http::error::PageError;
use crate::state::AppState;

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, PageError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| PageError::Internal(anyhow::anyhow!("no app state")))
}

/// The session cookie as the browser sent it, not yet checked.
pub fn session_cookie(req: &HttpRequest, state: &AppState) -> Option<SessionToken> {
    req.cookie(&cookies::name(&state.config, cookies::SESSION))
        .map(|c| SessionToken::from_cookie(c.value()))
        .filter(|t| !t.expose().is_empty())
}

/// The browser's session, if any, resolved against the database.
pub struct MaybeSignedIn(pub Lookup);

impl MaybeSignedIn {
    pub fn authenticated(&self) -> Option<&Authenticated> {
        match &self.0 {
            Lookup::Active(auth) => Some(auth),
            _ => None,
        }
    }
}

impl FromRequest for MaybeSignedIn {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req)?;
            let Some(token) = session_cookie(&req, &state) else {
                return Ok(MaybeSignedIn(Lookup::None));
            };
            Ok(MaybeSignedIn(session::resolve(&state, &token).await?))
        })
    }
}

/// A signed-in person; anyone else is sent to the sign-in page and brought back here after.
pub struct SignedIn(pub Authenticated);

impl FromRequest for SignedIn {
    type Error = PageError;
    type Future = LocalBoxFuture<'static, Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let maybe = MaybeSignedIn::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let return_to = if req.method() == actix_web::http::Method::GET {
                req.uri()
                    .path_and_query()
                    .map(|pq| pq.as_str().to_owned())
                    .unwrap_or_else(|| "/".to_owned())
            } else {
                // A form posted without a session cannot be replayed after sign-in;
                // bring the person back to the page that holds the form.
                page_of_form(&req)
            };
            match maybe.await?.0 {
                Lookup::Active(auth) => Ok(SignedIn(*auth)),
                Lookup::Expired(_) => Err(PageError::SignInRequired {
                    return_to,
                    expired: true,
                }),
                Lookup::None => Err(PageError::SignInRequired {
                    return_to,
                    expired: false,
                }),
            }
        })
    }
}

/// The page that shows the form posted to this address (where to return after
/// signing in again): account forms live on `/account`; the consent form posts to
/// its own address (`/consent?request=…`).
fn page_of_form(req: &HttpRequest) -> String {
    let path = req.path();
    if path == "/session/extend" {
        let back = url::form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == "return_to")
            .map(|(_, v)| v.into_owned());
        return safe_return_to(back.as_deref());
    }
    if path.starts_with("/account") {
        return "/account".to_owned();
    }
    req.uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/account".to_owned())
}

/// The client's address: the peer, or what a trusted proxy (`login.trusted_proxies`)
/// says in `X-Forwarded-For`.
pub fn client_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let state = req.app_data::<web::Data<AppState>>();
    let trusted = state
        .map(|s| s.config.login.trusted_proxies.as_slice())
        .unwrap_or_default();
    let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
    crate::authn::risk::client_ip(peer, forwarded, trusted)
}

/// The client's address and user agent, for the session list and audit.
pub struct ClientOrigin(pub Origin);

impl FromRequest for ClientOrigin {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let ip = client_ip(req).map(|ip| ip.to_string());
        let user_agent = req
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        ready(Ok(ClientOrigin(Origin { ip, user_agent })))
    }
}

/// Only same-site relative paths may be used as a place to return to after sign-in;
/// anything else (absolute URLs, `//host`, `/\host`, control characters) becomes `/account`.
pub fn safe_return_to(raw: Option<&str>) -> String {
    match raw {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && path.len() <= 2048
                && !path.chars().any(|c| c.is_control() || c == '\\') =>
        {
            path.to_owned()
        }
        _ => "/account".to_owned(),
    }
}

/// The caller of the admin API, from `Authorization: Bearer …` (RFC 6750 §2.1;
/// tokens in the URL or body are not accepted here).
pub struct AdminCaller(pub crate::admin::Principal);

impl FromRequest for AdminCaller {
    type Error = crate::http::error::AdminHttpError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        use crate::admin::AdminError;
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req).map_err(|_| AdminError::Internal(anyhow::anyhow!("no app state")))?;
            let header = req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let token = match header.and_then(|v| v.split_once(' ')) {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                    token.trim().to_owned()
                }
                _ => return Err(AdminError::Unauthenticated(None).into()),
            };
            let ip = client_ip(&req).map(|a| a.to_string());
            Ok(AdminCaller(crate::admin::authenticate(&state, &token, ip).await?))
        })
    }
}

/// The raw body of an OAuth back-channel request (/token, /revoke, /introspect).
/// A body over `http.max_body_bytes` is refused in the endpoint's own format:
/// RFC 6749 §5.2 JSON `invalid_request` with 413, not actix's plain text.
pub struct OAuthBody(pub web::Bytes);

impl FromRequest for OAuthBody {
    type Error = crate::http::error::OAuthJsonError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.config.http.max_body_bytes)
            .unwrap_or(64 * 1024);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            body.await.map(OAuthBody).map_err(|error| {
                use crate::oauth::error::OAuthError;
                match error.as_error::<actix_web::error::PayloadError>() {
                    Some(actix_web::error::PayloadError::Overflow) => OAuthError::RequestTooLarge { limit }.into(),
                    _ => OAuthError::InvalidRequest("the request body could not be read".into()).into(),
                }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::safe_return_to;

    #[test]
    fn return_to_stays_on_site() {
        assert_eq!(safe_return_to(Some("/account?tab=sessions")), "/account?tab=sessions");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/a\\b",
            "/x\r\nSet-Cookie: a=b",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_return_to(Some(bad)), "/account", "{bad:?}");
        }
        assert_eq!(safe_return_to(None), "/account");
    }
}
