//! A reusable OAuth 2.0 protected resource (RFC 6750, RFC 9068): verifies JWT access
//! tokens locally against the issuer's published keys, caches the key set (persisted,
//! so a restart during an IdP outage still serves) and the verified tokens, and
//! yields the verified `Principal` to actix handlers through an extractor.
//!
//! It knows the identity provider only over HTTP (OIDC discovery and `jwks_uri`), like
//! any third-party resource server, so it works against any standards-compliant issuer.
//! It must not import the IdP's internals (oauth, oidc, authn, rbac, accounts, admin).

pub mod breaker;
pub mod error;
pub mod extractor;
pub mod introspection;
pub mod keys;
pub mod storage;
pub mod verify;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::config::IntrospectionMode;
use crate::db::Db;

pub use error::BearerError;
pub use extractor::{Authenticated, Sensitive};
pub use introspection::{IntrospectionSettings, Introspector, Served};
pub use keys::{KeyCache, KeySetStatus};
pub use verify::{Verifier, VerifyError};

/// Who called: the verified claims a handler decides on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Principal {
    /// The subject: a person, or the client itself for client_credentials tokens.
    pub sub: String,
    pub client_id: String,
    /// Permissions from the `permissions` claim (issued for this audience), or,
    /// for providers that have no such claim, the `scope` values.
    pub permissions: BTreeSet<String>,
    pub exp: i64,
}

impl Principal {
    /// True for service accounts: a client_credentials token names the client as subject.
    pub fn is_service_account(&self) -> bool {
        self.sub == self.client_id
    }

    pub fn has(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }
}

/// Counters, for `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct RsMetrics {
    /// Key-set fetches attempted (discovery + JWKS) and those that failed.
    pub jwks_fetches: AtomicU64,
    pub jwks_fetch_failures: AtomicU64,
    /// Unknown-`kid` refetches refused by `jwks_min_refetch_secs`.
    pub jwks_refetch_suppressed: AtomicU64,
    /// Tokens served from the verified-token cache and those verified by signature.
    pub token_cache_hits: AtomicU64,
    pub tokens_verified: AtomicU64,
    pub tokens_rejected: AtomicU64,
    /// Requests served while the key set was older than the refresh interval (IdP unreachable).
    pub served_stale: AtomicU64,
    /// Authenticated requests by the path that let them through (see `Served`).
    pub served_local: AtomicU64,
    pub served_introspection: AtomicU64,
    pub served_introspection_cache: AtomicU64,
    pub served_fallback: AtomicU64,
    /// Introspection calls made, failed (timeout, network, non-2xx, garbage), tokens
    /// reported inactive, and sensitive requests refused because the issuer could
    /// not be asked (`introspection_fallback = deny`).
    pub introspection_calls: AtomicU64,
    pub introspection_failures: AtomicU64,
    pub introspection_inactive: AtomicU64,
    pub introspection_denied: AtomicU64,
    /// Introspection breaker transitions into open, and out of open/half-open into closed.
    pub breaker_opened: AtomicU64,
    pub breaker_closed: AtomicU64,
}

impl RsMetrics {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Settings of a resource server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub audience: String,
    /// The `realm` of `WWW-Authenticate` challenges.
    pub realm: String,
    pub refresh_secs: u64,
    pub min_refetch_secs: i64,
    pub max_stale_secs: i64,
    pub token_cache_capacity: usize,
    pub introspection: IntrospectionSettings,
}

/// The resource server: verifier, key-set cache and verified-token cache.
pub struct ResourceServer {
    pub settings: Settings,
    pub realm: Arc<str>,
    pub keys: KeyCache,
    verifier: Verifier,
    tokens: quick_cache::sync::Cache<[u8; 32], Arc<Principal>>,
    pub introspection: Introspector,
    pub metrics: Arc<RsMetrics>,
    clock: Arc<dyn Clock>,
}

impl ResourceServer {
    /// Builds the server and loads the persisted key set (if any, and not too stale).
    /// Call `KeyCache::refresh` / `spawn_refresh` to fetch from the issuer.
    pub async fn new(settings: Settings, db: Db, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let metrics = Arc::new(RsMetrics::default());
        let keys = KeyCache::new(&settings, db, clock.clone(), metrics.clone())?;
        keys.load_persisted().await;
        let introspection = Introspector::new(
            settings.introspection.clone(),
            settings.issuer.clone(),
            settings.realm.clone(),
            keys.http(),
            clock.clone(),
            metrics.clone(),
        );
        Ok(Self {
            introspection,
            realm: settings.realm.as_str().into(),
            verifier: Verifier::new(settings.issuer.clone(), settings.audience.clone()),
            tokens: quick_cache::sync::Cache::new(settings.token_cache_capacity),
            keys,
            settings,
            metrics,
            clock,
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Verifies a bearer token: from the cache when this exact token was verified
    /// before and has not expired; else by signature against the key set, refetching
    /// it (rate-limited) when the `kid` is unknown.
    pub async fn authenticate(&self, token: &str) -> Result<Arc<Principal>, BearerError> {
        let now = self.clock.now();
        // Past `max_stale_secs` without a good key set, nothing is trusted, not even
        // tokens verified earlier: answer 503 until the issuer is back.
        let Some(set) = self.keys.current() else {
            return Err(BearerError::unavailable(
                &self.settings.realm,
                self.settings.min_refetch_secs,
            ));
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(principal) = self.tokens.get(&digest) {
            if principal.exp + verify::SKEW_SECS > now {
                RsMetrics::inc(&self.metrics.token_cache_hits);
                self.note_staleness(now);
                return Ok(principal);
            }
            self.tokens.remove(&digest);
        }
        let result = match self.verifier.verify(token, &set.keys, now) {
            Err(VerifyError::UnknownKey(kid)) if self.keys.refetch_for_unknown_kid(&kid).await => {
                match self.keys.current() {
                    Some(set) => self.verifier.verify(token, &set.keys, now),
                    None => Err(VerifyError::UnknownKey("no key set".into())),
                }
            }
            other => other,
        };
        match result {
            Ok(principal) => {
                RsMetrics::inc(&self.metrics.tokens_verified);
                self.note_staleness(now);
                let principal = Arc::new(principal);
                self.tokens.insert(digest, principal.clone());
                Ok(principal)
            }
            Err(error) => {
                RsMetrics::inc(&self.metrics.tokens_rejected);
                // Debug, not info: a flood of forged tokens must not become a flood of log lines
                // (the refusals are counted in `tokens_rejected`).
                tracing::debug!(reason = %error, "bearer token refused");
                Err(BearerError::invalid_token(&self.settings.realm, error.description()))
            }
        }
    }

    /// Authenticates a request: local verification, then — for sensitive routes when
    /// `introspection = sensitive`, for every route when `all` — introspection (cached,
    /// behind the circuit breaker). Counts and logs which path served it.
    pub async fn authorize(&self, token: &str, sensitive: bool) -> Result<(Arc<Principal>, Served), BearerError> {
        let principal = self.authenticate(token).await?;
        let ask = match self.introspection.mode() {
            IntrospectionMode::Off => false,
            IntrospectionMode::Sensitive => sensitive,
            IntrospectionMode::All => true,
        };
        let served = if ask {
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            self.introspection.check(token, digest, &principal).await?
        } else {
            Served::Local
        };
        RsMetrics::inc(match served {
            Served::Local => &self.metrics.served_local,
            Served::Introspection => &self.metrics.served_introspection,
            Served::IntrospectionCache => &self.metrics.served_introspection_cache,
            Served::Fallback => &self.metrics.served_fallback,
        });
        tracing::debug!(served_by = served.as_str(), sensitive, "request authenticated");
        Ok((principal, served))
    }

    fn note_staleness(&self, now: i64) {
        if self.keys.is_stale(now) {
            RsMetrics::inc(&self.metrics.served_stale);
        }
    }

    /// Entries in the verified-token cache (bounded by `token_cache_capacity`).
    pub fn cached_tokens(&self) -> usize {
        self.tokens.len()
    }
}
