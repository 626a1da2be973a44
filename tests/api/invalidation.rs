//! Changes made on one instance are honoured by the others within a second:
//! PostgreSQL `LISTEN/NOTIFY` cache invalidation (`oxidp::invalidation`). Two
//! instances share one database with `tokens.client_cache_secs = 300` and the
//! default `keys.refresh_secs = 60`, so only a notification can explain a change
//! seen within a second. On SQLite (one instance) there is no listener.

use std::future::Future;
use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{
    PASSWORD, TestApp, TestClient, browser, jwt_claims, postgres_url, spawn_app_sharing, spawn_app_with,
};

const COMMERCE: &str = "https://commerce.example";
/// What "at once" means across instances (issue 16).
const AT_ONCE: Duration = Duration::from_secs(1);

fn skipped_without_postgres() -> bool {
    if postgres_url().is_some() {
        return false;
    }
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("invalidation test");
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED: {test} — needs PostgreSQL (TEST_DATABASE_URL); SQLite runs one instance"
    );
    true
}

/// Two instances on one database with long caches, both listeners connected
/// (PostgreSQL; on SQLite two instances share the file and no listener runs).
async fn pair() -> (TestApp, TestApp) {
    let a = spawn_app_with(|c| c.tokens.client_cache_secs = 300).await;
    let b = spawn_app_sharing(&a).await;
    if postgres_url().is_none() {
        return (a, b);
    }
    for app in [&a, &b] {
        poll(
            Duration::from_secs(15),
            "the invalidation listener connects",
            || async { app.state.metrics.invalidation.backend_pid().is_some() },
        )
        .await;
    }
    (a, b)
}

/// Polls `check` until it holds; panics after `limit`. Returns how long it took.
async fn poll<F, Fut>(limit: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            let took = started.elapsed();
            eprintln!("{what}: {} ms", took.as_millis());
            return took;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `app` has received `count` notifications since its listener
/// connected (the setup's own changes), so none of them lands later and empties
/// a cache the test is about to fill; and checks no more come.
async fn settled(app: &TestApp, count: u64) {
    let status = &app.state.metrics.invalidation;
    poll(Duration::from_secs(10), "the setup's notifications are in", || async {
        status.received() >= count
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status.received(), count, "one notification per change");
}

async fn cc_status(app: &TestApp, client: &TestClient) -> u16 {
    app.token(client, &[("grant_type", "client_credentials")])
        .await
        .status()
        .as_u16()
}

fn admin_conn() -> diesel::PgConnection {
    diesel::PgConnection::establish(&postgres_url().unwrap()).expect("connect to TEST_DATABASE_URL")
}

async fn metric(app: &TestApp, name: &str) -> Option<f64> {
    let text = reqwest::get(app.metrics_url()).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_client_rotated_updated_or_deleted_on_one_instance_is_seen_by_the_other_within_a_second() {
    if skipped_without_postgres() {
        return;
    }
    let (a, b) = pair().await;
    let admin = a.admin_token().await;
    let mut client = a.service_client("api:read", None).await;
    // Two clients created and a role assigned.
    settled(&b, 3).await;
    assert_eq!(cc_status(&b, &client).await, 200, "B caches the client");

    // Control: a change that bypasses the notification (straight SQL) is not seen
    // by B's cache, so what follows is the notification's doing, not a TTL.
    let (id, hash) = (client.id.clone(), oxidp::crypto::sha256_hex("a secret nobody has"));
    b.state
        .db
        .run(move |conn| {
            let oxidp::db::AnyConnection::Postgresql(pg) = conn else {
                unreachable!("PostgreSQL only")
            };
            diesel::sql_query("UPDATE clients SET secret_hash = $1 WHERE id = $2")
                .bind::<diesel::sql_types::Text, _>(hash)
                .bind::<diesel::sql_types::Text, _>(id)
                .execute(pg)
                .map_err(oxidp::db::DbError::from)
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        cc_status(&b, &client).await,
        200,
        "without a notification B serves its cache"
    );

    // Rotated on A: the old secret is refused on B within a second, the new one works.
    let (status, body, _) = a
        .api(
            Method::POST,
            &format!("/admin/v1/clients/{}/secret", client.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let old = client.clone();
    poll(AT_ONCE, "old secret refused on B", || async {
        cc_status(&b, &old).await == 401
    })
    .await;
    client.secret = Some(body["client_secret"].as_str().unwrap().to_owned());
    assert_eq!(cc_status(&b, &client).await, 200);

    // Updated on A (client_credentials no longer allowed): refused on B within a
    // second, then allowed again.
    for (grants, expected) in [
        (json!(["authorization_code"]), 400),
        (json!(["client_credentials"]), 200),
    ] {
        let mut spec = json!({ "grant_types": grants });
        if expected == 400 {
            spec["redirect_uris"] = json!(["https://client.example.com/cb"]);
        }
        let (status, body, _) = a
            .api(
                Method::PATCH,
                &format!("/admin/v1/clients/{}", client.id),
                Some(&admin),
                Some(spec),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        poll(AT_ONCE, &format!("update seen on B ({expected})"), || async {
            cc_status(&b, &client).await == expected
        })
        .await;
    }

    // Deleted on A: refused on B within a second.
    let (status, body, _) = a
        .api(
            Method::DELETE,
            &format!("/admin/v1/clients/{}", client.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    poll(AT_ONCE, "deleted client refused on B", || async {
        cc_status(&b, &client).await == 401
    })
    .await;

    // 3 setup + rotate + 2 updates + delete.
    assert_eq!(b.state.metrics.invalidation.received(), 7);
    assert_eq!(metric(&b, "oxidp_cache_invalidations_received_total").await, Some(7.0));
    assert_eq!(metric(&b, "oxidp_cache_invalidation_listener_up").await, Some(1.0));
    assert_eq!(
        metric(&b, "oxidp_cache_invalidation_listener_reconnects_total").await,
        Some(0.0)
    );
}

async fn permissions_in_token(app: &TestApp, client: &TestClient) -> serde_json::Value {
    let token = app.client_token(client, &[("resource", COMMERCE)]).await;
    jwt_claims(token["access_token"].as_str().unwrap())["permissions"].clone()
}

#[tokio::test]
async fn a_permission_revoked_on_one_instance_leaves_the_others_next_token_within_a_second() {
    if skipped_without_postgres() {
        return;
    }
    let (a, b) = pair().await;
    let admin = a.admin_token().await;
    for (method, path, body) in [
        (
            Method::POST,
            "/admin/v1/roles".to_owned(),
            Some(json!({"name": "catalog-viewer"})),
        ),
        (
            Method::PUT,
            "/admin/v1/roles/catalog-viewer/permissions/commerce:products:read".to_owned(),
            Some(json!({"audience": COMMERCE})),
        ),
    ] {
        let (status, body, _) = a.api(method, &path, Some(&admin), body).await;
        assert!((200..300).contains(&status), "{path}: {status} {body}");
    }
    let client = a.service_client("commerce:products:read", None).await;
    let (status, body, _) = a
        .api(
            Method::PUT,
            &format!("/admin/v1/clients/{}/roles/catalog-viewer", client.id),
            Some(&admin),
            None,
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    assert_eq!(
        permissions_in_token(&b, &client).await,
        json!(["commerce:products:read"]),
        "B caches it"
    );

    let (status, body, _) = a
        .api(
            Method::DELETE,
            "/admin/v1/roles/catalog-viewer/permissions/commerce:products:read",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    poll(AT_ONCE, "revoked permission gone from B's tokens", || async {
        permissions_in_token(&b, &client).await.is_null()
    })
    .await;

    // And back: granted on A, in B's next token within a second.
    let (status, body, _) = a
        .api(
            Method::PUT,
            "/admin/v1/roles/catalog-viewer/permissions/commerce:products:read",
            Some(&admin),
            Some(json!({"audience": COMMERCE})),
        )
        .await;
    assert!((200..300).contains(&status), "{status} {body}");
    poll(AT_ONCE, "granted permission in B's tokens", || async {
        permissions_in_token(&b, &client).await == json!(["commerce:products:read"])
    })
    .await;

    // The role unassigned on A: B's next token carries neither role nor permission.
    let (status, body, _) = a
        .api(
            Method::DELETE,
            &format!("/admin/v1/clients/{}/roles/catalog-viewer", client.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    poll(AT_ONCE, "unassigned role gone from B's tokens", || async {
        let token = b.client_token(&client, &[("resource", COMMERCE)]).await;
        let claims = jwt_claims(token["access_token"].as_str().unwrap());
        claims.get("roles").is_none() && claims.get("permissions").is_none()
    })
    .await;
}

#[tokio::test]
async fn a_user_disabled_on_one_instance_is_refused_by_the_other_at_once() {
    // Users are never cached (read at every sign-in, refresh and token check):
    // nothing to invalidate, and this shows it stays so, on both backends.
    let (a, b) = pair().await;
    let admin = a.admin_token().await;
    a.create_user("carol", PASSWORD).await;
    let web = a.web_client().await;
    let person = browser();
    let (code, verifier) = b.code_for(&web, &person, "carol", "openid offline_access").await;
    let tokens: serde_json::Value = b.redeem(&web, &code, &verifier).await.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    assert_eq!(b.userinfo_status(&access).await.0, 200);

    let (status, body, _) = a
        .api(
            Method::PATCH,
            "/admin/v1/users/carol",
            Some(&admin),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    poll(AT_ONCE, "disabled user's token refused on B", || async {
        b.userinfo_status(&access).await.0 == 401
    })
    .await;
    let refresh = b
        .token(
            &web,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(refresh.status(), 400);
    let signed_in = b.login(&browser(), "carol", PASSWORD).await;
    assert_eq!(signed_in.status(), 200, "the sign-in form again, not a session");
}

#[tokio::test]
async fn a_signing_key_rotated_on_one_instance_is_published_and_used_by_the_other_within_a_second() {
    if skipped_without_postgres() {
        return;
    }
    let (a, b) = pair().await;
    let client = a.service_client("api:read", None).await;
    let kid_of = |token: &str| -> String {
        use base64::Engine;
        let header = token.split('.').next().unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        header["kid"].as_str().unwrap().to_owned()
    };
    let before = kid_of(b.client_token(&client, &[]).await["access_token"].as_str().unwrap());

    use oxidp::clock::Clock;
    let rotated = oxidp::oidc::keys::rotate(
        &a.state.db,
        &a.state.secrets,
        oxidp::oidc::keys::SigningAlg::ES256,
        a.clock.now(),
        0,
        a.config.keys.retain_secs,
    )
    .await
    .unwrap();
    assert_ne!(rotated.kid, before);
    let kid = rotated.kid.clone();
    poll(AT_ONCE, "new key in B's JWKS", || async {
        let jwks: serde_json::Value = reqwest::get(b.url("/jwks")).await.unwrap().json().await.unwrap();
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str())
    })
    .await;
    poll(AT_ONCE, "B signs with the new key", || async {
        kid_of(b.client_token(&client, &[]).await["access_token"].as_str().unwrap()) == kid
    })
    .await;
    // The retired key stays published so B's earlier tokens still verify.
    let jwks: serde_json::Value = reqwest::get(b.url("/jwks")).await.unwrap().json().await.unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == before.as_str())
    );
}

#[tokio::test]
async fn a_killed_listener_reconnects_and_changes_made_meanwhile_are_honoured() {
    if skipped_without_postgres() {
        return;
    }
    let (a, b) = pair().await;
    let admin = a.admin_token().await;
    let mut client = a.service_client("api:read", None).await;
    settled(&b, 3).await;
    assert_eq!(cc_status(&b, &client).await, 200, "B caches the client");

    let pid = b.state.metrics.invalidation.backend_pid().unwrap();
    let mut pg = admin_conn();
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        application_name: String,
    }
    let named: Vec<Name> = diesel::sql_query("SELECT application_name FROM pg_stat_activity WHERE pid = $1")
        .bind::<diesel::sql_types::Integer, _>(pid)
        .load(&mut pg)
        .unwrap();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].application_name, oxidp::invalidation::APPLICATION_NAME);
    diesel::sql_query("SELECT pg_terminate_backend($1)")
        .bind::<diesel::sql_types::Integer, _>(pid)
        .execute(&mut pg)
        .unwrap();

    // Changed while B's listener is down: its notification is lost; B drops
    // every cache when it reconnects.
    let (status, body, _) = a
        .api(
            Method::POST,
            &format!("/admin/v1/clients/{}/secret", client.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let old = client.clone();
    poll(
        Duration::from_secs(10),
        "old secret refused on B after the reconnect",
        || async { cc_status(&b, &old).await == 401 },
    )
    .await;
    poll(Duration::from_secs(10), "B's listener is back", || async {
        b.state.metrics.invalidation.backend_pid().is_some_and(|p| p != pid)
    })
    .await;
    assert_eq!(b.state.metrics.invalidation.reconnects(), 1);
    assert_eq!(
        metric(&b, "oxidp_cache_invalidation_listener_reconnects_total").await,
        Some(1.0)
    );

    // The new connection listens: the next change is honoured within a second.
    client.secret = Some(body["client_secret"].as_str().unwrap().to_owned());
    assert_eq!(cc_status(&b, &client).await, 200);
    let (status, body, _) = a
        .api(
            Method::DELETE,
            &format!("/admin/v1/clients/{}", client.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204, "{body}");
    poll(AT_ONCE, "deleted client refused on B", || async {
        cc_status(&b, &client).await == 401
    })
    .await;
}

#[tokio::test]
async fn on_sqlite_no_listener_runs_and_no_listener_metrics_are_shown() {
    if postgres_url().is_some() {
        // The PostgreSQL side is the rest of this file.
        let (a, _b) = pair().await;
        assert_eq!(metric(&a, "oxidp_cache_invalidation_listener_up").await, Some(1.0));
        return;
    }
    let app = spawn_app_with(|_| {}).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.state.metrics.invalidation.backend_pid(), None);
    assert_eq!(metric(&app, "oxidp_cache_invalidation_listener_up").await, None);
    assert_eq!(metric(&app, "oxidp_cache_invalidations_received_total").await, None);
    // A change still reaches this (only) instance's cache at once.
    let admin = app.admin_token().await;
    let client = app.service_client("api:read", None).await;
    assert_eq!(cc_status(&app, &client).await, 200);
    let (status, _, _) = app
        .api(
            Method::DELETE,
            &format!("/admin/v1/clients/{}", client.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(cc_status(&app, &client).await, 401);
}
