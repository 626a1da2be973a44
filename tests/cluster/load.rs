//! Steady load through the balancers: a few concurrent loops, each one request
//! after another until told to stop, every answer recorded (status, instance).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixture::Suite;
use crate::topology::http;
use crate::web::served_by;

/// One answer (status 0: no HTTP answer at all).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: &'static str,
    pub status: u16,
    pub instance: String,
    pub retry_after: bool,
    pub at: Instant,
    pub detail: String,
}

impl Outcome {
    async fn of(kind: &'static str, result: reqwest::Result<reqwest::Response>) -> (Self, Option<Value>) {
        let at = Instant::now();
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let instance = served_by(&response);
                let retry_after = response.headers().contains_key("retry-after");
                let content_type = response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let text = response.text().await.unwrap_or_default();
                let json = serde_json::from_str(&text).ok();
                let detail = if status == 200 {
                    String::new()
                } else {
                    format!("{content_type}: {}", text.chars().take(300).collect::<String>())
                };
                (
                    Self {
                        kind,
                        status,
                        instance,
                        retry_after,
                        at,
                        detail,
                    },
                    json,
                )
            }
            Err(error) => (
                Self {
                    kind,
                    status: 0,
                    instance: "-".to_owned(),
                    retry_after: false,
                    at,
                    detail: error.to_string(),
                },
                None,
            ),
        }
    }
}

/// The loops and their stop switch.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<(Vec<Outcome>, Option<String>)>,
    pub started: Instant,
}

/// What to run.
#[derive(Default, Clone, Copy)]
pub struct Mix {
    pub client_credentials: usize,
    pub userinfo: usize,
    pub refresh_chains: usize,
    pub commerce: usize,
}

/// Between two requests of one loop: steady, not a flood of a 2-core machine.
const PAUSE: Duration = Duration::from_millis(15);

impl Load {
    pub async fn start(suite: &Arc<Suite>, mix: Mix) -> Load {
        let mut load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            tasks: tokio::task::JoinSet::new(),
            started: Instant::now(),
        };
        let idp = suite.cluster.idp_url.clone();
        for _ in 0..mix.client_credentials {
            let (stop, idp, client) = (load.stop.clone(), idp.clone(), suite.web.clone());
            load.tasks.spawn(async move {
                let http = http();
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let request = http
                        .post(format!("{idp}/token"))
                        .basic_auth(&client.id, Some(&client.secret))
                        .form(&[("grant_type", "client_credentials"), ("scope", "api:read")])
                        .send()
                        .await;
                    outcomes.push(Outcome::of("client_credentials", request).await.0);
                    tokio::time::sleep(PAUSE).await;
                }
                (outcomes, None)
            });
        }
        for _ in 0..mix.userinfo {
            let access = suite.bob_tokens().await["access_token"].as_str().unwrap().to_owned();
            let (stop, idp) = (load.stop.clone(), idp.clone());
            load.tasks.spawn(async move {
                let http = http();
                let mut outcomes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let request = http.get(format!("{idp}/userinfo")).bearer_auth(&access).send().await;
                    outcomes.push(Outcome::of("userinfo", request).await.0);
                    tokio::time::sleep(PAUSE).await;
                }
                (outcomes, None)
            });
        }
        for _ in 0..mix.refresh_chains {
            let first = suite.bob_tokens().await["refresh_token"].as_str().unwrap().to_owned();
            let (stop, idp, client) = (load.stop.clone(), idp.clone(), suite.web.clone());
            load.tasks.spawn(async move {
                let http = http();
                let mut outcomes = Vec::new();
                let mut current = first;
                while !stop.load(Ordering::Relaxed) {
                    let request = http
                        .post(format!("{idp}/token"))
                        .basic_auth(&client.id, Some(&client.secret))
                        .form(&[("grant_type", "refresh_token"), ("refresh_token", current.as_str())])
                        .send()
                        .await;
                    let (outcome, body) = Outcome::of("refresh", request).await;
                    // A failed refresh is retried with the same token, as a client would.
                    if outcome.status == 200 {
                        current = body.unwrap()["refresh_token"].as_str().unwrap().to_owned();
                    }
                    outcomes.push(outcome);
                    tokio::time::sleep(PAUSE).await;
                }
                (outcomes, Some(current))
            });
        }
        let shop = suite.cluster.commerce_url.clone();
        for i in 0..mix.commerce {
            let access = suite.shop_token().await;
            let (stop, shop) = (load.stop.clone(), shop.clone());
            load.tasks.spawn(async move {
                let http = http();
                let mut outcomes = Vec::new();
                let path = if i % 2 == 0 { "/v1/sellers" } else { "/v1/products" };
                while !stop.load(Ordering::Relaxed) {
                    let request = http.get(format!("{shop}{path}")).bearer_auth(&access).send().await;
                    outcomes.push(Outcome::of("commerce", request).await.0);
                    tokio::time::sleep(PAUSE).await;
                }
                (outcomes, None)
            });
        }
        load
    }

    /// Stops the loops; every answer, and the last refresh token of each chain.
    pub async fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcomes = Vec::new();
        let mut chains = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            let (mut o, chain) = done.expect("a load loop panicked");
            outcomes.append(&mut o);
            chains.extend(chain);
        }
        outcomes.sort_by_key(|o| o.at);
        Tally {
            outcomes,
            chains,
            started: self.started,
        }
    }
}

pub struct Tally {
    pub outcomes: Vec<Outcome>,
    pub chains: Vec<String>,
    started: Instant,
}

impl Tally {
    pub fn failed(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.status != 200).collect()
    }

    pub fn of_kind(&self, kind: &str) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.kind == kind).collect()
    }

    /// Answers per instance.
    pub fn per_instance(&self) -> BTreeMap<String, usize> {
        let mut map = BTreeMap::new();
        for o in &self.outcomes {
            *map.entry(o.instance.clone()).or_default() += 1;
        }
        map
    }

    /// Answers per status.
    pub fn per_status(&self) -> BTreeMap<u16, usize> {
        let mut map = BTreeMap::new();
        for o in &self.outcomes {
            *map.entry(o.status).or_default() += 1;
        }
        map
    }

    pub fn report(&self, what: &str) {
        let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
        for o in &self.outcomes {
            *kinds.entry(o.kind).or_default() += 1;
        }
        println!(
            "  {what}: {} requests in {:.1} s ({kinds:?}), failed {}, statuses {:?}, per instance {:?}",
            self.outcomes.len(),
            self.started.elapsed().as_secs_f64(),
            self.failed().len(),
            self.per_status(),
            self.per_instance()
        );
    }

    /// The first few failures, with when they happened.
    pub fn describe_failures(&self) -> String {
        self.failed()
            .iter()
            .take(8)
            .map(|o| {
                format!(
                    "\n  +{:.2}s {} {} via {}: {}",
                    o.at.duration_since(self.started).as_secs_f64(),
                    o.kind,
                    o.status,
                    o.instance,
                    o.detail
                )
            })
            .collect()
    }
}
