//! Cluster-wide sign-in rate limits in Redis (`redis_url`): the per-address and
//! per-account limits of `[login]` counted once for every instance, so N
//! instances do not allow N times the guesses.
//!
//! One Lua script applies GCRA (the generic cell rate algorithm, as governor does
//! in memory) to each key in turn, atomically, on Redis's clock. Keys are
//! `oxidp:<deployment>:rl:{ip|account}:<HMAC>`: the deployment is a digest of the
//! issuer, and addresses and usernames are HMACs under the login key, so Redis
//! never holds a raw address or username. Each call is bounded by `TIMEOUT`; when
//! Redis fails the caller falls back to its per-instance limiters (`risk::Limiters`)
//! for that check, and Redis is left alone for `PAUSE_AFTER_FAILURE` so an outage
//! does not add a timeout to every sign-in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

/// The longest a check waits for Redis before falling back.
pub const TIMEOUT: Duration = Duration::from_millis(100);
/// After a failure, checks use the per-instance limiters this long before Redis is tried again.
pub const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// At most one fallback warning per this period (the metric counts every one).
const WARN_EVERY_MS: i64 = 60_000;

/// GCRA over each key in turn; stops at the first refusal (earlier keys stay
/// counted, as with the in-memory limiters). ARGV: per key, the emission interval
/// in microseconds and the burst. Returns {1, 0} or {0, microseconds to wait}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local allow_at = tat + interval - interval * burst
  if allow_at > now then
    return {0, allow_at - now}
  end
  local new_tat = tat + interval
  redis.call('SET', key, string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
return {1, 0}
"#;

/// A limit: `per_minute` with `burst` at once (as `governor::Quota`).
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    interval_us: u64,
    burst: u32,
}

impl Rate {
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            interval_us: 60_000_000 / u64::from(per_minute.max(1)),
            burst: burst.max(1),
        }
    }
}

/// Which backend answered the last check, and how often the fallback did.
#[derive(Default)]
pub struct LimiterStatus {
    /// Checks answered by the per-instance limiters because Redis failed or was paused.
    fallbacks: AtomicU64,
    /// Redis is configured and answered the last check.
    redis_active: AtomicBool,
}

impl LimiterStatus {
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    pub fn redis_active(&self) -> bool {
        self.redis_active.load(Ordering::Relaxed)
    }
}

/// What kind of key (a prefix inside the deployment's namespace).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Ip,
    Account,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ip => "ip",
            Kind::Account => "account",
        }
    }
}

/// The Redis side of the limiters.
pub struct SharedLimits {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
    key: [u8; 32],
    status: Arc<LimiterStatus>,
    /// Unix ms until which Redis is not tried (after a failure).
    paused_until_ms: AtomicI64,
    last_warning_ms: AtomicI64,
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The key namespace of a deployment: a digest of its issuer.
pub fn prefix_for(issuer: &str) -> String {
    let digest = hex::encode(Sha256::digest(issuer.as_bytes()));
    format!("oxidp:{}:rl:", &digest[..16])
}

impl SharedLimits {
    /// A lazy connection to `url` (nothing is sent until the first check, so an
    /// instance starts while Redis is down). `key` is the login HMAC key.
    pub fn new(url: &str, issuer: &str, key: [u8; 32], status: Arc<LimiterStatus>) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("configuration key `redis_url`: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| anyhow::anyhow!("configuration key `redis_url`: {e}"))?;
        status.redis_active.store(true, Ordering::Relaxed);
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA),
            prefix: prefix_for(issuer),
            key,
            status,
            paused_until_ms: AtomicI64::new(0),
            last_warning_ms: AtomicI64::new(i64::MIN / 2),
        })
    }

    /// The key prefix of this deployment.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn redis_key(&self, kind: Kind, value: &str) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(kind.name().as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        format!(
            "{}{}:{}",
            self.prefix,
            kind.name(),
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// Counts one attempt against each `(kind, value, rate)` in turn: `Some(Ok)`
    /// allowed, `Some(Err(seconds to wait))` over a limit, `None` when Redis did
    /// not answer (the caller falls back; counted and logged here).
    pub async fn check(&self, checks: &[(Kind, &str, Rate)]) -> Option<Result<(), u64>> {
        if unix_ms() < self.paused_until_ms.load(Ordering::Relaxed) {
            self.fell_back(None);
            return None;
        }
        let mut invocation = self.script.prepare_invoke();
        for (kind, value, rate) in checks {
            invocation.key(self.redis_key(*kind, value));
            invocation.arg(rate.interval_us).arg(rate.burst);
        }
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(TIMEOUT, invocation.invoke_async::<(i64, i64)>(&mut conn)).await;
        let failure = match answer {
            Ok(Ok((allowed, wait_us))) => {
                if !self.status.redis_active.swap(true, Ordering::Relaxed) {
                    tracing::info!("sign-in rate limits are shared through Redis again");
                }
                return Some(if allowed == 1 {
                    Ok(())
                } else {
                    Err((wait_us.max(0) as u64).div_ceil(1_000_000).max(1))
                });
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {} ms", TIMEOUT.as_millis()),
        };
        self.paused_until_ms
            .store(unix_ms() + PAUSE_AFTER_FAILURE.as_millis() as i64, Ordering::Relaxed);
        self.fell_back(Some(failure));
        None
    }

    fn fell_back(&self, failure: Option<String>) {
        self.status.fallbacks.fetch_add(1, Ordering::Relaxed);
        let was_active = self.status.redis_active.swap(false, Ordering::Relaxed);
        let now = unix_ms();
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        if (was_active || now - last >= WARN_EVERY_MS)
            && self
                .last_warning_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                error = failure.as_deref().unwrap_or("paused after a recent failure"),
                fallbacks = self.status.fallbacks(),
                "Redis rate limiter unavailable: sign-in limits are per instance until it answers again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_prefixes() {
        let rate = Rate::new(10, 3);
        assert_eq!((rate.interval_us, rate.burst), (6_000_000, 3));
        let rate = Rate::new(0, 0);
        assert_eq!((rate.interval_us, rate.burst), (60_000_000, 1));
        let a = prefix_for("https://id.example");
        assert!(a.starts_with("oxidp:") && a.ends_with(":rl:") && a.len() == "oxidp:".len() + 16 + ":rl:".len());
        assert_ne!(a, prefix_for("https://other.example"));
    }
}
