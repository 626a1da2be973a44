//! The password step reserves each attempt in the database before hashing
//! (issue 12 item 10): concurrent bursts on one or two instances get exactly
//! `login.delay_after` undelayed checks and never more than `login.lockout_after`;
//! the right password sent after the limit is refused. A known-device cookie has
//! its own counter (issue 20): a stolen one gives at most
//! `login.device_max_failures` guesses beyond the account's own limits.

use std::sync::Arc;

use oxidp::authn::risk;
use oxidp::db::models::logins;

use crate::helpers::{PASSWORD, TestApp, browser, cookie_value, spawn_app_sharing, spawn_app_with};

async fn throttle(app: &TestApp, username: &str) -> Option<logins::ThrottleRow> {
    let key = risk::username_key(&app.state.login_key, username);
    app.state
        .db
        .run(move |conn| logins::find_throttle(conn, &key))
        .await
        .unwrap()
}

fn hashes(apps: &[Arc<TestApp>]) -> u64 {
    apps.iter().map(|a| a.state.hasher.computed()).sum()
}

/// A browser whose only cookie at first is the known-device cookie `device`, if
/// any. It opens a new connection per request: while a burst keeps the CPUs busy
/// hashing, a kept-alive connection may sit idle past the server's keep-alive
/// timeout between the page and the form post, and be closed under the request.
fn client(app: &TestApp, device: Option<&str>) -> reqwest::Client {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    if let Some(device) = device {
        jar.add_cookie_str(
            &format!("oxidp_device={device}; Path=/"),
            &app.url("/").parse().unwrap(),
        );
    }
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Sends every password at once, round-robin over `apps`, each from its own
/// browser (or from its own copy of the device cookie); returns the statuses.
async fn burst(apps: &[Arc<TestApp>], username: &str, passwords: Vec<String>, device: Option<&str>) -> Vec<u16> {
    let mut tasks = Vec::new();
    for (i, password) in passwords.into_iter().enumerate() {
        let app = apps[i % apps.len()].clone();
        let username = username.to_owned();
        let device = device.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            let client = client(&app, device.as_deref());
            app.login(&client, &username, &password).await.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

/// Settings of the burst tests: the same counters, cheaper hashes (what is
/// counted is how many are computed, not their cost), and room for requests that
/// queue on the one counter row of a busy test machine.
fn burst_settings(c: &mut oxidp::config::Config) {
    c.argon2.memory_kib = 8 * 1024;
    c.argon2.iterations = 1;
    c.database.connect_timeout_secs = 15;
}

/// The bursts of this file run one at a time, so that they do not starve each
/// other's servers of CPU (the server answers 408 to a request it could not read
/// within 5 s).
static ONE_BURST_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn wrong(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("wrong guess number {i}")).collect()
}

#[tokio::test]
async fn a_burst_of_150_wrong_passwords_on_two_instances_gets_exactly_delay_after_checks() {
    let _one = ONE_BURST_AT_A_TIME.lock().await;
    let a = spawn_app_with(|c| {
        c.login.delay_after = 5;
        c.login.lockout_after = 100;
        burst_settings(c);
    })
    .await;
    let b = spawn_app_sharing(&a).await;
    a.create_user("victim", PASSWORD).await;
    let apps = [Arc::new(a), Arc::new(b)];
    let before = hashes(&apps);
    let statuses = burst(&apps, "victim", wrong(150), None).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(hashes(&apps) - before, 5, "only delay_after checks without a delay");
    let row = throttle(&apps[0], "victim").await.unwrap();
    assert_eq!(row.failures, 5);
    assert!(row.delay_until > 0);

    // The right password within a second burst of wrong ones: refused unchecked.
    let mut passwords = wrong(49);
    passwords.insert(24, PASSWORD.to_owned());
    let statuses = burst(&apps, "victim", passwords, None).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(hashes(&apps) - before, 5);

    // After the delay the person signs in, and the counter is gone.
    apps[0].clock.advance(2);
    assert_eq!(apps[1].login(&browser(), "victim", PASSWORD).await.status(), 303);
    assert_eq!(throttle(&apps[0], "victim").await.unwrap().failures, 0);
}

#[tokio::test]
async fn a_burst_of_150_on_two_instances_checks_at_most_lockout_after_passwords() {
    let _one = ONE_BURST_AT_A_TIME.lock().await;
    // No delays (the test default `delay_after` is 100): only the lockout limits.
    let a = spawn_app_with(|c| {
        c.login.lockout_after = 100;
        burst_settings(c);
    })
    .await;
    let b = spawn_app_sharing(&a).await;
    a.create_user("target", PASSWORD).await;
    let apps = [Arc::new(a), Arc::new(b)];
    let before = hashes(&apps);
    let statuses = burst(&apps, "target", wrong(150), None).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(hashes(&apps) - before, 100, "exactly lockout_after password checks");
    let row = throttle(&apps[0], "target").await.unwrap();
    assert_eq!(row.failures, 100);
    assert!(row.locked_at.is_some());
    // Locked: the right password is refused on both instances without a hash.
    for app in &apps {
        assert_eq!(app.login(&browser(), "target", PASSWORD).await.status(), 200);
    }
    assert_eq!(hashes(&apps) - before, 100);
    let events = oxidp::audit::query(
        &apps[0].state.db,
        oxidp::db::models::audit::AuditFilter {
            action: Some("login.lockout".into()),
            ..Default::default()
        },
        10,
    )
    .await
    .unwrap();
    assert_eq!(events.len(), 1, "one lockout event");
}

#[tokio::test]
async fn a_stolen_device_cookie_gives_at_most_five_unthrottled_guesses() {
    let _one = ONE_BURST_AT_A_TIME.lock().await;
    let app = spawn_app_with(|c| {
        c.login.delay_after = 5;
        c.login.lockout_after = 100;
        c.login.device_max_failures = 5;
        burst_settings(c);
    })
    .await;
    let user = app.create_user("fran", PASSWORD).await;
    let first = app.login(&browser(), "fran", PASSWORD).await;
    assert_eq!(first.status(), 303);
    let device = cookie_value(&first, "oxidp_device").expect("device cookie");
    let device_id = device.split('.').next().unwrap().to_owned();
    let known = |app: &TestApp| {
        let (d, u) = (device_id.clone(), user.id.clone());
        let db = app.state.db.clone();
        async move {
            db.run(move |conn| logins::is_known_device(conn, &d, &u, 5))
                .await
                .unwrap()
        }
    };
    assert!(known(&app).await);

    // The thief sends 50 guesses at once with copies of the cookie: 5 on the
    // device's own counter, then the account's counter (5 before its delay).
    let apps = [Arc::new(app)];
    let before = hashes(&apps);
    let statuses = burst(&apps, "fran", wrong(50), Some(&device)).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(hashes(&apps) - before, 10, "5 as a known device + 5 before the delay");
    let app = &apps[0];
    assert!(!known(app).await, "the cookie is no longer known");
    assert_eq!(throttle(app, "fran").await.unwrap().failures, 5);
    let id = user.id.clone();
    let attempts = app
        .state
        .db
        .run(move |conn| logins::recent_for_user(conn, &id, 100))
        .await
        .unwrap();
    let as_known = attempts
        .iter()
        .filter(|a| a.known_device && a.outcome == "failure")
        .count();
    assert_eq!(as_known, 5);

    // The person, with the same cookie, signs in after the delay: it is known again.
    app.clock.advance(2);
    assert_eq!(
        app.login(&client(app, Some(&device)), "fran", PASSWORD).await.status(),
        303
    );
    assert!(known(app).await);
    assert_eq!(throttle(app, "fran").await.unwrap().failures, 0);
}

#[tokio::test]
async fn right_and_wrong_passwords_racing_on_two_instances_never_fail_the_server() {
    let _one = ONE_BURST_AT_A_TIME.lock().await;
    // Successes delete the counter row while other attempts create and claim it.
    let a = spawn_app_with(burst_settings).await;
    let b = spawn_app_sharing(&a).await;
    a.create_user("racer", PASSWORD).await;
    let apps = [Arc::new(a), Arc::new(b)];
    let passwords: Vec<String> = (0..60)
        .map(|i| {
            if i % 3 == 0 {
                PASSWORD.to_owned()
            } else {
                format!("wrong guess number {i}")
            }
        })
        .collect();
    let statuses = burst(&apps, "racer", passwords, None).await;
    assert_eq!(statuses.iter().filter(|s| **s == 303).count(), 20, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 40, "{statuses:?}");
    assert_eq!(
        hashes(&apps),
        60 + 1,
        "every attempt checked once (plus the account's own hash)"
    );
}
