//! For unit tests: a fresh, migrated SQLite database in a temporary directory,
//! and the rows most tests start from.

use std::time::Duration;

use crate::db::models::audit::{self, AuditFilter, AuditRow};
use crate::db::models::users::{self, NewUser, UserRow};
use crate::db::{Db, PoolSettings};

/// A migrated SQLite database; its directory goes when it drops.
pub struct TestDb {
    pub db: Db,
    _dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("unit.db").display());
        let settings = PoolSettings {
            max_size: 4,
            connect_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(5),
            sqlite_cache_kib: 2048,
        };
        let db = Db::connect(&url, &settings).expect("sqlite pool");
        db.migrate().await.expect("migrations");
        Self { db, _dir: dir }
    }

    /// Adds an enabled person without a password, created at `now`.
    pub async fn user(&self, username: &str, now: i64) -> UserRow {
        let row = NewUser {
            id: uuid::Uuid::new_v4().to_string(),
            username: username.to_owned(),
            email: None,
            email_verified: false,
            name: None,
            given_name: None,
            family_name: None,
            nickname: None,
            picture: None,
            locale: None,
            zoneinfo: None,
            phone_number: None,
            phone_number_verified: false,
            password_hash: None,
            password_changed_at: None,
            disabled: false,
            created_at: now,
            updated_at: now,
            address: None,
        };
        let name = username.to_owned();
        self.db
            .run(move |conn| {
                users::insert(conn, &row)?;
                users::find_by_username(conn, &name)
            })
            .await
            .expect("insert user")
            .expect("the user just inserted")
    }

    /// The audit events with `action`, newest first.
    pub async fn events(&self, action: &str) -> Vec<AuditRow> {
        let filter = AuditFilter {
            action: Some(action.to_owned()),
            ..Default::default()
        };
        self.db
            .run(move |conn| audit::list(conn, &filter, 500))
            .await
            .expect("audit events")
    }
}
