//! Configuration: the settings as serde structs with their defaults, and the checks
//! across keys (`validate`). Layered by figment (`load`): built-in defaults →
//! optional TOML file (`--config`) → `OXIDP_*` environment variables. Every key has
//! one env name (`section.key` → `OXIDP_SECTION__KEY`, top-level `key` → `OXIDP_KEY`).
//! An unknown key or a bad value fails at start with a message naming the key.

use std::net::SocketAddr;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::domain::Cidr;

mod load;

pub use load::env_name;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Public base URL; the OIDC `iss`. https in production.
    pub issuer: String,
    /// Address and port to listen on.
    pub bind: String,
    /// Directory for the SQLite file and generated secrets.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; defaults to `sqlite://{data_dir}/oxidp.db`.
    pub database_url: Option<String>,
    /// Secret mixed into every password hash (HMAC-SHA256 before argon2id).
    pub pepper: Option<SecretString>,
    /// Secret that encrypts private keys and MFA secrets at rest.
    pub key_encryption_secret: Option<SecretString>,
    /// `redis://[:password@]host:port[/db]`: share the sign-in rate limits
    /// (`login.ip_*`, `login.account_*`) between instances. Unset: per instance.
    pub redis_url: Option<SecretString>,
    pub database: DatabaseConfig,
    pub session: SessionConfig,
    pub argon2: Argon2Config,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub tokens: TokenConfig,
    pub keys: KeyConfig,
    pub admin: AdminConfig,
    pub login: LoginConfig,
    pub webauthn: WebauthnConfig,
    pub audit: AuditConfig,
    pub commerce: CommerceConfig,
    pub metrics: MetricsConfig,
}

/// How long the audit log is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Events older than this many days are deleted by the background task; 0 keeps them forever.
    pub retention_days: i64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention_days: 90 }
    }
}

/// `oxidp commerce`: the commerce resource server, its own process and database.
/// It reaches the IdP only over HTTP (discovery, JWKS).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommerceConfig {
    /// Address and port the commerce API listens on.
    pub bind: String,
    /// Its public base URL (the default audience).
    pub public_url: String,
    /// `sqlite://PATH` or `postgres://…`; defaults to `sqlite://{data_dir}/commerce.db`.
    pub database_url: Option<String>,
    /// The token issuer (exact `iss`); its discovery document names the JWKS. Defaults to `issuer`.
    pub issuer: Option<String>,
    /// The audience tokens must carry; defaults to `public_url`.
    pub audience: Option<String>,
    /// Refresh the key set at least this often (sooner when `Cache-Control: max-age` says so).
    pub jwks_refresh_secs: u64,
    /// An unknown `kid` triggers at most one refetch per this many seconds, across all requests.
    pub jwks_min_refetch_secs: i64,
    /// How long the last good key set keeps serving while the IdP is unreachable.
    pub jwks_max_stale_secs: i64,
    /// Verified tokens kept (by SHA-256) so repeated requests skip signature checks.
    pub token_cache_capacity: usize,
    /// Which routes also ask the issuer's introspection endpoint (RFC 7662) whether
    /// the token is still active: `off`, `sensitive` (routes that move money, stock or
    /// lifecycle state) or `all`.
    pub introspection: IntrospectionMode,
    /// The registered client commerce authenticates as at the introspection endpoint
    /// (required unless `introspection` is `off`).
    pub introspection_client_id: Option<String>,
    pub introspection_client_secret: Option<SecretString>,
    /// How long an introspection answer is reused (at most; never past the token's `exp`).
    pub introspection_cache_secs: u64,
    /// While the introspection circuit breaker is open: `local` (accept the locally
    /// verified token, counted as served by fallback) or `deny` (503 + Retry-After).
    pub introspection_fallback: IntrospectionFallback,
    /// Reservation workers per instance (0: this instance accepts but does not process).
    pub reservation_workers: usize,
    /// How long a confirmed reservation holds its stock before it expires.
    pub hold_secs: i64,
    /// How long a worker owns a claimed queue message before others may reclaim it.
    pub reservation_lease_secs: i64,
    /// How long an order awaits its payment before the saga cancels it (stock
    /// released, coupon returned).
    pub payment_timeout_secs: i64,
    /// The reservation queue: empty (the default) = the commerce database itself
    /// (the outbox table, claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL);
    /// `amqp://user:password@host:5672/vhost` (or `amqps://`) = RabbitMQ, fed by
    /// an outbox relay. A secret: it carries the broker's password.
    pub queue_url: Option<SecretString>,
    /// RabbitMQ: the queue's name; the dead-letter queue is `{queue_name}.dead`
    /// behind the exchange `{queue_name}.dlx`.
    pub queue_name: String,
    /// RabbitMQ: failed deliveries of one message before it is dead-lettered.
    pub queue_max_deliveries: u32,
}

/// `commerce.introspection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntrospectionMode {
    Off,
    Sensitive,
    All,
}

/// `commerce.introspection_fallback`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntrospectionFallback {
    Local,
    Deny,
}

impl Default for CommerceConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8081".to_owned(),
            public_url: "http://localhost:8081".to_owned(),
            database_url: None,
            issuer: None,
            audience: None,
            jwks_refresh_secs: 300,
            jwks_min_refetch_secs: 10,
            jwks_max_stale_secs: 24 * 3600,
            token_cache_capacity: 100_000,
            introspection: IntrospectionMode::Sensitive,
            introspection_client_id: None,
            introspection_client_secret: None,
            introspection_cache_secs: 10,
            introspection_fallback: IntrospectionFallback::Local,
            reservation_workers: 4,
            hold_secs: 600,
            reservation_lease_secs: 30,
            payment_timeout_secs: 900,
            queue_url: None,
            queue_name: "oxidp.reservations".to_owned(),
            queue_max_deliveries: 5,
        }
    }
}

impl Config {
    /// The RabbitMQ URL when `commerce.queue_url` names one (None: the database queue).
    pub fn commerce_queue_url(&self) -> Option<&SecretString> {
        self.commerce
            .queue_url
            .as_ref()
            .filter(|url| !url.expose_secret().is_empty())
    }

    /// The commerce database: `commerce.database_url` or `sqlite://{data_dir}/commerce.db`.
    pub fn commerce_database_url(&self) -> String {
        self.commerce
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("commerce.db").display()))
    }

    /// The issuer whose tokens the commerce API accepts, without a trailing slash.
    pub fn commerce_issuer(&self) -> String {
        self.commerce
            .issuer
            .clone()
            .unwrap_or_else(|| self.issuer.clone())
            .trim_end_matches('/')
            .to_owned()
    }

    /// The audience commerce tokens must name.
    pub fn commerce_audience(&self) -> String {
        self.commerce
            .audience
            .clone()
            .unwrap_or_else(|| self.commerce.public_url.trim_end_matches('/').to_owned())
    }

    fn validate_commerce(&self) -> Result<(), ConfigError> {
        let c = &self.commerce;
        c.bind.parse::<SocketAddr>().map_err(|e| {
            ConfigError::new(
                "commerce.bind",
                format!("expected HOST:PORT such as 127.0.0.1:8081 ({e})"),
            )
        })?;
        for (key, value) in [
            ("commerce.public_url", Some(&c.public_url)),
            ("commerce.issuer", c.issuer.as_ref()),
            ("commerce.audience", c.audience.as_ref()),
        ] {
            if let Some(value) = value
                && Url::parse(value).map(|u| u.host().is_none()).unwrap_or(true)
            {
                return Err(ConfigError::new(key, "must be an absolute URL with a host"));
            }
        }
        if let Some(url) = &c.database_url
            && !(url.starts_with("sqlite://") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "commerce.database_url",
                "expected sqlite://PATH or postgres://…",
            ));
        }
        if c.jwks_refresh_secs < 1 {
            return Err(ConfigError::new("commerce.jwks_refresh_secs", "must be at least 1"));
        }
        if c.jwks_min_refetch_secs < 1 {
            return Err(ConfigError::new("commerce.jwks_min_refetch_secs", "must be at least 1"));
        }
        if c.jwks_max_stale_secs < c.jwks_refresh_secs as i64 {
            return Err(ConfigError::new(
                "commerce.jwks_max_stale_secs",
                "must be at least commerce.jwks_refresh_secs",
            ));
        }
        if c.token_cache_capacity < 1 {
            return Err(ConfigError::new("commerce.token_cache_capacity", "must be at least 1"));
        }
        if let Some(url) = c.queue_url.as_ref().map(ExposeSecret::expose_secret)
            && !url.is_empty()
            && !(url.starts_with("amqp://") || url.starts_with("amqps://"))
        {
            return Err(ConfigError::new(
                "commerce.queue_url",
                "expected empty (the database queue) or amqp://… / amqps://… (RabbitMQ)",
            ));
        }
        for (key, ok, rule) in [
            (
                "commerce.queue_name",
                !c.queue_name.is_empty()
                    && c.queue_name.len() <= 200
                    && c.queue_name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
                    && !c.queue_name.starts_with("amq."),
                "must be 1 to 200 characters of A-Z a-z 0-9 . _ - : and not start with amq.",
            ),
            (
                "commerce.queue_max_deliveries",
                (1..=1000).contains(&c.queue_max_deliveries),
                "must be between 1 and 1000",
            ),
            (
                "commerce.reservation_workers",
                c.reservation_workers <= 64,
                "must be at most 64",
            ),
            ("commerce.hold_secs", c.hold_secs >= 1, "must be at least 1"),
            (
                "commerce.reservation_lease_secs",
                c.reservation_lease_secs >= 1,
                "must be at least 1",
            ),
            (
                "commerce.payment_timeout_secs",
                (1..=7 * 24 * 3600).contains(&c.payment_timeout_secs),
                "must be between 1 and 604800 (a week)",
            ),
        ] {
            if !ok {
                return Err(ConfigError::new(key, rule));
            }
        }
        Ok(())
    }

    /// Checked when `oxidp commerce` starts (not by the IdP, which never introspects
    /// for commerce): introspection needs the client commerce authenticates as.
    pub fn validate_commerce_introspection(&self) -> Result<(), ConfigError> {
        let c = &self.commerce;
        if c.introspection == IntrospectionMode::Off {
            return Ok(());
        }
        if c.introspection_client_id.as_deref().is_none_or(str::is_empty) {
            return Err(ConfigError::new(
                "commerce.introspection_client_id",
                "required unless commerce.introspection = off",
            ));
        }
        if c.introspection_client_secret.is_none() {
            return Err(ConfigError::new(
                "commerce.introspection_client_secret",
                "required unless commerce.introspection = off",
            ));
        }
        Ok(())
    }
}

/// Where `/metrics` is served. Never on the public listener without a token: the
/// counters tell an observer how each sign-in attempt ended.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Its own listener, HOST:PORT (loopback by default); empty or `off` for none.
    pub bind: String,
    /// When set, `/metrics` requires `Authorization: Bearer <token>` on every
    /// listener, and is also served on the public one (for a scraper that can
    /// only reach the instances through the load balancer).
    pub token: Option<SecretString>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:9464".to_owned(),
            token: None,
        }
    }
}

impl MetricsConfig {
    /// The address of the metrics listener, or `None` when it is switched off.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let bind = self.bind.trim();
        if bind.is_empty() || bind.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        bind.parse::<SocketAddr>().map(Some).map_err(|e| {
            ConfigError::new(
                "metrics.bind",
                format!("expected HOST:PORT such as 127.0.0.1:9464, or `off` ({e})"),
            )
        })
    }
}

/// WebAuthn relying party. By default the RP id is the issuer's host and the
/// only accepted origin is the issuer's origin.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebauthnConfig {
    /// Security keys and passkeys. Unset: on, unless the origin's host is an IP
    /// address (WebAuthn needs a domain as relying party id), then off. `true`
    /// with an IP origin is a configuration error; `false` turns them off.
    pub enabled: Option<bool>,
    /// The relying party id: the issuer's host or a registrable suffix of it.
    pub rp_id: Option<String>,
    /// The name authenticators show; defaults to the issuer's host.
    pub rp_name: Option<String>,
    /// The origin pages are served from; defaults to the issuer's origin.
    pub origin: Option<String>,
}

/// Risk-based sign-in protection. Defaults follow NIST SP 800-63B §5.2.2
/// (at most 100 consecutive failures before a lockout).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Sign-in attempts per client IP (IPv6 by /64) per minute, and the burst allowed.
    pub ip_per_minute: u32,
    pub ip_burst: u32,
    /// Sign-in attempts per username per minute (per instance), and the burst allowed.
    pub account_per_minute: u32,
    pub account_burst: u32,
    /// Failed client authentications at /token per client id and per IP per minute.
    pub client_failures_per_minute: u32,
    /// Consecutive failures before delays start (then 1 s, 2 s, 4 s, …).
    pub delay_after: i64,
    /// Longest delay between attempts, in seconds.
    pub delay_max_secs: i64,
    /// Consecutive failures that lock the account until an administrator or a password reset unlocks it.
    pub lockout_after: i64,
    /// The window for the network and account risk signals, in seconds.
    pub window_secs: i64,
    /// Distinct usernames failing from one network within the window that mark credential stuffing.
    pub stuffing_usernames: i64,
    /// Risk score at or above which an attempt is refused without checking the password.
    pub deny_score: i64,
    /// Proxies (IP or CIDR) whose `X-Forwarded-For` is believed; empty = none.
    #[serde(deserialize_with = "load::cidr_list")]
    pub trusted_proxies: Vec<Cidr>,
    /// Lifetime of the known-device cookie, in days.
    pub device_cookie_days: i64,
    /// Sign-in history (risk signals, the account page) is kept this many days.
    pub attempts_retention_days: i64,
    /// Wrong passwords from one known-device cookie (since the last successful
    /// sign-in from it) after which it is no longer known for that account.
    pub device_max_failures: i64,
    /// Consecutive failed second steps (TOTP and recovery codes together) before
    /// delays start (then 1 s, 2 s, 4 s, … up to `delay_max_secs`).
    pub second_step_delay_after: i64,
    /// Consecutive failed second steps that lock out TOTP codes (at most 100);
    /// recovery codes are still accepted up to 100.
    pub second_step_lockout_after: i64,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            ip_per_minute: 30,
            ip_burst: 20,
            account_per_minute: 10,
            account_burst: 10,
            client_failures_per_minute: 20,
            delay_after: 5,
            delay_max_secs: 900,
            lockout_after: 100,
            window_secs: 900,
            stuffing_usernames: 10,
            deny_score: 60,
            trusted_proxies: Vec::new(),
            device_cookie_days: 365,
            attempts_retention_days: 90,
            device_max_failures: 5,
            second_step_delay_after: 3,
            second_step_lockout_after: 50,
        }
    }
}

/// The first administrator, created by `serve` on first start with an empty database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Create the `admin` user (with the `admin` role) when no user exists yet.
    pub bootstrap: bool,
    /// Its username.
    pub username: String,
    /// Its password; when unset a random one is generated and printed once to the log.
    pub initial_password: Option<SecretString>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            bootstrap: true,
            username: "admin".to_owned(),
            initial_password: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Default access-token lifetime for new clients (RFC 9068 JWTs).
    pub access_token_ttl_secs: i64,
    /// Default absolute refresh-token lifetime for new clients.
    pub refresh_token_ttl_secs: i64,
    /// Authorization-code lifetime (RFC 6749 §4.1.2 recommends at most 10 minutes; we use 60 s).
    pub code_ttl_secs: i64,
    /// How long a pending authorization request waits for sign-in and consent.
    pub request_ttl_secs: i64,
    /// Seconds a cached client stays valid before it is re-read (bounds staleness across instances).
    pub client_cache_secs: u64,
    /// RFC 9700 §4.14.2 grace: for this long after a rotation, the same old refresh
    /// token presented again by the same client gets the same successor (a lost
    /// response is retried) instead of revoking the family. 0 disables it.
    pub refresh_reuse_grace_secs: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeyConfig {
    /// Automatic rotation: a new signing key per algorithm after this many days (0 = never).
    pub rotation_days: i64,
    /// A new key is published in JWKS this long before it signs anything.
    pub publish_ahead_secs: i64,
    /// A retired key stays in JWKS this long (must exceed every token lifetime).
    pub retain_secs: i64,
    /// How often each instance re-reads the key set from the database.
    pub refresh_secs: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 600,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            code_ttl_secs: 60,
            // Longer than the idle timeout, so a flow interrupted by an expired session resumes.
            request_ttl_secs: 60 * 60,
            client_cache_secs: 5,
            refresh_reuse_grace_secs: 10,
        }
    }
}

impl Default for KeyConfig {
    fn default() -> Self {
        Self {
            rotation_days: 90,
            publish_ahead_secs: 3600,
            retain_secs: 24 * 3600,
            refresh_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub pool_size: u32,
    /// How long a request waits for a connection before answering 503.
    pub connect_timeout_secs: u64,
    /// SQLite only: how long a write waits for another writer before answering 503.
    pub busy_timeout_ms: u64,
    /// SQLite only: how often the background task resets the write-ahead log
    /// (`wal_checkpoint(TRUNCATE)`; sooner once it reaches 16 MiB); 0 leaves it to
    /// SQLite's automatic checkpoints.
    pub wal_checkpoint_secs: u64,
    /// SQLite only: page cache per pooled connection, in KiB (memory use is up to
    /// `pool_size` × this).
    pub sqlite_cache_kib: u32,
    /// How often the background task deletes expired rows (in small batches).
    pub purge_interval_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// Sign-out after this much inactivity (NIST SP 800-63B AAL2: at most 30 min).
    pub idle_timeout_secs: i64,
    /// Sign-out this long after sign-in, active or not (AAL2: at most 12 h).
    pub absolute_timeout_secs: i64,
    /// Pages warn this long before the session ends, with a "Stay signed in" button.
    pub warn_before_secs: i64,
    /// One active session per person: a new sign-in ends the older sessions and
    /// the refresh tokens issued during them.
    pub single_session: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Password hashes computed at once; the rest wait (bounds memory use).
    pub max_concurrent: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Worker threads; 0 = one per CPU core.
    pub workers: usize,
    /// On SIGTERM/SIGINT, how long `/readyz` answers 503 while requests are still
    /// served, before the listener closes (lets a load balancer drain the instance).
    pub drain_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `oxidp=debug,actix_web=info`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: "http://localhost:8080".to_owned(),
            bind: "127.0.0.1:8080".to_owned(),
            data_dir: PathBuf::from("data"),
            database_url: None,
            pepper: None,
            key_encryption_secret: None,
            redis_url: None,
            database: DatabaseConfig::default(),
            session: SessionConfig::default(),
            argon2: Argon2Config::default(),
            http: HttpConfig::default(),
            log: LogConfig::default(),
            tokens: TokenConfig::default(),
            keys: KeyConfig::default(),
            admin: AdminConfig::default(),
            login: LoginConfig::default(),
            webauthn: WebauthnConfig::default(),
            audit: AuditConfig::default(),
            commerce: CommerceConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout_secs: 3,
            busy_timeout_ms: 5000,
            wal_checkpoint_secs: 30,
            sqlite_cache_kib: 2048,
            purge_interval_secs: 60,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_secs: 30 * 60,
            absolute_timeout_secs: 12 * 60 * 60,
            warn_before_secs: 5 * 60,
            single_session: false,
        }
    }
}

impl Default for Argon2Config {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
            max_concurrent: std::thread::available_parallelism().map(|n| n.get() * 2).unwrap_or(4),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            workers: 0,
            drain_secs: 0,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".to_owned(),
            level: "info".to_owned(),
        }
    }
}

/// A configuration error, always naming the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let issuer = self.issuer_url()?;
        self.webauthn_relying_party()?;
        if issuer.scheme() == "http" && !is_loopback_host(&issuer) {
            return Err(ConfigError::new(
                "issuer",
                "must use https unless the host is localhost or a loopback address",
            ));
        }
        self.bind
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::new("bind", format!("expected HOST:PORT such as 127.0.0.1:8080 ({e})")))?;
        self.metrics.listen_addr()?;
        if let Some(token) = &self.metrics.token
            && token.expose_secret().len() < 16
        {
            return Err(ConfigError::new("metrics.token", "must be at least 16 characters"));
        }
        if let Some(url) = &self.database_url {
            let ok = url.starts_with("sqlite://") || url.starts_with("postgres://") || url.starts_with("postgresql://");
            if !ok {
                return Err(ConfigError::new(
                    "database_url",
                    "expected sqlite://PATH or postgres://…",
                ));
            }
        }
        if let Some(url) = &self.redis_url
            && !url.expose_secret().starts_with("redis://")
        {
            return Err(ConfigError::new(
                "redis_url",
                "expected redis://[:password@]host:port[/db]",
            ));
        }
        if self.database.pool_size == 0 {
            return Err(ConfigError::new("database.pool_size", "must be at least 1"));
        }
        if self.session.idle_timeout_secs < 60 {
            return Err(ConfigError::new("session.idle_timeout_secs", "must be at least 60"));
        }
        if self.session.warn_before_secs < 10 || self.session.warn_before_secs >= self.session.idle_timeout_secs {
            return Err(ConfigError::new(
                "session.warn_before_secs",
                "must be at least 10 and less than session.idle_timeout_secs",
            ));
        }
        if self.session.absolute_timeout_secs < self.session.idle_timeout_secs {
            return Err(ConfigError::new(
                "session.absolute_timeout_secs",
                "must be at least session.idle_timeout_secs",
            ));
        }
        if self.argon2.memory_kib < 8 * 1024 {
            return Err(ConfigError::new("argon2.memory_kib", "must be at least 8192 (8 MiB)"));
        }
        if self.argon2.iterations < 1 || self.argon2.parallelism < 1 || self.argon2.max_concurrent < 1 {
            let key = if self.argon2.iterations < 1 {
                "argon2.iterations"
            } else if self.argon2.parallelism < 1 {
                "argon2.parallelism"
            } else {
                "argon2.max_concurrent"
            };
            return Err(ConfigError::new(key, "must be at least 1"));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(ConfigError::new("http.max_body_bytes", "must be at least 1024"));
        }
        if self.http.drain_secs > 300 {
            return Err(ConfigError::new("http.drain_secs", "must be at most 300"));
        }
        let t = &self.tokens;
        for (key, value, min) in [
            ("tokens.access_token_ttl_secs", t.access_token_ttl_secs, 30),
            ("tokens.refresh_token_ttl_secs", t.refresh_token_ttl_secs, 60),
            ("tokens.code_ttl_secs", t.code_ttl_secs, 5),
            ("tokens.request_ttl_secs", t.request_ttl_secs, 60),
            ("keys.publish_ahead_secs", self.keys.publish_ahead_secs, 0),
            ("keys.rotation_days", self.keys.rotation_days, 0),
            ("tokens.refresh_reuse_grace_secs", t.refresh_reuse_grace_secs, 0),
        ] {
            if value < min {
                return Err(ConfigError::new(key, format!("must be at least {min}")));
            }
        }
        // A retry window, not a second lifetime: a leaked token replayed within it is
        // answered with the successor instead of being detected.
        if t.refresh_reuse_grace_secs > 120 {
            return Err(ConfigError::new(
                "tokens.refresh_reuse_grace_secs",
                "must be at most 120 (a retry window, RFC 9700 §4.14.2)",
            ));
        }
        if t.code_ttl_secs > 600 {
            return Err(ConfigError::new(
                "tokens.code_ttl_secs",
                "must be at most 600 (RFC 6749 §4.1.2)",
            ));
        }
        if self.keys.retain_secs < t.access_token_ttl_secs.max(3600) {
            return Err(ConfigError::new(
                "keys.retain_secs",
                "must be at least the access-token lifetime and one hour, or tokens would outlive their key",
            ));
        }
        let l = &self.login;
        for (key, value) in [
            ("login.ip_per_minute", l.ip_per_minute),
            ("login.ip_burst", l.ip_burst),
            ("login.account_per_minute", l.account_per_minute),
            ("login.account_burst", l.account_burst),
            ("login.client_failures_per_minute", l.client_failures_per_minute),
        ] {
            if value < 1 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        for (key, value) in [
            ("login.delay_after", l.delay_after),
            ("login.lockout_after", l.lockout_after),
            ("login.window_secs", l.window_secs),
            ("login.stuffing_usernames", l.stuffing_usernames),
            ("login.deny_score", l.deny_score),
            ("login.device_cookie_days", l.device_cookie_days),
            ("login.attempts_retention_days", l.attempts_retention_days),
            ("login.device_max_failures", l.device_max_failures),
            ("login.second_step_delay_after", l.second_step_delay_after),
            ("login.second_step_lockout_after", l.second_step_lockout_after),
        ] {
            if value < 1 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if self.audit.retention_days < 0 {
            return Err(ConfigError::new("audit.retention_days", "must be 0 (keep) or more"));
        }
        if self.database.purge_interval_secs < 1 {
            return Err(ConfigError::new("database.purge_interval_secs", "must be at least 1"));
        }
        for (key, value) in [
            ("login.lockout_after", l.lockout_after),
            ("login.second_step_lockout_after", l.second_step_lockout_after),
        ] {
            if value > 100 {
                return Err(ConfigError::new(key, "must be at most 100 (NIST SP 800-63B §5.2.2)"));
            }
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::new("log.format", "must be `text` or `json`"));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ConfigError::new("log.level", e.to_string()))?;
        self.validate_commerce()?;
        for (key, secret) in [
            ("pepper", &self.pepper),
            ("key_encryption_secret", &self.key_encryption_secret),
        ] {
            if let Some(secret) = secret
                && secret.expose_secret().len() < 32
            {
                return Err(ConfigError::new(key, "must be at least 32 characters of random data"));
            }
        }
        Ok(())
    }

    /// The WebAuthn relying party: (rp id, origin, display name), or `None` when
    /// security keys and passkeys are off (`webauthn.enabled = false`, or unset
    /// with an IP-address origin). The origin's host must be a domain and the rp id
    /// or one of its subdomains (WebAuthn §5.1.3 step 8).
    pub fn webauthn_relying_party(&self) -> Result<Option<(String, Url, String)>, ConfigError> {
        let issuer = self.issuer_url()?;
        if self.webauthn.enabled == Some(false) {
            return Ok(None);
        }
        let origin = match &self.webauthn.origin {
            Some(o) => Url::parse(o).map_err(|e| ConfigError::new("webauthn.origin", format!("not a URL: {e}")))?,
            None => Url::parse(&issuer.origin().ascii_serialization()).expect("an origin is a URL"),
        };
        let host = origin
            .host_str()
            .ok_or_else(|| ConfigError::new("webauthn.origin", "must have a host"))?
            .to_owned();
        if origin.domain().is_none() {
            if self.webauthn.enabled == Some(true) {
                return Err(ConfigError::new(
                    "webauthn.enabled",
                    format!("WebAuthn needs a domain name, but the origin's host {host} is an IP address"),
                ));
            }
            return Ok(None);
        }
        let rp_id = self.webauthn.rp_id.clone().unwrap_or_else(|| host.clone());
        if host != rp_id && !host.ends_with(&format!(".{rp_id}")) {
            return Err(ConfigError::new(
                "webauthn.rp_id",
                format!("must be the host of the origin ({host}) or a parent domain of it"),
            ));
        }
        let name = self.webauthn.rp_name.clone().unwrap_or_else(|| host.clone());
        Ok(Some((rp_id, origin, name)))
    }

    pub fn issuer_url(&self) -> Result<Url, ConfigError> {
        let url = Url::parse(&self.issuer).map_err(|e| ConfigError::new("issuer", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ConfigError::new("issuer", "must be an http(s) URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ConfigError::new(
                "issuer",
                "must not have a query or fragment (OIDC Discovery §3)",
            ));
        }
        Ok(url)
    }

    /// The issuer without a trailing slash, as it appears in `iss`.
    pub fn issuer(&self) -> String {
        self.issuer_str().to_owned()
    }

    /// The issuer without a trailing slash, borrowed (no allocation on hot paths).
    pub fn issuer_str(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }

    pub fn is_https(&self) -> bool {
        self.issuer.starts_with("https://")
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("oxidp.db").display()))
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(config.session.idle_timeout_secs, 1800);
        assert_eq!(config.argon2.memory_kib, 19456);
        assert_eq!(config.database_url(), "sqlite://data/oxidp.db");
    }

    #[test]
    fn the_shipped_example_file_is_valid_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/oxidp.example.toml");
        let example = Config::load_from(Some(&path), env(&[])).unwrap();
        let defaults = Config::default();
        assert_eq!(example.issuer, defaults.issuer);
        assert_eq!(example.session.idle_timeout_secs, defaults.session.idle_timeout_secs);
        assert_eq!(example.argon2.memory_kib, defaults.argon2.memory_kib);
        assert_eq!(example.database.busy_timeout_ms, defaults.database.busy_timeout_ms);
        assert_eq!(example.http.max_body_bytes, defaults.http.max_body_bytes);
        assert_eq!(
            example.tokens.refresh_reuse_grace_secs,
            defaults.tokens.refresh_reuse_grace_secs
        );
    }

    #[test]
    fn the_metrics_listener_is_loopback_by_default_and_can_be_switched_off() {
        let config = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(
            config.metrics.listen_addr().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        for off in ["off", "", "OFF"] {
            let config = Config::load_from(None, env(&[("OXIDP_METRICS__BIND", off)])).unwrap();
            assert_eq!(config.metrics.listen_addr().unwrap(), None);
        }
        let err = Config::load_from(None, env(&[("OXIDP_METRICS__BIND", "localhost")])).unwrap_err();
        assert_eq!(err.key, "metrics.bind");
        let err = Config::load_from(None, env(&[("OXIDP_METRICS__TOKEN", "short")])).unwrap_err();
        assert_eq!(err.key, "metrics.token");
    }

    #[test]
    fn the_refresh_reuse_grace_window_is_bounded() {
        assert_eq!(Config::default().tokens.refresh_reuse_grace_secs, 10);
        let off = Config::load_from(None, env(&[("OXIDP_TOKENS__REFRESH_REUSE_GRACE_SECS", "0")])).unwrap();
        assert_eq!(off.tokens.refresh_reuse_grace_secs, 0);
        for bad in ["-1", "121"] {
            let err = Config::load_from(None, env(&[("OXIDP_TOKENS__REFRESH_REUSE_GRACE_SECS", bad)])).unwrap_err();
            assert_eq!(err.key, "tokens.refresh_reuse_grace_secs");
        }
    }

    #[test]
    fn commerce_keys_have_defaults_and_errors_name_them() {
        let config = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(config.commerce.bind, "127.0.0.1:8081");
        assert_eq!(config.commerce_database_url(), "sqlite://data/commerce.db");
        assert_eq!(config.commerce_issuer(), "http://localhost:8080");
        assert_eq!(config.commerce_audience(), "http://localhost:8081");
        for (name, value, key) in [
            ("OXIDP_COMMERCE__BIND", "nope", "commerce.bind"),
            (
                "OXIDP_COMMERCE__JWKS_MIN_REFETCH_SECS",
                "0",
                "commerce.jwks_min_refetch_secs",
            ),
            (
                "OXIDP_COMMERCE__JWKS_MAX_STALE_SECS",
                "10",
                "commerce.jwks_max_stale_secs",
            ),
            ("OXIDP_COMMERCE__AUDIENCE", "not a url", "commerce.audience"),
            ("OXIDP_COMMERCE__DATABASE_URL", "mysql://x", "commerce.database_url"),
            ("OXIDP_COMMERCE__INTROSPECTION", "sometimes", "commerce.introspection"),
            (
                "OXIDP_COMMERCE__INTROSPECTION_FALLBACK",
                "allow",
                "commerce.introspection_fallback",
            ),
            (
                "OXIDP_COMMERCE__INTROSPECTION_CACHE_SECS",
                "-1",
                "commerce.introspection_cache_secs",
            ),
        ] {
            assert_eq!(
                Config::load_from(None, env(&[(name, value)])).unwrap_err().key,
                key,
                "{name}"
            );
        }
    }

    #[test]
    fn second_step_lockout_is_at_most_one_hundred() {
        let err = Config::load_from(None, env(&[("OXIDP_LOGIN__SECOND_STEP_LOCKOUT_AFTER", "101")])).unwrap_err();
        assert_eq!(err.key, "login.second_step_lockout_after");
        let err = Config::load_from(None, env(&[("OXIDP_LOGIN__DEVICE_MAX_FAILURES", "0")])).unwrap_err();
        assert_eq!(err.key, "login.device_max_failures");
        let config = Config::load_from(None, env(&[("OXIDP_LOGIN__SECOND_STEP_LOCKOUT_AFTER", "100")])).unwrap();
        assert_eq!(config.login.second_step_lockout_after, 100);
    }

    #[test]
    fn redis_url_is_optional_a_redis_url_and_kept_secret() {
        assert!(Config::load_from(None, env(&[])).unwrap().redis_url.is_none());
        let err = Config::load_from(None, env(&[("OXIDP_REDIS_URL", "rediss://cache:6380")])).unwrap_err();
        assert_eq!(err.key, "redis_url");
        let config = Config::load_from(None, env(&[("OXIDP_REDIS_URL", "redis://:hunter22@cache:6379/2")])).unwrap();
        assert_eq!(
            config.redis_url.as_ref().unwrap().expose_secret(),
            "redis://:hunter22@cache:6379/2"
        );
        assert!(!format!("{config:?}").contains("hunter22"));
    }

    #[test]
    fn commerce_introspection_defaults_and_start_check() {
        let config = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(config.commerce.introspection, IntrospectionMode::Sensitive);
        assert_eq!(config.commerce.introspection_fallback, IntrospectionFallback::Local);
        assert_eq!(config.commerce.introspection_cache_secs, 10);
        // The IdP starts without commerce credentials; `oxidp commerce` does not.
        assert_eq!(
            config.validate_commerce_introspection().unwrap_err().key,
            "commerce.introspection_client_id"
        );
        let config = Config::load_from(None, env(&[("OXIDP_COMMERCE__INTROSPECTION_CLIENT_ID", "shop")])).unwrap();
        assert_eq!(
            config.validate_commerce_introspection().unwrap_err().key,
            "commerce.introspection_client_secret"
        );
        let config = Config::load_from(
            None,
            env(&[
                ("OXIDP_COMMERCE__INTROSPECTION_CLIENT_ID", "shop"),
                ("OXIDP_COMMERCE__INTROSPECTION_CLIENT_SECRET", "s3cret"),
                ("OXIDP_COMMERCE__INTROSPECTION_FALLBACK", "deny"),
            ]),
        )
        .unwrap();
        assert!(config.validate_commerce_introspection().is_ok());
        assert_eq!(config.commerce.introspection_fallback, IntrospectionFallback::Deny);
        let off = Config::load_from(None, env(&[("OXIDP_COMMERCE__INTROSPECTION", "off")])).unwrap();
        assert!(off.validate_commerce_introspection().is_ok());
    }

    #[test]
    fn the_webauthn_relying_party_follows_the_issuer_unless_set() {
        let config = Config::load_from(None, env(&[("OXIDP_ISSUER", "https://id.example.com/tenant")])).unwrap();
        let (rp_id, origin, name) = config.webauthn_relying_party().unwrap().unwrap();
        assert_eq!(
            (rp_id.as_str(), origin.as_str()),
            ("id.example.com", "https://id.example.com/")
        );
        assert_eq!(name, "id.example.com");
        let parent = env(&[
            ("OXIDP_ISSUER", "https://id.example.com"),
            ("OXIDP_WEBAUTHN__RP_ID", "example.com"),
        ]);
        assert_eq!(
            Config::load_from(None, parent)
                .unwrap()
                .webauthn_relying_party()
                .unwrap()
                .unwrap()
                .0,
            "example.com"
        );
        let foreign = env(&[
            ("OXIDP_ISSUER", "https://id.example.com"),
            ("OXIDP_WEBAUTHN__RP_ID", "example.org"),
        ]);
        assert_eq!(Config::load_from(None, foreign).unwrap_err().key, "webauthn.rp_id");
        let suffix_trick = env(&[
            ("OXIDP_ISSUER", "https://badexample.com"),
            ("OXIDP_WEBAUTHN__RP_ID", "example.com"),
        ]);
        assert_eq!(Config::load_from(None, suffix_trick).unwrap_err().key, "webauthn.rp_id");
    }

    #[test]
    fn an_ip_issuer_turns_webauthn_off_unless_it_is_demanded() {
        for issuer in ["http://127.0.0.1:8080", "http://[::1]:8080"] {
            let config = Config::load_from(None, env(&[("OXIDP_ISSUER", issuer)])).unwrap();
            assert!(config.webauthn_relying_party().unwrap().is_none(), "{issuer}");
            let demanded = env(&[("OXIDP_ISSUER", issuer), ("OXIDP_WEBAUTHN__ENABLED", "true")]);
            assert_eq!(Config::load_from(None, demanded).unwrap_err().key, "webauthn.enabled");
        }
        let off = env(&[
            ("OXIDP_ISSUER", "https://id.example.com"),
            ("OXIDP_WEBAUTHN__ENABLED", "false"),
        ]);
        assert!(
            Config::load_from(None, off)
                .unwrap()
                .webauthn_relying_party()
                .unwrap()
                .is_none()
        );
    }
}
