//! Load generator for oxidp's hot paths. Not a test: run it against a release
//! server with `bench/run.sh`, which pins the server to one core and this
//! generator to another, then prints a table (requests/s, p50, p99).
//!
//! Scenarios: client_credentials tokens, refresh-token rotations, complete
//! authorization-code flows (authorize with PKCE for a signed-in user who has
//! consented, then code → tokens), userinfo, introspection.

use std::time::{Duration, Instant};

use base64::Engine;
use sha2::Digest;

struct Args {
    url: String,
    client_id: String,
    client_secret: String,
    username: String,
    password: String,
    redirect_uri: String,
    seconds: u64,
    concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8080".into(),
        client_id: String::new(),
        client_secret: String::new(),
        username: "bench".into(),
        password: String::new(),
        redirect_uri: "https://bench.example/cb".into(),
        seconds: 10,
        concurrency: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--url" => a.url = value,
            "--client-id" => a.client_id = value,
            "--client-secret" => a.client_secret = value,
            "--username" => a.username = value,
            "--password" => a.password = value,
            "--redirect-uri" => a.redirect_uri = value,
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--concurrency" => a.concurrency = value.parse().expect("--concurrency N"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

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

/// Runs `op` from `concurrency` tasks for `seconds`; `op` returns true on success.
async fn run<F, Fut>(name: &'static str, args: &Args, op: F) -> Outcome
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op(worker).await {
                    latencies.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
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

/// Signs in once and consents, so authorization requests return a code directly.
async fn signed_in_browser(a: &Args) -> reqwest::Client {
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = browser
        .get(format!("{}/login", a.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
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
        .unwrap();
    assert_eq!(r.status(), 303, "sign-in failed");
    browser
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
    let mut r = browser.get(&url).send().await.ok()?;
    let mut location = r.headers().get("location")?.to_str().ok()?.to_owned();
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
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "code")?
        .1
        .into_owned();
    Some((code, verifier))
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
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = std::sync::Arc::new(args());
    let http = reqwest::Client::builder().pool_max_idle_per_host(1024).build().unwrap();
    let browser = signed_in_browser(&a).await;
    let mut outcomes = Vec::new();

    // client_credentials
    {
        let (a2, h) = (a.clone(), http.clone());
        outcomes.push(
            run("client_credentials token", &a, move |_| {
                let (a, h) = (a2.clone(), h.clone());
                async move {
                    h.post(format!("{}/token", a.url))
                        .basic_auth(&a.client_id, Some(&a.client_secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                }
            })
            .await,
        );
    }

    // Tokens for the user-facing scenarios.
    let (code, verifier) = authorize_code(&a, &browser, "openid profile email offline_access")
        .await
        .expect("code");
    let tokens = redeem(&a, &http, &code, &verifier).await.expect("tokens");
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    // userinfo
    {
        let (a2, h, at) = (a.clone(), http.clone(), access.clone());
        outcomes.push(
            run("userinfo", &a, move |_| {
                let (a, h, at) = (a2.clone(), h.clone(), at.clone());
                async move {
                    h.get(format!("{}/userinfo", a.url))
                        .bearer_auth(&at)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                }
            })
            .await,
        );
    }

    // introspection
    {
        let (a2, h, at) = (a.clone(), http.clone(), access.clone());
        outcomes.push(
            run("introspection", &a, move |_| {
                let (a, h, at) = (a2.clone(), h.clone(), at.clone());
                async move {
                    h.post(format!("{}/introspect", a.url))
                        .basic_auth(&a.client_id, Some(&a.client_secret))
                        .form(&[("token", at.as_str())])
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                }
            })
            .await,
        );
    }

    // refresh: one rotating chain per worker.
    {
        let mut chains = Vec::new();
        for _ in 0..a.concurrency {
            let (code, verifier) = authorize_code(&a, &browser, "openid offline_access")
                .await
                .expect("code");
            let t = redeem(&a, &http, &code, &verifier).await.expect("tokens");
            chains.push(std::sync::Arc::new(tokio::sync::Mutex::new(
                t["refresh_token"].as_str().unwrap().to_owned(),
            )));
        }
        let chains = std::sync::Arc::new(chains);
        let (a2, h) = (a.clone(), http.clone());
        outcomes.push(
            run("refresh_token rotation", &a, move |worker| {
                let (a, h, chains) = (a2.clone(), h.clone(), chains.clone());
                async move {
                    let mut current = chains[worker].lock().await;
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
            .await,
        );
    }

    // Complete authorization-code flows (signed-in, consented user): authorize → code → tokens.
    {
        let (a2, h, b) = (a.clone(), http.clone(), browser.clone());
        outcomes.push(
            run("authorization-code flow", &a, move |_| {
                let (a, h, b) = (a2.clone(), h.clone(), b.clone());
                async move {
                    match authorize_code(&a, &b, "openid profile").await {
                        Some((code, verifier)) => redeem(&a, &h, &code, &verifier).await.is_some(),
                        None => false,
                    }
                }
            })
            .await,
        );
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
