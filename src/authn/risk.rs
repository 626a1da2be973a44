//! Risk-based sign-in protection: governor limiters (per client IP, IPv6 by /64;
//! per username — both shared through Redis when `redis_url` is set; failed
//! client authentications at /token), the explainable risk score of an attempt,
//! client-network helpers, and the signed known-device cookie value.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::authn::shared_limits::{Kind, Rate, SharedLimits};
use crate::config::LoginConfig;
use crate::domain::Cidr;

fn quota(per_minute: u32, burst: u32) -> Quota {
    let per = NonZeroU32::new(per_minute.max(1)).expect("non-zero");
    let burst = NonZeroU32::new(burst.max(1)).expect("non-zero");
    Quota::per_minute(per).allow_burst(burst)
}

/// The sign-in and client-authentication limiters. The per-address and
/// per-account sign-in limits are shared through Redis when `redis_url` is set
/// (`shared_limits`), else — and for any check Redis does not answer — counted
/// in memory per instance; failed client authentications are always per instance.
/// Cluster-wide failure counters live in the database (`db::models::logins`).
pub struct Limiters {
    ip: DefaultKeyedRateLimiter<String>,
    account: DefaultKeyedRateLimiter<String>,
    client_failures: DefaultKeyedRateLimiter<String>,
    /// Keys (client ids, IPs) whose failed client authentications ran out, until when.
    blocked: Mutex<HashMap<String, Instant>>,
    /// True while `blocked` may hold entries: the hot path skips the lock otherwise.
    any_blocked: std::sync::atomic::AtomicBool,
    shared: Option<SharedLimits>,
    ip_rate: Rate,
    account_rate: Rate,
}

impl Limiters {
    pub fn new(config: &LoginConfig) -> Self {
        let failures = config.client_failures_per_minute;
        Self {
            ip: RateLimiter::keyed(quota(config.ip_per_minute, config.ip_burst)),
            account: RateLimiter::keyed(quota(config.account_per_minute, config.account_burst)),
            client_failures: RateLimiter::keyed(quota(failures, failures)),
            blocked: Mutex::new(HashMap::new()),
            any_blocked: std::sync::atomic::AtomicBool::new(false),
            shared: None,
            ip_rate: Rate::new(config.ip_per_minute, config.ip_burst),
            account_rate: Rate::new(config.account_per_minute, config.account_burst),
        }
    }

    /// Shares the sign-in limits through Redis.
    pub fn with_shared(mut self, shared: SharedLimits) -> Self {
        self.shared = Some(shared);
        self
    }

    /// The Redis key prefix, when the limits are shared.
    pub fn shared_prefix(&self) -> Option<&str> {
        self.shared.as_ref().map(SharedLimits::prefix)
    }

    fn check(limiter: &DefaultKeyedRateLimiter<String>, key: &str) -> Result<(), u64> {
        limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// One sign-in attempt from `ip` for `username_key`; `Err(seconds to wait)` when over a limit.
    pub async fn sign_in(&self, ip: &str, username_key: &str) -> Result<(), u64> {
        let address = limiter_key(ip);
        if let Some(shared) = &self.shared
            && let Some(decision) = shared
                .check(&[
                    (Kind::Ip, &address, self.ip_rate),
                    (Kind::Account, username_key, self.account_rate),
                ])
                .await
        {
            return decision;
        }
        Self::check(&self.ip, &address)?;
        Self::check(&self.account, username_key)
    }

    /// One unauthenticated sign-in step from `ip` (e.g. starting a passkey sign-in).
    pub async fn per_ip(&self, ip: &str) -> Result<(), u64> {
        let address = limiter_key(ip);
        if let Some(shared) = &self.shared
            && let Some(decision) = shared.check(&[(Kind::Ip, &address, self.ip_rate)]).await
        {
            return decision;
        }
        Self::check(&self.ip, &address)
    }

    /// Before authenticating a client at /token: `Err(seconds)` while its failures are exhausted.
    pub fn client_blocked(&self, keys: &[&str]) -> Result<(), u64> {
        if !self.any_blocked() {
            return Ok(());
        }
        let blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        for key in keys {
            if let Some(until) = blocked.get(*key)
                && *until > now
            {
                return Err((*until - now).as_secs().max(1));
            }
        }
        Ok(())
    }

    /// Counts a failed client authentication against each key (client id, IP).
    pub fn client_failed(&self, keys: &[&str]) {
        for key in keys {
            if let Err(wait) = Self::check(&self.client_failures, key) {
                let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                blocked.retain(|_, until| *until > now);
                blocked.insert((*key).to_owned(), now + Duration::from_secs(wait.max(1)));
                self.any_blocked.store(true, std::sync::atomic::Ordering::Release);
            }
        }
    }

    /// Whether any client id or address is currently blocked (cheap, no lock).
    pub fn any_blocked(&self) -> bool {
        self.any_blocked.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Drops idle limiter state (called by housekeeping).
    pub fn shrink(&self) {
        let mut blocked = self.blocked.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        blocked.retain(|_, until| *until > now);
        self.any_blocked
            .store(!blocked.is_empty(), std::sync::atomic::Ordering::Release);
        drop(blocked);
        self.ip.retain_recent();
        self.account.retain_recent();
        self.client_failures.retain_recent();
    }
}

/// The client address: the peer, unless the peer is a trusted proxy, in which case
/// the right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
pub fn client_ip(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let Some(header) = forwarded_for else {
        return Some(peer);
    };
    let mut chain: Vec<IpAddr> = Vec::new();
    for part in header.split(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) => chain.push(ip),
            // A malformed chain is not believed.
            Err(_) => return Some(peer),
        }
    }
    Some(chain.into_iter().rev().find(|ip| !is_trusted(*ip)).unwrap_or(peer))
}

/// The key of the per-IP limiter: the address for IPv4, its /64 for IPv6.
pub fn limiter_key(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        _ => ip.to_owned(),
    }
}

/// The network used by the risk signals: /24 for IPv4, /64 for IPv6.
pub fn network_of(ip: Option<&str>) -> String {
    match ip.and_then(|i| i.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Some(IpAddr::V6(_)) => limiter_key(ip.unwrap_or_default()),
        None => "unknown".to_owned(),
    }
}

/// What is known about an attempt before the password is checked.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Consecutive failures for this username.
    pub account_failures: i64,
    /// Failed attempts from this network in the window.
    pub network_failures: i64,
    /// Distinct usernames failing from this network in the window.
    pub network_usernames: i64,
    /// The account exists and this browser has not signed in to it before.
    pub new_device: bool,
    /// The account exists and has never signed in successfully from this network.
    pub new_network: bool,
    /// The account usually signs in at other hours (UTC) than now.
    pub unusual_hour: bool,
    /// Several networks tried this username within the window.
    pub many_networks: bool,
    /// Consecutive failed second steps (TOTP or recovery codes) of the account.
    pub second_step_failures: i64,
}

/// The score and the reasons behind it, e.g. `(70, ["network_usernames", "new_device"])`.
pub fn score(s: &Signals, config: &LoginConfig) -> (i64, Vec<&'static str>) {
    let mut total = 0;
    let mut reasons = Vec::new();
    let mut add = |points: i64, reason: &'static str| {
        total += points;
        reasons.push(reason);
    };
    if s.account_failures >= 3 {
        add(20, "account_failures");
    }
    if s.network_failures >= 20 {
        add(40, "network_failures");
    } else if s.network_failures >= 5 {
        add(20, "network_failures");
    }
    if s.network_usernames >= config.stuffing_usernames {
        add(config.deny_score, "credential_stuffing");
    } else if s.network_usernames >= 3 {
        add(20, "network_usernames");
    }
    if s.new_device {
        add(10, "new_device");
    }
    if s.new_network {
        add(10, "new_network");
    }
    if s.unusual_hour {
        add(10, "unusual_hour");
    }
    if s.many_networks {
        add(20, "many_networks");
    }
    if s.second_step_failures >= 3 {
        add(20, "second_step_failures");
    }
    (total, reasons)
}

/// True when the person has signed in at least five times and never within two
/// hours (UTC, wrapping at midnight) of `now`'s hour.
pub fn unusual_hour(successes: &[i64], now: i64) -> bool {
    if successes.len() < 5 {
        return false;
    }
    let hour = |t: i64| t.rem_euclid(86_400) / 3600;
    let current = hour(now);
    !successes.iter().any(|t| {
        let d = (hour(*t) - current).abs();
        d.min(24 - d) <= 2
    })
}

/// The delay after `failures` consecutive failures: none before `delay_after`, then
/// 1 s, 2 s, 4 s … capped at `delay_max_secs`.
pub fn delay_for(failures: i64, config: &LoginConfig) -> i64 {
    backoff(failures, config.delay_after, config.delay_max_secs)
}

/// None before `after` failures, then 1 s, 2 s, 4 s … capped at `max_secs`.
pub fn backoff(failures: i64, after: i64, max_secs: i64) -> i64 {
    if failures < after {
        return 0;
    }
    let exponent = (failures - after).min(30) as u32;
    2_i64.pow(exponent).min(max_secs)
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8; 32], data: &str) -> String {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(data.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The counter key of a username: an HMAC, so attempted names (often passwords
/// typed into the wrong field) are never stored.
pub fn username_key(key: &[u8; 32], username: &str) -> String {
    mac(key, &username.trim().to_lowercase())
}

/// The known-device cookie value: a random id and its MAC.
pub fn seal_device(key: &[u8; 32], device_id: &str) -> String {
    format!("{device_id}.{}", mac(key, device_id))
}

/// The device id of a cookie value, if its MAC is ours.
pub fn open_device(key: &[u8; 32], value: &str) -> Option<String> {
    let (id, tag) = value.split_once('.')?;
    let expected = mac(key, id);
    crate::crypto::constant_time_eq(expected.as_bytes(), tag.as_bytes()).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_and_cap() {
        let c = LoginConfig::default();
        let delays: Vec<i64> = (1..=12).map(|f| delay_for(f, &c)).collect();
        assert_eq!(delays, [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128]);
        assert_eq!(delay_for(99, &c), 900);
    }

    #[test]
    fn proxies_are_believed_only_when_trusted() {
        let trusted: [Cidr; 2] = ["10.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        let peer = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(peer("203.0.113.9"), Some("1.2.3.4"), &trusted),
            peer("203.0.113.9")
        );
        // A trusted proxy: the right-most untrusted hop.
        assert_eq!(
            client_ip(peer("10.1.2.3"), Some("6.6.6.6, 198.51.100.7, 10.9.9.9"), &trusted),
            peer("198.51.100.7")
        );
        // A malformed header is not believed.
        assert_eq!(
            client_ip(peer("10.1.2.3"), Some("nonsense"), &trusted),
            peer("10.1.2.3")
        );
    }

    #[test]
    fn networks_and_limiter_keys() {
        assert_eq!(network_of(Some("192.0.2.77")), "192.0.2.0/24");
        assert_eq!(limiter_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(limiter_key("2001:db8:1:2:bbbb::9"), limiter_key("2001:db8:1:2:aaaa::1"));
        assert_eq!(limiter_key("192.0.2.77"), "192.0.2.77");
    }

    #[test]
    fn scores_explain_themselves() {
        let c = LoginConfig::default();
        let (score_, reasons) = score(
            &Signals {
                network_usernames: 12,
                new_device: true,
                ..Default::default()
            },
            &c,
        );
        assert!(score_ >= c.deny_score);
        assert_eq!(reasons, ["credential_stuffing", "new_device"]);
        let (calm, none) = score(&Signals::default(), &c);
        assert_eq!((calm, none.len()), (0, 0));
    }

    #[test]
    fn unusual_hours_need_a_history() {
        let at = |h: i64| 86_400 * 10 + h * 3600;
        let office: Vec<i64> = (0..6).map(|d| 86_400 * d + 9 * 3600).collect();
        assert!(!unusual_hour(&office, at(10)));
        assert!(unusual_hour(&office, at(3)));
        assert!(!unusual_hour(&office[..2], at(3)));
    }

    #[test]
    fn device_cookies_are_signed() {
        let key = [7u8; 32];
        let v = seal_device(&key, "abc");
        assert_eq!(open_device(&key, &v).as_deref(), Some("abc"));
        assert_eq!(open_device(&key, "abc.deadbeef"), None);
        assert_eq!(open_device(&[8u8; 32], &v), None);
    }
}
