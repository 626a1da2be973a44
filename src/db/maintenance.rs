//! Database upkeep run by the background task: resetting SQLite's write-ahead log,
//! and deleting expired rows in small batches so no single statement holds the
//! write lock for long. Pure database work: no actix, no `AppState`.

use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use diesel::sql_types::BigInt;

use super::{AnyConnection, DbError};

/// Rows deleted per statement by the batched purges. Small enough that one batch
/// holds SQLite's write lock for a few milliseconds.
pub const PURGE_BATCH: i64 = 250;

/// How many more times `wal_checkpoint` tries when another checkpoint is running.
const CHECKPOINT_RETRIES: usize = 5;

/// SQLite's answer to `PRAGMA wal_checkpoint(TRUNCATE)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The checkpoint could not finish (a reader or writer held on past the busy timeout).
    pub busy: bool,
    /// Frames in the WAL before the checkpoint, and frames copied into the database.
    pub log_frames: i64,
    pub checkpointed_frames: i64,
}

#[derive(diesel::QueryableByName)]
struct CheckpointRow {
    #[diesel(sql_type = BigInt)]
    busy: i64,
    #[diesel(sql_type = BigInt)]
    log: i64,
    #[diesel(sql_type = BigInt)]
    checkpointed: i64,
}

/// Copies the WAL into the database and truncates it to zero bytes, waiting at most
/// `wait` for readers and the writer (then it answers `busy` and the next run tries
/// again). Restores the connection's normal busy timeout afterwards. SQLite only:
/// PostgreSQL answers `None`.
pub fn wal_checkpoint(
    conn: &mut AnyConnection,
    wait: Duration,
    normal_busy_timeout: Duration,
) -> Result<Option<Checkpoint>, DbError> {
    let AnyConnection::Sqlite(conn) = conn else {
        return Ok(None);
    };
    diesel::sql_query(format!("PRAGMA busy_timeout = {}", wait.as_millis())).execute(conn)?;
    // A checkpoint that finds another one running (SQLite's automatic PASSIVE
    // checkpoint after a commit) is refused at once, without the busy handler
    // (log and checkpointed frames -1); that one ends within milliseconds.
    let mut result = diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result::<CheckpointRow>(conn);
    for _ in 0..CHECKPOINT_RETRIES {
        if !matches!(&result, Ok(row) if row.busy != 0 && row.log < 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        result = diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)").get_result::<CheckpointRow>(conn);
    }
    diesel::sql_query(format!("PRAGMA busy_timeout = {}", normal_busy_timeout.as_millis())).execute(conn)?;
    let row = result?;
    Ok(Some(Checkpoint {
        busy: row.busy != 0,
        log_frames: row.log,
        checkpointed_frames: row.checkpointed,
    }))
}

/// The size of the SQLite write-ahead log next to `db_path` (0 when absent).
pub fn wal_bytes(db_path: &std::path::Path) -> u64 {
    let mut wal = db_path.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

/// Bytes held by SQLite's allocator in this process right now (page caches of
/// every open connection, schema, statements), and its high-water mark since
/// start: what separates SQLite's share of the RSS from the rest.
pub fn sqlite_memory() -> (i64, i64) {
    // SAFETY: both functions take no pointers and are thread-safe (SQLite's
    // memory statistics are protected by its own mutex in the bundled build).
    unsafe {
        (
            libsqlite3_sys::sqlite3_memory_used(),
            libsqlite3_sys::sqlite3_memory_highwater(0),
        )
    }
}

/// What one batched purge did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeStats {
    pub rows: usize,
    pub batches: usize,
    /// The longest single DELETE: how long one batch held the write lock.
    pub longest_batch: Duration,
    /// PostgreSQL: monthly partitions dropped whole (their rows are not in `rows`).
    pub partitions_dropped: usize,
    /// Batches whose DELETE took `SLOW_BATCH` or longer.
    pub slow_batches: usize,
}

/// A batch this slow held SQLite's write lock long enough for a sign-in to notice.
pub const SLOW_BATCH: Duration = Duration::from_millis(100);

impl PurgeStats {
    pub fn add(&mut self, other: PurgeStats) {
        self.rows += other.rows;
        self.batches += other.batches;
        self.longest_batch = self.longest_batch.max(other.longest_batch);
        self.partitions_dropped += other.partitions_dropped;
        self.slow_batches += other.slow_batches;
    }
}

/// One batch of a purge: rows deleted, and how long the DELETE took — the time it
/// held the write lock (the SELECT of the ids before it is a plain read).
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub deleted: usize,
    pub write_time: Duration,
}

/// Deletes the rows `ids` names with `delete`, timing the statement.
pub fn delete_timed(
    conn: &mut AnyConnection,
    ids: Vec<String>,
    delete: impl FnOnce(&mut AnyConnection, &[String]) -> Result<usize, DbError>,
) -> Result<Batch, DbError> {
    if ids.is_empty() {
        return Ok(Batch {
            deleted: 0,
            write_time: Duration::ZERO,
        });
    }
    let started = Instant::now();
    let deleted = delete(conn, &ids)?;
    Ok(Batch {
        deleted,
        write_time: started.elapsed(),
    })
}

/// Runs `batch` (which deletes at most `PURGE_BATCH` rows and says how many), each
/// call in its own short statement, until a batch comes back short; between full
/// batches it sleeps briefly so sign-ins and token requests take the write lock.
pub async fn purge_in_batches<F>(db: &super::Db, batch: F) -> Result<PurgeStats, DbError>
where
    F: Fn(&mut AnyConnection, i64) -> Result<Batch, DbError> + Clone + Send + 'static,
{
    let mut stats = PurgeStats::default();
    loop {
        let run = batch.clone();
        let Batch { deleted, write_time } = db.run(move |conn| run(conn, PURGE_BATCH)).await?;
        stats.longest_batch = stats.longest_batch.max(write_time);
        stats.slow_batches += usize::from(write_time >= SLOW_BATCH);
        stats.batches += 1;
        stats.rows += deleted;
        if (deleted as i64) < PURGE_BATCH {
            return Ok(stats);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The append-only tables that PostgreSQL keeps in monthly range partitions on `at`
/// (migration `2026-12-03-000016_monthly_partitions`). SQLite keeps them as plain
/// tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioned {
    AuditEvents,
    LoginAttempts,
}

impl Partitioned {
    pub const ALL: [Partitioned; 2] = [Partitioned::AuditEvents, Partitioned::LoginAttempts];

    pub fn table(self) -> &'static str {
        match self {
            Partitioned::AuditEvents => "audit_events",
            Partitioned::LoginAttempts => "login_attempts",
        }
    }

    /// Where rows outside every monthly partition land; expired row by row.
    fn default_partition(self) -> &'static str {
        match self {
            Partitioned::AuditEvents => "audit_events_default",
            Partitioned::LoginAttempts => "login_attempts_default",
        }
    }
}

/// How far ahead the monthly partitions exist: the current month and the next two,
/// so a new month's rows never land in the default partition.
pub const PARTITIONS_AHEAD_SECS: i64 = 62 * 86_400;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    n: i32,
}

/// PostgreSQL: makes sure `table` has its monthly partitions from `now`'s month
/// through `PARTITIONS_AHEAD_SECS` ahead, and drops the monthly partitions whose
/// month ended at or before `before` (`None` keeps them all). Answers
/// `(created, dropped)`; SQLite answers `None`. A DROP waits at most 200 ms for its
/// lock (set in the SQL function), so it never holds writers back for long.
pub fn rotate_month_partitions(
    conn: &mut AnyConnection,
    table: Partitioned,
    now: i64,
    before: Option<i64>,
) -> Result<Option<(i32, i32)>, DbError> {
    let AnyConnection::Postgresql(conn) = conn else {
        return Ok(None);
    };
    let created = diesel::sql_query("SELECT oxidp_ensure_month_partitions($1, $2, $3) AS n")
        .bind::<diesel::sql_types::Text, _>(table.table())
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(now + PARTITIONS_AHEAD_SECS)
        .get_result::<Count>(conn)?
        .n;
    let dropped = match before {
        Some(before) => {
            diesel::sql_query("SELECT oxidp_drop_month_partitions($1, $2) AS n")
                .bind::<diesel::sql_types::Text, _>(table.table())
                .bind::<BigInt, _>(before)
                .get_result::<Count>(conn)?
                .n
        }
        None => 0,
    };
    Ok(Some((created, dropped)))
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

/// PostgreSQL: one batch of the row-by-row expiry of `table`'s default partition
/// (rows older than every monthly partition, e.g. from before the migration).
/// Monthly partitions are never touched here: they go whole.
pub fn purge_default_partition_batch(
    conn: &mut AnyConnection,
    table: Partitioned,
    before: i64,
    limit: i64,
) -> Result<Batch, DbError> {
    let AnyConnection::Postgresql(pg) = conn else {
        return Ok(Batch {
            deleted: 0,
            write_time: Duration::ZERO,
        });
    };
    let ids: Vec<String> = diesel::sql_query(format!(
        "SELECT id FROM {} WHERE at < $1 ORDER BY at LIMIT $2",
        table.default_partition()
    ))
    .bind::<BigInt, _>(before)
    .bind::<BigInt, _>(limit)
    .load::<Id>(pg)?
    .into_iter()
    .map(|row| row.id)
    .collect();
    if ids.is_empty() {
        return Ok(Batch {
            deleted: 0,
            write_time: Duration::ZERO,
        });
    }
    let started = Instant::now();
    let deleted = diesel::sql_query(format!("DELETE FROM {} WHERE id = ANY($1)", table.default_partition()))
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(&ids)
        .execute(pg)?;
    Ok(Batch {
        deleted,
        write_time: started.elapsed(),
    })
}
