//! PostgreSQL connections killed under load (`pg_terminate_backend`, as a restart
//! or failover does): no request may answer 500; a failure is 503 + `Retry-After`
//! in the endpoint's own format, and no refresh-token family is lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::{Connection, RunQueryDsl};

use crate::helpers::{PASSWORD, TestApp, TestClient, browser, postgres_url, spawn_app_with, step};

/// What one request got, for the final assertions.
#[derive(Debug)]
struct Outcome {
    endpoint: &'static str,
    status: u16,
    retry_after: bool,
    content_type: String,
    body: String,
}

impl Outcome {
    async fn of(endpoint: &'static str, response: reqwest::Response) -> Self {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap_or_default().to_owned())
        };
        let retry_after = header("retry-after").is_some();
        let content_type = header("content-type").unwrap_or_default();
        Self {
            endpoint,
            status: response.status().as_u16(),
            retry_after,
            content_type,
            body: response.text().await.unwrap_or_default(),
        }
    }

    /// A 503 in the format of its endpoint: RFC 6749 JSON on /token and
    /// /introspect, problem+json on /userinfo's server errors and /readyz.
    fn is_well_formed_unavailable(&self) -> bool {
        if self.status != 503 || !self.retry_after {
            return false;
        }
        let body: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        match self.endpoint {
            "token" | "refresh" | "introspect" => body["error"] == "temporarily_unavailable",
            _ => self.content_type.starts_with("application/problem+json") && body["status"] == 503,
        }
    }
}

async fn post_token(app: &TestApp, client: &TestClient, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/token"))
        .basic_auth(&client.id, client.secret.as_deref())
        .form(form)
        .send()
        .await
        .unwrap()
}

/// Terminates the server's own connections only (by `application_name`), so
/// other tests on the same PostgreSQL server are not hit. Returns how many died.
fn terminate(admin_url: &str, application_name: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Killed {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        killed: i64,
    }
    let mut admin = diesel::PgConnection::establish(admin_url).expect("admin connection");
    diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid)) AS killed FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = $1",
    )
    .bind::<diesel::sql_types::Text, _>(application_name)
    .get_result::<Killed>(&mut admin)
    .expect("pg_terminate_backend")
    .killed
}

/// Each of the 16 workers sends at least this many requests (a few hundred in
/// all, whatever the machine's speed), and keeps going until the kills are over.
const MIN_PER_WORKER: usize = 20;

type Workers = tokio::task::JoinSet<(Vec<Outcome>, Option<String>)>;

#[tokio::test]
async fn killed_postgres_connections_under_load_give_503_never_500() {
    let Some(admin_url) = postgres_url() else {
        println!(
            "SKIPPED killed_postgres_connections_under_load_give_503_never_500: needs TEST_DATABASE_URL (PostgreSQL)"
        );
        return;
    };
    let application_name = format!("oxidp-test-{}", uuid::Uuid::new_v4().simple());
    let name = application_name.clone();
    let app = Arc::new(
        spawn_app_with(move |c| {
            let mut url = url::Url::parse(c.database_url.as_deref().unwrap()).unwrap();
            url.query_pairs_mut().append_pair("application_name", &name);
            c.database_url = Some(url.to_string());
        })
        .await,
    );
    app.create_user("alice", PASSWORD).await;
    let web = app.web_client().await;
    let service = app.service_client("email", None).await;
    let (families, user_access) = step("sign in: four refresh families", four_families(&app, &web)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Workers::new();
    stateless_traffic(&mut workers, &app, &stop, (&web, &service), &user_access);
    refresh_chains(&mut workers, &app, &stop, &web, families);
    let killed = step("kill the connections", kill_connections(&admin_url, &application_name)).await;
    stop.store(true, Ordering::Relaxed);

    let chains = step("only 200 or a well-formed 503", check_outcomes(workers, &killed)).await;
    step("no refresh family lost", families_survive(&app, &web, chains)).await;
}

/// Four refresh-token families and a user access token, from one sign-in.
async fn four_families(app: &TestApp, web: &TestClient) -> (Vec<String>, String) {
    let person = browser();
    let mut families = Vec::new();
    let mut user_access = String::new();
    for _ in 0..4 {
        let (code, verifier) = app.code_for(web, &person, "alice", "openid email offline_access").await;
        let tokens: serde_json::Value = app.redeem(web, &code, &verifier).await.json().await.unwrap();
        families.push(tokens["refresh_token"].as_str().unwrap().to_owned());
        user_access = tokens["access_token"].as_str().unwrap().to_owned();
    }
    (families, user_access)
}

fn stateless_traffic(
    workers: &mut Workers,
    app: &Arc<TestApp>,
    stop: &Arc<AtomicBool>,
    (web, service): (&TestClient, &TestClient),
    user_access: &str,
) {
    // Stateless traffic: client_credentials, userinfo, introspection, readiness.
    for worker in 0..12usize {
        let (app, stop, web, service, access) = (
            app.clone(),
            stop.clone(),
            web.clone(),
            service.clone(),
            user_access.to_owned(),
        );
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) || outcomes.len() < MIN_PER_WORKER {
                let http = reqwest::Client::new();
                let outcome = match i % 4 {
                    0 => {
                        let r = post_token(&app, &service, &[("grant_type", "client_credentials")]).await;
                        Outcome::of("token", r).await
                    }
                    1 => {
                        let r = http
                            .get(app.url("/userinfo"))
                            .bearer_auth(&access)
                            .send()
                            .await
                            .unwrap();
                        Outcome::of("userinfo", r).await
                    }
                    2 => {
                        let r = http
                            .post(app.url("/introspect"))
                            .basic_auth(&web.id, web.secret.as_deref())
                            .form(&[("token", access.as_str())])
                            .send()
                            .await
                            .unwrap();
                        Outcome::of("introspect", r).await
                    }
                    _ => Outcome::of("readyz", http.get(app.url("/readyz")).send().await.unwrap()).await,
                };
                outcomes.push(outcome);
                i += 1;
            }
            (outcomes, None)
        });
    }
}

fn refresh_chains(
    workers: &mut Workers,
    app: &Arc<TestApp>,
    stop: &Arc<AtomicBool>,
    web: &TestClient,
    families: Vec<String>,
) {
    // Refresh chains: a 503 is retried with the same token, as a client would.
    for token in families {
        let (app, stop, web) = (app.clone(), stop.clone(), web.clone());
        workers.spawn(async move {
            let mut outcomes = Vec::new();
            let mut current = token;
            while !stop.load(Ordering::Relaxed) || outcomes.len() < MIN_PER_WORKER {
                let r = post_token(
                    &app,
                    &web,
                    &[("grant_type", "refresh_token"), ("refresh_token", &current)],
                )
                .await;
                let outcome = Outcome::of("refresh", r).await;
                if outcome.status == 200 {
                    let body: serde_json::Value = serde_json::from_str(&outcome.body).unwrap();
                    current = body["refresh_token"].as_str().unwrap().to_owned();
                }
                outcomes.push(outcome);
            }
            (outcomes, Some(current))
        });
    }
}

/// Kills every connection of this server, several times; how many died each round.
async fn kill_connections(admin_url: &str, application_name: &str) -> Vec<i64> {
    // Meanwhile: kill every connection of this server, several times.
    let mut killed = Vec::new();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (url, name) = (admin_url.to_owned(), application_name.to_owned());
        killed.push(
            tokio::task::spawn_blocking(move || terminate(&url, &name))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    killed
}

/// Every answer under the kills; returns the last refresh token of each chain.
async fn check_outcomes(mut workers: Workers, killed: &[i64]) -> Vec<String> {
    let mut outcomes = Vec::new();
    let mut chains = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (mut o, chain) = done.unwrap();
        outcomes.append(&mut o);
        chains.extend(chain);
    }
    let count = |status: u16| outcomes.iter().filter(|o| o.status == status).count();
    println!(
        "connections killed per round: {killed:?}; requests: {}, 200: {}, 503: {}",
        outcomes.len(),
        count(200),
        count(503)
    );
    assert!(
        killed.iter().any(|k| *k > 0),
        "the test killed no connection: {killed:?}"
    );
    let bad: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.status != 200 && !o.is_well_formed_unavailable())
        .collect();
    assert!(
        bad.is_empty(),
        "{} answers neither 200 nor a well-formed 503: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    chains
}

async fn families_survive(app: &TestApp, web: &TestClient, chains: Vec<String>) {
    // No family was revoked: the last token each chain received still works.
    for token in chains {
        let mut status = 0;
        for _ in 0..3 {
            let r = post_token(app, web, &[("grant_type", "refresh_token"), ("refresh_token", &token)]).await;
            status = r.status().as_u16();
            if status != 503 {
                break;
            }
        }
        assert_eq!(status, 200, "a refresh family was lost to the connection kills");
    }
    let ready = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "the pool recovered");
}
