//! The audit log: who did what, when. Events are written in the same transaction
//! as the change they describe, so a change without its event (or the reverse)
//! cannot happen.

use serde_json::Value;

use crate::db::models::audit::{self, AuditFilter, AuditRow};
use crate::db::{AnyConnection, Db, DbError};

/// Who makes a change.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `user:<sub>`, `client:<client_id>`, `cli` or `system`.
    pub id: String,
    pub ip: Option<String>,
}

impl Actor {
    pub fn cli() -> Self {
        Self {
            id: "cli".into(),
            ip: None,
        }
    }

    pub fn system() -> Self {
        Self {
            id: "system".into(),
            ip: None,
        }
    }

    pub fn user(sub: &str, ip: Option<String>) -> Self {
        Self {
            id: format!("user:{sub}"),
            ip,
        }
    }

    pub fn client(client_id: &str, ip: Option<String>) -> Self {
        Self {
            id: format!("client:{client_id}"),
            ip,
        }
    }
}

/// Records one event inside the caller's transaction. `details` must never hold secrets.
pub fn record(
    conn: &mut AnyConnection,
    actor: &Actor,
    action: &str,
    target: Option<&str>,
    details: Value,
    now: i64,
) -> Result<(), DbError> {
    audit::insert(
        conn,
        &AuditRow {
            id: uuid::Uuid::now_v7().to_string(),
            at: now,
            actor: actor.id.clone(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            details: details.to_string(),
            ip: actor.ip.clone(),
        },
    )
}

/// Records one event, at `now`, in its own transaction.
pub async fn record_now(
    db: &Db,
    now: i64,
    actor: &Actor,
    action: &'static str,
    target: Option<String>,
    details: Value,
) -> Result<(), DbError> {
    let actor = actor.clone();
    db.run(move |conn| record(conn, &actor, action, target.as_deref(), details, now))
        .await
}

/// Events matching `filter`, newest first; at most `limit` (1..=500).
pub async fn query(db: &Db, filter: AuditFilter, limit: i64) -> Result<Vec<AuditRow>, DbError> {
    let limit = limit.clamp(1, 500);
    db.run(move |conn| audit::list(conn, &filter, limit)).await
}

/// client_credentials tokens are issued without any database write, so their
/// audit events are counted in memory and written once a minute per client
/// (`token.client_credentials` with the count), by `flush_issuance`.
#[derive(Default)]
pub struct IssuanceCounter(std::sync::Mutex<std::collections::HashMap<String, u64>>);

impl IssuanceCounter {
    pub fn note(&self, client_id: &str) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match counts.get_mut(client_id) {
            Some(count) => *count += 1,
            None => {
                counts.insert(client_id.to_owned(), 1);
            }
        }
    }

    fn drain(&self) -> Vec<(String, u64)> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counts.drain().collect()
    }
}

/// Writes the issuances counted in `issuance` as audit events at `now`; returns
/// how many clients had some. On failure the counts are put back for the next try.
pub async fn flush_issuance(db: &Db, issuance: &IssuanceCounter, now: i64, window_secs: i64) -> Result<usize, DbError> {
    let counts = issuance.drain();
    if counts.is_empty() {
        return Ok(0);
    }
    let written = counts.clone();
    let result = db
        .transaction(move |conn| {
            for (client_id, count) in &written {
                record(
                    conn,
                    &Actor::client(client_id, None),
                    "token.client_credentials",
                    Some(&format!("client:{client_id}")),
                    serde_json::json!({ "count": count, "window_secs": window_secs }),
                    now,
                )?;
            }
            Ok(written.len())
        })
        .await;
    if result.is_err() {
        for (client_id, count) in counts {
            for _ in 0..count {
                issuance.note(&client_id);
            }
        }
    }
    result
}
