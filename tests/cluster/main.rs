//! The cluster suite (issue 16): the real topology of `deploy/cluster.sh` — three
//! `oxidp serve` and two `oxidp commerce` instances of this build on a fresh
//! PostgreSQL database, HAProxy in front of each group with the same
//! `deploy/haproxy/haproxy.cfg` docker-compose mounts — and scenarios through the
//! balancer: flows whose consecutive requests land on different instances, races
//! across instances, sign-in limits shared in Redis, changes honoured by every
//! instance within a second, rolling restarts under load with zero failed
//! requests, and outage drills.
//!
//! One cluster for the whole run, so the scenarios run one after another (its own
//! harness; `cargo test --test cluster -- NAME` runs the scenarios whose name
//! contains NAME). It runs on PostgreSQL only: with `TEST_DATABASE_URL` unset (or not
//! PostgreSQL), or without `haproxy` and `psql`, it prints SKIPPED — or fails when
//! `OXIDP_REQUIRE_CLUSTER=1` (CI). Ports: `CLUSTER_PORT_BASE` (27000) + 80…1093.

mod changes;
mod fixture;
mod flows;
mod limits;
mod load;
mod outages;
mod rolling;
#[allow(dead_code)] // the API tests use all of it; the ceremonies here need part
#[path = "../api/soft_authenticator.rs"]
mod soft_authenticator;
mod topology;
mod web;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use fixture::Suite;

type Scenario = fn(Arc<Suite>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// In the order they run: the flows first, then what restarts or breaks instances.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("code_flow_with_pkce_consent_and_totp_across_instances", |s| {
        Box::pin(flows::code_flow_with_pkce_consent_and_totp(s))
    }),
    ("refresh_rotation_alternates_instances", |s| {
        Box::pin(flows::refresh_rotation_alternates_instances(s))
    }),
    ("a_code_redeemed_concurrently_on_several_instances_succeeds_once", |s| {
        Box::pin(flows::code_redeemed_concurrently(s))
    }),
    ("a_refresh_token_replayed_concurrently_gets_one_successor", |s| {
        Box::pin(flows::refresh_replayed_concurrently(s))
    }),
    ("webauthn_ceremonies_across_instances", |s| {
        Box::pin(flows::webauthn_ceremonies(s))
    }),
    ("cluster_wide_sign_in_limits_through_redis", |s| {
        Box::pin(limits::sign_in_limits_are_shared(s))
    }),
    (
        "invalidation_a_client_rotated_then_deleted_is_refused_by_every_instance_within_a_second",
        |s| Box::pin(changes::client_rotated_then_deleted(s)),
    ),
    (
        "invalidation_a_revoked_permission_leaves_every_instances_tokens_within_a_second",
        |s| Box::pin(changes::role_permission_revoked(s)),
    ),
    (
        "invalidation_rotated_signing_keys_sign_on_every_instance_within_a_second",
        |s| Box::pin(changes::signing_keys_rotated(s)),
    ),
    ("rolling_restart_of_the_idp_instances_fails_no_request", |s| {
        Box::pin(rolling::idp_rolling_restart(s))
    }),
    ("rolling_restart_of_the_commerce_instances_fails_no_request", |s| {
        Box::pin(rolling::commerce_rolling_restart(s))
    }),
    ("an_instance_with_a_wrong_key_encryption_secret_refuses_to_start", |s| {
        Box::pin(outages::wrong_key_encryption_secret(s))
    }),
    ("killed_database_connections_give_503_never_500_and_recover", |s| {
        Box::pin(outages::database_connections_killed(s))
    }),
    ("every_idp_instance_killed_commerce_serves_then_all_resumes", |s| {
        Box::pin(outages::every_idp_instance_killed(s))
    }),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in SCENARIOS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    // Test-harness flags (and the values of those that take one) are not filters.
    let mut filters = Vec::new();
    let mut skip_next = false;
    for arg in &args {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        if arg.starts_with('-') {
            skip_next = !arg.contains('=')
                && ["--test-threads", "--skip", "--format", "--color", "--logfile", "-Z"].contains(&arg.as_str());
            continue;
        }
        filters.push(arg.clone());
    }
    let selected: Vec<&(&str, Scenario)> = SCENARIOS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        println!("cluster suite: no scenario matches {filters:?}");
        return ExitCode::SUCCESS;
    }

    let required = std::env::var("OXIDP_REQUIRE_CLUSTER").is_ok_and(|v| v == "1");
    if let Err(missing) = fixture::prerequisites() {
        if required {
            eprintln!("cluster suite: OXIDP_REQUIRE_CLUSTER=1 but {missing}");
            return ExitCode::FAILURE;
        }
        println!("SKIPPED cluster suite ({} scenarios): {missing}", selected.len());
        return ExitCode::SUCCESS;
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let failed = runtime.block_on(async {
        let suite = match tokio::spawn(Suite::start()).await {
            Ok(suite) => Arc::new(suite),
            Err(panic) => {
                eprintln!("cluster suite: the cluster did not start: {panic}");
                return selected.len();
            }
        };
        let mut failed = Vec::new();
        for (name, scenario) in &selected {
            suite.cluster.ensure_whole().await;
            println!("scenario {name} ...");
            let began = Instant::now();
            let outcome = tokio::spawn(scenario(suite.clone())).await;
            let secs = began.elapsed().as_secs_f64();
            match outcome {
                Ok(()) => println!("scenario {name} ... ok ({secs:.1} s)"),
                Err(error) => {
                    println!("scenario {name} ... FAILED ({secs:.1} s): {error}");
                    println!("{}", suite.cluster.logs_tail());
                    failed.push((*name, error.to_string()));
                }
            }
        }
        // The reasons again, last, where a truncated CI log still shows them.
        for (name, error) in &failed {
            println!("\nFAILED {name}: {error}");
        }
        let names: Vec<&str> = failed.iter().map(|(name, _)| *name).collect();
        println!(
            "\ncluster suite: {} passed, {} failed {names:?}, {:.1} s",
            selected.len() - failed.len(),
            failed.len(),
            started.elapsed().as_secs_f64()
        );
        suite.cluster.down();
        failed.len()
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
