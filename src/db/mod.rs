//! Storage: one diesel codebase over SQLite (embedded default) and PostgreSQL.
//!
//! `AnyConnection` is a diesel `MultiConnection`; `Db` owns an r2d2 pool of them
//! and runs every query on tokio's blocking pool so async executor threads never
//! wait on the database.

pub mod maintenance;
pub mod models;
pub mod schema;

mod manager;
mod migrations;

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

pub use manager::{AnyManager, Backend};
pub use migrations::run_migrations;

#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

pub type Pool = r2d2::Pool<AnyManager>;

/// Errors of the storage layer. Callers above map them to their own errors;
/// `Unavailable` becomes 503 everywhere.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached (pool timeout, refused or broken connection).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// No row matched.
    #[error("not found")]
    NotFound,
    /// A unique or foreign-key constraint refused the write.
    #[error("constraint violated: {0}")]
    Conflict(String),
    /// Any other database error: a bug or a corrupt database.
    #[error(transparent)]
    Query(DieselError),
    /// The blocking task panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

impl From<DieselError> for DbError {
    fn from(error: DieselError) -> Self {
        match error {
            DieselError::NotFound => DbError::NotFound,
            DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::ForeignKeyViolation,
                info,
            ) => DbError::Conflict(info.constraint_name().unwrap_or(info.message()).to_owned()),
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                DbError::Unavailable(info.message().to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if is_unavailable_message(info.message()) =>
            {
                DbError::Unavailable(info.message().to_owned())
            }
            DieselError::BrokenTransactionManager => DbError::Unavailable("broken transaction manager".to_owned()),
            other => DbError::Query(other),
        }
    }
}

/// Messages of errors that mean "the database is not there right now" rather than
/// "this query is wrong": lost PostgreSQL connections, a locked, missing or
/// unreadable SQLite file.
fn is_unavailable_message(message: &str) -> bool {
    const MARKERS: [&str; 9] = [
        "server closed the connection",
        "terminating connection",
        "connection refused",
        "could not connect",
        "database is locked",
        "disk i/o error",
        "unable to open database",
        "file is not a database",
        "no connection to the server",
    ];
    let message = message.to_ascii_lowercase();
    MARKERS.iter().any(|marker| message.contains(marker))
}

impl DbError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }
}

/// Pool settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_size: u32,
    pub connect_timeout: Duration,
    /// SQLite: how long a write waits for another writer's lock.
    pub busy_timeout: Duration,
    /// SQLite page cache per connection, in KiB.
    pub sqlite_cache_kib: u32,
}

/// A handle on the connection pool. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    backend: Backend,
    sqlite_path: Option<std::path::PathBuf>,
}

impl Db {
    /// Builds the pool without requiring the database to answer yet: a database
    /// that comes up after oxidp does is picked up by `/readyz` and by the next request.
    pub fn connect(url: &str, settings: &PoolSettings) -> anyhow::Result<Self> {
        // libpq and the JOSE code share one OpenSSL. Initialise it here, before libpq's
        // first connection does, so that OpenSSL does not register its `atexit`
        // cleanup: at process exit that cleanup would free TLS state while a pool
        // thread may still be closing a connection (seen as a double free at exit).
        openssl::init();
        let manager = AnyManager::new(url, settings.busy_timeout)?.with_cache_kib(settings.sqlite_cache_kib);
        let backend = manager.backend();
        let sqlite_path = manager.sqlite_path().map(std::path::Path::to_path_buf);
        let pool = r2d2::Pool::builder()
            .max_size(settings.max_size)
            .min_idle(Some(0))
            .connection_timeout(settings.connect_timeout)
            .test_on_check_out(false)
            .idle_timeout(Some(Duration::from_secs(300)))
            .error_handler(Box::new(manager::QuietErrorHandler))
            .build_unchecked(manager);
        Ok(Self {
            pool,
            backend,
            sqlite_path,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite database file, if this is SQLite (its `-wal` file sits beside it).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get().map_err(|e| DbError::Unavailable(e.to_string()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Runs `f` inside one transaction: every write in it lands, or none does.
    ///
    /// On SQLite the transaction starts with `BEGIN IMMEDIATE`, taking the write
    /// lock up front: a deferred transaction that reads and then writes fails at
    /// once (SQLITE_BUSY) when another writer committed in between, instead of
    /// waiting `busy_timeout`. `f` must not open nested transactions.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        use diesel::{Connection, RunQueryDsl};
        self.run(move |conn| {
            if matches!(conn, AnyConnection::Postgresql(_)) {
                return conn.transaction(|conn| f(conn));
            }
            diesel::sql_query("BEGIN IMMEDIATE").execute(conn)?;
            let mut guard = RollbackGuard(Some(conn));
            let conn = guard.0.as_deref_mut().expect("set above");
            let result = f(conn);
            let conn = guard.0.take().expect("set above");
            match result {
                Ok(value) => match diesel::sql_query("COMMIT").execute(conn) {
                    Ok(_) => Ok(value),
                    Err(error) => {
                        let _ = diesel::sql_query("ROLLBACK").execute(conn);
                        Err(error.into())
                    }
                },
                Err(error) => {
                    let _ = diesel::sql_query("ROLLBACK").execute(conn);
                    Err(error)
                }
            }
        })
        .await
    }

    /// Answers whether the database can serve a sign-in. PostgreSQL: a trivial
    /// query. SQLite: the write lock can be taken (readers keep working while
    /// another process holds it, but every sign-in writes).
    pub async fn ping(&self) -> Result<(), DbError> {
        use diesel::RunQueryDsl;
        self.run(|conn| {
            match conn {
                AnyConnection::Postgresql(c) => {
                    diesel::sql_query("SELECT 1").execute(c)?;
                }
                AnyConnection::Sqlite(c) => {
                    c.immediate_transaction(|_| Ok::<_, DieselError>(()))?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Applies pending migrations (embedded in the binary).
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            run_migrations(&mut conn)
        })
        .await?
    }
}

/// Rolls back an open SQLite transaction if `f` panics, so the pooled connection
/// is not handed out in the middle of a transaction.
struct RollbackGuard<'a>(Option<&'a mut AnyConnection>);

impl Drop for RollbackGuard<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            use diesel::RunQueryDsl;
            let _ = diesel::sql_query("ROLLBACK").execute(conn);
        }
    }
}
