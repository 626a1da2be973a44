//! Cluster-wide sign-in rate limits through Redis (`redis_url`): two instances
//! sharing one Redis allow the limit once, not once each; with Redis unreachable
//! or cut mid-flight sign-ins keep working under each instance's own limits, and
//! the fallback shows in the metrics. Redis runs at 127.0.0.1:6379; without it
//! these tests print SKIPPED, unless `OXIDP_REQUIRE_REDIS` is set (`.ci/run`).

use std::time::Duration;

use redis::AsyncCommands;

use crate::helpers::{PASSWORD, TestApp, browser, proxy::Proxy, spawn_app_sharing, spawn_app_with, text_of};

const REDIS: &str = "redis://127.0.0.1:6379";

/// Whether Redis answers at 127.0.0.1:6379; panics when it must (`OXIDP_REQUIRE_REDIS`).
fn redis_available() -> bool {
    use std::io::{Read, Write};
    let answered = std::net::TcpStream::connect_timeout(&"127.0.0.1:6379".parse().unwrap(), Duration::from_secs(1))
        .and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            stream.write_all(b"PING\r\n")?;
            let mut reply = [0u8; 5];
            stream.read_exact(&mut reply)?;
            Ok(&reply == b"+PONG")
        })
        .unwrap_or(false);
    if !answered {
        assert!(
            std::env::var_os("OXIDP_REQUIRE_REDIS").is_none(),
            "Redis does not answer at 127.0.0.1:6379 (apt-get install redis-server; .ci/run starts it)"
        );
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("redis test");
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {test} — Redis does not answer at 127.0.0.1:6379 (.ci/run starts it)"
        );
    }
    answered
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis")
}

/// The keys under `prefix` (a rerun on a reused port finds its old keys: they are removed first).
async fn keys_under(prefix: &str) -> Vec<String> {
    let mut conn = redis().await;
    let keys: Vec<String> = conn.keys(format!("{prefix}*")).await.unwrap();
    keys
}

async fn clear(prefix: &str) {
    let mut conn = redis().await;
    for key in keys_under(prefix).await {
        let _: () = conn.del(key).await.unwrap();
    }
}

/// One wrong-password sign-in; returns the status (200: the form with an error, 429: limited).
async fn wrong_password(app: &TestApp, username: &str) -> u16 {
    let response = app.login(&browser(), username, "not the password").await;
    let status = response.status().as_u16();
    let html = response.text().await.unwrap();
    if status == 200 {
        assert!(text_of(&html, "#login-error").is_some(), "a refusal, not a session");
    }
    status
}

async fn metrics_of(app: &TestApp) -> String {
    reqwest::get(app.metrics_url()).await.unwrap().text().await.unwrap()
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn limited(redis_url: String, burst: u32) -> impl FnOnce(&mut oxidp::config::Config) {
    move |c| {
        c.redis_url = Some(redis_url.into());
        c.login.ip_per_minute = 1;
        c.login.ip_burst = burst;
        // Counted too (its key lives while it matters), never the limit here.
        c.login.account_per_minute = 1;
        c.login.account_burst = 1_000;
    }
}

#[tokio::test]
async fn two_instances_sharing_redis_allow_the_per_address_limit_once_not_once_each() {
    if !redis_available() {
        return;
    }
    let a = spawn_app_with(limited(REDIS.to_owned(), 4)).await;
    let b = spawn_app_sharing(&a).await;
    let prefix = a.state.limiters.shared_prefix().unwrap().to_owned();
    assert_eq!(
        b.state.limiters.shared_prefix(),
        Some(prefix.as_str()),
        "one namespace per deployment"
    );
    clear(&prefix).await;
    a.create_user("erin", PASSWORD).await;

    // Alternating instances: four attempts in all, then every instance refuses.
    let mut statuses = Vec::new();
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        statuses.push(wrong_password(app, "erin").await);
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    let refused = a.login(&browser(), "erin", PASSWORD).await;
    assert_eq!(refused.status(), 429, "even the right password waits");
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // What Redis holds: one key per address and per account, hashed, expiring.
    let keys = keys_under(&prefix).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mut conn = redis().await;
    for key in &keys {
        assert!(!key.contains("127.0.0.1") && !key.contains("erin"), "{key}");
        let ttl: i64 = conn.pttl(key).await.unwrap();
        assert!(ttl > 0, "{key} expires");
    }
    for app in [&a, &b] {
        let metrics = metrics_of(app).await;
        assert_eq!(
            value(&metrics, "oxidp_rate_limiter_backend{backend=\"redis\"}"),
            Some(1.0)
        );
        assert_eq!(value(&metrics, "oxidp_rate_limiter_fallback_total"), Some(0.0));
    }
    clear(&prefix).await;
}

#[tokio::test]
async fn with_redis_unreachable_sign_ins_work_under_each_instances_own_limits_and_the_fallback_is_counted() {
    // A closed port: connection refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = spawn_app_with(limited(format!("redis://127.0.0.1:{closed}"), 3)).await;
    let b = spawn_app_sharing(&a).await;
    a.create_user("fred", PASSWORD).await;

    let signed_in = a.login(&browser(), "fred", PASSWORD).await;
    assert_eq!(signed_in.status(), 303, "Redis being down never fails a sign-in");
    assert_eq!(wrong_password(&a, "fred").await, 200);
    assert_eq!(wrong_password(&a, "fred").await, 200);
    assert_eq!(wrong_password(&a, "fred").await, 429, "A's own limit: 3 per address");
    // B counts for itself: per instance, as without Redis.
    for _ in 0..3 {
        assert_eq!(wrong_password(&b, "fred").await, 200);
    }
    assert_eq!(wrong_password(&b, "fred").await, 429);

    let metrics = metrics_of(&a).await;
    assert_eq!(
        value(&metrics, "oxidp_rate_limiter_fallback_total"),
        Some(4.0),
        "{metrics}"
    );
    assert_eq!(
        value(&metrics, "oxidp_rate_limiter_backend{backend=\"local\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&metrics, "oxidp_rate_limiter_backend{backend=\"redis\"}"),
        Some(0.0)
    );
}

async fn ip_counter(prefix: &str) -> i64 {
    let key = keys_under(prefix)
        .await
        .into_iter()
        .find(|k| k.starts_with(&format!("{prefix}ip:")))
        .expect("the address's key");
    let value: String = redis().await.get(key).await.unwrap();
    value.parse().unwrap()
}

#[tokio::test]
async fn when_redis_is_cut_mid_flight_limits_fall_back_and_return_to_redis_when_it_is_back() {
    if !redis_available() {
        return;
    }
    let forwarder = Proxy::start("127.0.0.1:6379".to_owned()).await;
    let port = forwarder.port;
    let a = spawn_app_with(limited(format!("redis://127.0.0.1:{port}"), 100)).await;
    let b = spawn_app_sharing(&a).await;
    let prefix = a.state.limiters.shared_prefix().unwrap().to_owned();
    clear(&prefix).await;
    a.create_user("gwen", PASSWORD).await;

    // Two attempts counted in Redis.
    assert_eq!(wrong_password(&a, "gwen").await, 200);
    assert_eq!(wrong_password(&b, "gwen").await, 200);
    let before_cut = ip_counter(&prefix).await;

    // Cut: established connections and new ones fail; sign-ins go on per instance.
    forwarder.stop();
    let started = std::time::Instant::now();
    assert_eq!(a.login(&browser(), "gwen", PASSWORD).await.status(), 303);
    eprintln!("sign-in with Redis cut: {} ms", started.elapsed().as_millis());
    assert_eq!(wrong_password(&b, "gwen").await, 200);
    for app in [&a, &b] {
        let metrics = metrics_of(app).await;
        assert!(
            value(&metrics, "oxidp_rate_limiter_fallback_total").unwrap() >= 1.0,
            "{metrics}"
        );
        assert_eq!(
            value(&metrics, "oxidp_rate_limiter_backend{backend=\"local\"}"),
            Some(1.0)
        );
    }
    assert_eq!(ip_counter(&prefix).await, before_cut, "nothing reached Redis");

    // Back on the same port: each instance returns to Redis (after its pause and,
    // for a broken connection, one more failed call while it reconnects).
    let _back = Proxy::start_on(port, "127.0.0.1:6379".to_owned()).await;
    for app in [&a, &b] {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            assert_eq!(wrong_password(app, "gwen").await, 200);
            let metrics = metrics_of(app).await;
            if value(&metrics, "oxidp_rate_limiter_backend{backend=\"redis\"}") == Some(1.0) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not back on Redis: {metrics}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    // The shared count went on from where Redis had it: one more attempt anywhere
    // adds exactly one emission interval (60 s at 1 per minute) to the address's key.
    let fallbacks = value(&metrics_of(&b).await, "oxidp_rate_limiter_fallback_total").unwrap();
    let counted = ip_counter(&prefix).await;
    assert!(counted >= before_cut + 2 * 60_000_000, "{counted} vs {before_cut}");
    assert_eq!(wrong_password(&b, "gwen").await, 200);
    assert_eq!(ip_counter(&prefix).await, counted + 60_000_000);
    assert_eq!(
        value(&metrics_of(&b).await, "oxidp_rate_limiter_fallback_total").unwrap(),
        fallbacks,
        "served by Redis"
    );
    clear(&prefix).await;
}
