//! Load generator for the commerce write paths (issue 15). Not a test: run it with
//! `bench/commerce_ops.sh`, which starts oxidp and one or two `oxidp commerce`
//! instances, registers the clients and roles with the CLI and prints a table.
//!
//! It sets up its own market over the API (a seller, products on sale with large
//! stock, a coupon campaign) and then runs, one after another:
//!
//! - `reserve`: `POST /v1/reservations` (one unit of one hot item, a fresh
//!   `Idempotency-Key` each) for `--seconds`: accepted/s (202) with p50/p99, then
//!   waits until the queue workers decided every reservation (the shared
//!   `commerce_reservations_pending` gauge at 0) and reports decided/s (CONFIRMED or
//!   FAILED, summed over every instance's `/metrics` counters) from the first
//!   request to the last decision.
//! - `claim`: `--claimants` distinct subjects (client_credentials service accounts
//!   created through the IdP's admin API, one token each, made before the clock
//!   starts) each claim one coupon of a campaign with as many coupons, until they
//!   are all served or `--seconds` passed: claims/s (201) with p50/p99.
//! - `order`: end to end, per loop: `POST /v1/orders` (one unit of one hot item),
//!   then the payment provider's `POST /v1/payments/events` `payment.succeeded`
//!   for the order's total (repeated while the saga has not yet reached
//!   `PENDING_PAYMENT`: 409), until the answer says `PAID`: orders/s and p50/p99
//!   of the whole loop.
//!
//! Requests go to the `--url`s in turn (several commerce instances on one database).
//! Each scenario prints one Markdown table row per figure.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// Load generator for the commerce write paths (not a test).
#[derive(Parser, Debug)]
#[command(name = "commerce_load")]
struct Args {
    /// The IdP's base URL (token endpoint, admin API).
    #[arg(long, default_value = "http://127.0.0.1:18280")]
    idp: String,
    /// Commerce base URL (repeatable: instances sharing one database, used in turn).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// The commerce audience (given to the buyer accounts this creates).
    #[arg(long)]
    audience: String,
    /// Operator: commerce:sellers:admin, commerce:products:approve, commerce:coupons:write.
    #[arg(long)]
    operator: String,
    /// Merchant: commerce:products:write, commerce:inventory:write (made a member of the seller).
    #[arg(long)]
    merchant: String,
    /// Payment provider: commerce:payments:write.
    #[arg(long)]
    psp: String,
    /// IdP administrator (oxidp:clients:write): creates the buyer accounts.
    #[arg(long)]
    idp_admin: String,
    /// How long each scenario sends requests.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Distinct buyers for `reserve` and `order` (requests rotate over them).
    #[arg(long, default_value_t = 16)]
    buyers: usize,
    /// Distinct claimants (and coupons) for `claim`.
    #[arg(long, default_value_t = 12_000)]
    claimants: usize,
    /// Label of the configuration (first column of the rows).
    #[arg(long, default_value = "")]
    label: String,
    /// Scenarios to run (repeatable). Default: all three.
    #[arg(long, value_enum)]
    only: Vec<Scenario>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    Reserve,
    Claim,
    Order,
}

/// `client_id:client_secret`.
#[derive(Clone)]
struct Credentials {
    id: String,
    secret: String,
}

impl Credentials {
    fn parse(value: &str) -> Credentials {
        let (id, secret) = value.split_once(':').expect("credentials are client_id:client_secret");
        Credentials {
            id: id.to_owned(),
            secret: secret.to_owned(),
        }
    }
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

struct Bench {
    http: Client,
    args: Args,
    run: String,
}

/// What one scenario measured.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    ok: u64,
    /// Answers other than the expected one, and socket errors.
    errors: u64,
    /// Of those, 503s (overload: the client may repeat).
    unavailable: u64,
    requests: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.errors += other.errors;
        self.unavailable += other.unavailable;
        self.requests += other.requests;
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

impl Bench {
    fn url(&self, i: usize, path: &str) -> String {
        format!("{}{path}", self.args.urls[i % self.args.urls.len()])
    }

    async fn token(&self, who: &Credentials) -> Result<String, Failure> {
        for attempt in 0.. {
            let answer = self
                .http
                .post(format!("{}/token", self.args.idp))
                .basic_auth(&who.id, Some(&who.secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => {
                    let body: Value = r.json().await?;
                    return Ok(body["access_token"].as_str().ok_or("no access_token")?.to_owned());
                }
                Ok(r) if attempt >= 5 => return Err(format!("token for {}: {}", who.id, r.status()).into()),
                Err(e) if attempt >= 5 => return Err(e.into()),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        unreachable!()
    }

    /// A setup call that must answer `expect`; returns the body and the ETag.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        if_match: Option<&str>,
        body: Value,
        expect: u16,
    ) -> Result<(Value, String), Failure> {
        let mut request = self
            .http
            .request(method.clone(), self.url(0, path))
            .bearer_auth(token)
            .json(&body);
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        let r = request.send().await?;
        let status = r.status().as_u16();
        let tag = r
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = r.text().await?;
        if status != expect {
            return Err(format!("{method} {path}: {status} {text}").into());
        }
        Ok((serde_json::from_str(&text).unwrap_or(Value::Null), tag))
    }

    /// A seller (the merchant a member of it) and returns its id.
    async fn seller(&self, operator: &str, merchant: &Credentials) -> Result<String, Failure> {
        let (seller, _) = self
            .call(
                Method::POST,
                "/v1/sellers",
                operator,
                None,
                json!({"name": format!("Bench {}", self.run), "kind": "INTERNAL",
                       "contact": {"email": "ops@bench.example"}}),
                201,
            )
            .await?;
        let seller = seller["id"].as_str().ok_or("seller id")?.to_owned();
        self.call(
            Method::PUT,
            &format!("/v1/sellers/{seller}/members/{}", merchant.id),
            operator,
            None,
            json!({}),
            200,
        )
        .await?;
        Ok(seller)
    }

    /// A REALTIME product on sale with one combination holding `stock` units:
    /// (product, combination).
    async fn item(
        &self,
        operator: &str,
        merchant: &str,
        seller: &str,
        stock: i64,
    ) -> Result<(String, String), Failure> {
        let (product, mut tag) = self
            .call(
                Method::POST,
                "/v1/products",
                merchant,
                None,
                json!({"seller_id": seller, "name": "Bench item", "category": "bench", "type": "REALTIME",
                       "price": {"amount_minor": 12_000, "currency": "EUR"}}),
                201,
            )
            .await?;
        let product = product["id"].as_str().ok_or("product id")?.to_owned();
        let (view, t) = self
            .call(
                Method::POST,
                &format!("/v1/products/{product}/option-groups"),
                merchant,
                Some(&tag),
                json!({"name": "Size", "options": [{"name": "M"}]}),
                200,
            )
            .await?;
        tag = t;
        let option = view["option_groups"][0]["options"][0]["id"]
            .as_str()
            .ok_or("option id")?
            .to_owned();
        let (view, t) = self
            .call(
                Method::POST,
                &format!("/v1/products/{product}/combinations"),
                merchant,
                Some(&tag),
                json!({"sku": "BENCH-M", "option_ids": [option]}),
                200,
            )
            .await?;
        tag = t;
        let combination = view["combinations"][0]["id"]
            .as_str()
            .ok_or("combination id")?
            .to_owned();
        for (token, action) in [
            (merchant, "start_development"),
            (merchant, "submit_for_review"),
            (operator, "approve"),
            (merchant, "launch"),
            (merchant, "start_sales"),
        ] {
            let (_, t) = self
                .call(
                    Method::POST,
                    &format!("/v1/products/{product}/transitions"),
                    token,
                    Some(&tag),
                    json!({"action": action}),
                    200,
                )
                .await?;
            tag = t;
        }
        self.call(
            Method::POST,
            &format!("/v1/products/{product}/stock"),
            merchant,
            None,
            json!({"combination_id": combination, "set": stock, "reason": "bench"}),
            200,
        )
        .await?;
        Ok((product, combination))
    }

    /// `n` service accounts (distinct subjects) for the commerce audience, created
    /// through the IdP's admin API, and one access token each.
    async fn buyers(&self, n: usize) -> Result<Vec<String>, Failure> {
        let admin = self.token(&Credentials::parse(&self.args.idp_admin)).await?;
        let admin = &admin;
        let accounts: Vec<Result<Credentials, Failure>> = futures_util::stream::iter(0..n)
            .map(|i| async move {
                let r = self
                    .http
                    .post(format!("{}/admin/v1/clients", self.args.idp))
                    .bearer_auth(admin)
                    .json(&json!({"name": format!("bench buyer {} {i}", self.run),
                                  "grant_types": ["client_credentials"], "scopes": "api:read",
                                  "audience": self.args.audience, "access_token_ttl": 3_600}))
                    .send()
                    .await?;
                if r.status() != StatusCode::CREATED && r.status() != StatusCode::OK {
                    return Err(format!("admin API: {} {}", r.status(), r.text().await?).into());
                }
                let body: Value = r.json().await?;
                Ok(Credentials {
                    id: body["client_id"].as_str().ok_or("client_id")?.to_owned(),
                    secret: body["client_secret"].as_str().ok_or("client_secret")?.to_owned(),
                })
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let accounts = accounts.into_iter().collect::<Result<Vec<_>, _>>()?;
        let tokens: Vec<Result<String, Failure>> = futures_util::stream::iter(&accounts)
            .map(|who| self.token(who))
            .buffer_unordered(16)
            .collect()
            .await;
        tokens.into_iter().collect()
    }

    /// Sum of the named series (all label sets) over every instance's `/metrics`.
    async fn metric(&self, names: &[&str]) -> Result<f64, Failure> {
        let mut sum = 0.0;
        for base in &self.args.urls {
            let text = self.http.get(format!("{base}/metrics")).send().await?.text().await?;
            for line in text.lines() {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let name = series.split('{').next().unwrap_or_default();
                if names.contains(&name) {
                    sum += value.parse::<f64>().unwrap_or(0.0);
                }
            }
        }
        Ok(sum)
    }

    /// The shared backlog (a gauge read from the database): from the first instance.
    async fn pending(&self) -> Result<f64, Failure> {
        let text = self.http.get(self.url(0, "/metrics")).send().await?.text().await?;
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("commerce_reservations_pending "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0))
    }

    fn row(&self, scenario: &str, rate: f64, tally: Option<&Tally>, note: &str) {
        let (p50, p99, errors) = match tally {
            Some(t) => {
                let mut sorted = t.latencies_us.clone();
                sorted.sort_unstable();
                (
                    format!("{:.1}", percentile(&sorted, 0.50)),
                    format!("{:.1}", percentile(&sorted, 0.99)),
                    format!("{} / {}", t.errors, t.requests),
                )
            }
            None => ("—".into(), "—".into(), "—".into()),
        };
        println!(
            "| {} | {scenario} | {rate:.0} | {p50} | {p99} | {errors} | {note} |",
            self.args.label
        );
    }

    async fn reserve(self: &Arc<Self>, operator: &str, merchant: &str, seller: &str) -> Result<(), Failure> {
        let (product, combination) = self.item(operator, merchant, seller, 1_000_000_000).await?;
        let buyers = Arc::new(self.buyers(self.args.buyers).await?);
        let decided = [
            "commerce_reservations_confirmed_total",
            "commerce_reservations_failed_total",
        ];
        let before = self.metric(&decided).await?;
        let failed_before = self.metric(&["commerce_reservations_failed_total"]).await?;
        let body = Arc::new(json!({"product_id": product, "combination_id": combination, "quantity": 1}));
        let started = Instant::now();
        let until = started + Duration::from_secs(self.args.seconds);
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..self.args.concurrency)
            .map(|worker| {
                let (bench, buyers, body, next) = (self.clone(), buyers.clone(), body.clone(), next.clone());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    while Instant::now() < until {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let sent = Instant::now();
                        let answer = bench
                            .http
                            .post(bench.url(worker, "/v1/reservations"))
                            .bearer_auth(&buyers[n % buyers.len()])
                            .header("idempotency-key", format!("\"bench-{}-r{n}\"", bench.run))
                            .json(&*body)
                            .send()
                            .await;
                        tally.requests += 1;
                        match answer {
                            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                                tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                                tally.ok += 1;
                            }
                            Ok(r) => {
                                tally.errors += 1;
                                tally.unavailable += u64::from(r.status() == StatusCode::SERVICE_UNAVAILABLE);
                            }
                            Err(_) => tally.errors += 1,
                        }
                    }
                    tally
                })
            })
            .collect();
        let mut tally = Tally::default();
        for task in tasks {
            tally.merge(task.await?);
        }
        let sent_for = started.elapsed();
        let backlog = self.pending().await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while self.pending().await? > 0.0 {
            if Instant::now() > deadline {
                return Err("reservations still pending 600 s after the load stopped".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let drained = started.elapsed();
        let decided_n = self.metric(&decided).await? - before;
        let failed = self.metric(&["commerce_reservations_failed_total"]).await? - failed_before;
        self.row(
            "reservations accepted (202)",
            tally.ok as f64 / sent_for.as_secs_f64(),
            Some(&tally),
            &format!(
                "{} accepted in {:.1} s; {} answered 503",
                tally.ok,
                sent_for.as_secs_f64(),
                tally.unavailable
            ),
        );
        self.row(
            "reservations confirmed (PENDING → CONFIRMED/FAILED)",
            decided_n / drained.as_secs_f64(),
            None,
            &format!(
                "{decided_n:.0} decided ({failed:.0} FAILED) from the first request to the last decision, {:.1} s; backlog when the load stopped: {backlog:.0}",
                drained.as_secs_f64()
            ),
        );
        Ok(())
    }

    async fn claim(self: &Arc<Self>, operator: &str) -> Result<(), Failure> {
        let prepared = Instant::now();
        let claimants = Arc::new(self.buyers(self.args.claimants).await?);
        eprintln!(
            "{} claimants (accounts + tokens) in {:.1} s",
            claimants.len(),
            prepared.elapsed().as_secs_f64()
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let (campaign, _) = self
            .call(
                Method::POST,
                "/v1/coupon-campaigns",
                operator,
                None,
                json!({"name": format!("Bench {}", self.run), "discount": {"kind": "PERCENT", "basis_points": 1000},
                       "limit": claimants.len(), "starts_at": now - 60, "ends_at": now + 3_600}),
                201,
            )
            .await?;
        let campaign = campaign["id"].as_str().ok_or("campaign id")?.to_owned();
        let path = Arc::new(format!("/v1/coupon-campaigns/{campaign}/claims"));
        let started = Instant::now();
        let until = started + Duration::from_secs(self.args.seconds);
        let next = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..self.args.concurrency)
            .map(|worker| {
                let (bench, claimants, path, next) = (self.clone(), claimants.clone(), path.clone(), next.clone());
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    while Instant::now() < until {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(token) = claimants.get(n) else { break };
                        // 503 (overload) is safe to repeat: the same subject asks again.
                        loop {
                            let sent = Instant::now();
                            let answer = bench
                                .http
                                .post(bench.url(worker, &path))
                                .bearer_auth(token)
                                .json(&json!({}))
                                .send()
                                .await;
                            tally.requests += 1;
                            match answer {
                                Ok(r) if r.status() == StatusCode::CREATED => {
                                    tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                                    tally.ok += 1;
                                }
                                Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                                    tally.errors += 1;
                                    tally.unavailable += 1;
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                    continue;
                                }
                                _ => tally.errors += 1,
                            }
                            break;
                        }
                    }
                    tally
                })
            })
            .collect();
        let mut tally = Tally::default();
        for task in tasks {
            tally.merge(task.await?);
        }
        let elapsed = started.elapsed();
        self.row(
            "coupon claims (201, distinct subjects)",
            tally.ok as f64 / elapsed.as_secs_f64(),
            Some(&tally),
            &format!(
                "{} of {} claimants served in {:.1} s; {} answers 503 (asked again)",
                tally.ok,
                claimants.len(),
                elapsed.as_secs_f64(),
                tally.unavailable
            ),
        );
        Ok(())
    }

    async fn order(self: &Arc<Self>, operator: &str, merchant: &str, seller: &str, psp: &str) -> Result<(), Failure> {
        let (product, combination) = self.item(operator, merchant, seller, 1_000_000_000).await?;
        let buyers = Arc::new(self.buyers(self.args.buyers).await?);
        let body = Arc::new(json!({"items": [{"product_id": product, "combination_id": combination, "quantity": 1}]}));
        let psp = Arc::new(psp.to_owned());
        let started = Instant::now();
        let until = started + Duration::from_secs(self.args.seconds);
        let next = Arc::new(AtomicUsize::new(0));
        let retries = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..self.args.concurrency)
            .map(|worker| {
                let (bench, buyers, body, psp, next, retries) = (
                    self.clone(),
                    buyers.clone(),
                    body.clone(),
                    psp.clone(),
                    next.clone(),
                    retries.clone(),
                );
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    while Instant::now() < until {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let sent = Instant::now();
                        tally.requests += 1;
                        match bench.one_order(worker, n, &buyers, &body, &psp, &retries).await {
                            Ok(true) => {
                                tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                                tally.ok += 1;
                            }
                            Ok(false) => {
                                tally.errors += 1;
                                tally.unavailable += 1;
                            }
                            Err(_) => tally.errors += 1,
                        }
                    }
                    tally
                })
            })
            .collect();
        let mut tally = Tally::default();
        for task in tasks {
            tally.merge(task.await?);
        }
        let elapsed = started.elapsed();
        self.row(
            "orders end to end (created → payment event → PAID)",
            tally.ok as f64 / elapsed.as_secs_f64(),
            Some(&tally),
            &format!(
                "{} PAID in {:.1} s; {} payment events sent again (409: saga not yet awaiting payment); {} orders answered 503",
                tally.ok,
                elapsed.as_secs_f64(),
                retries.load(Ordering::Relaxed),
                tally.unavailable
            ),
        );
        Ok(())
    }

    /// One order paid: Ok(true) when the payment answer says PAID, Ok(false) on a 503.
    async fn one_order(
        &self,
        worker: usize,
        n: usize,
        buyers: &[String],
        body: &Value,
        psp: &str,
        retries: &AtomicUsize,
    ) -> Result<bool, Failure> {
        let r = self
            .http
            .post(self.url(worker, "/v1/orders"))
            .bearer_auth(&buyers[n % buyers.len()])
            .header("idempotency-key", format!("\"bench-{}-o{n}\"", self.run))
            .json(body)
            .send()
            .await?;
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            return Ok(false);
        }
        if r.status() != StatusCode::CREATED {
            return Err(format!("order: {}", r.status()).into());
        }
        let order: Value = r.json().await?;
        let event = json!({"event_id": format!("bench-{}-e{n}", self.run), "type": "payment.succeeded",
                           "order_id": order["id"], "amount": order["total"]});
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .http
                .post(self.url(worker, "/v1/payments/events"))
                .bearer_auth(psp)
                .json(&event)
                .send()
                .await?;
            match r.status() {
                StatusCode::CONFLICT | StatusCode::SERVICE_UNAVAILABLE if Instant::now() < deadline => {
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                s if s.is_success() => {
                    let receipt: Value = r.json().await?;
                    return if receipt["order_status"] == "PAID" {
                        Ok(true)
                    } else {
                        Err(format!("payment receipt: {receipt}").into())
                    };
                }
                s => return Err(format!("payment event: {s}").into()),
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let args = Args::parse();
    let http = Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(16))
        .timeout(Duration::from_secs(60))
        .build()?;
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let scenarios = if args.only.is_empty() {
        vec![Scenario::Reserve, Scenario::Claim, Scenario::Order]
    } else {
        args.only.clone()
    };
    let bench = Arc::new(Bench { http, args, run });
    let operator = bench.token(&Credentials::parse(&bench.args.operator)).await?;
    let merchant_credentials = Credentials::parse(&bench.args.merchant);
    let merchant = bench.token(&merchant_credentials).await?;
    let psp = bench.token(&Credentials::parse(&bench.args.psp)).await?;
    let seller = bench.seller(&operator, &merchant_credentials).await?;
    for scenario in scenarios {
        match scenario {
            Scenario::Reserve => bench.reserve(&operator, &merchant, &seller).await?,
            Scenario::Claim => bench.claim(&operator).await?,
            Scenario::Order => bench.order(&operator, &merchant, &seller, &psp).await?,
        }
    }
    Ok(())
}
