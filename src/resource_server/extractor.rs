//! `Authenticated` and `Sensitive`: the actix extractors that yield the verified
//! principal, or answer with the RFC 6750 challenge. `Sensitive` marks a
//! revocation-sensitive route (it moves money, stock or lifecycle state): with
//! `introspection = sensitive` (the default) such requests are also checked by
//! introspection; `Authenticated` routes only with `introspection = all`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};

use super::{BearerError, Principal, ResourceServer};

/// A request with a valid bearer token. Handlers check permissions with `require`.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Arc<Principal>,
    realm: Arc<str>,
}

impl Authenticated {
    /// RFC 6750 §3.1 `insufficient_scope` unless the token carries `permission`.
    pub fn require(&self, permission: &str) -> Result<&Principal, BearerError> {
        if self.principal.has(permission) {
            Ok(&self.principal)
        } else {
            Err(BearerError::insufficient_scope(&self.realm, permission))
        }
    }
}

/// The token of an `Authorization: Bearer …` header (RFC 6750 §2.1).
fn bearer<'a>(req: &'a HttpRequest, realm: &str) -> Result<&'a str, BearerError> {
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Err(BearerError::missing(realm));
    };
    let value = value
        .to_str()
        .map_err(|_| BearerError::invalid_request(realm, "the Authorization header is not ASCII"))?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::missing(realm));
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(BearerError::invalid_request(realm, "malformed bearer token"));
    }
    Ok(token)
}

fn extract(req: &HttpRequest, sensitive: bool) -> Pin<Box<dyn Future<Output = Result<Authenticated, BearerError>>>> {
    let server = req
        .app_data::<web::Data<ResourceServer>>()
        .expect("ResourceServer is registered as app data")
        .clone();
    let token = bearer(req, &server.realm).map(str::to_owned);
    Box::pin(async move {
        let (principal, _served) = server.authorize(&token?, sensitive).await?;
        Ok(Authenticated {
            principal,
            realm: server.realm.clone(),
        })
    })
}

impl FromRequest for Authenticated {
    type Error = BearerError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        extract(req, false)
    }
}

/// An `Authenticated` request on a revocation-sensitive route.
#[derive(Debug, Clone)]
pub struct Sensitive(pub Authenticated);

impl std::ops::Deref for Sensitive {
    type Target = Authenticated;
    fn deref(&self) -> &Authenticated {
        &self.0
    }
}

impl FromRequest for Sensitive {
    type Error = BearerError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let authenticated = extract(req, true);
        Box::pin(async move { authenticated.await.map(Sensitive) })
    }
}
