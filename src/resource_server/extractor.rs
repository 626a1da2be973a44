//! `Authenticated` and `Sensitive`: the actix extractors that yield the verified
//! principal, or answer with the RFC 6750 challenge. `Sensitive` marks a
//! revocation-sensitive route (it moves money, stock or lifecycle state): with
//! `introspection = sensitive` (the default) such requests are also checked by
//! introspection; `Authenticated` routes only with `introspection = all`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};

use super::{BearerError, Principal, ResourceServer};
use crate::http_common::{BearerToken, MalformedBearer};

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
fn bearer(req: &HttpRequest, realm: &str) -> Result<BearerToken, BearerError> {
    match BearerToken::from_headers(req.headers()) {
        Ok(Some(token)) => Ok(token),
        Ok(None) => Err(BearerError::missing(realm)),
        Err(MalformedBearer(why)) => Err(BearerError::invalid_request(realm, why)),
    }
}

fn extract(req: &HttpRequest, sensitive: bool) -> Pin<Box<dyn Future<Output = Result<Authenticated, BearerError>>>> {
    let server = req
        .app_data::<web::Data<ResourceServer>>()
        .expect("ResourceServer is registered as app data")
        .clone();
    let token = bearer(req, &server.realm);
    Box::pin(async move {
        let (principal, _served) = server.authorize(token?.expose(), sensitive).await?;
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
