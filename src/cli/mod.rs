//! The `oxidp` command line (clap): one module per command group, each parsing
//! its arguments, calling the domain, and printing through [`output`] (text, or
//! JSON with `--json`). The administration commands share one application state,
//! built by [`run`].

pub mod audit;
pub mod client;
pub mod commerce;
pub mod keys;
pub mod migrate;
pub mod output;
pub mod role;
pub mod serve;
pub mod user;

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use oxidp::clock::SystemClock;
use oxidp::config::Config;
use oxidp::state::AppState;

#[derive(Parser)]
#[command(name = "oxidp", version, about = "OAuth 2.0 / OpenID Connect identity provider", after_help = ENV_HELP)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "OXIDP_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    // migrate, user, client, keys, role, audit
    #[command(flatten)]
    Admin(AdminCommand),
    /// Run the commerce resource server (its own process and database), or migrate it.
    Commerce {
        #[command(subcommand)]
        command: Option<commerce::CommerceCommand>,
    },
}

/// The commands that work on the identity provider's database.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(client::ClientCommand),
    /// Manage JWT signing keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Manage roles, permissions and their assignment (RBAC).
    #[command(subcommand)]
    Role(role::RoleCommand),
    /// Query the audit log (sign-ins, lockouts, administrative changes).
    Audit(audit::AuditArgs),
}

/// `--limit` and `--offset` of the list commands.
#[derive(Args)]
pub struct Page {
    #[arg(long, default_value_t = 100)]
    limit: i64,
    #[arg(long, default_value_t = 0)]
    offset: i64,
}

impl Page {
    /// The limit (1–1000) and offset (≥ 0) to ask for.
    pub fn bounds(&self) -> (i64, i64) {
        (self.limit.clamp(1, 1000), self.offset.max(0))
    }
}

/// Runs one command to its end.
pub async fn run(command: Option<Command>, config: Config) -> anyhow::Result<()> {
    match command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run(config).await,
        Command::Commerce { command } => commerce::run(config, command).await,
        Command::Admin(command) => {
            // Opens the database (applying pending migrations), loads the keys
            // and caches, with the system clock.
            let state = AppState::build(config, Arc::new(SystemClock)).await?;
            match command {
                AdminCommand::Migrate => migrate::run(&state),
                AdminCommand::User(command) => user::run(&state, command).await,
                AdminCommand::Client(command) => client::run(&state, command).await,
                AdminCommand::Keys(command) => keys::run(&state, command).await,
                AdminCommand::Role(command) => role::run(&state, command).await,
                AdminCommand::Audit(args) => audit::run(&state, args).await,
            }
        }
    }
}

const ENV_HELP: &str = "\
Configuration is layered: built-in defaults, then the TOML file given with --config
(or OXIDP_CONFIG), then environment variables. Every key has an environment name:
  issuer                        OXIDP_ISSUER (default http://localhost:8080)
  bind                          OXIDP_BIND (default 127.0.0.1:8080)
  data_dir                      OXIDP_DATA_DIR (default ./data)
  database_url                  OXIDP_DATABASE_URL (default sqlite://{data_dir}/oxidp.db)
  pepper                        OXIDP_PEPPER (generated into {data_dir}/secrets.toml if unset)
  key_encryption_secret         OXIDP_KEY_ENCRYPTION_SECRET (likewise)
  redis_url                     OXIDP_REDIS_URL (unset: sign-in rate limits per instance; redis://host:port shares them)
  database.pool_size            OXIDP_DATABASE__POOL_SIZE (16)
  database.connect_timeout_secs OXIDP_DATABASE__CONNECT_TIMEOUT_SECS (3)
  database.busy_timeout_ms      OXIDP_DATABASE__BUSY_TIMEOUT_MS (5000, SQLite only)
  database.wal_checkpoint_secs  OXIDP_DATABASE__WAL_CHECKPOINT_SECS (30, SQLite only; 0 = SQLite's own)
  database.sqlite_cache_kib     OXIDP_DATABASE__SQLITE_CACHE_KIB (2048 per pooled connection)
  database.purge_interval_secs  OXIDP_DATABASE__PURGE_INTERVAL_SECS (60)
  session.idle_timeout_secs     OXIDP_SESSION__IDLE_TIMEOUT_SECS (1800)
  session.absolute_timeout_secs OXIDP_SESSION__ABSOLUTE_TIMEOUT_SECS (43200)
  session.warn_before_secs      OXIDP_SESSION__WARN_BEFORE_SECS (300)
  session.single_session        OXIDP_SESSION__SINGLE_SESSION (false)
  argon2.memory_kib             OXIDP_ARGON2__MEMORY_KIB (19456)
  argon2.iterations             OXIDP_ARGON2__ITERATIONS (2)
  argon2.parallelism            OXIDP_ARGON2__PARALLELISM (1)
  argon2.max_concurrent         OXIDP_ARGON2__MAX_CONCURRENT (2 x cores)
  http.max_body_bytes           OXIDP_HTTP__MAX_BODY_BYTES (65536)
  http.workers                  OXIDP_HTTP__WORKERS (0 = one per core)
  http.drain_secs               OXIDP_HTTP__DRAIN_SECS (0; on SIGTERM /readyz answers 503 this long before the listener closes)
  tokens.access_token_ttl_secs  OXIDP_TOKENS__ACCESS_TOKEN_TTL_SECS (600, default for new clients)
  tokens.refresh_token_ttl_secs OXIDP_TOKENS__REFRESH_TOKEN_TTL_SECS (2592000, likewise)
  tokens.code_ttl_secs          OXIDP_TOKENS__CODE_TTL_SECS (60)
  tokens.request_ttl_secs       OXIDP_TOKENS__REQUEST_TTL_SECS (3600)
  tokens.client_cache_secs      OXIDP_TOKENS__CLIENT_CACHE_SECS (5)
  tokens.refresh_reuse_grace_secs OXIDP_TOKENS__REFRESH_REUSE_GRACE_SECS (10, 0 = off)
  keys.rotation_days            OXIDP_KEYS__ROTATION_DAYS (90, 0 = never)
  keys.publish_ahead_secs       OXIDP_KEYS__PUBLISH_AHEAD_SECS (3600)
  keys.retain_secs              OXIDP_KEYS__RETAIN_SECS (86400)
  keys.refresh_secs             OXIDP_KEYS__REFRESH_SECS (60)
  admin.bootstrap               OXIDP_ADMIN__BOOTSTRAP (true: create the admin user on first start)
  admin.username                OXIDP_ADMIN__USERNAME (admin)
  admin.initial_password        OXIDP_ADMIN__INITIAL_PASSWORD (random, printed once to the log)
  login.ip_per_minute           OXIDP_LOGIN__IP_PER_MINUTE (30; IPv6 by /64)
  login.ip_burst                OXIDP_LOGIN__IP_BURST (20)
  login.account_per_minute      OXIDP_LOGIN__ACCOUNT_PER_MINUTE (10)
  login.account_burst           OXIDP_LOGIN__ACCOUNT_BURST (10)
  login.client_failures_per_minute OXIDP_LOGIN__CLIENT_FAILURES_PER_MINUTE (20, at /token)
  login.delay_after             OXIDP_LOGIN__DELAY_AFTER (5 failures, then 1 s, 2 s, 4 s ...)
  login.delay_max_secs          OXIDP_LOGIN__DELAY_MAX_SECS (900)
  login.lockout_after           OXIDP_LOGIN__LOCKOUT_AFTER (100, at most 100)
  login.window_secs             OXIDP_LOGIN__WINDOW_SECS (900, risk signal window)
  login.stuffing_usernames      OXIDP_LOGIN__STUFFING_USERNAMES (10 per network and window)
  login.deny_score              OXIDP_LOGIN__DENY_SCORE (60)
  login.trusted_proxies         OXIDP_LOGIN__TRUSTED_PROXIES (comma-separated IPs/CIDRs; none)
  login.device_cookie_days      OXIDP_LOGIN__DEVICE_COOKIE_DAYS (365)
  login.attempts_retention_days OXIDP_LOGIN__ATTEMPTS_RETENTION_DAYS (90)
  login.device_max_failures     OXIDP_LOGIN__DEVICE_MAX_FAILURES (5 wrong passwords per device cookie)
  login.second_step_delay_after OXIDP_LOGIN__SECOND_STEP_DELAY_AFTER (3 failed second steps, then 1 s, 2 s ...)
  login.second_step_lockout_after OXIDP_LOGIN__SECOND_STEP_LOCKOUT_AFTER (50, at most 100)
  webauthn.enabled              OXIDP_WEBAUTHN__ENABLED (on unless the issuer is an IP address)
  webauthn.rp_id                OXIDP_WEBAUTHN__RP_ID (the issuer's host)
  webauthn.origin               OXIDP_WEBAUTHN__ORIGIN (the issuer's origin)
  webauthn.rp_name              OXIDP_WEBAUTHN__RP_NAME (the issuer's host)
  audit.retention_days          OXIDP_AUDIT__RETENTION_DAYS (90, 0 = forever)
  log.format                    OXIDP_LOG__FORMAT (text | json)
  log.level                     OXIDP_LOG__LEVEL (info)
  commerce.bind                 OXIDP_COMMERCE__BIND (127.0.0.1:8081)
  commerce.public_url           OXIDP_COMMERCE__PUBLIC_URL (http://localhost:8081)
  commerce.database_url         OXIDP_COMMERCE__DATABASE_URL (default sqlite://{data_dir}/commerce.db)
  commerce.issuer               OXIDP_COMMERCE__ISSUER (default: issuer)
  commerce.audience             OXIDP_COMMERCE__AUDIENCE (default: commerce.public_url)
  commerce.jwks_refresh_secs    OXIDP_COMMERCE__JWKS_REFRESH_SECS (300)
  commerce.jwks_min_refetch_secs OXIDP_COMMERCE__JWKS_MIN_REFETCH_SECS (10)
  commerce.jwks_max_stale_secs  OXIDP_COMMERCE__JWKS_MAX_STALE_SECS (86400)
  commerce.token_cache_capacity OXIDP_COMMERCE__TOKEN_CACHE_CAPACITY (100000)
  commerce.introspection        OXIDP_COMMERCE__INTROSPECTION (sensitive; off | sensitive | all)
  commerce.introspection_client_id OXIDP_COMMERCE__INTROSPECTION_CLIENT_ID (required unless off)
  commerce.introspection_client_secret OXIDP_COMMERCE__INTROSPECTION_CLIENT_SECRET (required unless off)
  commerce.introspection_cache_secs OXIDP_COMMERCE__INTROSPECTION_CACHE_SECS (10)
  commerce.introspection_fallback OXIDP_COMMERCE__INTROSPECTION_FALLBACK (local; local | deny)
  commerce.reservation_workers  OXIDP_COMMERCE__RESERVATION_WORKERS (4; 0 = accept only)
  commerce.hold_secs            OXIDP_COMMERCE__HOLD_SECS (600)
  commerce.reservation_lease_secs OXIDP_COMMERCE__RESERVATION_LEASE_SECS (30)
  commerce.payment_timeout_secs OXIDP_COMMERCE__PAYMENT_TIMEOUT_SECS (900; 1 to 604800)
  commerce.queue_url            OXIDP_COMMERCE__QUEUE_URL (empty = the database queue; amqp://… = RabbitMQ)
  commerce.queue_name           OXIDP_COMMERCE__QUEUE_NAME (oxidp.reservations; RabbitMQ queue, + .dead / .dlx)
  commerce.queue_max_deliveries OXIDP_COMMERCE__QUEUE_MAX_DELIVERIES (5; RabbitMQ: failed deliveries before dead-lettering)
  metrics.bind                  OXIDP_METRICS__BIND (127.0.0.1:9464; off = no metrics listener)
  metrics.token                 OXIDP_METRICS__TOKEN (none; bearer token for /metrics, also on the public listener)";
