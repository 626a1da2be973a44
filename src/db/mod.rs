//! Storage: one diesel codebase over SQLite (embedded default) and PostgreSQL.
//!
//! `AnyConnection` is a diesel `MultiConnection`; `Db` owns an r2d2 pool of them
//! and runs every query on tokio's blocking pool so async executor threads never
//! wait on the database.

pub mod maintenance;
pub mod models;
pub mod schema;
#[cfg(test)]
pub(crate) mod testing;

mod manager;
mod migrations;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
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
            // libpq: the connection was closed (`server closed the connection
            // unexpectedly`, `terminating connection due to administrator command`),
            // or a command could not even be sent on it (`no connection to the server`).
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => DbError::Unavailable(info.message().to_owned()),
            DieselError::DatabaseError(_, ref info) if is_unavailable_message(info.message()) => {
                DbError::Unavailable(info.message().to_owned())
            }
            DieselError::BrokenTransactionManager => DbError::Unavailable("broken transaction manager".to_owned()),
            // COMMIT failed and so did the ROLLBACK after it: on a lost connection the
            // outcome is unknown to us, which is what 503 (retry) says.
            DieselError::RollbackErrorOnCommit {
                rollback_error,
                commit_error,
            } => match DbError::from(*commit_error) {
                DbError::Unavailable(cause) => DbError::Unavailable(cause),
                _ => match DbError::from(*rollback_error) {
                    DbError::Unavailable(cause) => DbError::Unavailable(cause),
                    other => other,
                },
            },
            other => DbError::Query(other),
        }
    }
}

/// Messages of errors that mean "the database is not there right now" rather than
/// "this query is wrong": lost PostgreSQL connections, a locked, missing or
/// unreadable SQLite file.
fn is_unavailable_message(message: &str) -> bool {
    const MARKERS: [&str; 11] = [
        "server closed the connection",
        "terminating connection",
        "connection refused",
        "could not connect",
        "database is locked",
        "disk i/o error",
        "unable to open database",
        "file is not a database",
        "no connection to the server",
        "could not receive data from server",
        "could not send data to server",
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
    /// Until when (Unix ms) pooled PostgreSQL connections are suspect: set when one
    /// was found broken, as the server usually dropped its siblings too (restart,
    /// failover, `pg_terminate_backend`). While suspect, each checkout is tested.
    suspect_until_ms: Arc<AtomicI64>,
    /// SQLite: this process's writers queue here (eventually fair) before they
    /// take the database's one write lock, instead of sleep-polling for it in
    /// SQLite's busy handler. The WAL checkpoint queues here too, so a steady
    /// stream of writers cannot starve it (see `run_with_writers_held`).
    write_gate: Arc<parking_lot::Mutex<()>>,
    /// How long a writer waits in `write_gate` (SQLite's `busy_timeout`).
    busy_timeout: Duration,
}

/// How long after a broken connection checkouts are tested before use.
const SUSPECT_FOR: Duration = Duration::from_secs(10);

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Makes r2d2 discard `conn` instead of returning it to the pool: diesel's
/// `is_broken` (r2d2's `has_broken`) only looks at the transaction manager, not at
/// libpq's connection status, so a connection the server closed would otherwise be
/// handed to the next request ("no connection to the server").
fn mark_broken(conn: &mut AnyConnection) {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    if let AnyConnection::Postgresql(c) = conn {
        AnsiTransactionManager::transaction_manager_status_mut(c).set_in_error();
    }
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
            suspect_until_ms: Arc::new(AtomicI64::new(0)),
            write_gate: Arc::new(parking_lot::Mutex::new(())),
            busy_timeout: settings.busy_timeout,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite database file, if this is SQLite (its `-wal` file sits beside it).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// Runs `f` with a pooled connection on the blocking thread pool. A connection
    /// found broken is discarded, never returned to the pool. No retry: `f` may write.
    pub async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = db.checkout()?;
            let result = f(&mut conn);
            db.after(&mut conn, &result);
            result
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// As `run`, for idempotent work (reads, cache reloads): when the connection
    /// turns out to be broken, `f` runs once more on a fresh, tested connection.
    /// SQLite's "unavailable" (a locked or unreadable file) is not retried: another
    /// connection to the same file would not help.
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: Fn(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let attempt = |db: &Db| {
                let mut conn = db.checkout()?;
                let result = f(&mut conn);
                db.after(&mut conn, &result);
                result
            };
            match attempt(&db) {
                Err(error) if error.is_unavailable() && db.backend == Backend::Postgres => {
                    tracing::warn!(%error, "database connection lost; retrying a read once");
                    attempt(&db)
                }
                result => result,
            }
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// A pooled connection. While the pool is suspect (a broken connection was seen
    /// lately), each candidate is tested with a trivial query and dead ones are
    /// dropped, up to the pool size, so a retry does not land on another dead one.
    fn checkout(&self) -> Result<r2d2::PooledConnection<AnyManager>, DbError> {
        use diesel::RunQueryDsl;
        let get = || self.pool.get().map_err(|e| DbError::Unavailable(e.to_string()));
        let mut conn = get()?;
        if self.suspect_until_ms.load(Ordering::Relaxed) <= unix_ms() {
            return Ok(conn);
        }
        for _ in 0..=self.pool.max_size() {
            match diesel::sql_query("SELECT 1").execute(&mut *conn) {
                Ok(_) => return Ok(conn),
                Err(error) => {
                    tracing::debug!(%error, "discarding a dead pooled connection");
                    mark_broken(&mut conn);
                    drop(conn);
                    conn = get()?;
                }
            }
        }
        Ok(conn)
    }

    /// After `f`: a PostgreSQL connection that failed as unavailable is discarded
    /// and the pool becomes suspect for a while.
    fn after<T>(&self, conn: &mut AnyConnection, result: &Result<T, DbError>) {
        if let Err(error) = result
            && error.is_unavailable()
            && self.backend == Backend::Postgres
        {
            mark_broken(conn);
            self.suspect_until_ms
                .store(unix_ms() + SUSPECT_FOR.as_millis() as i64, Ordering::Relaxed);
        }
    }

    /// SQLite: waits (at most `busy_timeout`) for this process's other
    /// transactions to finish and keeps new ones from starting while the guard
    /// lives. Taken after the connection is checked out, never before, so a
    /// holder never waits for the pool while others wait for it.
    fn writers_held(&self) -> Result<Option<parking_lot::MutexGuard<'_, ()>>, DbError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        self.write_gate
            .try_lock_for(self.busy_timeout)
            .map(Some)
            .ok_or_else(|| {
                DbError::Unavailable(format!(
                    "database is locked: other writers held it past the busy timeout ({} ms)",
                    self.busy_timeout.as_millis()
                ))
            })
    }

    /// As `run`, with this process's SQLite transactions held back while `f` runs
    /// (on PostgreSQL exactly `run`). For the WAL checkpoint: it needs SQLite's
    /// write lock, which a steady stream of `BEGIN IMMEDIATE` writers would
    /// otherwise hold nearly all the time, so a checkpoint polling for it with a
    /// short wait kept failing (busy) while the WAL grew past 300 MB.
    pub async fn run_with_writers_held<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.clone();
        self.run(move |conn| {
            let _writers = db.writers_held()?;
            f(conn)
        })
        .await
    }

    /// Runs `f` inside one transaction: every write in it lands, or none does.
    ///
    /// On SQLite the transaction starts with `BEGIN IMMEDIATE`, taking the write
    /// lock up front: a deferred transaction that reads and then writes fails at
    /// once (SQLITE_BUSY) when another writer committed in between, instead of
    /// waiting `busy_timeout`. Before that it queues behind this process's other
    /// SQLite transactions in the write gate. `f` must not open nested transactions.
    ///
    /// On PostgreSQL, when the connection turns out to be dead before `f` started
    /// (BEGIN failed), nothing was sent, so the transaction is tried once more on a
    /// fresh connection; once `f` has started, a lost connection is `Unavailable`.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> Result<T, DbError> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = Some(f);
            let mut conn = db.checkout()?;
            let writers = db.writers_held()?;
            let mut result = in_transaction(&mut conn, &mut f);
            drop(writers);
            db.after(&mut conn, &result);
            drop(conn);
            if f.is_some() && db.backend == Backend::Postgres && result.as_ref().is_err_and(DbError::is_unavailable) {
                tracing::warn!("database connection lost before BEGIN; retrying the transaction once");
                let mut conn = db.checkout()?;
                result = in_transaction(&mut conn, &mut f);
                db.after(&mut conn, &result);
            }
            result
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }

    /// Answers whether the database can serve a sign-in. PostgreSQL: a trivial
    /// query. SQLite: the write lock can be taken (readers keep working while
    /// another process holds it, but every sign-in writes).
    pub async fn ping(&self) -> Result<(), DbError> {
        use diesel::RunQueryDsl;
        self.read(|conn| {
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

/// One transaction attempt; `f` is taken only once the transaction has begun, so
/// `Some` afterwards means it never ran.
fn in_transaction<T, F>(conn: &mut AnyConnection, f: &mut Option<F>) -> Result<T, DbError>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, DbError>,
{
    use diesel::{Connection, RunQueryDsl};
    if matches!(conn, AnyConnection::Postgresql(_)) {
        return conn.transaction(|conn| (f.take().expect("runs once"))(conn));
    }
    diesel::sql_query("BEGIN IMMEDIATE").execute(conn)?;
    let f = f.take().expect("runs once");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn lost_postgres_connections_are_unavailable_whatever_the_error_kind() {
        for (kind, message) in [
            (DatabaseErrorKind::UnableToSendCommand, "no connection to the server\n"),
            (
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection unexpectedly",
            ),
            (
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
            (
                DatabaseErrorKind::Unknown,
                "could not receive data from server: Connection reset",
            ),
        ] {
            assert!(
                DbError::from(database_error(kind, message)).is_unavailable(),
                "{message}"
            );
        }
        let lost_commit = DieselError::RollbackErrorOnCommit {
            rollback_error: Box::new(database_error(
                DatabaseErrorKind::UnableToSendCommand,
                "no connection to the server",
            )),
            commit_error: Box::new(database_error(
                DatabaseErrorKind::Unknown,
                "server closed the connection unexpectedly",
            )),
        };
        assert!(DbError::from(lost_commit).is_unavailable());
    }

    #[test]
    fn query_errors_stay_query_errors() {
        let error = DbError::from(database_error(
            DatabaseErrorKind::Unknown,
            "syntax error at or near \"SELEC\"",
        ));
        assert!(matches!(error, DbError::Query(_)));
        let error = DbError::from(database_error(DatabaseErrorKind::UniqueViolation, "duplicate key"));
        assert!(matches!(error, DbError::Conflict(_)));
    }
}
