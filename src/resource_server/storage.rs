//! Persistence of the last good key set, so a restart during an IdP outage still
//! serves. The host service's migrations create `rs_key_sets` (see
//! `migrations/commerce/*/…_resource_server`).

use diesel::prelude::*;

use crate::db::{AnyConnection, DbError};

diesel::table! {
    rs_key_sets (issuer) {
        issuer -> Text,
        jwks -> Text,
        fetched_at -> BigInt,
    }
}

/// The last good JWKS document of `issuer` and when it was fetched.
pub fn load(conn: &mut AnyConnection, issuer: &str) -> Result<Option<(String, i64)>, DbError> {
    Ok(rs_key_sets::table
        .filter(rs_key_sets::issuer.eq(issuer))
        .select((rs_key_sets::jwks, rs_key_sets::fetched_at))
        .first(conn)
        .optional()?)
}

/// Replaces the stored key set of `issuer`. One statement (an upsert), so that
/// instances sharing a database may store the same issuer's set at the same time:
/// the last writer wins instead of the slower one failing on the primary key.
pub fn save(conn: &mut AnyConnection, issuer: &str, jwks: &str, fetched_at: i64) -> Result<(), DbError> {
    macro_rules! upsert {
        ($conn:expr) => {
            diesel::insert_into(rs_key_sets::table)
                .values((
                    rs_key_sets::issuer.eq(issuer),
                    rs_key_sets::jwks.eq(jwks),
                    rs_key_sets::fetched_at.eq(fetched_at),
                ))
                .on_conflict(rs_key_sets::issuer)
                .do_update()
                .set((rs_key_sets::jwks.eq(jwks), rs_key_sets::fetched_at.eq(fetched_at)))
                .execute($conn)
        };
    }
    match conn {
        AnyConnection::Postgresql(pg) => upsert!(pg)?,
        AnyConnection::Sqlite(lite) => upsert!(lite)?,
    };
    Ok(())
}
