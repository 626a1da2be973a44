//! The key-set cache: fetched from the issuer's discovery document (`jwks_uri`) at
//! start, refreshed in the background (Cache-Control `max-age`, at least every
//! `refresh_secs`), refetched on an unknown `kid` at most twice per
//! `min_refetch_secs` across all requests (the second no sooner than
//! `SECOND_REFETCH_AFTER` after the first), and kept as "last known good" for up to
//! `max_stale_secs` while the issuer is unreachable — persisted in the database.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::storage;
use super::verify::Key;
use super::{RsMetrics, Settings};
use crate::clock::Clock;
use crate::db::Db;

/// How long one discovery or JWKS request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// A usable key set and where it came from.
#[derive(Debug)]
pub struct KeySet {
    pub keys: Vec<Key>,
    pub fetched_at: i64,
    pub from_database: bool,
}

/// The key-set state as `/readyz` reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeySetStatus {
    /// `fresh`, `stale` (issuer unreachable, last good set in use), or `none`.
    pub state: &'static str,
    pub keys: usize,
    pub age_secs: Option<i64>,
    /// `network` or `database` (loaded at start, not refetched since).
    pub source: Option<&'static str>,
    pub fetches: u64,
    pub fetch_failures: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("discovery document: {0}")]
    Discovery(&'static str),
    #[error("the JWKS holds no usable signing key")]
    NoUsableKey,
    #[error("the JWKS is not a JWK Set: {0}")]
    Jwks(String),
    #[error("storing the key set failed: {0}")]
    Store(#[from] crate::db::DbError),
}

/// An unknown `kid` may be refetched a second time within the same window, this
/// long after the first: a key rotated at once (`keys rotate --now`) reaches the
/// instances of a cluster up to a few hundred milliseconds apart, so the first
/// refetch may land on an instance that does not publish it yet while another
/// already signs with it. Without the second, every token of the new key was
/// refused for `min_refetch_secs` — and through an IdP outage starting then,
/// until the IdP came back.
pub const SECOND_REFETCH_AFTER: Duration = Duration::from_millis(500);

/// What an unknown `kid` may do in the current window.
enum Claim {
    /// Refetch now (the window's first).
    Fetch,
    /// The second refetch is due after this long.
    Wait(Duration),
    /// Both refetches of the window are taken.
    Suppressed,
}

/// The unknown-`kid` refetches of the current window.
struct RefetchWindow {
    /// When the window opened (the clock's seconds).
    opened_at: i64,
    /// When its first refetch started (monotonic).
    first: Instant,
    second_taken: bool,
}

struct Inner {
    issuer: String,
    refresh_secs: u64,
    min_refetch_secs: i64,
    max_stale_secs: i64,
    current: RwLock<Option<Arc<KeySet>>>,
    refetches: Mutex<Option<RefetchWindow>>,
    fetch_lock: tokio::sync::Mutex<()>,
    http: reqwest::Client,
    db: Db,
    clock: Arc<dyn Clock>,
    metrics: Arc<RsMetrics>,
}

/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct KeyCache(Arc<Inner>);

impl KeyCache {
    pub fn new(settings: &Settings, db: Db, clock: Arc<dyn Clock>, metrics: Arc<RsMetrics>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self(Arc::new(Inner {
            issuer: settings.issuer.clone(),
            refresh_secs: settings.refresh_secs,
            min_refetch_secs: settings.min_refetch_secs,
            max_stale_secs: settings.max_stale_secs,
            current: RwLock::new(None),
            refetches: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            http,
            db,
            clock,
            metrics,
        })))
    }

    /// The key set to verify with, unless none is known or it is older than `max_stale_secs`.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        let set = self.0.current.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        (self.0.clock.now() - set.fetched_at <= self.0.max_stale_secs).then_some(set)
    }

    /// True when the key set in use has missed its refreshes (the issuer is unreachable).
    pub fn is_stale(&self, now: i64) -> bool {
        self.0
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|set| now - set.fetched_at > self.0.refresh_secs as i64 + self.0.min_refetch_secs)
    }

    pub fn status(&self) -> KeySetStatus {
        let now = self.0.clock.now();
        let set = self.0.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        let usable = self.current().is_some();
        KeySetStatus {
            state: match &set {
                Some(_) if !usable => "none",
                Some(_) if self.is_stale(now) => "stale",
                Some(_) => "fresh",
                None => "none",
            },
            keys: set.as_ref().map_or(0, |s| s.keys.len()),
            age_secs: set.as_ref().map(|s| now - s.fetched_at),
            source: set
                .as_ref()
                .map(|s| if s.from_database { "database" } else { "network" }),
            fetches: self.0.metrics.jwks_fetches.load(Ordering::Relaxed),
            fetch_failures: self.0.metrics.jwks_fetch_failures.load(Ordering::Relaxed),
        }
    }

    /// Loads the persisted last good key set, if it is not too old. Errors are logged:
    /// a missing stored set only means waiting for the issuer.
    pub async fn load_persisted(&self) {
        let issuer = self.0.issuer.clone();
        match self.0.db.run(move |conn| storage::load(conn, &issuer)).await {
            Ok(Some((jwks, fetched_at))) => match parse_jwks(jwks.as_bytes()) {
                Ok(keys) if self.0.clock.now() - fetched_at <= self.0.max_stale_secs => {
                    tracing::info!(
                        keys = keys.len(),
                        fetched_at,
                        "using the persisted key set until the issuer answers"
                    );
                    self.install(KeySet {
                        keys,
                        fetched_at,
                        from_database: true,
                    });
                }
                Ok(_) => tracing::warn!("the persisted key set is older than commerce.jwks_max_stale_secs; ignored"),
                Err(error) => tracing::warn!(%error, "the persisted key set is unreadable; ignored"),
            },
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "loading the persisted key set failed"),
        }
    }

    fn install(&self, set: KeySet) {
        *self.0.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(set));
    }

    /// An unknown `kid`: refetch, at most twice per `min_refetch_secs` across all
    /// requests, the second no sooner than `SECOND_REFETCH_AFTER` after the first.
    /// A request whose first refetch did not bring the `kid`, or that came within
    /// `SECOND_REFETCH_AFTER` of it, waits for the second (at most that long plus
    /// one fetch). Returns whether the key set in use now holds `kid`.
    pub async fn refetch_for_unknown_kid(&self, kid: &str) -> bool {
        // A token without a `kid` is tried against the whole refreshed set.
        let known = || {
            self.current()
                .is_some_and(|set| kid.is_empty() || set.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
        };
        match self.claim_refetch() {
            Claim::Fetch => {
                let _ = self.refresh().await;
                if known() {
                    return true;
                }
            }
            Claim::Suppressed => return known(),
            Claim::Wait(_) => {}
        }
        // A first refetch that did not bring the `kid`, or one too recent: the
        // window's second refetch, in its time.
        loop {
            match self.claim_refetch() {
                Claim::Wait(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                Claim::Wait(_) => break,
                Claim::Fetch => {
                    // A new window began meanwhile: this is its first refetch.
                    let _ = self.refresh().await;
                    return known();
                }
                Claim::Suppressed => {
                    // Another request took the second: wait for its fetch to end.
                    drop(self.0.fetch_lock.lock().await);
                    return known();
                }
            }
        }
        if self.claim_refetch_second() {
            let _ = self.refresh().await;
        } else {
            drop(self.0.fetch_lock.lock().await);
        }
        known()
    }

    /// Whether this request may refetch now, must wait for the window's second
    /// refetch, or may not refetch at all.
    fn claim_refetch(&self) -> Claim {
        let now = self.0.clock.now();
        let mut window = self.0.refetches.lock().unwrap_or_else(|e| e.into_inner());
        match window.as_mut() {
            Some(w) if now - w.opened_at < self.0.min_refetch_secs => {
                if w.second_taken {
                    RsMetrics::inc(&self.0.metrics.jwks_refetch_suppressed);
                    Claim::Suppressed
                } else {
                    Claim::Wait(SECOND_REFETCH_AFTER.saturating_sub(w.first.elapsed()))
                }
            }
            _ => {
                *window = Some(RefetchWindow {
                    opened_at: now,
                    first: Instant::now(),
                    second_taken: false,
                });
                Claim::Fetch
            }
        }
    }

    /// Takes the window's second refetch, once `SECOND_REFETCH_AFTER` has passed;
    /// false when another request took it (or a new window began: then the next
    /// unknown `kid` opens it).
    fn claim_refetch_second(&self) -> bool {
        let now = self.0.clock.now();
        let mut window = self.0.refetches.lock().unwrap_or_else(|e| e.into_inner());
        match window.as_mut() {
            Some(w) if now - w.opened_at < self.0.min_refetch_secs && !w.second_taken => {
                w.second_taken = true;
                true
            }
            _ => {
                RsMetrics::inc(&self.0.metrics.jwks_refetch_suppressed);
                false
            }
        }
    }

    /// Fetches discovery and the JWKS, installs and persists the key set. Returns
    /// the JWKS response's `max-age`, if any. On failure the last good set stays.
    pub async fn refresh(&self) -> Result<Option<u64>, FetchError> {
        let _one_at_a_time = self.0.fetch_lock.lock().await;
        RsMetrics::inc(&self.0.metrics.jwks_fetches);
        match self.fetch().await {
            Ok((keys, raw, max_age)) => {
                let fetched_at = self.0.clock.now();
                let issuer = self.0.issuer.clone();
                let stored = self
                    .0
                    .db
                    .transaction(move |conn| storage::save(conn, &issuer, &raw, fetched_at))
                    .await;
                if let Err(error) = stored {
                    tracing::warn!(%error, "persisting the key set failed; serving it from memory");
                }
                tracing::debug!(keys = keys.len(), "key set refreshed");
                self.install(KeySet {
                    keys,
                    fetched_at,
                    from_database: false,
                });
                Ok(max_age)
            }
            Err(error) => {
                RsMetrics::inc(&self.0.metrics.jwks_fetch_failures);
                let age = self.current().map(|s| self.0.clock.now() - s.fetched_at);
                tracing::warn!(%error, last_good_age_secs = ?age, "key set refresh failed; keeping the last good key set");
                Err(error)
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<Key>, String, Option<u64>), FetchError> {
        let discovery_url = format!("{}/.well-known/openid-configuration", self.0.issuer);
        let discovery: Value = self
            .0
            .http
            .get(&discovery_url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        // OIDC Discovery §4.3: the document must name the issuer we asked.
        if discovery
            .get("issuer")
            .and_then(Value::as_str)
            .map(|i| i.trim_end_matches('/'))
            != Some(self.0.issuer.as_str())
        {
            return Err(FetchError::Discovery("`issuer` does not match"));
        }
        let jwks_uri = discovery
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or(FetchError::Discovery("no `jwks_uri`"))?;
        let response = self.0.http.get(jwks_uri).send().await?.error_for_status()?;
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = response.bytes().await?;
        let keys = parse_jwks(&body)?;
        let raw = String::from_utf8(body.to_vec()).map_err(|e| FetchError::Jwks(e.to_string()))?;
        Ok((keys, raw, max_age))
    }

    /// Runs the background refresh until the returned task is aborted: after a
    /// success waits min(`max-age`, `refresh_secs`), after a failure `min_refetch_secs`.
    pub fn spawn_refresh(&self, first_wait: Duration) -> tokio::task::JoinHandle<()> {
        let cache = self.clone();
        tokio::spawn(async move {
            let mut wait = first_wait;
            loop {
                tokio::time::sleep(wait).await;
                let refresh = cache.0.refresh_secs.max(1);
                wait = Duration::from_secs(match cache.refresh().await {
                    Ok(max_age) => max_age.unwrap_or(refresh).clamp(1, refresh),
                    Err(_) => (cache.0.min_refetch_secs.max(1) as u64).min(refresh),
                });
            }
        })
    }

    /// The HTTP client used for the issuer (shared with introspection).
    pub fn http(&self) -> reqwest::Client {
        self.0.http.clone()
    }

    pub fn refresh_secs(&self) -> u64 {
        self.0.refresh_secs
    }
}

/// The usable keys of a JWK Set document; an empty result is an error ("garbage").
fn parse_jwks(body: &[u8]) -> Result<Vec<Key>, FetchError> {
    let set = josekit::jwk::JwkSet::from_bytes(body).map_err(|e| FetchError::Jwks(e.to_string()))?;
    let keys: Vec<Key> = set.keys().into_iter().filter_map(Key::from_jwk).collect();
    if keys.is_empty() {
        return Err(FetchError::NoUsableKey);
    }
    Ok(keys)
}

/// `max-age` of a Cache-Control value.
fn max_age(value: &str) -> Option<u64> {
    value.split(',').find_map(|directive| {
        let (name, seconds) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| seconds.trim().parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(super::max_age("public, max-age=300"), Some(300));
        assert_eq!(super::max_age("no-cache"), None);
        assert_eq!(super::max_age("Max-Age = 5"), Some(5));
    }
}
