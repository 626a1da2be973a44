//! Background upkeep every instance runs (each job is idempotent, so several
//! instances may run it at once): retention — expired rows deleted in small
//! batches — and, on SQLite, resetting the write-ahead log so it stays bounded.
//! `purge_once` and `checkpoint_once` are public so tests drive them with the
//! injected clock.

use std::time::Duration;

use crate::db::maintenance::{self, Checkpoint, Partitioned, PurgeStats};
use crate::db::models::{audit, clients, codes, grants, logins, mfa, webauthn};
use crate::db::{Db, DbError};
use crate::metrics::Metrics;

/// How long the automatic checkpoint waits, once this process's transactions are
/// held back, for SQLite's write lock (autocommit writers, another process) and
/// for readers still on older WAL frames, before it gives up until the next run.
pub const CHECKPOINT_WAIT: Duration = Duration::from_millis(500);

/// A WAL this large is checkpointed at the next one-second look, whatever the
/// period: under a steady write load a 30 s period alone let the WAL pass 300 MB
/// (readers kept SQLite's own PASSIVE checkpoints from ever resetting it).
pub const WAL_CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;

/// Whether the WAL checkpoint is due: every `period`, or sooner once the WAL has
/// reached `WAL_CHECKPOINT_BYTES`.
pub fn checkpoint_due(wal_bytes: u64, since_last: Duration, period: Duration) -> bool {
    since_last >= period || wal_bytes >= WAL_CHECKPOINT_BYTES
}

/// What the retention jobs keep, from configuration.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Audit events older than this many days are deleted; 0 keeps them.
    pub audit_days: i64,
    /// Sign-in attempts older than this many days are deleted, and so are the
    /// per-username failure counters nobody failed on for as long (unless locked).
    pub attempts_days: i64,
    /// Known devices not seen for this many days (the device cookie's lifetime:
    /// by then the browser has dropped the cookie) are forgotten.
    pub device_days: i64,
}

/// Deletes every expired row once: pending requests, codes, grants (with their
/// refresh tokens), access-token revocations, client assertion ids, second-step
/// challenges, WebAuthn ceremonies, and audit events, sign-in attempts, idle
/// failure counters and unseen devices past their retention. Each table in
/// batches of `maintenance::PURGE_BATCH`.
pub async fn purge_once(db: &Db, now: i64, retention: Retention) -> Result<PurgeStats, DbError> {
    let mut stats = PurgeStats::default();
    stats.add(maintenance::purge_in_batches(db, move |c, n| codes::purge_requests_batch(c, now, n)).await?);
    stats.add(maintenance::purge_in_batches(db, move |c, n| codes::purge_codes_batch(c, now, n)).await?);
    stats.add(maintenance::purge_in_batches(db, move |c, n| grants::purge_grants_batch(c, now, n)).await?);
    stats.add(maintenance::purge_in_batches(db, move |c, n| grants::purge_revocations_batch(c, now, n)).await?);
    stats.add(maintenance::purge_in_batches(db, move |c, n| grants::forget_successors_batch(c, now, n)).await?);
    // Small tables: one statement each.
    let rows = db
        .run(move |conn| {
            Ok(clients::purge_assertions(conn, now)? + mfa::purge(conn, now)? + webauthn::purge(conn, now)?)
        })
        .await?;
    stats.rows += rows;
    let idle_since = now - retention.attempts_days * 86_400;
    stats
        .add(maintenance::purge_in_batches(db, move |c, n| logins::purge_throttle_batch(c, idle_since, now, n)).await?);
    let unseen_since = now - retention.device_days * 86_400;
    stats.add(maintenance::purge_in_batches(db, move |c, n| logins::purge_devices_batch(c, unseen_since, n)).await?);
    // Last: on PostgreSQL a partition DROP may time out waiting for its lock (it
    // fails rather than queue writers); the other tables are done by then.
    stats.add(expire_append_only(db, Partitioned::AuditEvents, now, retention.audit_days).await?);
    stats.add(expire_append_only(db, Partitioned::LoginAttempts, now, retention.attempts_days).await?);
    Ok(stats)
}

/// Expires an append-only table past `days` (0 keeps it forever). SQLite: row by
/// row in batches, exactly at the retention. PostgreSQL: the monthly partitions a
/// month ahead are created, a month is dropped whole once it ended `days` ago, so a
/// row lives between `days` and `days` + one month; rows in the default partition
/// (older than the partitions) expire row by row, exactly.
async fn expire_append_only(db: &Db, table: Partitioned, now: i64, days: i64) -> Result<PurgeStats, DbError> {
    let before = (days > 0).then(|| now - days * 86_400);
    let mut stats = PurgeStats::default();
    let rotated = db
        .run(move |conn| maintenance::rotate_month_partitions(conn, table, now, before))
        .await?;
    let Some(before) = before else {
        return Ok(stats);
    };
    match rotated {
        Some((_, dropped)) => {
            stats.partitions_dropped = dropped as usize;
            stats.add(
                maintenance::purge_in_batches(db, move |c, n| {
                    maintenance::purge_default_partition_batch(c, table, before, n)
                })
                .await?,
            );
        }
        None => {
            stats.add(
                maintenance::purge_in_batches(db, move |c, n| match table {
                    Partitioned::AuditEvents => audit::purge_batch(c, before, n),
                    Partitioned::LoginAttempts => logins::purge_attempts_batch(c, before, n),
                })
                .await?,
            );
        }
    }
    Ok(stats)
}

/// SQLite: `wal_checkpoint(TRUNCATE)` with a short wait, counted in the metrics,
/// run while this process's transactions are held back (`Db::run_with_writers_held`):
/// without that, a steady stream of writers kept it busy. `None` on PostgreSQL.
pub async fn checkpoint_once(
    db: &Db,
    metrics: &Metrics,
    normal_busy_timeout: Duration,
) -> Result<Option<Checkpoint>, DbError> {
    if db.sqlite_path().is_none() {
        return Ok(None);
    }
    let result = db
        .run_with_writers_held(move |conn| maintenance::wal_checkpoint(conn, CHECKPOINT_WAIT, normal_busy_timeout))
        .await;
    match &result {
        Ok(Some(c)) if c.busy => Metrics::inc(&metrics.wal_checkpoints_busy),
        Ok(_) => Metrics::inc(&metrics.wal_checkpoints_done),
        Err(_) => Metrics::inc(&metrics.wal_checkpoints_failed),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkpoint_runs_every_period_or_as_soon_as_the_wal_is_large() {
        let period = Duration::from_secs(30);
        assert!(!checkpoint_due(0, Duration::from_secs(29), period));
        assert!(!checkpoint_due(
            WAL_CHECKPOINT_BYTES - 1,
            Duration::from_secs(1),
            period
        ));
        assert!(checkpoint_due(WAL_CHECKPOINT_BYTES, Duration::from_secs(1), period));
        assert!(checkpoint_due(0, period, period));
    }
}
