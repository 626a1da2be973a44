//! Cross-instance cache invalidation over PostgreSQL `LISTEN`/`NOTIFY`.
//!
//! Each instance keeps a few things in memory (the client registry, the service
//! accounts' entitlements, the signing key set). A change to one of them queues a
//! notification in the transaction that makes it (`notify`), so PostgreSQL
//! delivers it only on commit and never for a rolled-back change. Every instance
//! (`listen`) holds one dedicated connection that `LISTEN`s on the channel and
//! drops what a notification names; after a lost connection it reconnects with
//! backoff and drops everything, since notifications sent meanwhile are lost. The
//! caches' TTLs stay as the fallback. On SQLite (one instance) nothing is sent and
//! no listener runs.
//!
//! The connection is a diesel `PgConnection` over the same libpq and URL as the
//! pool (TLS, `options`, `search_path` alike), so there is no second PostgreSQL
//! driver to configure; diesel's `notifications_iter` reads what has arrived
//! without blocking (libpq `PQconsumeInput`), polled every `POLL`.
//!
//! The channel is `oxidp:` + the current schema, so deployments (or tests) sharing
//! one database in different schemas do not invalidate each other. Payloads are
//! `client:<id>`, `rbac` and `keys`: a kind and an id, never a secret.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::sql_types::{Integer, Text};
use diesel::{Connection, RunQueryDsl};

use crate::db::{AnyConnection, DbError};

/// The channel, computed by PostgreSQL on both sides (the notifying transaction
/// and the listener) so they always agree. A channel name has at most 63 bytes.
const CHANNEL_SQL: &str = "'oxidp:' || left(current_schema(), 57)";

/// How often the listener looks for notifications that have arrived.
const POLL: Duration = Duration::from_millis(100);
/// How often an idle listener checks its connection with a query (a silent
/// network loss shows no error until something is sent).
const KEEPALIVE: Duration = Duration::from_secs(15);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The listener's `application_name` (visible in `pg_stat_activity`).
pub const APPLICATION_NAME: &str = "oxidp-invalidation";

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A client was created, updated, deleted or had its secret rotated.
    Client(String),
    /// A role, permission, parent, assignment or exclusive set changed.
    Rbac,
    /// A signing key was created or rotated.
    Keys,
}

impl Change {
    pub fn payload(&self) -> String {
        match self {
            Change::Client(id) => format!("client:{id}"),
            Change::Rbac => "rbac".to_owned(),
            Change::Keys => "keys".to_owned(),
        }
    }

    pub fn parse(payload: &str) -> Option<Self> {
        match payload.split_once(':') {
            Some(("client", id)) if !id.is_empty() => Some(Change::Client(id.to_owned())),
            None if payload == "rbac" => Some(Change::Rbac),
            None if payload == "keys" => Some(Change::Keys),
            _ => None,
        }
    }
}

/// Queues a notification of `change` in `conn`'s transaction: delivered to every
/// listening instance (this one included) when it commits, never if it rolls
/// back. Outside a transaction it is delivered at once. Nothing on SQLite.
pub fn notify(conn: &mut AnyConnection, change: &Change) -> Result<(), DbError> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query(format!("SELECT pg_notify({CHANNEL_SQL}, $1)"))
            .bind::<Text, _>(change.payload())
            .execute(pg)?;
    }
    Ok(())
}

/// What a listener drops. Implemented by `AppState`.
pub trait Caches: Send + Sync + 'static {
    /// Drops what `change` names (or reloads it).
    fn invalidate(&self, change: Change) -> impl Future<Output = ()> + Send;
    /// Drops everything: notifications may have been missed.
    fn invalidate_all(&self) -> impl Future<Output = ()> + Send;
}

/// The listener's state, for `/metrics` and for tests.
#[derive(Default)]
pub struct ListenerStatus {
    received: AtomicU64,
    reconnects: AtomicU64,
    /// The listening connection's backend process id; 0 while disconnected.
    backend_pid: AtomicI32,
}

impl ListenerStatus {
    /// Notifications received (any payload, this instance's own changes included).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Connections made after the first one.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// The PostgreSQL backend pid of the listening connection, if connected.
    pub fn backend_pid(&self) -> Option<i32> {
        Some(self.backend_pid.load(Ordering::Relaxed)).filter(|pid| *pid != 0)
    }
}

#[derive(diesel::QueryableByName)]
struct Session {
    #[diesel(sql_type = Text)]
    channel: String,
    #[diesel(sql_type = Integer)]
    pid: i32,
}

/// A listening connection.
struct Listening {
    conn: PgConnection,
    channel: String,
    pid: i32,
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn connect(url: &str) -> anyhow::Result<Listening> {
    let mut conn = PgConnection::establish(url)?;
    diesel::sql_query(format!("SET application_name = '{APPLICATION_NAME}'")).execute(&mut conn)?;
    let session: Session =
        diesel::sql_query(format!("SELECT {CHANNEL_SQL} AS channel, pg_backend_pid() AS pid")).get_result(&mut conn)?;
    diesel::sql_query(format!("LISTEN {}", quote_ident(&session.channel))).execute(&mut conn)?;
    Ok(Listening {
        conn,
        channel: session.channel,
        pid: session.pid,
    })
}

/// The payloads of the notifications that have arrived on our channel; an error
/// when the connection is gone. `check` sends a query first (keepalive).
fn drain(listening: &mut Listening, check: bool) -> anyhow::Result<Vec<String>> {
    if check {
        diesel::sql_query("SELECT 1").execute(&mut listening.conn)?;
    }
    let mut payloads = Vec::new();
    for notification in listening.conn.notifications_iter() {
        let notification = notification?;
        if notification.channel == listening.channel {
            payloads.push(notification.payload);
        }
    }
    Ok(payloads)
}

/// Runs forever (until the runtime stops): listens on `database_url`, applies
/// every notification to `caches`, reconnects with exponential backoff (250 ms to
/// 30 s, jittered) after a connection loss and then drops every cache.
pub async fn listen<C: Caches>(database_url: String, caches: Arc<C>, status: Arc<ListenerStatus>) {
    let mut backoff = BACKOFF_MIN;
    let mut connected_before = false;
    loop {
        let url = database_url.clone();
        match tokio::task::spawn_blocking(move || connect(&url)).await {
            Ok(Ok(listening)) => {
                status.backend_pid.store(listening.pid, Ordering::Relaxed);
                if connected_before {
                    status.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("cache invalidation listener reconnected; every cache dropped");
                }
                connected_before = true;
                backoff = BACKOFF_MIN;
                // Whatever was cached before this point may have missed a notification.
                caches.invalidate_all().await;
                let error = pump(listening, &*caches, &status).await;
                status.backend_pid.store(0, Ordering::Relaxed);
                tracing::warn!(%error, "cache invalidation listener lost its connection; caches fall back to their TTL until it is back");
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "cache invalidation listener cannot connect");
            }
            Err(error) => tracing::error!(%error, "cache invalidation listener task failed"),
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % (backoff.as_millis() as u64 / 4 + 1));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Applies notifications until the connection fails; returns why.
async fn pump<C: Caches>(mut listening: Listening, caches: &C, status: &ListenerStatus) -> anyhow::Error {
    let mut since_check = Duration::ZERO;
    loop {
        tokio::time::sleep(POLL).await;
        since_check += POLL;
        let check = since_check >= KEEPALIVE;
        if check {
            since_check = Duration::ZERO;
        }
        // The connection goes to the blocking pool and back (the keepalive waits
        // on the network).
        let (back, drained) = match tokio::task::spawn_blocking(move || {
            let drained = drain(&mut listening, check);
            (listening, drained)
        })
        .await
        {
            Ok(result) => result,
            Err(error) => return anyhow::anyhow!("listener task failed: {error}"),
        };
        listening = back;
        let payloads = match drained {
            Ok(payloads) => payloads,
            Err(error) => return error,
        };
        for payload in payloads {
            status.received.fetch_add(1, Ordering::Relaxed);
            match Change::parse(&payload) {
                Some(change) => {
                    tracing::debug!(payload = %payload, "cache invalidation received");
                    caches.invalidate(change).await;
                }
                None => {
                    tracing::warn!(payload = %payload, "unknown cache invalidation; dropping every cache");
                    caches.invalidate_all().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_unknown_ones_are_refused() {
        for change in [Change::Client("billing:eu-1".into()), Change::Rbac, Change::Keys] {
            assert_eq!(Change::parse(&change.payload()), Some(change));
        }
        for bad in ["", "client:", "client", "rbac:x", "user:1", "KEYS"] {
            assert_eq!(Change::parse(bad), None, "{bad}");
        }
        assert_eq!(quote_ident(r#"oxidp:a"b"#), r#""oxidp:a""b""#);
    }
}
