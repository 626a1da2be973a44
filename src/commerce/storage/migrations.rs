//! The commerce database's embedded migrations (`migrations/commerce/{sqlite,postgres}`),
//! applied by `oxidp commerce migrate` and at start.

use diesel::RunQueryDsl;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::db::{AnyConnection, Db, DbError};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/commerce/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/commerce/postgres");

/// `pg_advisory_lock` id, distinct from the IdP's: instances starting together migrate once.
const MIGRATION_LOCK: i64 = 0x0063_6f6d_6d65;

/// Applies every pending migration and returns the versions applied.
pub async fn run(db: &Db) -> anyhow::Result<Vec<String>> {
    let outcome = db
        .run(|conn| {
            Ok(match conn {
                AnyConnection::Sqlite(c) => c
                    .run_pending_migrations(SQLITE)
                    .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
                    .map_err(|e| e.to_string()),
                AnyConnection::Postgresql(c) => {
                    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
                        .execute(c)
                        .map_err(DbError::from)?;
                    let result = c
                        .run_pending_migrations(POSTGRES)
                        .map(|v| v.iter().map(ToString::to_string).collect::<Vec<_>>())
                        .map_err(|e| e.to_string());
                    diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
                        .execute(c)
                        .map_err(DbError::from)?;
                    result
                }
            })
        })
        .await?;
    outcome.map_err(|e| anyhow::anyhow!("commerce migration failed: {e}"))
}
