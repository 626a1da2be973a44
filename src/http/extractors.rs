//! Request extractors: who is signed in (`MaybeSignedIn`, `SignedIn`), where the
//! request came from (`ClientOrigin`), which OAuth client calls the back channel
//! (`ClientAuth`), the bearer token of a protected resource (`BearerToken`) and
//! the admin API's caller (`AdminCaller`); and the cookies the sign-in flow reads.

use std::future::{Ready, ready};
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::future::LocalBoxFuture;

use crate::authn::session::{self, Authenticated, Lookup, Origin, SessionToken};
use crate::http::cookies;
use crate::http::error::{AdminHttpError, BearerHttpError, OAuthJsonError, PageError};
use crate::http_common::bearer::{self, MalformedBearer};
use crate::oauth::clients::Client;
use crate::oauth::error::OAuthError;
use crate::oauth::params::Params;
use crate::oidc::userinfo::BearerError;
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

/// The second step's cookie (`oxidp_mfa`), not yet checked.
pub fn second_step_cookie(req: &HttpRequest, state: &AppState) -> Option<String> {
    req.cookie(&cookies::name(&state.config, cookies::MFA))
        .map(|c| c.value().to_owned())
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
    // Every `X-Forwarded-For` line, in order, as one list (RFC 9110 §5.3): a proxy
    // such as HAProxy (`option forwardfor`) adds its own line after one the client
    // sent, and reading only the first would believe the client's.
    let lines: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    let forwarded = (!lines.is_empty()).then(|| lines.join(","));
    crate::authn::risk::client_ip(peer, forwarded.as_deref(), trusted)
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
            .get(header::USER_AGENT)
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
    type Error = AdminHttpError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        use crate::admin::AdminError;
        let req = req.clone();
        Box::pin(async move {
            let state = state_of(&req).map_err(|_| AdminError::Internal(anyhow::anyhow!("no app state")))?;
            let Ok(Some(token)) = bearer::BearerToken::from_headers(req.headers()) else {
                return Err(AdminError::Unauthenticated(None).into());
            };
            let ip = client_ip(&req).map(|a| a.to_string());
            Ok(AdminCaller(
                crate::admin::authenticate(&state, token.expose(), ip).await?,
            ))
        })
    }
}

/// The access token of a request to oxidp's own protected resource (userinfo):
/// in the `Authorization` header (RFC 6750 §2.1) or, in a form POST, the
/// `access_token` field (§2.2), not both; a token in the URL (§2.3) is refused.
pub struct BearerToken(pub bearer::BearerToken);

impl FromRequest for BearerToken {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Bytes::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let body = body.await?;
            bearer_of(&req, &body)
                .map(BearerToken)
                .map_err(|e| BearerHttpError(e).into())
        })
    }
}

fn bearer_of(req: &HttpRequest, body: &[u8]) -> Result<bearer::BearerToken, BearerError> {
    let from_header = match bearer::BearerToken::from_headers(req.headers()) {
        Ok(Some(token)) => Some(token),
        // Another scheme (`Basic …`): no bearer token, whatever the body says.
        Ok(None) if req.headers().contains_key(header::AUTHORIZATION) => return Err(BearerError::Missing),
        Ok(None) => None,
        Err(MalformedBearer(why)) => return Err(BearerError::InvalidRequest(why)),
    };
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let from_body = if req.method() == actix_web::http::Method::POST && !body.is_empty() && is_form {
        Params::parse(body)
            .map_err(|_| BearerError::InvalidRequest("malformed form body"))?
            .get("access_token")
            .map(str::to_owned)
    } else {
        None
    };
    if req.query_string().contains("access_token=") {
        return Err(BearerError::InvalidRequest(
            "send the access token in the Authorization header, not the URL",
        ));
    }
    match (from_header, from_body) {
        (Some(_), Some(_)) => Err(BearerError::InvalidRequest(
            "the access token was sent more than one way",
        )),
        (Some(token), None) => Ok(token),
        (None, Some(token)) if !token.is_empty() => Ok(bearer::BearerToken::new(token)),
        _ => Err(BearerError::Missing),
    }
}

/// The raw body of an OAuth back-channel request (/token, /revoke, /introspect).
/// A body over `http.max_body_bytes` is refused in the endpoint's own format:
/// RFC 6749 §5.2 JSON `invalid_request` with 413, not actix's plain text.
pub struct OAuthBody(pub web::Bytes);

impl FromRequest for OAuthBody {
    type Error = OAuthJsonError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|s| s.config.http.max_body_bytes)
            .unwrap_or(64 * 1024);
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            body.await
                .map(OAuthBody)
                .map_err(|error| match error.as_error::<actix_web::error::PayloadError>() {
                    Some(actix_web::error::PayloadError::Overflow) => OAuthError::RequestTooLarge { limit }.into(),
                    _ => OAuthError::InvalidRequest("the request body could not be read".into()).into(),
                })
        })
    }
}

/// The OAuth client calling /token, /revoke or /introspect, authenticated
/// (`oauth::client_auth::authenticate_limited`: RFC 6749 §2.3, with the limit on
/// failures), and the request's form parameters.
pub struct ClientAuth {
    pub client: Arc<Client>,
    pub params: Params,
}

impl FromRequest for ClientAuth {
    type Error = OAuthJsonError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = OAuthBody::from_request(req, payload);
        let req = req.clone();
        Box::pin(async move {
            let OAuthBody(body) = body.await?;
            let state = req
                .app_data::<web::Data<AppState>>()
                .cloned()
                .ok_or(OAuthError::ServerError)?;
            let params = form_params(&req, &body)?;
            let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            let ip = client_ip(&req).map(|ip| ip.to_string());
            let client =
                crate::oauth::client_auth::authenticate_limited(&state, authorization, &params, ip.as_deref()).await?;
            Ok(ClientAuth { client, params })
        })
    }
}

/// Parses a form-encoded body of a back-channel endpoint.
fn form_params(req: &HttpRequest, body: &[u8]) -> Result<Params, OAuthError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded".into(),
        ));
    }
    Params::parse(body)
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
