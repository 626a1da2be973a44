//! Introspection (RFC 7662) for revocation-sensitive routes: asks the issuer, over
//! HTTP and authenticated as a registered client, whether a locally verified token
//! is still active. Answers are cached (by the token's SHA-256) for at most
//! `cache_secs`; a circuit breaker (`breaker`) keeps an unreachable issuer from
//! slowing every request, and the configured fallback decides what happens while
//! it is open.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::breaker::{Breaker, Decision, State};
use super::{BearerError, Principal, RsMetrics};
use crate::clock::Clock;
use crate::config::{IntrospectionFallback, IntrospectionMode};

/// How long one introspection (or the discovery look-up of its endpoint) may take.
pub const TIMEOUT: Duration = Duration::from_millis(500);

/// Introspection settings.
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    pub mode: IntrospectionMode,
    pub client_id: String,
    pub client_secret: SecretString,
    pub cache_secs: i64,
    pub fallback: IntrospectionFallback,
    pub cache_capacity: usize,
}

impl IntrospectionSettings {
    pub fn off() -> Self {
        Self {
            mode: IntrospectionMode::Off,
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
            cache_secs: 0,
            fallback: IntrospectionFallback::Local,
            cache_capacity: 1,
        }
    }
}

/// Which path let a request through (metrics label and log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Local JWT verification only (non-sensitive route, or introspection off).
    Local,
    /// A fresh introspection answer.
    Introspection,
    /// A cached introspection answer.
    IntrospectionCache,
    /// The issuer could not be asked (breaker open or call failed); `local` fallback.
    Fallback,
}

impl Served {
    pub fn as_str(self) -> &'static str {
        match self {
            Served::Local => "local",
            Served::Introspection => "introspection",
            Served::IntrospectionCache => "introspection-cache",
            Served::Fallback => "fallback",
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("discovery names no introspection_endpoint")]
    NoEndpoint,
    #[error("the answer has no boolean `active`")]
    Malformed,
}

/// How often the log names one caller served by the `local` fallback.
const FALLBACK_LOG_SECS: i64 = 60;
/// Callers remembered for that (bounded; a forgotten one is logged again).
const FALLBACK_LOG_CALLERS: usize = 10_000;

/// Whether a fallback for a caller last logged at `last` is logged again at `now`.
fn fallback_log_due(last: Option<i64>, now: i64) -> bool {
    last.is_none_or(|at| now - at >= FALLBACK_LOG_SECS)
}

pub struct Introspector {
    settings: IntrospectionSettings,
    issuer: String,
    realm: String,
    endpoint: RwLock<Option<String>>,
    breaker: Mutex<Breaker>,
    /// token SHA-256 → (active, reuse until).
    cache: quick_cache::sync::Cache<[u8; 32], (bool, i64)>,
    /// (client_id, sub) → when a fallback for it was last logged.
    fallback_logged: quick_cache::sync::Cache<(String, String), i64>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    metrics: Arc<RsMetrics>,
}

impl Introspector {
    pub fn new(
        settings: IntrospectionSettings,
        issuer: String,
        realm: String,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
        metrics: Arc<RsMetrics>,
    ) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(settings.cache_capacity.max(1)),
            fallback_logged: quick_cache::sync::Cache::new(FALLBACK_LOG_CALLERS),
            settings,
            issuer,
            realm,
            endpoint: RwLock::new(None),
            breaker: Mutex::new(Breaker::new(Breaker::THRESHOLD, Breaker::OPEN_SECS)),
            http,
            clock,
            metrics,
        }
    }

    pub fn mode(&self) -> IntrospectionMode {
        self.settings.mode
    }

    /// The breaker's current state (for `/metrics` and `/readyz`).
    pub fn breaker_state(&self) -> State {
        self.breaker.lock().unwrap_or_else(|e| e.into_inner()).state()
    }

    /// Decides whether a locally verified token may serve a sensitive request.
    pub async fn check(
        &self,
        token: &str,
        token_digest: [u8; 32],
        principal: &Principal,
    ) -> Result<Served, BearerError> {
        let now = self.clock.now();
        if let Some((active, until)) = self.cache.get(&token_digest) {
            if until > now {
                return self.answer(active, Served::IntrospectionCache);
            }
            self.cache.remove(&token_digest);
        }
        let decision = self.breaker.lock().unwrap_or_else(|e| e.into_inner()).decide(now);
        let retry_after = match decision {
            Decision::Refuse { retry_after } => retry_after,
            Decision::Call | Decision::Probe => {
                if decision == Decision::Probe {
                    tracing::info!(breaker = "half_open", "introspection breaker: probing the issuer");
                }
                match self.call(token, token_digest, principal, now).await {
                    Ok(active) => {
                        self.record(|b| b.success());
                        return self.answer(active, Served::Introspection);
                    }
                    Err(error) => {
                        RsMetrics::inc(&self.metrics.introspection_failures);
                        tracing::warn!(%error, "introspection failed");
                        self.record(|b| b.failure(now));
                        1
                    }
                }
            }
        };
        match self.settings.fallback {
            IntrospectionFallback::Local => {
                // Every such request is counted (served_by = fallback); the log names
                // each caller once a minute, so an outage under load is not a log flood.
                let caller = (principal.client_id.clone(), principal.sub.clone());
                if fallback_log_due(self.fallback_logged.get(&caller), now) {
                    self.fallback_logged.insert(caller, now);
                    tracing::warn!(
                        served_by = Served::Fallback.as_str(),
                        client_id = %principal.client_id,
                        sub = %principal.sub,
                        breaker = self.breaker_state().name(),
                        "sensitive requests served on the locally verified token: the issuer could not be asked \
                         (logged once a minute per caller; every one is counted)"
                    );
                }
                Ok(Served::Fallback)
            }
            IntrospectionFallback::Deny => {
                RsMetrics::inc(&self.metrics.introspection_denied);
                Err(BearerError::unavailable_introspection(&self.realm, retry_after))
            }
        }
    }

    fn answer(&self, active: bool, served: Served) -> Result<Served, BearerError> {
        if active {
            Ok(served)
        } else {
            RsMetrics::inc(&self.metrics.introspection_inactive);
            tracing::debug!(served_by = served.as_str(), "token reported inactive by the issuer");
            Err(BearerError::invalid_token(
                &self.realm,
                "the token is no longer active (revoked or disabled)".into(),
            ))
        }
    }

    /// Applies an outcome to the breaker, logging and counting state changes.
    fn record(&self, outcome: impl FnOnce(&mut Breaker) -> Option<State>) {
        let changed = outcome(&mut self.breaker.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(state) = changed {
            if let State::Open { .. } = state {
                RsMetrics::inc(&self.metrics.breaker_opened);
            } else {
                RsMetrics::inc(&self.metrics.breaker_closed);
            }
            tracing::warn!(breaker = state.name(), "introspection breaker changed state");
        }
    }

    /// One introspection call: the endpoint (from discovery, looked up once), then
    /// RFC 7662 §2 with client_secret_basic. Caches the answer.
    async fn call(&self, token: &str, digest: [u8; 32], principal: &Principal, now: i64) -> Result<bool, CallError> {
        let endpoint = self.endpoint().await?;
        RsMetrics::inc(&self.metrics.introspection_calls);
        let answer: Value = self
            .http
            .post(&endpoint)
            .timeout(TIMEOUT)
            .basic_auth(
                &self.settings.client_id,
                Some(self.settings.client_secret.expose_secret()),
            )
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let active = answer
            .get("active")
            .and_then(Value::as_bool)
            .ok_or(CallError::Malformed)?;
        let until = (now + self.settings.cache_secs).min(principal.exp);
        if until > now {
            self.cache.insert(digest, (active, until));
        }
        Ok(active)
    }

    async fn endpoint(&self) -> Result<String, CallError> {
        if let Some(endpoint) = self.endpoint.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(endpoint);
        }
        let discovery: Value = self
            .http
            .get(format!("{}/.well-known/openid-configuration", self.issuer))
            .timeout(TIMEOUT)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let endpoint = discovery
            .get("introspection_endpoint")
            .and_then(Value::as_str)
            .ok_or(CallError::NoEndpoint)?
            .to_owned();
        *self.endpoint.write().unwrap_or_else(|e| e.into_inner()) = Some(endpoint.clone());
        Ok(endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_caller_is_logged_at_most_once_a_minute() {
        assert!(fallback_log_due(None, 1_000));
        assert!(!fallback_log_due(Some(1_000), 1_000));
        assert!(!fallback_log_due(Some(1_000), 1_059));
        assert!(fallback_log_due(Some(1_000), 1_060));
    }
}
