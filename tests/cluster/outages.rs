//! Outage drills on the cluster: an instance with the wrong key-encryption secret,
//! every database connection killed under load, every IdP instance killed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};
use serde_json::Value;

use crate::fixture::Suite;
use crate::load::{Load, Mix, Tally};
use crate::topology::{IDPS, Kind, http, process_alive, signal};
use crate::web::{Browser, Trail, jwt_parts, served_by};

async fn wait_exit(pid: i32, within: Duration) {
    let until = Instant::now() + within;
    while process_alive(pid) {
        assert!(Instant::now() < until, "process {pid} still runs after {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// idp3 is replaced by an instance whose key-encryption secret differs from the
/// cluster's: it exits non-zero naming the key, the balancer never sees it ready,
/// and the other two serve every request meanwhile.
pub async fn wrong_key_encryption_secret(suite: Arc<Suite>) {
    let c = &suite.cluster;
    let pid = c.pid(Kind::Idp, 3).expect("idp3's pid");
    signal(pid, libc::SIGTERM);
    wait_exit(pid, Duration::from_secs(60)).await;
    c.wait_balancer("idp3", "DOWN", Duration::from_secs(10)).await;

    let load = Load::start(
        &suite,
        Mix {
            client_credentials: 2,
            userinfo: 1,
            ..Mix::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(&str, String)> = c
        .idp_env()
        .into_iter()
        .filter(|(k, _)| *k != "OXIDP_KEY_ENCRYPTION_SECRET")
        .collect();
    let address = c.instance_url(Kind::Idp, 3).trim_start_matches("http://").to_owned();
    env.push((
        "OXIDP_KEY_ENCRYPTION_SECRET",
        "a-different-secret-0123456789abcdefghijklmnop".to_owned(),
    ));
    env.push(("OXIDP_BIND", address));
    env.push(("OXIDP_METRICS__BIND", "off".to_owned()));
    let mut child = c
        .oxidp(&["serve"], &env, dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the misconfigured instance");
    let started = Instant::now();
    let mut seen = Vec::new();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("the misconfigured instance is still running after 90 s");
        }
        let now = c.server_status("idp3").await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The balancer's view a little longer: it must not have taken a half-started instance.
    for _ in 0..10 {
        let now = c.server_status("idp3").await;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tally = load.finish().await;
    tally.report("traffic while the misconfigured instance tried to start");
    println!(
        "  exited with {status} after {:.1} s; balancer's view of idp3: {seen:?}; message: {}",
        started.elapsed().as_secs_f64(),
        stderr.trim()
    );
    assert!(!status.success(), "a wrong key_encryption_secret must not start");
    assert!(
        stderr.contains("key_encryption_secret") && stderr.contains("differs"),
        "a clear message naming the key: {stderr}"
    );
    assert!(
        seen.iter().all(|s| s == "DOWN"),
        "the balancer's view of idp3: {seen:?}"
    );
    assert_eq!(tally.outcomes.iter().filter(|o| o.instance == "idp3").count(), 0);
    assert!(
        tally.failed().is_empty(),
        "failed requests:{}",
        tally.describe_failures()
    );
    // The right idp3 again.
    c.script_ok(&["restart-idp", "3"]).await;
}

/// Terminates every connection of the cluster's two databases; how many.
fn terminate_all(suite: &Suite) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Killed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        killed: i64,
    }
    let c = &suite.cluster;
    let mut admin = diesel::PgConnection::establish(&format!("{}/postgres", c.pg)).expect("admin connection");
    diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid)) AS killed FROM pg_stat_activity \
         WHERE datname IN ($1, $2) AND pid <> pg_backend_pid()",
    )
    .bind::<diesel::sql_types::Text, _>(&c.db)
    .bind::<diesel::sql_types::Text, _>(format!("{}_commerce", c.db))
    .get_result::<Killed>(&mut admin)
    .expect("pg_terminate_backend")
    .killed
}

/// The last refresh token of each chain still refreshes (a 503 is retried):
/// no family was lost.
async fn chains_survive(suite: &Suite, tally: &Tally) {
    for token in &tally.chains {
        let mut status = 0;
        for _ in 0..5 {
            let response = crate::web::token(
                &http(),
                &suite.cluster.idp_url,
                &suite.web,
                &[("grant_type", "refresh_token"), ("refresh_token", token)],
            )
            .await;
            status = response.status().as_u16();
            if status != 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(status, 200, "a refresh family was lost");
    }
}

/// `pg_terminate_backend` on every connection of the cluster (IdP and commerce
/// databases), six times during load: answers are 200 or 503, never a 500 (nor
/// any other error), and everything answers 200 again within seconds.
pub async fn database_connections_killed(suite: Arc<Suite>) {
    let load = Load::start(
        &suite,
        Mix {
            client_credentials: 2,
            userinfo: 2,
            refresh_chains: 2,
            commerce: 2,
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut killed = Vec::new();
    for _ in 0..6 {
        let s = suite.clone();
        killed.push(tokio::task::spawn_blocking(move || terminate_all(&s)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let last_kill = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let tally = load.finish().await;
    tally.report("load while the database connections were killed");
    println!("  connections killed per round: {killed:?}");
    assert!(
        killed.iter().filter(|k| **k > 0).count() >= 3,
        "the pools reconnected between the rounds and were killed again: {killed:?}"
    );
    let wrong: Vec<_> = tally
        .outcomes
        .iter()
        .filter(|o| o.status != 200 && o.status != 503)
        .collect();
    assert!(
        wrong.is_empty(),
        "{} answers neither 200 nor 503: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let unavailable = tally.outcomes.iter().filter(|o| o.status == 503);
    let bare: Vec<_> = unavailable.clone().filter(|o| !o.retry_after).collect();
    assert!(
        bare.is_empty(),
        "a 503 without Retry-After: {:?}",
        &bare[..bare.len().min(3)]
    );
    let from_balancer = unavailable.clone().filter(|o| o.instance == "-").count();
    println!(
        "  503 answers: {} from the instances, {from_balancer} from the balancer (no instance ready)",
        unavailable.count() - from_balancer
    );
    let last_failure = tally.failed().last().map(|o| o.at);
    let recovered_after = last_failure.map_or(0.0, |at| at.saturating_duration_since(last_kill).as_secs_f64());
    match last_failure {
        Some(at) if at > last_kill => println!("  last failed request {recovered_after:.2} s after the last kill"),
        Some(at) => println!(
            "  last failed request {:.2} s before the last kill ended",
            (last_kill - at).as_secs_f64()
        ),
        None => println!("  no request failed"),
    }
    assert!(
        recovered_after <= 5.0,
        "still failing {recovered_after:.1} s after the last kill"
    );
    chains_survive(&suite, &tally).await;
}

/// Every IdP instance is killed (SIGKILL) under load, just after a signing key was
/// rotated. Commerce keeps answering valid tokens; sign-in gets the balancer's
/// error page; nothing is left half-written; once the instances are back the
/// rotated key signs and commerce accepts its tokens.
pub async fn every_idp_instance_killed(suite: Arc<Suite>) {
    let c = &suite.cluster;
    let before = suite.shop_token().await;
    let (_, old_kid) = jwt_parts(&before);
    let rotated = c.cli_json(&["keys", "rotate", "--alg", "ES256", "--now", "--json"], None);
    let new_kid = rotated[0]["kid"].as_str().expect("the new key's kid").to_owned();
    assert_ne!(new_kid, old_kid);
    let sessions_before = c.count("SELECT count(*) AS n FROM sessions");
    let load = Load::start(
        &suite,
        Mix {
            client_credentials: 1,
            refresh_chains: 2,
            commerce: 2,
            ..Mix::default()
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let killed_at = Instant::now();
    let pids: Vec<i32> = IDPS.iter().map(|n| c.pid(Kind::Idp, *n).expect("pid")).collect();
    for pid in &pids {
        signal(*pid, libc::SIGKILL);
    }
    for pid in &pids {
        wait_exit(*pid, Duration::from_secs(10)).await;
    }
    // While they are down: commerce serves the token it knows, on both instances.
    let shop = http();
    let mut commerce_instances = Vec::new();
    for _ in 0..6 {
        let response = shop
            .get(format!("{}/v1/sellers", c.commerce_url))
            .bearer_auth(&before)
            .send()
            .await
            .unwrap();
        commerce_instances.push((response.status().as_u16(), served_by(&response)));
    }
    // And each instance asked directly (through the balancer, six requests may all
    // land on one of them when the load loops' requests interleave).
    let mut direct = Vec::new();
    for n in [1, 2] {
        let response = shop
            .get(format!("{}/v1/sellers", c.instance_url(Kind::Commerce, n)))
            .bearer_auth(&before)
            .send()
            .await
            .unwrap();
        direct.push(response.status().as_u16());
    }
    // A new sign-in: the balancer's page, no instance behind it.
    let person = Browser::new(&c.idp_url, &Trail::default());
    let page = person.get("/login").await;
    let (status, retry_after) = (page.status().as_u16(), page.headers().contains_key("retry-after"));
    let content_type = page.headers()["content-type"].to_str().unwrap().to_owned();
    let body = page.text().await.unwrap();
    let posted = person
        .post(
            "/login",
            &[
                ("csrf_token", "x"),
                ("username", "bob"),
                ("password", crate::web::PASSWORD),
            ],
        )
        .await
        .status();
    // A commerce instance restarted during the outage serves from the key set it
    // persisted (its /readyz says where the keys came from).
    c.script_ok(&["restart-commerce", "1"]).await;
    let ready: Value = shop
        .get(format!("{}/readyz", c.instance_url(Kind::Commerce, 1)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let restarted = shop
        .get(format!("{}/v1/sellers", c.instance_url(Kind::Commerce, 1)))
        .bearer_auth(&before)
        .send()
        .await
        .unwrap()
        .status();
    // Bring them back (cluster.sh starts a stopped instance on restart).
    let restarts: Vec<_> = IDPS
        .iter()
        .map(|n| {
            let suite = suite.clone();
            tokio::task::spawn_blocking(move || suite.cluster.script(&["restart-idp", &n.to_string()]))
        })
        .collect();
    for restart in restarts {
        let output = restart.await.unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    for n in IDPS {
        c.wait_balancer(&Kind::Idp.name(n), "UP", Duration::from_secs(60)).await;
    }
    let outage = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = load.finish().await;
    tally.report("load through the IdP outage");
    println!(
        "  outage {:.1} s; commerce during it: {commerce_instances:?}, directly: {direct:?}; sign-in page: {status} {content_type}, POST /login: {posted}",
        outage.as_secs_f64()
    );

    println!("  commerce1 restarted during the outage: /readyz {ready}, a known token: {restarted}");
    assert!(
        commerce_instances.iter().all(|(s, _)| *s == 200),
        "commerce during the outage"
    );
    assert_eq!(ready["key_set"]["source"], "database", "{ready}");
    assert_eq!(restarted, 200, "the restarted commerce instance serves a known token");
    assert_eq!(direct, [200, 200], "commerce1 and commerce2, each asked directly");
    let commerce_failed: Vec<_> = tally
        .of_kind("commerce")
        .into_iter()
        .filter(|o| o.status != 200)
        .collect();
    assert!(commerce_failed.is_empty(), "commerce failed: {commerce_failed:?}");
    assert!(
        (status, retry_after) == (503, true) && content_type.starts_with("text/html"),
        "the balancer's page: {status} {content_type}"
    );
    assert!(body.contains("Sign-in is unavailable"), "{body}");
    assert_eq!(posted, 503, "a sign-in POST during the outage");
    // IdP requests failed only while the IdP was down, never after: the balancer's
    // 503, or for a request in flight at the kill a 502 or a closed connection
    // (HAProxy closes a keep-alive client connection without an answer when the
    // server vanishes under a request, so that the client may retry it).
    // One exception: when the outage outlasted the refresh grace window
    // (`tokens.refresh_reuse_grace_secs`, 10 s), a chain whose rotation committed
    // but whose answer the kill lost presents a used token afterwards: a replay,
    // refused with 400 and its family revoked, as documented.
    let grace = Duration::from_secs(10);
    let idp_failed: Vec<_> = tally.failed().into_iter().filter(|o| o.kind != "commerce").collect();
    assert!(!idp_failed.is_empty(), "the load saw the outage");
    for o in &idp_failed {
        if outage >= grace && o.kind == "refresh" && o.status == 400 {
            continue;
        }
        assert!(
            o.at >= killed_at && o.at <= killed_at + outage,
            "a failure outside the outage: {o:?}"
        );
        assert!([0, 502, 503].contains(&o.status), "{o:?}");
    }

    // Nothing half-written: no session from the refused sign-ins; every used refresh
    // token has its successor stored, every live family exactly one current token.
    assert_eq!(
        c.count("SELECT count(*) AS n FROM sessions"),
        sessions_before,
        "no new session"
    );
    assert_eq!(
        c.count(
            "SELECT count(*) AS n FROM refresh_tokens r WHERE r.used_at IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM refresh_tokens s WHERE s.token_hash = r.successor_hash)"
        ),
        0,
        "a used refresh token without its successor"
    );
    assert_eq!(
        c.count(
            "SELECT count(*) AS n FROM (SELECT g.id FROM grants g JOIN refresh_tokens r ON r.grant_id = g.id \
             WHERE g.revoked_at IS NULL GROUP BY g.id HAVING count(*) FILTER (WHERE r.used_at IS NULL) <> 1) x"
        ),
        0,
        "a live refresh family without exactly one current token"
    );
    if outage < grace {
        chains_survive(&suite, &tally).await;
    } else {
        println!(
            "  (outage longer than the refresh grace window: a refresh whose answer the kill lost counts as a replay; chains not checked)"
        );
    }

    // Everything resumes: the rotated key signs, commerce accepts its tokens.
    let after = suite.shop_token().await;
    let (_, kid) = jwt_parts(&after);
    assert_eq!(kid, new_kid, "tokens are signed with the key rotated before the outage");
    for _ in 0..4 {
        let response = shop
            .get(format!("{}/v1/sellers", c.commerce_url))
            .bearer_auth(&after)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "commerce accepts the new key on {}",
            served_by(&response)
        );
        let old = shop
            .get(format!("{}/v1/sellers", c.commerce_url))
            .bearer_auth(&before)
            .send()
            .await
            .unwrap();
        assert_eq!(old.status(), 200, "and still the old one");
    }
    let person = Browser::new(&c.idp_url, &Trail::default());
    assert_eq!(
        person.password_sign_in("bob", None).await.status(),
        303,
        "sign-in resumes"
    );
    let _: Value = suite.bob_tokens().await;
}
