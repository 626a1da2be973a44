//! Load generator for oxidp's hot paths. Not a test: run it against a release
//! server with `bench/run.sh`, which pins the server to one core and this
//! generator to another, then prints a table (requests/s, p50, p99).
//!
//! Scenarios: client_credentials tokens, refresh-token rotations, complete
//! authorization-code flows (authorize with PKCE for a signed-in user who has
//! consented, then code → tokens), userinfo, introspection — one after another,
//! or all at once with `--mixed`; `--only` picks some of them, or the sixth,
//! `sign_in` (a password sign-in per request, never part of the default set) (what `bench/soak.sh` runs, with `--report-every`
//! printing a CSV line per scenario and interval). `--help` lists the flags.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Parser;
use sha2::Digest;

/// Load generator for oxidp (not a test): drives the hot paths of a running server.
#[derive(Parser, Debug)]
#[command(name = "loadgen")]
struct Args {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A confidential client allowed authorization_code, refresh_token and client_credentials.
    #[arg(long)]
    client_id: String,
    #[arg(long)]
    client_secret: String,
    /// A user who can sign in with a password (no second step).
    #[arg(long, default_value = "bench")]
    username: String,
    #[arg(long)]
    password: String,
    /// One of the client's registered redirect URIs.
    #[arg(long, default_value = "https://bench.example/cb")]
    redirect_uri: String,
    /// How long each scenario runs (with --mixed: how long they all run together).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent requests per scenario (with --mixed: in all, shared by the five).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Run all five scenarios at once instead of one after another.
    #[arg(long)]
    mixed: bool,
    /// Run only these scenarios (repeatable). Default: all but `sign-in`.
    #[arg(long, value_enum)]
    only: Vec<Scenario>,
    /// Print a CSV line per scenario every N seconds
    /// (elapsed_s,scenario,requests,requests_per_s,p50_ms,p99_ms,errors,p99_60s_ms);
    /// the last column is the p99 of every request in the minute ending there.
    #[arg(long)]
    report_every: Option<u64>,
}

/// Latencies and errors since the last interval report, per scenario.
#[derive(Default)]
struct Interval {
    latencies_us: Vec<u64>,
    errors: u64,
}

type Live = Arc<Mutex<Interval>>;

struct Outcome {
    name: &'static str,
    latencies_us: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// Runs `op` from `concurrency` tasks until `deadline`; `op` returns true on success.
/// Every result also goes to `live` for the interval reports.
async fn run<F, Fut>(name: &'static str, concurrency: usize, deadline: Instant, live: Live, op: F) -> Outcome
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let op = op.clone();
        let live = live.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = op(worker).await;
                let micros = t.elapsed().as_micros() as u64;
                let mut interval = live.lock().unwrap();
                if ok {
                    latencies.push(micros);
                    interval.latencies_us.push(micros);
                } else {
                    errors += 1;
                    interval.errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.unwrap();
        latencies_us.extend(l);
        errors += e;
    }
    latencies_us.sort_unstable();
    Outcome {
        name,
        latencies_us,
        errors,
        elapsed: started.elapsed(),
    }
}

/// Prints one CSV line per scenario every `every` seconds until `deadline`: the
/// interval's figures, and the p99 over the last minute's requests (all of them,
/// not the worst interval's p99), which is what a soak compares over time.
async fn report(every: u64, deadline: Instant, scenarios: Vec<(&'static str, Live)>) {
    let started = Instant::now();
    let per_minute = 60_u64.div_ceil(every).max(1) as usize;
    let mut minute: Vec<std::collections::VecDeque<Vec<u64>>> = vec![Default::default(); scenarios.len()];
    println!("elapsed_s,scenario,requests,requests_per_s,p50_ms,p99_ms,errors,p99_60s_ms");
    let mut ticker = tokio::time::interval(Duration::from_secs(every));
    ticker.tick().await;
    while Instant::now() < deadline {
        ticker.tick().await;
        for ((name, live), recent) in scenarios.iter().zip(minute.iter_mut()) {
            let Interval {
                mut latencies_us,
                errors,
            } = std::mem::take(&mut *live.lock().unwrap());
            latencies_us.sort_unstable();
            let line = format!(
                "{},{},{},{:.0},{:.2},{:.2},{}",
                started.elapsed().as_secs(),
                name,
                latencies_us.len(),
                latencies_us.len() as f64 / every as f64,
                percentile(&latencies_us, 0.50),
                percentile(&latencies_us, 0.99),
                errors,
            );
            if recent.len() == per_minute {
                recent.pop_front();
            }
            recent.push_back(latencies_us);
            let mut last_minute: Vec<u64> = recent.iter().flatten().copied().collect();
            last_minute.sort_unstable();
            println!("{line},{:.2}", percentile(&last_minute, 0.99));
        }
    }
}

fn pkce() -> (String, String) {
    let verifier = format!("{:0>64}", rand_hex());
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn rand_hex() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    hex_of(sha2::Sha256::digest(format!("{n}-{:?}", Instant::now()).as_bytes()).as_slice())
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).map(|i| i + marker.len()).expect("field in page");
    html[start..].split('"').next().unwrap().to_owned()
}

/// Signs in once, so authorization requests return a code directly.
async fn signed_in_browser(a: &Args) -> reqwest::Client {
    sign_in(a).await.expect("sign-in failed")
}

/// A new browser (cookie store) signed in with the password, or `None`.
async fn sign_in(a: &Args) -> Option<reqwest::Client> {
    let browser = reqwest::Client::builder()
        .pool_idle_timeout(IDLE)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .ok()?;
    let page = browser
        .get(format!("{}/login", a.url))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let csrf = field(&page, "csrf_token");
    let r = browser
        .post(format!("{}/login", a.url))
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("username", &a.username),
            ("password", &a.password),
        ])
        .send()
        .await
        .ok()?;
    (r.status() == 303).then_some(browser)
}

async fn authorize_code(a: &Args, browser: &reqwest::Client, scope: &str) -> Option<(String, String)> {
    let (verifier, challenge) = pkce();
    let url = format!(
        "{}/authorize?client_id={}&redirect_uri={}&response_type=code&scope={}&code_challenge={}&code_challenge_method=S256&state=s",
        a.url,
        a.client_id,
        urlencode(&a.redirect_uri),
        urlencode(scope),
        challenge
    );
    let mut r = match browser.get(&url).send().await {
        Ok(r) => r,
        Err(error) => return failed("authorize", &chain(&error)),
    };
    let Some(found) = r.headers().get("location").and_then(|l| l.to_str().ok()) else {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        return failed("authorize", &format!("{status} without Location: {}", snippet(&body)));
    };
    let mut location = found.to_owned();
    if location.starts_with("/consent") {
        let page = browser
            .get(format!("{}{location}", a.url))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let csrf = field(&page, "csrf_token");
        let request = location.split('=').nth(1)?.to_owned();
        r = browser
            .post(format!("{}/consent", a.url))
            .form(&[
                ("csrf_token", csrf.as_str()),
                ("request", request.as_str()),
                ("decision", "allow"),
            ])
            .send()
            .await
            .ok()?;
        location = r.headers().get("location")?.to_str().ok()?.to_owned();
    }
    let code = url::Url::parse(&location)
        .ok()
        .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()));
    match code {
        Some(code) => Some((code, verifier)),
        None => failed(
            "authorize",
            &format!("redirected without a code: {}", snippet(&location)),
        ),
    }
}

/// Idle pooled connections are dropped after this, well before oxidp's keep-alive
/// (actix's 5 s) closes them: a request sent on a connection the server was
/// closing failed with "connection closed before message completed" (a
/// PostgreSQL soak's one error), and a token request (POST) is not retried.
const IDLE: Duration = Duration::from_secs(3);

/// Errors described on stderr (the first 50), so a soak's failures have a cause.
static FAILURES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn failed<T>(step: &str, what: &str) -> Option<T> {
    if FAILURES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 50 {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        eprintln!("{at} {step}: {what}");
    }
    None
}

/// Whether the answer is 200; otherwise its status is described (as `failed`).
fn is_200(step: &str, r: &reqwest::Response) -> bool {
    r.status() == 200 || failed::<()>(step, &r.status().to_string()).is_some()
}

/// An error with its causes (reqwest's own message leaves out the connection's).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn snippet(text: &str) -> String {
    text.chars().take(200).collect::<String>().replace('\n', " ")
}

fn urlencode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

async fn redeem(a: &Args, http: &reqwest::Client, code: &str, verifier: &str) -> Option<serde_json::Value> {
    let r = http
        .post(format!("{}/token", a.url))
        .basic_auth(&a.client_id, Some(&a.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", a.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await;
    let r = match r {
        Ok(r) => r,
        Err(error) => return failed("token", &chain(&error)),
    };
    if r.status() != 200 {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        return failed("token", &format!("{status}: {}", snippet(&body)));
    }
    r.json().await.ok()
}

/// Keeps `access` valid: a refresh at half the token's lifetime (again after a
/// second when it fails), as a real client does.
async fn renew_access(
    a: Arc<Args>,
    http: reqwest::Client,
    access: Arc<std::sync::RwLock<String>>,
    mut refresh: String,
    mut expires_in: u64,
) {
    loop {
        tokio::time::sleep(Duration::from_secs((expires_in / 2).max(1))).await;
        let renewed = http
            .post(format!("{}/token", a.url))
            .basic_auth(&a.client_id, Some(&a.client_secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
            .send()
            .await;
        let body: Option<serde_json::Value> = match renewed {
            Ok(r) if r.status() == 200 => r.json().await.ok(),
            _ => None,
        };
        match body
            .as_ref()
            .and_then(|b| Some((b["access_token"].as_str()?, b["refresh_token"].as_str()?)))
        {
            Some((token, next)) => {
                *access.write().unwrap() = token.to_owned();
                refresh = next.to_owned();
                expires_in = body.as_ref().and_then(|b| b["expires_in"].as_u64()).unwrap_or(600);
            }
            None => expires_in = 2,
        }
    }
}

/// What each scenario needs, prepared before the clock starts.
struct Prepared {
    http: reqwest::Client,
    browser: reqwest::Client,
    /// The userinfo and introspection scenarios' access token, renewed in the
    /// background at half its lifetime (a run may outlast `expires_in`).
    access: Arc<std::sync::RwLock<String>>,
    chains: Arc<Vec<Arc<tokio::sync::Mutex<String>>>>,
}

async fn prepare(a: &Arc<Args>, http: &reqwest::Client, browser: &reqwest::Client, chains: usize) -> Prepared {
    let (code, verifier) = authorize_code(a, browser, "openid profile email offline_access")
        .await
        .expect("code");
    let tokens = redeem(a, http, &code, &verifier).await.expect("tokens");
    let access = Arc::new(std::sync::RwLock::new(
        tokens["access_token"].as_str().unwrap().to_owned(),
    ));
    tokio::spawn(renew_access(
        a.clone(),
        http.clone(),
        access.clone(),
        tokens["refresh_token"].as_str().expect("refresh_token").to_owned(),
        tokens["expires_in"].as_u64().unwrap_or(600),
    ));
    // refresh: one rotating chain per worker.
    let mut list = Vec::new();
    for _ in 0..chains {
        let (code, verifier) = authorize_code(a, browser, "openid offline_access").await.expect("code");
        let t = redeem(a, http, &code, &verifier).await.expect("tokens");
        list.push(Arc::new(tokio::sync::Mutex::new(
            t["refresh_token"].as_str().unwrap().to_owned(),
        )));
    }
    Prepared {
        http: http.clone(),
        browser: browser.clone(),
        access,
        chains: Arc::new(list),
    }
}

const SCENARIOS: [&str; 6] = [
    "client_credentials token",
    "userinfo",
    "introspection",
    "refresh_token rotation",
    "authorization-code flow",
    "password sign-in",
];

/// The scenarios by name, in `SCENARIOS` order.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Scenario {
    ClientCredentials,
    Userinfo,
    Introspection,
    Refresh,
    Code,
    SignIn,
}
const ALL: [Scenario; 6] = [
    Scenario::ClientCredentials,
    Scenario::Userinfo,
    Scenario::Introspection,
    Scenario::Refresh,
    Scenario::Code,
    Scenario::SignIn,
];

/// Runs scenario `index` with `concurrency` workers until `deadline`.
async fn scenario(
    index: usize,
    a: Arc<Args>,
    p: Arc<Prepared>,
    concurrency: usize,
    deadline: Instant,
    live: Live,
) -> Outcome {
    let name = SCENARIOS[index];
    let (http, browser) = (p.http.clone(), p.browser.clone());
    match index {
        0 => {
            run(name, concurrency, deadline, live, move |_| {
                let (a, h) = (a.clone(), http.clone());
                async move {
                    h.post(format!("{}/token", a.url))
                        .basic_auth(&a.client_id, Some(&a.client_secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                        .map_or_else(
                            |e| failed::<()>("client_credentials", &chain(&e)).is_some(),
                            |r| is_200("client_credentials", &r),
                        )
                }
            })
            .await
        }
        1 => {
            run(name, concurrency, deadline, live, move |_| {
                let (a, h, p) = (a.clone(), http.clone(), p.clone());
                async move {
                    let access = p.access.read().unwrap().clone();
                    h.get(format!("{}/userinfo", a.url))
                        .bearer_auth(access)
                        .send()
                        .await
                        .map_or_else(
                            |e| failed::<()>("userinfo", &chain(&e)).is_some(),
                            |r| is_200("userinfo", &r),
                        )
                }
            })
            .await
        }
        2 => {
            run(name, concurrency, deadline, live, move |_| {
                let (a, h, p) = (a.clone(), http.clone(), p.clone());
                async move {
                    let access = p.access.read().unwrap().clone();
                    h.post(format!("{}/introspect", a.url))
                        .basic_auth(&a.client_id, Some(&a.client_secret))
                        .form(&[("token", access.as_str())])
                        .send()
                        .await
                        .map_or_else(
                            |e| failed::<()>("introspection", &chain(&e)).is_some(),
                            |r| is_200("introspection", &r),
                        )
                }
            })
            .await
        }
        3 => {
            run(name, concurrency, deadline, live, move |worker| {
                let (a, h, p) = (a.clone(), http.clone(), p.clone());
                async move {
                    let mut current = p.chains[worker].lock().await;
                    let Ok(r) = h
                        .post(format!("{}/token", a.url))
                        .basic_auth(&a.client_id, Some(&a.client_secret))
                        .form(&[("grant_type", "refresh_token"), ("refresh_token", current.as_str())])
                        .send()
                        .await
                    else {
                        return false;
                    };
                    if r.status() != 200 {
                        return false;
                    }
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    match body["refresh_token"].as_str() {
                        Some(next) => {
                            *current = next.to_owned();
                            true
                        }
                        None => false,
                    }
                }
            })
            .await
        }
        // A fresh browser signing in with the password each time: the argon2 path.
        5 => {
            run(name, concurrency, deadline, live, move |_| {
                let a = a.clone();
                async move { sign_in(&a).await.is_some() }
            })
            .await
        }
        // Complete authorization-code flows (signed-in, consented user): authorize → code → tokens.
        _ => {
            run(name, concurrency, deadline, live, move |_| {
                let (a, h, b) = (a.clone(), http.clone(), browser.clone());
                async move {
                    match authorize_code(&a, &b, "openid profile").await {
                        Some((code, verifier)) => redeem(&a, &h, &code, &verifier).await.is_some(),
                        None => false,
                    }
                }
            })
            .await
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = Arc::new(Args::parse());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(IDLE)
        .build()
        .unwrap();
    let browser = signed_in_browser(&a).await;
    let selected: Vec<usize> = if a.only.is_empty() {
        (0..5).collect()
    } else {
        (0..SCENARIOS.len()).filter(|&i| a.only.contains(&ALL[i])).collect()
    };
    let per_scenario = if a.mixed {
        (a.concurrency / selected.len()).max(1)
    } else {
        a.concurrency
    };
    let prepared = Arc::new(prepare(&a, &http, &browser, per_scenario).await);
    let lives: Vec<(usize, Live)> = selected.iter().map(|&i| (i, Live::default())).collect();
    let mut outcomes = Vec::new();
    if a.mixed {
        let deadline = Instant::now() + Duration::from_secs(a.seconds);
        let reporter = a.report_every.map(|every| {
            let named = lives.iter().map(|(i, live)| (SCENARIOS[*i], live.clone())).collect();
            tokio::spawn(report(every, deadline, named))
        });
        let mut tasks = Vec::new();
        for (index, live) in &lives {
            tasks.push(tokio::spawn(scenario(
                *index,
                a.clone(),
                prepared.clone(),
                per_scenario,
                deadline,
                live.clone(),
            )));
        }
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        if let Some(reporter) = reporter {
            let _ = reporter.await;
        }
    } else {
        for &(index, ref live) in &lives {
            let deadline = Instant::now() + Duration::from_secs(a.seconds);
            let reporter = a
                .report_every
                .map(|every| tokio::spawn(report(every, deadline, vec![(SCENARIOS[index], live.clone())])));
            outcomes.push(scenario(index, a.clone(), prepared.clone(), per_scenario, deadline, live.clone()).await);
            if let Some(reporter) = reporter {
                let _ = reporter.await;
            }
        }
    }

    println!();
    println!("| scenario | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|");
    for o in &outcomes {
        let rate = o.latencies_us.len() as f64 / o.elapsed.as_secs_f64();
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {} |",
            o.name,
            rate,
            percentile(&o.latencies_us, 0.50),
            percentile(&o.latencies_us, 0.99),
            o.errors
        );
    }
}
