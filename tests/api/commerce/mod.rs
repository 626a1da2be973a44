//! The commerce resource server, tested through real servers: oxidp issues the
//! tokens over HTTP, `oxidp commerce` (on port 0, fresh database) verifies them.

mod catalog;
mod cli;
mod coupons;
mod idempotency;
mod introspection;
mod openapi;
mod orders;
mod outage;
mod rabbitmq;
mod reservations;
mod rp_flow;
mod stock;
mod tokens;

use std::net::TcpListener;
use std::sync::Arc;

use diesel::{Connection, RunQueryDsl};
use oxidp::audit::Actor;
use oxidp::clock::ManualClock;
use oxidp::commerce::CommerceApp;
use oxidp::config::Config;
use oxidp::resource_server::ResourceServer;

use crate::helpers::{TestApp, TestClient, base_config, postgres_url};

/// The audience the commerce API is configured with.
pub const AUDIENCE: &str = "https://shop.example.com/api";

pub struct CommerceTest {
    pub address: String,
    pub clock: Arc<ManualClock>,
    pub rs: actix_web::web::Data<ResourceServer>,
    pub config: Config,
    server: actix_web::dev::ServerHandle,
    refresh: tokio::task::AbortHandle,
    /// Shared by restarts: the database lives as long as the first instance's guard.
    db: Arc<DbGuard>,
}

struct DbGuard {
    _dir: tempfile::TempDir,
    pg_schema: Option<String>,
}

impl Drop for DbGuard {
    fn drop(&mut self) {
        if let (Some(schema), Some(admin_url)) = (&self.pg_schema, postgres_url())
            && let Ok(mut admin) = diesel::PgConnection::establish(&admin_url)
        {
            let _ = diesel::sql_query(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut admin);
        }
    }
}

/// `oxidp commerce` trusting `idp`, with a fresh database (SQLite file or PostgreSQL schema).
pub async fn spawn_commerce(idp: &TestApp, customize: impl FnOnce(&mut Config)) -> CommerceTest {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = base_config(dir.path());
    let (url, pg_schema) = match postgres_url() {
        Some(admin_url) => {
            openssl::init();
            let schema = format!("c_{}", uuid::Uuid::new_v4().simple());
            let mut admin = diesel::PgConnection::establish(&admin_url).expect("connect to TEST_DATABASE_URL");
            diesel::sql_query(format!("CREATE SCHEMA {schema}"))
                .execute(&mut admin)
                .expect("create schema");
            let mut url = url::Url::parse(&admin_url).unwrap();
            url.query_pairs_mut()
                .append_pair("options", &format!("-csearch_path={schema}"));
            (url.to_string(), Some(schema))
        }
        None => (format!("sqlite://{}", dir.path().join("commerce.db").display()), None),
    };
    config.commerce.database_url = Some(url);
    config.commerce.issuer = Some(idp.config.issuer.clone());
    config.commerce.audience = Some(AUDIENCE.to_owned());
    // Introspection needs a registered client; tests that exercise it turn it on
    // (`introspection::with_introspection`), the others verify locally only.
    config.commerce.introspection = oxidp::config::IntrospectionMode::Off;
    customize(&mut config);
    let db = Arc::new(DbGuard { _dir: dir, pg_schema });
    start(config, idp.clock.clone(), db).await
}

async fn start(config: Config, clock: Arc<ManualClock>, db: Arc<DbGuard>) -> CommerceTest {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let app = CommerceApp::with_listener(&config, clock.clone(), listener)
        .await
        .expect("commerce server");
    let (server, refresh, rs) = (app.handle(), app.refresh_task(), app.resource_server.clone());
    tokio::spawn(app.run_until_stopped());
    CommerceTest {
        address: format!("http://127.0.0.1:{port}"),
        clock,
        rs,
        config,
        server,
        refresh,
        db,
    }
}

impl CommerceTest {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Stops this instance and starts a new one on the same database and settings.
    pub async fn restart(self) -> CommerceTest {
        self.stop().await;
        start(self.config.clone(), self.clock.clone(), self.db.clone()).await
    }

    pub async fn stop(&self) {
        self.refresh.abort();
        self.server.stop(false).await;
    }

    /// Another instance on the same database, with `customize`d settings; both run.
    pub async fn another(&self, customize: impl FnOnce(&mut Config)) -> CommerceTest {
        let mut config = self.config.clone();
        customize(&mut config);
        start(config, self.clock.clone(), self.db.clone()).await
    }

    /// Runs one SQL statement on the commerce database (to set up faults such as a
    /// message left by a dead worker); returns the rows affected.
    pub async fn sql(&self, statement: &str) -> usize {
        let statement = statement.to_owned();
        self.database()
            .run(move |conn| Ok(diesel::sql_query(statement).execute(conn)?))
            .await
            .expect("sql")
    }

    /// `SELECT COUNT(*) AS n …` on the commerce database.
    pub async fn count(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let query = query.to_owned();
        self.database()
            .run(move |conn| Ok(diesel::sql_query(query).get_result::<Count>(conn)?.n))
            .await
            .expect("count")
    }

    pub fn database(&self) -> oxidp::db::Db {
        self.database_pool(1)
    }

    /// The commerce database with a pool of `max_size` connections.
    pub fn database_pool(&self, max_size: u32) -> oxidp::db::Db {
        oxidp::db::Db::connect(
            &self.config.commerce_database_url(),
            &oxidp::db::PoolSettings {
                max_size,
                connect_timeout: std::time::Duration::from_secs(5),
                busy_timeout: std::time::Duration::from_secs(5),
                sqlite_cache_kib: 1024,
            },
        )
        .expect("commerce database")
    }

    pub fn jwks_fetches(&self) -> u64 {
        oxidp::resource_server::RsMetrics::get(&self.rs.metrics.jwks_fetches)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        if_match: Option<&str>,
        body: serde_json::Value,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send().await.unwrap()
    }
}

/// The `WWW-Authenticate` header of a response ("" if none).
pub fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Asserts that `token` may not create a seller: 403 with an RFC 6750 §3.1
/// `insufficient_scope` challenge naming the permission, and a problem+json body.
pub async fn assert_cannot_create_sellers(commerce: &CommerceTest, token: &str) {
    let refused = commerce
        .send(
            reqwest::Method::POST,
            "/v1/sellers",
            token,
            None,
            serde_json::json!({"name": "Acme", "kind": "EXTERNAL", "contact": {"email": "ops@acme.example"}}),
        )
        .await;
    assert_eq!(refused.status(), 403);
    let c = challenge(&refused);
    assert!(c.contains("error=\"insufficient_scope\""), "{c}");
    assert!(c.contains("scope=\"commerce:sellers:admin\""), "{c}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["status"], 403);
}

/// A service account at `idp` whose tokens are for the commerce audience, holding
/// a role with `permissions` (registered for that audience).
pub async fn commerce_client(idp: &TestApp, role: &str, permissions: &[&str]) -> TestClient {
    commerce_client_with_ttl(idp, role, permissions, 600).await
}

/// As `commerce_client`, with access tokens living `ttl` seconds.
pub async fn commerce_client_with_ttl(idp: &TestApp, role: &str, permissions: &[&str], ttl: i64) -> TestClient {
    let client = idp
        .create_client(oxidp::oauth::clients::ClientSpec {
            name: Some(format!("{role} service")),
            grant_types: Some(vec!["client_credentials".into()]),
            scopes: Some("api:read".into()),
            audience: Some(AUDIENCE.to_owned()),
            access_token_ttl: Some(ttl),
            ..Default::default()
        })
        .await;
    let actor = Actor::system();
    let _ = oxidp::rbac::create_role(idp.state.rbac_change(), &actor, role, "commerce test role").await;
    for permission in permissions {
        oxidp::rbac::grant(idp.state.rbac_change(), &actor, role, permission, Some(AUDIENCE))
            .await
            .expect("grant");
    }
    oxidp::rbac::assign(
        idp.state.rbac_change(),
        &actor,
        oxidp::rbac::Subject::Client(client.id.clone()),
        role,
    )
    .await
    .expect("assign");
    client
}

/// A fresh access token of `client` from `idp`'s token endpoint.
pub async fn token_of(idp: &TestApp, client: &TestClient) -> String {
    idp.client_token(client, &[]).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}
