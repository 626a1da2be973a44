//! Idempotency keys (IETF httpapi `Idempotency-Key` draft), reusable by every
//! POST that must not run twice: the first request with a key runs and its
//! response is stored; the same key with the same request replays that response,
//! with a different request is refused (422), while the first still runs is
//! refused (409). Keys are scoped to the caller's subject and kept
//! `RETENTION_SECS`; a background task purges older ones.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::CommerceError;
use crate::commerce::storage::idempotency::{self as store, KeyRow};
use crate::db::{AnyConnection, Db, DbError};

/// Keys are kept (and replayed) for 24 hours.
pub const RETENTION_SECS: i64 = 24 * 3600;
/// An in-flight key whose owner has not finished within this long (a crashed
/// process) may be taken over by a retry.
pub const LOCK_SECS: i64 = 60;

/// The header's value: an RFC 8941 sf-string (quotes optional here), 1 to 255
/// visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<Self, CommerceError> {
        let value = value.trim();
        let inner = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if inner.is_empty()
            || inner.len() > 255
            || !inner
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(CommerceError::Invalid(
                "Idempotency-Key must be a string of 1 to 255 visible ASCII characters".into(),
            ));
        }
        Ok(Self(inner.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What identifies "the same request": method, path and body, hashed.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update([0]);
    hash.update(path.as_bytes());
    hash.update([0]);
    hash.update(body);
    hex::encode(hash.finalize())
}

/// A response to replay: status, the headers that matter, the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// The right to run a request under a key; `finish`, `complete` or `release` it.
#[derive(Debug, Clone)]
pub struct Claim {
    subject: String,
    key: String,
}

#[derive(Debug)]
pub enum Begun {
    /// First use (or a takeover): run the request.
    Proceed(Claim),
    /// Seen before with the same request: answer this.
    Replay(StoredResponse),
}

/// Starts a request under `key` for `subject`.
pub async fn begin(
    db: &Db,
    subject: &str,
    key: &IdempotencyKey,
    fingerprint: String,
    now: i64,
) -> Result<Begun, CommerceError> {
    let row = KeyRow {
        subject: subject.to_owned(),
        idem_key: key.as_str().to_owned(),
        fingerprint,
        response_status: None,
        response_headers: None,
        response_body: None,
        created_at: now,
        locked_until: now + LOCK_SECS,
        expires_at: now + RETENTION_SECS,
    };
    let claim = Claim {
        subject: row.subject.clone(),
        key: row.idem_key.clone(),
    };
    for _ in 0..3 {
        let fresh = row.clone();
        match db.run(move |conn| store::insert(conn, &fresh)).await {
            Ok(()) => return Ok(Begun::Proceed(claim)),
            Err(DbError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let mine = row.clone();
        let seen = db
            .transaction(move |conn| {
                let Some(existing) = store::find(conn, &mine.subject, &mine.idem_key)? else {
                    return Ok(None); // purged in between: insert again
                };
                Ok(Some(decide(conn, existing, &mine, now)?))
            })
            .await?;
        match seen {
            Some(Ok(Decision::Proceed)) => return Ok(Begun::Proceed(claim)),
            Some(Ok(Decision::Replay(stored))) => return Ok(Begun::Replay(stored)),
            Some(Err(e)) => return Err(e),
            None => continue,
        }
    }
    Err(CommerceError::Conflict(
        "the Idempotency-Key is being reused concurrently; try again".into(),
    ))
}

enum Decision {
    Proceed,
    Replay(StoredResponse),
}

fn decide(
    conn: &mut AnyConnection,
    existing: KeyRow,
    mine: &KeyRow,
    now: i64,
) -> Result<Result<Decision, CommerceError>, DbError> {
    let expired = existing.expires_at <= now;
    let abandoned = existing.response_status.is_none() && existing.locked_until <= now;
    if expired || abandoned {
        return Ok(if store::take_over(conn, mine, now)? {
            Ok(Decision::Proceed)
        } else {
            Err(in_flight())
        });
    }
    if existing.fingerprint != mine.fingerprint {
        return Ok(Err(CommerceError::Invalid(
            "this Idempotency-Key was used with a different request".into(),
        )));
    }
    match (
        existing.response_status,
        existing.response_headers,
        existing.response_body,
    ) {
        (Some(status), Some(headers), Some(body)) => Ok(Ok(Decision::Replay(StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            headers: serde_json::from_str(&headers).unwrap_or_default(),
            body,
        }))),
        _ => Ok(Err(in_flight())),
    }
}

fn in_flight() -> CommerceError {
    CommerceError::Conflict("a request with this Idempotency-Key is still being processed".into())
}

/// Stores the response inside the caller's transaction, so the effect and the
/// record of it commit together.
pub fn complete(conn: &mut AnyConnection, claim: &Claim, response: &StoredResponse) -> Result<(), DbError> {
    let headers = serde_json::to_string(&response.headers).unwrap_or_else(|_| "[]".into());
    store::complete(
        conn,
        &claim.subject,
        &claim.key,
        i32::from(response.status),
        &headers,
        &response.body,
    )
}

/// Stores the response in its own transaction.
pub async fn finish(db: &Db, claim: Claim, response: StoredResponse) -> Result<(), CommerceError> {
    db.run(move |conn| complete(conn, &claim, &response)).await?;
    Ok(())
}

/// Forgets the key: the request failed before doing anything worth replaying
/// (a refusal, a database error), so a retry runs it afresh.
/// A database too busy to answer (the usual reason the request failed) is asked
/// again a few times, since a key left in flight blocks its retries for `LOCK_SECS`.
pub async fn release(db: &Db, claim: Claim) {
    let mut wait = std::time::Duration::from_millis(100);
    for attempt in 1..=5 {
        let (subject, key) = (claim.subject.clone(), claim.key.clone());
        match db.run(move |conn| store::release(conn, &subject, &key)).await {
            Ok(_) => return,
            Err(error) if error.is_unavailable() && attempt < 5 => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(error) => {
                tracing::warn!(%error, "could not release an idempotency key; it frees itself after its lock");
                return;
            }
        }
    }
}

/// Deletes keys older than their retention.
pub async fn purge(db: &Db, now: i64) -> Result<usize, DbError> {
    db.run(move |conn| store::purge(conn, now)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sf_strings_of_visible_ascii() {
        assert_eq!(IdempotencyKey::parse("\"abc-123\"").unwrap().as_str(), "abc-123");
        assert_eq!(IdempotencyKey::parse("abc").unwrap().as_str(), "abc");
        for bad in ["", "\"\"", "a\"b", "ä", &"x".repeat(256), "a\\b"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_fingerprint_covers_method_path_and_body() {
        let a = fingerprint("POST", "/v1/reservations", b"{}");
        assert_eq!(a, fingerprint("POST", "/v1/reservations", b"{}"));
        assert_ne!(a, fingerprint("POST", "/v1/reservations", b"{ }"));
        assert_ne!(a, fingerprint("POST", "/v1/orders", b"{}"));
        assert_ne!(a, fingerprint("PUT", "/v1/reservations", b"{}"));
    }
}
