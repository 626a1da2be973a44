//! r2d2 connection manager that opens exactly the backend the URL names.
//!
//! The derived `MultiConnection::establish` tries each backend in turn, and SQLite
//! accepts any string as a file name; a mistyped PostgreSQL URL must fail loudly
//! instead of creating a stray SQLite file, so the backend is chosen from the URL.

use diesel::{Connection, RunQueryDsl};
use std::path::Path;
use std::time::Duration;

use super::AnyConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug)]
pub struct AnyManager {
    backend: Backend,
    /// For SQLite a file path, for PostgreSQL the libpq URL.
    target: String,
    busy_timeout: Duration,
    cache_kib: u32,
}

/// SQLite: the write-ahead log is truncated to this size after a checkpoint
/// resets it (the periodic `wal_checkpoint(TRUNCATE)` keeps it near zero).
pub const SQLITE_JOURNAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

impl AnyManager {
    pub fn new(url: &str, busy_timeout: Duration) -> anyhow::Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self {
                backend: Backend::Postgres,
                target: url.to_owned(),
                busy_timeout,
                cache_kib: 0,
            });
        }
        if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() {
                anyhow::bail!("database_url: `{url}` names no SQLite file");
            }
            if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| anyhow::anyhow!("database_url: cannot create directory {}: {e}", parent.display()))?;
            }
            return Ok(Self {
                backend: Backend::Sqlite,
                target: path.to_owned(),
                busy_timeout,
                cache_kib: 2048,
            });
        }
        anyhow::bail!("database_url: expected `sqlite://PATH` or `postgres://…`, got a URL with another scheme")
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// SQLite page cache per connection (`PRAGMA cache_size`), in KiB.
    pub fn with_cache_kib(mut self, kib: u32) -> Self {
        self.cache_kib = kib;
        self
    }

    pub fn sqlite_path(&self) -> Option<&Path> {
        (self.backend == Backend::Sqlite).then(|| Path::new(&self.target))
    }
}

impl r2d2::ManageConnection for AnyManager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        match self.backend {
            Backend::Postgres => diesel::PgConnection::establish(&self.target)
                .map(AnyConnection::Postgresql)
                .map_err(diesel::r2d2::Error::ConnectionError),
            Backend::Sqlite => {
                let mut conn =
                    diesel::SqliteConnection::establish(&self.target).map_err(diesel::r2d2::Error::ConnectionError)?;
                // WAL lets readers proceed during a write; busy_timeout waits for the
                // writer lock instead of failing at once; foreign keys are off by default.
                // The page cache is bounded per connection (memory = pool size × this);
                // journal_size_limit truncates the WAL after each reset.
                let busy = format!("PRAGMA busy_timeout = {}", self.busy_timeout.as_millis());
                let cache = format!("PRAGMA cache_size = -{}", self.cache_kib.max(64));
                let wal_limit = format!("PRAGMA journal_size_limit = {SQLITE_JOURNAL_SIZE_LIMIT}");
                for pragma in [
                    busy.as_str(),
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA synchronous = NORMAL",
                    "PRAGMA foreign_keys = ON",
                    cache.as_str(),
                    wal_limit.as_str(),
                ] {
                    diesel::sql_query(pragma)
                        .execute(&mut conn)
                        .map_err(diesel::r2d2::Error::QueryError)?;
                }
                Ok(AnyConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        diesel::sql_query("SELECT 1")
            .execute(conn)
            .map(|_| ())
            .map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        use diesel::r2d2::R2D2Connection;
        match conn {
            AnyConnection::Postgresql(c) => c.is_broken(),
            AnyConnection::Sqlite(c) => c.is_broken(),
        }
    }
}

/// r2d2 logs every failed connection attempt at error level by default, which
/// floods the log while the database is down; one warning per failure is enough,
/// and the URL (which may hold a password) is never part of it.
#[derive(Debug)]
pub struct QuietErrorHandler;

impl r2d2::HandleError<diesel::r2d2::Error> for QuietErrorHandler {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::warn!(error = %error, "database connection attempt failed");
    }
}
