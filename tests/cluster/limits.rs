//! "Cluster-wide rate limits" (issue 16): the IdP instances share their sign-in
//! limits in Redis (cluster.sh's `CLUSTER_REDIS`), so wrong-password sign-ins from
//! one address, spread round robin over three instances by the balancer, are
//! limited after `login.ip_burst` attempts in all — not three times that.

use std::sync::Arc;
use std::time::Instant;

use crate::fixture::Suite;
use crate::topology::{IDPS, http, unique_loopback};
use crate::web::{Browser, Trail, csrf_of, served_by, text_of};

pub async fn sign_in_limits_are_shared(s: Arc<Suite>) {
    let c = &s.cluster;
    if c.redis.is_none() {
        assert!(
            std::env::var_os("OXIDP_REQUIRE_REDIS").is_none(),
            "OXIDP_REQUIRE_REDIS is set but Redis does not answer at {}",
            crate::topology::REDIS_ADDR
        );
        println!(
            "  SKIPPED: Redis does not answer at {}; the instances keep their limits each",
            crate::topology::REDIS_ADDR
        );
        return;
    }
    // Every instance counts in Redis.
    for n in IDPS {
        let metrics = http().get(c.metrics_url(n)).send().await.unwrap().text().await.unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l == "oxidp_rate_limiter_backend{backend=\"redis\"} 1"),
            "idp{n} does not count in Redis"
        );
    }

    // The suite's instances run with the default limits.
    let limits = oxidp::config::LoginConfig::default();
    let (burst, per_minute) = (limits.ip_burst as usize, limits.ip_per_minute as usize);
    // One address of its own (a rerun within the minute starts afresh); a new
    // unknown username each attempt, so only the per-address limit can refuse.
    let address = unique_loopback();
    let tag = address.to_string().replace('.', "-");
    let person = Browser::from_address(&c.idp_url, &Trail::default(), address);
    let mut answers: Vec<(u16, String)> = Vec::new();
    let started = Instant::now();
    let mut first_refusal = None;
    // Per instance, 3 × burst would pass; stop well before that.
    for i in 0..3 * burst {
        let csrf = csrf_of(&person.page("/login").await);
        let username = format!("nobody-{tag}-{i}");
        let response = person
            .post(
                "/login",
                &[
                    ("csrf_token", csrf.as_str()),
                    ("username", username.as_str()),
                    ("password", "not the password"),
                ],
            )
            .await;
        let status = response.status().as_u16();
        let instance = served_by(&response);
        if status == 200 {
            let html = response.text().await.unwrap();
            assert!(text_of(&html, "#login-error").is_some(), "a refusal, not a session");
        }
        answers.push((status, instance));
        if status != 200 && first_refusal.is_none() {
            first_refusal = Some(i);
        }
        // A few more after the first refusal, so every instance has refused once.
        if first_refusal.is_some_and(|f| i > f + IDPS.len()) {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let line: Vec<String> = answers.iter().map(|(s, i)| format!("{s}@{i}")).collect();
    println!(
        "  {} wrong-password sign-ins from {address} in {elapsed:.1} s (ip_burst {burst}, ip_per_minute {per_minute}): {}",
        answers.len(),
        line.join(" ")
    );
    let allowed = first_refusal.unwrap_or_else(|| panic!("never limited: {line:?}"));
    println!("  limited after {allowed} attempts in all");
    // The burst, plus what refilled meanwhile (per_minute / 60 per second), plus one.
    let refilled = (elapsed * per_minute as f64 / 60.0).ceil() as usize;
    assert!(
        (burst..=burst + refilled + 1).contains(&allowed),
        "limited after {allowed} attempts, expected {burst}..={} (shared): {line:?}",
        burst + refilled + 1
    );
    // An X-Forwarded-For of the client's own does not make it someone else: the
    // balancer adds the real address after it, and that is the one counted. Each
    // forged address is new, so were it counted every one would pass; counted
    // as the real address, only what the bucket refilled meanwhile may pass
    // (per_minute / 60 a second: one every 2 s with the defaults).
    let spoof_started = Instant::now();
    let mut spoofed = Vec::new();
    for i in 0..2 * IDPS.len() {
        let csrf = csrf_of(&person.page("/login").await);
        let response = person
            .client
            .post(person.url("/login"))
            .header("x-forwarded-for", format!("198.51.100.{}", 10 + i))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("username", format!("nobody-{tag}-spoofed-{i}").as_str()),
                ("password", "not the password"),
            ])
            .send()
            .await
            .unwrap();
        spoofed.push(format!("{}@{}", response.status().as_u16(), served_by(&response)));
    }
    let spoof_elapsed = spoof_started.elapsed().as_secs_f64();
    println!(
        "  with a forged X-Forwarded-For each, in {spoof_elapsed:.1} s: {}",
        spoofed.join(" ")
    );
    let spoof_refilled = (spoof_elapsed * per_minute as f64 / 60.0).ceil() as usize + 1;
    let spoof_passed = spoofed.iter().filter(|s| !s.starts_with("429@")).count();
    assert!(
        spoof_passed <= spoof_refilled.min(spoofed.len() - 1),
        "a forged X-Forwarded-For escaped the limit: {spoof_passed} of {} passed, at most {spoof_refilled} refilled: {spoofed:?}",
        spoofed.len()
    );

    let passed = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!(
        passed <= burst + refilled + 1,
        "{passed} attempts passed in all, more than {burst} + {refilled} refilled (not shared?): {line:?}"
    );
    assert!(
        answers.iter().all(|(s, _)| matches!(s, 200 | 429)),
        "a refusal is a 429: {line:?}"
    );
    for n in IDPS {
        let name = format!("idp{n}");
        assert!(
            answers.iter().any(|(s, i)| *s == 429 && *i == name),
            "{name} refused none: {line:?}"
        );
        assert!(
            answers.iter().any(|(s, i)| *s == 200 && *i == name),
            "{name} allowed none: {line:?}"
        );
    }
}
