//! Process counters in the Prometheus text format (`GET /metrics`). Per instance;
//! sum them across instances. No labels carry user data.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::authn::password::PasswordHasher;
use crate::db::Db;

#[derive(Default)]
pub struct Metrics {
    pub logins_succeeded: AtomicU64,
    pub logins_failed: AtomicU64,
    /// Refused before the password check (delayed, locked, risk-denied).
    pub logins_refused: AtomicU64,
    pub logins_rate_limited: AtomicU64,
    pub client_auth_slowed: AtomicU64,
    /// SQLite `wal_checkpoint(TRUNCATE)` runs by result.
    pub wal_checkpoints_done: AtomicU64,
    pub wal_checkpoints_busy: AtomicU64,
    pub wal_checkpoints_failed: AtomicU64,
    /// Expired rows deleted by the retention jobs.
    pub rows_purged: AtomicU64,
    /// Second-step codes (TOTP or recovery) actually checked, after their reservation.
    pub second_step_checks: AtomicU64,
    /// Second-step attempts refused before any check (delayed or locked).
    pub second_step_refused: AtomicU64,
    /// The PostgreSQL cache-invalidation listener (`crate::invalidation`).
    pub invalidation: std::sync::Arc<crate::invalidation::ListenerStatus>,
    /// The sign-in limiters' backend (`authn::shared_limits`).
    pub rate_limiter: std::sync::Arc<crate::authn::shared_limits::LimiterStatus>,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counters of `m`, of the password hasher, and of the database (SQLite's
/// write-ahead log), as `GET /metrics` serves them.
pub fn render(m: &Metrics, hasher: &PasswordHasher, db: &Db) -> String {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, lines: &[(&str, u64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
        for (labels, value) in lines {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    counter(
        "oxidp_password_hashes_total",
        "Password hashes computed (argon2id, legacy verifications, dummy hashes for unknown users).",
        &[("", hasher.computed())],
    );
    counter(
        "oxidp_login_attempts_total",
        "Sign-in attempts by result.",
        &[
            ("{result=\"success\"}", get(&m.logins_succeeded)),
            ("{result=\"failure\"}", get(&m.logins_failed)),
            ("{result=\"refused\"}", get(&m.logins_refused)),
            ("{result=\"rate_limited\"}", get(&m.logins_rate_limited)),
        ],
    );
    counter(
        "oxidp_client_auth_slow_down_total",
        "Client authentications answered slow_down after too many failures.",
        &[("", get(&m.client_auth_slowed))],
    );
    counter(
        "oxidp_purged_rows_total",
        "Expired rows deleted by the retention jobs (codes, grants, audit events, sign-in attempts ...).",
        &[("", get(&m.rows_purged))],
    );
    counter(
        "oxidp_second_step_checks_total",
        "Second-step codes (TOTP or recovery codes) checked, and refused unchecked (delayed or locked).",
        &[
            ("{result=\"checked\"}", get(&m.second_step_checks)),
            ("{result=\"refused\"}", get(&m.second_step_refused)),
        ],
    );
    counter(
        "oxidp_rate_limiter_fallback_total",
        "Sign-in limit checks answered by this instance's own limiters because Redis (redis_url) failed, timed out or was paused after a failure.",
        &[("", m.rate_limiter.fallbacks())],
    );
    if db.backend() == crate::db::Backend::Postgres {
        let listener = &m.invalidation;
        counter(
            "oxidp_cache_invalidations_received_total",
            "Cache invalidation notifications received over PostgreSQL LISTEN (this instance's own changes included).",
            &[("", listener.received())],
        );
        counter(
            "oxidp_cache_invalidation_listener_reconnects_total",
            "Reconnections of the cache invalidation listener after a lost connection (each drops every cache).",
            &[("", listener.reconnects())],
        );
    }
    if let Some(path) = db.sqlite_path() {
        counter(
            "oxidp_sqlite_wal_checkpoints_total",
            "Periodic wal_checkpoint(TRUNCATE) runs by result (busy: readers or a writer held on; retried next run).",
            &[
                ("{result=\"done\"}", get(&m.wal_checkpoints_done)),
                ("{result=\"busy\"}", get(&m.wal_checkpoints_busy)),
                ("{result=\"failed\"}", get(&m.wal_checkpoints_failed)),
            ],
        );
        let wal = crate::db::maintenance::wal_bytes(path);
        out.push_str(&format!(
            "# HELP oxidp_sqlite_wal_bytes Size of the SQLite write-ahead log.\n# TYPE oxidp_sqlite_wal_bytes gauge\noxidp_sqlite_wal_bytes {wal}\n"
        ));
        let (used, highwater) = crate::db::maintenance::sqlite_memory();
        out.push_str(&format!(
            "# HELP oxidp_sqlite_memory_bytes Memory held by SQLite in this process (page caches of every connection, schema, statements).\n\
             # TYPE oxidp_sqlite_memory_bytes gauge\noxidp_sqlite_memory_bytes {used}\n\
             # HELP oxidp_sqlite_memory_highwater_bytes The most memory SQLite has held at once since start.\n\
             # TYPE oxidp_sqlite_memory_highwater_bytes gauge\noxidp_sqlite_memory_highwater_bytes {highwater}\n"
        ));
    }
    let redis = u8::from(m.rate_limiter.redis_active());
    out.push_str(&format!(
        "# HELP oxidp_rate_limiter_backend The backend of the last sign-in limit check: redis (shared by every instance) or local (this instance only).\n\
         # TYPE oxidp_rate_limiter_backend gauge\noxidp_rate_limiter_backend{{backend=\"redis\"}} {redis}\noxidp_rate_limiter_backend{{backend=\"local\"}} {}\n",
        1 - redis
    ));
    if db.backend() == crate::db::Backend::Postgres {
        out.push_str(&format!(
            "# HELP oxidp_cache_invalidation_listener_up 1 while the cache invalidation listener is connected.\n\
             # TYPE oxidp_cache_invalidation_listener_up gauge\noxidp_cache_invalidation_listener_up {}\n",
            u8::from(m.invalidation.backend_pid().is_some())
        ));
    }
    out.push_str(&format!(
        "# HELP oxidp_legacy_password_accounts Accounts still carrying an imported legacy (bcrypt/PBKDF2, wrapped) password hash; they move to argon2id at their next sign-in.\n\
         # TYPE oxidp_legacy_password_accounts gauge\noxidp_legacy_password_accounts {}\n",
        hasher.legacy_accounts()
    ));
    out.push_str(&format!(
        "# HELP oxidp_argon2_memory_fallbacks_total argon2 working memory allocated outside the pre-allocated pool.\n\
         # TYPE oxidp_argon2_memory_fallbacks_total counter\noxidp_argon2_memory_fallbacks_total {}\n",
        hasher.pool_fallbacks()
    ));
    out
}
