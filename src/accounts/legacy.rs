//! The legacy-hash migration around `authn::legacy`: the shared record of the most
//! expensive legacy work present (read at every sign-in, so an import by the CLI
//! is equalised at once by every instance), its exact recomputation, the one-off
//! `oxidp user rewrap-legacy` for rows imported before wrapping existed, and the
//! count behind `oxidp user list --legacy` and the `oxidp_legacy_password_accounts` gauge.

use futures_util::StreamExt;
use serde_json::json;

use crate::audit::{self, Actor};
use crate::authn::legacy::{self, LegacyParams, LegacyWork, Stored};
use crate::db::models::{settings, users};
use crate::db::{AnyConnection, DbError};
use crate::state::AppState;

/// Rows per page of a scan or rewrap.
const PAGE: i64 = 500;

fn read_work(conn: &mut AnyConnection) -> Result<LegacyWork, DbError> {
    Ok(settings::get(conn, legacy::WORK_SETTING)?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

/// Raises the recorded legacy work to cover `params` (in the importing transaction).
pub fn record_work(conn: &mut AnyConnection, params: &LegacyParams) -> Result<(), DbError> {
    let current = read_work(conn)?;
    let raised = current.max(LegacyWork::of(params));
    if raised != current {
        settings::set(conn, legacy::WORK_SETTING, &json!(raised).to_string())?;
    }
    Ok(())
}

/// Reloads the recorded legacy work into the hasher; called before each sign-in's
/// password check. On a database error the cached value stays.
pub async fn refresh_work(state: &AppState) {
    match state.db.run(read_work).await {
        Ok(work) => state.hasher.set_legacy_work(work),
        Err(error) => tracing::warn!(%error, "reading the legacy hash work failed; using the cached value"),
    }
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct LegacyStats {
    /// Accounts still carrying a legacy hash (wrapped or bare).
    pub accounts: i64,
    /// Of which still bare (not wrapped): `oxidp user rewrap-legacy` wraps them.
    pub bare: i64,
    pub work: LegacyWork,
}

/// Scans the legacy rows, records the exact legacy work (lowering it once the
/// most expensive accounts have been upgraded) and updates the hasher and gauge.
pub async fn recompute(state: &AppState) -> Result<LegacyStats, DbError> {
    let stats = state
        .db
        .transaction(|conn| {
            let mut stats = LegacyStats::default();
            let mut after = String::new();
            loop {
                let page = users::legacy_page(conn, &after, PAGE)?;
                let Some((last, _)) = page.last() else { break };
                after = last.clone();
                for (_, hash) in &page {
                    stats.accounts += 1;
                    match legacy::classify(hash) {
                        Stored::Wrapped(params, _) => stats.work = stats.work.max(LegacyWork::of(&params)),
                        Stored::Bare(params, _) => {
                            stats.bare += 1;
                            stats.work = stats.work.max(LegacyWork::of(&params));
                        }
                        _ => {}
                    }
                }
            }
            settings::set(conn, legacy::WORK_SETTING, &json!(stats.work).to_string())?;
            Ok(stats)
        })
        .await?;
    state.hasher.set_legacy_work(stats.work);
    state.hasher.set_legacy_accounts(stats.accounts);
    Ok(stats)
}

/// Refreshes the gauge of legacy accounts (a count query; housekeeping).
pub async fn refresh_count(state: &AppState) -> Result<i64, DbError> {
    let count = state.db.run(users::legacy_count).await?;
    state.hasher.set_legacy_accounts(count);
    Ok(count)
}

pub async fn list(state: &AppState, limit: i64, offset: i64) -> Result<Vec<users::UserRow>, DbError> {
    state.db.run(move |conn| users::list_legacy(conn, limit, offset)).await
}

#[derive(Debug, Default, serde::Serialize)]
pub struct RewrapReport {
    pub scanned: i64,
    pub wrapped: i64,
    /// Changed by someone else (sign-in upgrade, password change) meanwhile: left alone.
    pub skipped: i64,
}

/// Wraps every bare legacy hash in argon2id, a page at a time, each page in one
/// transaction with its audit event. Safe to interrupt and to run again, also
/// while servers run: a row changed in between is left alone. `progress` gets
/// (rows scanned, legacy rows in all) after each page.
pub async fn rewrap(
    state: &AppState,
    actor: &Actor,
    mut progress: impl FnMut(i64, i64),
) -> anyhow::Result<RewrapReport> {
    let total = state.db.run(users::legacy_count).await?;
    let mut report = RewrapReport::default();
    let mut after = String::new();
    let concurrency = state.config.argon2.max_concurrent.max(1);
    loop {
        let from = after.clone();
        let page = state.db.run(move |conn| users::legacy_page(conn, &from, PAGE)).await?;
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        report.scanned += page.len() as i64;
        let bare: Vec<(String, String, LegacyParams, Vec<u8>)> = page
            .into_iter()
            .filter_map(|(id, hash)| match legacy::classify(&hash) {
                Stored::Bare(params, output) => Some((id, hash.clone(), params, output)),
                _ => None,
            })
            .collect();
        let wrapped: Vec<(String, String, String)> = futures_util::stream::iter(bare)
            .map(|(id, old, params, output)| async move {
                let new = state.hasher.wrap(params, output).await?;
                anyhow::Ok((id, old, new))
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        if !wrapped.is_empty() {
            let (actor, now) = (actor.clone(), state.clock.now());
            let (done, skipped) = state
                .db
                .transaction(move |conn| {
                    let mut done = 0;
                    for (id, old, new) in &wrapped {
                        if users::replace_hash(conn, id, old, new)? {
                            done += 1;
                        }
                    }
                    audit::record(
                        conn,
                        &actor,
                        "user.rewrap_legacy",
                        None,
                        json!({ "wrapped": done, "skipped": wrapped.len() as i64 - done }),
                        now,
                    )?;
                    Ok((done, wrapped.len() as i64 - done))
                })
                .await?;
            report.wrapped += done;
            report.skipped += skipped;
        }
        progress(report.scanned, total.max(report.scanned));
    }
    Ok(report)
}
