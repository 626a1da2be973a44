//! Retention and WAL upkeep (issue 17): expired rows go exactly when documented,
//! nothing younger is touched, a large cleanup holds the write lock only briefly,
//! and SQLite's write-ahead log is reset by the periodic checkpoint.

use std::time::Duration;

use diesel::RunQueryDsl;
use diesel::sql_types::BigInt;
use oxidp::clock::Clock;
use oxidp::db::models::audit::{self, AuditRow};
use oxidp::db::models::logins::{self, AttemptRow};
use oxidp::housekeeping::{self, Retention};

use crate::helpers::*;

const DAY: i64 = 86_400;

fn audit_row(at: i64) -> AuditRow {
    AuditRow {
        id: uuid::Uuid::now_v7().to_string(),
        at,
        actor: "system".into(),
        action: "test.event".into(),
        target: None,
        details: "{}".into(),
        ip: None,
    }
}

fn attempt_row(at: i64) -> AttemptRow {
    AttemptRow {
        id: uuid::Uuid::now_v7().to_string(),
        at,
        ip: Some("192.0.2.1".into()),
        ip_net: "192.0.2.0/24".into(),
        username_key: "k".into(),
        user_id: None,
        known_device: false,
        user_agent: None,
        outcome: "failure".into(),
        risk: 0,
        reasons: String::new(),
    }
}

/// Multi-row INSERTs, 1000 rows a statement (diesel's batch insert does not
/// serve both backends through one connection type). Test data only: no quoting needed.
fn insert_many(conn: &mut oxidp::db::AnyConnection, rows: &[AuditRow]) -> Result<(), oxidp::db::DbError> {
    for chunk in rows.chunks(1000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|r| format!("('{}', {}, 'system', 'test.event', NULL, '{{}}', NULL)", r.id, r.at))
            .collect();
        diesel::sql_query(format!(
            "INSERT INTO audit_events (id, at, actor, action, target, details, ip) VALUES {}",
            values.join(", ")
        ))
        .execute(conn)?;
    }
    Ok(())
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    app.state
        .db
        .run(move |conn| Ok(diesel::sql_query(sql).get_result::<Count>(conn)?.n))
        .await
        .unwrap()
}

async fn audit_ats(app: &TestApp) -> Vec<i64> {
    let mut ats: Vec<i64> = app
        .state
        .db
        .run(|conn| {
            Ok(audit::list(conn, &Default::default(), 10_000)?
                .into_iter()
                .filter(|r| r.action == "test.event")
                .map(|r| r.at)
                .collect())
        })
        .await
        .unwrap();
    ats.sort_unstable();
    ats
}

fn retention(app: &TestApp) -> Retention {
    Retention {
        audit_days: app.config.audit.retention_days,
        attempts_days: app.config.login.attempts_retention_days,
        device_days: app.config.login.device_cookie_days,
    }
}

#[tokio::test]
async fn audit_events_and_sign_in_attempts_expire_exactly_at_their_retention() {
    let app = spawn_app_with(|c| {
        c.audit.retention_days = 90;
        c.login.attempts_retention_days = 30;
    })
    .await;
    let now = app.clock.now();
    let audit_times = [now - 91 * DAY, now - 90 * DAY - 1, now - 90 * DAY, now - 89 * DAY, now];
    let attempt_times = [now - 31 * DAY, now - 30 * DAY - 1, now - 30 * DAY, now - DAY];
    app.state
        .db
        .run(move |conn| {
            for at in audit_times {
                audit::insert(conn, &audit_row(at))?;
            }
            for at in attempt_times {
                logins::insert_attempt(conn, &attempt_row(at))?;
            }
            Ok(())
        })
        .await
        .unwrap();

    housekeeping::purge_once(&app.state.db, now, retention(&app))
        .await
        .unwrap();
    // "Older than N days": the event exactly N days old stays, one second older goes.
    assert_eq!(audit_ats(&app).await, vec![now - 90 * DAY, now - 89 * DAY, now]);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM login_attempts").await, 2);

    app.clock.advance(1);
    housekeeping::purge_once(&app.state.db, app.clock.now(), retention(&app))
        .await
        .unwrap();
    assert_eq!(audit_ats(&app).await, vec![now - 89 * DAY, now]);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM login_attempts").await, 1);
}

#[tokio::test]
async fn retention_zero_keeps_the_audit_log_forever() {
    let app = spawn_app_with(|c| c.audit.retention_days = 0).await;
    let now = app.clock.now();
    app.state
        .db
        .run(move |conn| audit::insert(conn, &audit_row(now - 3650 * DAY)))
        .await
        .unwrap();
    housekeeping::purge_once(&app.state.db, now, retention(&app))
        .await
        .unwrap();
    assert_eq!(audit_ats(&app).await, vec![now - 3650 * DAY]);
}

#[tokio::test]
async fn codes_are_kept_only_as_long_as_replay_detection_needs_them() {
    let app = spawn_app().await;
    let client = app.web_client().await;
    let browser = app.signed_in("alice").await;
    let (used, verifier) = app.code_for(&client, &browser, "alice", "openid").await;
    assert_eq!(app.redeem(&client, &used, &verifier).await.status(), 200);
    let (_unused, _) = app.code_for(&client, &browser, "alice", "openid").await;
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM authorization_codes").await, 2);

    // Just past the 60 s lifetime: the unused code goes, the used one stays so a
    // replay still revokes what it got.
    app.clock.advance(app.config.tokens.code_ttl_secs + 1);
    housekeeping::purge_once(&app.state.db, app.clock.now(), retention(&app))
        .await
        .unwrap();
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM authorization_codes").await, 1);
    let replay = app.redeem(&client, &used, &verifier).await;
    assert_eq!(replay.status(), 400);

    // USED_CODE_RETENTION_SECS after expiry it goes too (we are 1 s past expiry).
    app.clock
        .advance(oxidp::db::models::codes::USED_CODE_RETENTION_SECS - 1);
    housekeeping::purge_once(&app.state.db, app.clock.now(), retention(&app))
        .await
        .unwrap();
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM authorization_codes").await, 1);
    app.clock.advance(1);
    housekeeping::purge_once(&app.state.db, app.clock.now(), retention(&app))
        .await
        .unwrap();
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM authorization_codes").await, 0);
}

/// 100,000 expired audit events go in batches while sign-ins keep succeeding; the
/// one young event stays. Answers the purge's statistics.
async fn clean_up_100000_expired_rows() -> oxidp::db::maintenance::PurgeStats {
    let app = spawn_app().await;
    app.create_user("alice", PASSWORD).await;
    let now = app.clock.now();
    let old = now - 400 * DAY;
    app.state
        .db
        .transaction(move |conn| {
            let rows: Vec<AuditRow> = (0..100_000).map(|i| audit_row(old + i % 1000)).collect();
            insert_many(conn, &rows)?;
            // One young event that must survive.
            audit::insert(conn, &audit_row(now - DAY))?;
            Ok(())
        })
        .await
        .unwrap();

    // Sign-ins keep going while the cleanup runs.
    let signing_in = {
        let address = app.address.clone();
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..10 {
                let browser = browser();
                let page = browser
                    .get(format!("{address}/login"))
                    .send()
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                let response = browser
                    .post(format!("{address}/login"))
                    .form(&[
                        ("csrf_token", csrf_of(&page).as_str()),
                        ("username", "alice"),
                        ("password", PASSWORD),
                    ])
                    .send()
                    .await
                    .unwrap();
                outcomes.push(response.status().as_u16());
            }
            outcomes
        })
    };
    let stats = housekeeping::purge_once(&app.state.db, now, retention(&app))
        .await
        .unwrap();
    let outcomes = signing_in.await.unwrap();

    println!("cleanup of 100,000 rows: {stats:?}");
    assert!(stats.rows >= 100_000, "{stats:?}");
    assert_eq!(audit_ats(&app).await, vec![now - DAY]);
    assert!(
        stats.batches >= 400,
        "deleted in batches of {}: {stats:?}",
        oxidp::db::maintenance::PURGE_BATCH
    );
    assert!(
        outcomes.iter().all(|s| *s == 303),
        "sign-ins during the cleanup: {outcomes:?}"
    );
    stats
}

#[tokio::test]
async fn cleaning_up_100000_expired_rows_keeps_sign_ins_going() {
    clean_up_100000_expired_rows().await;
}

/// The time bound alone: other tests running beside it (the coupon flood, the
/// reservation races) would measure their load, not the purge.
#[tokio::test]
#[ignore = "timing: needs a quiet machine; .ci/run runs the timing tests alone (cargo test --test api -- --ignored --test-threads=1)"]
async fn cleaning_up_100000_expired_rows_holds_the_write_lock_only_briefly() {
    let stats = clean_up_100000_expired_rows().await;
    // On SQLite a DELETE holds the database's one write lock; on PostgreSQL it locks
    // only the (old) rows it deletes, so sign-ins never wait for it.
    // A rare batch stalls on the disk (a WAL auto-checkpoint, writeback): seen on
    // this 2-core machine with the purge code unchanged. 99 % stay under 100 ms and
    // none reaches a second.
    if postgres_url().is_none() {
        assert!(
            stats.slow_batches * 100 <= stats.batches,
            "{} of {} batches held the write lock for 100 ms or more: {stats:?}",
            stats.slow_batches,
            stats.batches
        );
        assert!(
            stats.longest_batch < Duration::from_secs(1),
            "one batch held the write lock for {:?}",
            stats.longest_batch
        );
    }
}

#[tokio::test]
async fn sqlite_connections_bound_the_wal_and_the_page_cache() {
    if postgres_url().is_some() {
        println!("SKIPPED sqlite_connections_bound_the_wal_and_the_page_cache: SQLite only");
        return;
    }
    let app = spawn_app().await;
    #[derive(diesel::QueryableByName)]
    struct Limit {
        #[diesel(sql_type = BigInt)]
        journal_size_limit: i64,
    }
    #[derive(diesel::QueryableByName)]
    struct Cache {
        #[diesel(sql_type = BigInt)]
        cache_size: i64,
    }
    let (limit, cache) = app
        .state
        .db
        .run(|conn| {
            let limit = diesel::sql_query("PRAGMA journal_size_limit").get_result::<Limit>(conn)?;
            let cache = diesel::sql_query("PRAGMA cache_size").get_result::<Cache>(conn)?;
            Ok((limit.journal_size_limit, cache.cache_size))
        })
        .await
        .unwrap();
    assert_eq!(limit, 64 * 1024 * 1024);
    assert_eq!(cache, -i64::from(app.config.database.sqlite_cache_kib));
}

#[tokio::test]
async fn the_periodic_checkpoint_resets_the_sqlite_wal() {
    if postgres_url().is_some() {
        println!("SKIPPED the_periodic_checkpoint_resets_the_sqlite_wal: SQLite only");
        return;
    }
    let app = spawn_app().await;
    let now = app.clock.now();
    app.state
        .db
        .transaction(move |conn| {
            let rows: Vec<AuditRow> = (0..5000).map(|_| audit_row(now)).collect();
            insert_many(conn, &rows)?;
            Ok(())
        })
        .await
        .unwrap();
    let path = app.state.db.sqlite_path().expect("SQLite").to_path_buf();
    let before = oxidp::db::maintenance::wal_bytes(&path);
    assert!(before > 0, "writes went to the WAL");

    let normal = Duration::from_millis(app.config.database.busy_timeout_ms);
    let checkpoint = housekeeping::checkpoint_once(&app.state.db, &app.state.metrics, normal)
        .await
        .unwrap()
        .expect("SQLite answers");
    assert!(!checkpoint.busy, "{checkpoint:?}");
    assert_eq!(oxidp::db::maintenance::wal_bytes(&path), 0, "TRUNCATE empties the WAL");

    let metrics = oxidp::metrics::render(&app.state.metrics, &app.state.hasher, &app.state.db);
    assert!(
        metrics.contains("oxidp_sqlite_wal_checkpoints_total{result=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("oxidp_sqlite_wal_bytes 0"), "{metrics}");
    // The connection's own busy timeout is back to normal afterwards.
    #[derive(diesel::QueryableByName)]
    struct Busy {
        #[diesel(sql_type = BigInt)]
        timeout: i64,
    }
    for _ in 0..4 {
        let busy = app
            .state
            .db
            .run(|conn| {
                Ok(diesel::sql_query("PRAGMA busy_timeout")
                    .get_result::<Busy>(conn)?
                    .timeout)
            })
            .await
            .unwrap();
        assert_eq!(busy, app.config.database.busy_timeout_ms as i64);
    }
}

/// The end of the UTC month holding `at` (Unix seconds).
fn month_end(at: i64) -> i64 {
    let t = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
    let (year, month) = match t.month() {
        time::Month::December => (t.year() + 1, time::Month::January),
        m => (t.year(), m.next()),
    };
    time::Date::from_calendar_date(year, month, 1)
        .unwrap()
        .midnight()
        .assume_utc()
        .unix_timestamp()
}

#[derive(diesel::QueryableByName)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

async fn monthly_partitions(app: &TestApp, table: &'static str) -> Vec<String> {
    app.state
        .db
        .run(move |conn| {
            let names = diesel::sql_query(
                "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = $1::regclass ORDER BY c.relname",
            )
            .bind::<diesel::sql_types::Text, _>(table)
            .load::<Name>(conn)?;
            Ok(names.into_iter().map(|n| n.name).collect())
        })
        .await
        .unwrap()
}

/// PostgreSQL keeps audit events and sign-in attempts in monthly partitions: a month
/// is dropped whole once it ended `retention` days ago (a row lives between the
/// retention and the retention plus one month), no row of a younger month is
/// touched, and the partitions for the coming months are created ahead.
#[tokio::test]
async fn postgresql_drops_whole_months_once_they_are_past_retention() {
    // The app's own background purge keeps everything (it could otherwise drop the
    // months this test sets up before the test's purge runs); the test purges with
    // 90 / 30 days itself.
    let app = spawn_app_with(|c| {
        c.audit.retention_days = 0;
        c.login.attempts_retention_days = 3650;
    })
    .await;
    let retention = Retention {
        audit_days: 90,
        attempts_days: 30,
        device_days: 365,
    };
    if app.state.db.backend() != oxidp::db::Backend::Postgres {
        eprintln!("SKIPPED: monthly partitions are PostgreSQL only (run with TEST_DATABASE_URL)");
        return;
    }
    let now = app.clock.now();
    // Partitions for the past eight months, as a server running that long has them.
    app.state
        .db
        .run(move |conn| {
            for table in ["audit_events", "login_attempts"] {
                diesel::sql_query("SELECT oxidp_ensure_month_partitions($1, $2, $3)")
                    .bind::<diesel::sql_types::Text, _>(table)
                    .bind::<BigInt, _>(now - 240 * DAY)
                    .bind::<BigInt, _>(now)
                    .execute(conn)?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let audit_times: Vec<i64> = [200, 150, 121, 119, 95, 91, 89, 30, 1, 0]
        .iter()
        .map(|d| now - d * DAY)
        .collect();
    let attempt_times: Vec<i64> = [200, 62, 59, 31, 29, 0].iter().map(|d| now - d * DAY).collect();
    app.state
        .db
        .transaction({
            let (audit_times, attempt_times) = (audit_times.clone(), attempt_times.clone());
            move |conn| {
                for &at in &audit_times {
                    audit::insert(conn, &audit_row(at))?;
                }
                for &at in &attempt_times {
                    logins::insert_attempt(conn, &attempt_row(at))?;
                }
                Ok(())
            }
        })
        .await
        .unwrap();

    let stats = housekeeping::purge_once(&app.state.db, now, retention).await.unwrap();
    println!("{stats:?}");

    let audit_cutoff = now - 90 * DAY;
    let expected: Vec<i64> = audit_times
        .iter()
        .copied()
        .filter(|&at| month_end(at) > audit_cutoff)
        .collect();
    assert_eq!(
        audit_ats(&app).await,
        expected,
        "audit rows of months not yet past retention stay"
    );
    // Every row younger than the retention stays; the 200-day-old one is gone.
    assert!(expected.contains(&(now - 89 * DAY)) && !expected.contains(&(now - 200 * DAY)));
    let attempt_cutoff = now - 30 * DAY;
    let expected_attempts = attempt_times
        .iter()
        .filter(|&&at| month_end(at) > attempt_cutoff)
        .count() as i64;
    assert_eq!(
        count(&app, "SELECT COUNT(*) AS n FROM login_attempts").await,
        expected_attempts
    );
    assert!(stats.partitions_dropped >= 2 + 4, "{stats:?}");
    assert_eq!(stats.rows, 0, "nothing was deleted row by row: {stats:?}");

    for (table, cutoff) in [("audit_events", audit_cutoff), ("login_attempts", attempt_cutoff)] {
        let names = monthly_partitions(&app, table).await;
        let month_of = |at: i64| {
            let t = time::OffsetDateTime::from_unix_timestamp(at).unwrap();
            format!("{table}_{:04}_{:02}", t.year(), t.month() as u8)
        };
        // The current month and the next two exist; none that ended before the cutoff.
        for ahead in [0, 31, 62] {
            let name = month_of(now + ahead * DAY);
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert!(!names.contains(&month_of(cutoff - 32 * DAY)), "{names:?}");
        assert!(names.contains(&format!("{table}_default")), "{names:?}");
    }

    // A second run finds nothing left to do.
    let again = housekeeping::purge_once(&app.state.db, now, retention).await.unwrap();
    assert_eq!((again.rows, again.partitions_dropped), (0, 0), "{again:?}");
}

/// Under a steady stream of writers and readers (what a busy server is), the
/// checkpoint still gets the write lock and resets the WAL every time. Before the
/// write gate it polled for SQLite's lock against writers that nearly always held
/// it and came back busy (a 30-minute soak saw 149 of 214 busy and a 376 MB WAL).
#[tokio::test]
async fn the_checkpoint_gets_through_constant_writers_and_readers() {
    if postgres_url().is_some() {
        println!("SKIPPED the_checkpoint_gets_through_constant_writers_and_readers: SQLite only");
        return;
    }
    let app = spawn_app().await;
    let db = app.state.db.clone();
    let now = app.clock.now();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..12 {
        let (db, stop) = (db.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut commits = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                db.transaction(move |conn| {
                    let rows: Vec<AuditRow> = (0..20).map(|_| audit_row(now)).collect();
                    insert_many(conn, &rows)
                })
                .await
                .expect("a writer never fails for the checkpoint");
                commits += 1;
            }
            commits
        }));
    }
    for _ in 0..4 {
        let (db, stop) = (db.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                db.read(|conn| Ok(audit_count(conn)))
                    .await
                    .expect("a reader never fails for the checkpoint");
                reads += 1;
            }
            reads
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let normal = Duration::from_millis(app.config.database.busy_timeout_ms);
    let path = db.sqlite_path().expect("SQLite").to_path_buf();
    let mut results = Vec::new();
    let mut wal_before = Vec::new();
    for _ in 0..16 {
        wal_before.push(oxidp::db::maintenance::wal_bytes(&path));
        let checkpoint = housekeeping::checkpoint_once(&db, &app.state.metrics, normal)
            .await
            .unwrap()
            .expect("SQLite answers");
        results.push(checkpoint);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut done = Vec::new();
    for task in load {
        done.push(task.await.unwrap());
    }
    assert!(
        done.iter().all(|&n| n > 0),
        "every writer and reader made progress: {done:?}"
    );
    for checkpoint in &results {
        assert!(!checkpoint.busy, "a checkpoint came back busy: {results:?}");
        assert_eq!(checkpoint.log_frames, checkpoint.checkpointed_frames, "{results:?}");
    }
    assert!(
        wal_before.iter().all(|&bytes| bytes > 0),
        "the writers were writing while the checkpoints ran: WAL bytes before each {wal_before:?}"
    );
}

fn audit_count(conn: &mut oxidp::db::AnyConnection) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT COUNT(*) AS n FROM audit_events WHERE at >= 0")
        .get_result::<Count>(conn)
        .map(|c| c.n)
        .unwrap_or(-1)
}

/// Every lookup the retention purge makes each minute finds its rows through an
/// index: a full scan's cost grows with the table (refresh_tokens reached 1.3
/// million rows in a 30-minute soak) and is paid on the server's cores every run.
/// The statements are the purge's own selects (`db::models::*::purge_*_batch`).
#[tokio::test]
async fn every_retention_lookup_uses_an_index() {
    if postgres_url().is_some() {
        println!("SKIPPED every_retention_lookup_uses_an_index: SQLite's plans");
        return;
    }
    #[derive(diesel::QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    let app = spawn_app().await;
    let plans = app
        .state
        .db
        .run(|conn| {
            let mut plans = Vec::new();
            for select in [
                "SELECT id FROM authorization_requests WHERE expires_at < 1 LIMIT 250",
                "SELECT code_hash FROM authorization_codes WHERE expires_at < 1 OR (used_at IS NULL AND expires_at < 2) LIMIT 250",
                "SELECT id FROM grants WHERE expires_at < 1 LIMIT 250",
                "SELECT jti FROM revoked_tokens WHERE expires_at < 1 LIMIT 250",
                "SELECT token_hash FROM refresh_tokens WHERE successor_sealed IS NOT NULL AND used_at < 1 LIMIT 250",
                "SELECT id FROM audit_events WHERE at < 1 LIMIT 250",
                "SELECT id FROM login_attempts WHERE at < 1 LIMIT 250",
                "SELECT username_key FROM login_throttle WHERE last_failure_at < 1 AND locked_at IS NULL AND delay_until <= 1 LIMIT 250",
                "SELECT device_id FROM known_devices WHERE last_seen_at < 1 LIMIT 250",
            ] {
                let plan = diesel::sql_query(format!("EXPLAIN QUERY PLAN {select}")).load::<Plan>(conn)?;
                plans.push((select, plan.into_iter().map(|p| p.detail).collect::<Vec<_>>()));
            }
            Ok(plans)
        })
        .await
        .unwrap();
    for (select, steps) in plans {
        assert!(
            steps.iter().all(|s| !s.starts_with("SCAN") || s.contains("INDEX")),
            "{select}: {steps:?}"
        );
    }
}

/// The sign-in bookkeeping that is not append-only does not pile up either: a
/// per-username failure counter nobody failed on for `login.attempts_retention_days`
/// goes (names that do not exist get counters too, so a spray of made-up names
/// would otherwise stay forever), a locked counter stays until it is unlocked, a
/// running delay stays until it ends, and a device unseen by an account for
/// `login.device_cookie_days` (its cookie has expired by then) is forgotten.
#[tokio::test]
async fn idle_failure_counters_and_unseen_devices_are_forgotten() {
    use diesel::prelude::*;
    use oxidp::db::schema::{known_devices, login_throttle};

    let app = spawn_app_with(|c| {
        c.login.attempts_retention_days = 30;
        c.login.device_cookie_days = 365;
    })
    .await;
    let alice = app.create_user("alice", PASSWORD).await;
    let b = browser();
    assert_eq!(app.login(&b, "alice", "not her password at all").await.status(), 200);
    assert_eq!(
        app.login(&b, "nobody-by-this-name", "a guess of a password")
            .await
            .status(),
        200
    );
    assert_eq!(app.login(&b, "alice", PASSWORD).await.status(), 303);
    let now = app.clock.now();
    let counter = |key: &str, last_failure_at: i64, delay_until: i64, locked_at: Option<i64>| logins::ThrottleRow {
        username_key: key.to_owned(),
        failures: 3,
        last_failure_at,
        delay_until,
        locked_at,
    };
    let rows = [
        counter("idle", now - 30 * DAY - 1, 0, None),
        counter("edge", now - 30 * DAY, 0, None),
        counter("locked", now - 400 * DAY, 0, Some(now - 400 * DAY)),
        counter("delayed", now - 31 * DAY, now + 60, None),
    ];
    let user_id = alice.id.clone();
    app.state
        .db
        .run(move |conn| {
            for row in &rows {
                diesel::insert_into(login_throttle::table).values(row).execute(conn)?;
            }
            logins::remember_device(conn, "device-unseen", &user_id, now - 365 * DAY - 1)?;
            logins::remember_device(conn, "device-edge", &user_id, now - 365 * DAY)?;
            Ok(())
        })
        .await
        .unwrap();
    let state = |app: &TestApp| {
        let db = app.state.db.clone();
        async move {
            db.run(|conn| {
                let mut keys: Vec<String> = login_throttle::table.select(login_throttle::username_key).load(conn)?;
                let mut devices: Vec<String> = known_devices::table.select(known_devices::device_id).load(conn)?;
                keys.sort();
                devices.sort();
                Ok((keys, devices))
            })
            .await
            .unwrap()
        }
    };
    let (keys, devices) = state(&app).await;
    assert_eq!(
        keys.len(),
        6,
        "alice's and the made-up name's counters besides the four: {keys:?}"
    );
    assert_eq!(devices.len(), 3, "{devices:?}");
    let browser_device = devices.iter().find(|d| !d.starts_with("device-")).unwrap().clone();

    housekeeping::purge_once(&app.state.db, now, retention(&app))
        .await
        .unwrap();
    let (keys, devices) = state(&app).await;
    assert!(!keys.contains(&"idle".to_owned()), "{keys:?}");
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert_eq!(devices, vec![browser_device.clone(), "device-edge".into()]);

    app.clock.advance(1);
    housekeeping::purge_once(&app.state.db, app.clock.now(), retention(&app))
        .await
        .unwrap();
    let (keys, devices) = state(&app).await;
    assert!(!keys.contains(&"edge".to_owned()), "{keys:?}");
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(devices, vec![browser_device.clone()]);

    // A month after the real attempts, their counters go; the lock stays.
    app.clock.advance(30 * DAY);
    housekeeping::purge_once(&app.state.db, app.clock.now(), retention(&app))
        .await
        .unwrap();
    let (keys, devices) = state(&app).await;
    assert_eq!(keys, vec!["locked".to_owned()]);
    assert_eq!(devices, vec![browser_device], "seen 30 days ago: still known");

    // Signing in goes on as before: a wrong password from a new browser counts on
    // a new counter (from the known browser it would count on the device's own);
    // the known browser signs in.
    assert_eq!(
        app.login(&browser(), "alice", "not her password at all").await.status(),
        200
    );
    assert_eq!(state(&app).await.0.len(), 2);
    assert_eq!(app.login(&b, "alice", PASSWORD).await.status(), 303);
}
