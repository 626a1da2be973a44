//! `spawn_app()`: the real server on port 0 with a fresh database — a SQLite file in a
//! temporary directory, or a fresh PostgreSQL schema when `TEST_DATABASE_URL` is set —
//! and an injected clock. Plus protocol helpers for the tests.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use actix_web::web;
use diesel::{Connection, RunQueryDsl};
use oxidp::accounts::{self, Credential, NewAccount, Profile};
use oxidp::clock::ManualClock;
use oxidp::config::Config;
use oxidp::db::models::users::UserRow;
use oxidp::domain::Password;
use oxidp::startup::Application;
use oxidp::state::AppState;
use reqwest::redirect::Policy;

pub const PEPPER: &str = "test-pepper-0123456789abcdefghijklmnopqrstuvwxyz";
pub const KES: &str = "test-key-encryption-secret-0123456789abcdefghijkl";
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// The metrics listener (`metrics.bind`, port 0 in tests), when it is on.
    pub metrics_address: Option<String>,
    pub clock: Arc<ManualClock>,
    pub state: web::Data<AppState>,
    pub config: Config,
    pub database_url: String,
    pub dir: tempfile::TempDir,
    pg_schema: Option<String>,
    proxy: Option<proxy::Proxy>,
    /// Stops this server (outage drills).
    pub server: actix_web::dev::ServerHandle,
}

/// The PostgreSQL server to test against, if any.
pub fn postgres_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

pub fn base_config(dir: &std::path::Path) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        bind: "127.0.0.1:0".to_owned(),
        pepper: Some(PEPPER.to_owned().into()),
        key_encryption_secret: Some(KES.to_owned().into()),
        ..Config::default()
    };
    // Generous: the suite runs Chromium, a 20,000-claim flood and real binaries side by
    // side on two cores, and a pool that waits 2 s for its first connection failed there.
    config.database.connect_timeout_secs = 5;
    config.http.workers = 2;
    // Its own listener, on a free port: tests run side by side.
    config.metrics.bind = "127.0.0.1:0".to_owned();
    // Every test signs in from 127.0.0.1: limits high enough not to interfere;
    // the login-protection tests set realistic ones.
    config.login.ip_per_minute = 100_000;
    config.login.ip_burst = 100_000;
    config.login.account_per_minute = 100_000;
    config.login.account_burst = 100_000;
    config.login.client_failures_per_minute = 100_000;
    config.login.delay_after = 100;
    config.login.second_step_delay_after = 100;
    config.login.stuffing_usernames = 100_000;
    config.login.deny_score = 100_000;
    config
}

/// A second instance on the same database and secrets as `other` (a load
/// balancer's second backend). Its clock is shared too.
pub async fn spawn_app_sharing(other: &TestApp) -> TestApp {
    spawn_app_sharing_on(other, TcpListener::bind("127.0.0.1:0").expect("bind")).await
}

/// As `spawn_app_sharing`, on a given listener (e.g. the stopped server's port:
/// the IdP coming back after an outage).
pub async fn spawn_app_sharing_on(other: &TestApp, listener: TcpListener) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = other.config.clone();
    config.data_dir = dir.path().to_path_buf();
    let database = TestDatabase {
        url: other.database_url.clone(),
        pg_schema: None,
        proxy: None,
    };
    start(listener, config, other.clock.clone(), database, dir).await
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    spawn(customize, false).await
}

/// As `spawn_app`, with PostgreSQL reached through a proxy the test can cut
/// (`TestApp::cut_database`). On SQLite the cut is an exclusive lock.
pub async fn spawn_app_with_cuttable_database() -> TestApp {
    spawn(|c| c.database.busy_timeout_ms = 500, true).await
}

async fn spawn(customize: impl FnOnce(&mut Config), cuttable: bool) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    let mut config = base_config(dir.path());
    config.issuer = format!("http://localhost:{port}");
    let mut proxy = None;
    let (database_url, pg_schema) = match postgres_url() {
        Some(admin_url) => {
            // Before libpq's first connection: see `Db::connect`.
            openssl::init();
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut admin = diesel::PgConnection::establish(&admin_url).expect("connect to TEST_DATABASE_URL");
            diesel::sql_query(format!("CREATE SCHEMA {schema}"))
                .execute(&mut admin)
                .expect("create schema");
            let mut url = url::Url::parse(&admin_url).expect("TEST_DATABASE_URL is a URL");
            if cuttable {
                let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
                let p = proxy::Proxy::start(upstream).await;
                url.set_host(Some("127.0.0.1")).unwrap();
                url.set_port(Some(p.port)).unwrap();
                proxy = Some(p);
            }
            url.query_pairs_mut()
                .append_pair("options", &format!("-csearch_path={schema}"));
            (url.to_string(), Some(schema))
        }
        None => (format!("sqlite://{}", dir.path().join("oxidp.db").display()), None),
    };
    config.database_url = Some(database_url.clone());
    customize(&mut config);
    let database = TestDatabase {
        url: database_url,
        pg_schema,
        proxy,
    };
    start(listener, config, ManualClock::starting_now(), database, dir).await
}

/// The database a `TestApp` runs on, and what it owns of it (dropped with the app).
struct TestDatabase {
    url: String,
    pg_schema: Option<String>,
    proxy: Option<proxy::Proxy>,
}

/// Builds the state and runs the server on `listener` in the background.
async fn start(
    listener: TcpListener,
    config: Config,
    clock: Arc<ManualClock>,
    database: TestDatabase,
    dir: tempfile::TempDir,
) -> TestApp {
    let port = listener.local_addr().unwrap().port();
    let state = web::Data::new(AppState::build(config.clone(), clock.clone()).await.expect("app state"));
    let app = Application::with_listener(state.clone(), listener).expect("server");
    let server = app.handle();
    let metrics_address = app.metrics_port().map(|p| format!("http://127.0.0.1:{p}"));
    tokio::spawn(app.run_until_stopped());
    TestApp {
        server,
        address: format!("http://127.0.0.1:{port}"),
        port,
        metrics_address,
        clock,
        state,
        config,
        database_url: database.url,
        dir,
        pg_schema: database.pg_schema,
        proxy: database.proxy,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let (Some(schema), Some(admin_url)) = (&self.pg_schema, postgres_url())
            && let Ok(mut admin) = diesel::PgConnection::establish(&admin_url)
        {
            let _ = diesel::sql_query(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(&mut admin);
        }
    }
}

/// Runs one named step of a long scenario test: a failure in it names the step.
pub async fn step<T>(name: &str, run: impl std::future::Future<Output = T>) -> T {
    struct Running<'a>(&'a str);
    impl Drop for Running<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("scenario step failed: {}", self.0);
            }
        }
    }
    let running = Running(name);
    let value = run.await;
    std::mem::forget(running);
    value
}

/// A browser-like client: keeps cookies, does not follow redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The value of `name="csrf_token"` in a page.
pub fn csrf_of(html: &str) -> String {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(r#"input[name="csrf_token"]"#).unwrap();
    document
        .select(&selector)
        .next()
        .and_then(|e| e.value().attr("value"))
        .expect("page has a csrf_token field")
        .to_owned()
}

/// The text of the element matching `selector`, if any.
pub fn text_of(html: &str, selector: &str) -> Option<String> {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(selector).unwrap();
    document
        .select(&selector)
        .next()
        .map(|e| e.text().collect::<String>().trim().to_owned())
}

pub fn cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .cookies()
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

impl TestApp {
    /// `/metrics` on the metrics listener.
    pub fn metrics_url(&self) -> String {
        format!(
            "{}/metrics",
            self.metrics_address.as_deref().expect("the metrics listener is on")
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn create_user(&self, username: &str, password: &str) -> UserRow {
        accounts::create(
            &self.state,
            &oxidp::audit::Actor::system(),
            NewAccount {
                username: username.to_owned(),
                email: Some(format!("{username}@example.com")),
                email_verified: true,
                profile: Profile {
                    name: Some(format!("{username} Example")),
                    ..Profile::default()
                },
                credential: Credential::Password(Password::new(password)),
                disabled: false,
            },
        )
        .await
        .expect("create user")
    }

    /// Loads the sign-in page and returns its CSRF token.
    pub async fn login_csrf(&self, client: &reqwest::Client) -> String {
        let page = client.get(self.url("/login")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        csrf_of(&page.text().await.unwrap())
    }

    /// Submits the sign-in form as a browser would.
    pub async fn login(&self, client: &reqwest::Client, username: &str, password: &str) -> reqwest::Response {
        let csrf = self.login_csrf(client).await;
        self.post_login(client, &csrf, username, password, None).await
    }

    pub async fn post_login(
        &self,
        client: &reqwest::Client,
        csrf: &str,
        username: &str,
        password: &str,
        return_to: Option<&str>,
    ) -> reqwest::Response {
        let mut form = vec![("csrf_token", csrf), ("username", username), ("password", password)];
        if let Some(r) = return_to {
            form.push(("return_to", r));
        }
        client.post(self.url("/login")).form(&form).send().await.unwrap()
    }

    /// A client already signed in as a new user `username`.
    pub async fn signed_in(&self, username: &str) -> reqwest::Client {
        self.create_user(username, PASSWORD).await;
        let client = browser();
        let response = self.login(&client, username, PASSWORD).await;
        assert_eq!(response.status(), 303, "sign-in of {username} failed");
        client
    }

    /// Runs the `oxidp` binary against this app's database and secrets.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_oxidp"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("OXIDP_DATA_DIR", self.dir.path())
            .env("OXIDP_DATABASE_URL", &self.database_url)
            .env("OXIDP_PEPPER", PEPPER)
            .env("OXIDP_KEY_ENCRYPTION_SECRET", KES)
            .env("OXIDP_LOG__LEVEL", "warn")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("run oxidp");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// `cli` expecting success and JSON on stdout.
    pub fn cli_json(&self, args: &[&str], stdin: Option<&str>) -> serde_json::Value {
        let output = self.cli(args, stdin);
        assert!(
            output.status.success(),
            "oxidp {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("JSON on stdout")
    }

    /// A JSON API call (the admin API): `token` as bearer, `body` as JSON. Returns
    /// the status, the body (JSON; else the text as a string; `Null` when empty)
    /// and the headers.
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value, reqwest::header::HeaderMap) {
        let mut request = reqwest::Client::new().request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = match text.is_empty() {
            true => serde_json::Value::Null,
            false => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        };
        (status, body, headers)
    }

    /// Makes the database unusable for the server: the PostgreSQL proxy stops, or
    /// (SQLite) another process takes the write lock and keeps it, as a stuck
    /// backup or a runaway batch job would.
    pub async fn cut_database(&mut self) -> Option<diesel::SqliteConnection> {
        if let Some(proxy) = self.proxy.take() {
            proxy.stop();
            return None;
        }
        let path = self.dir.path().join("oxidp.db");
        let mut conn = diesel::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        diesel::sql_query("BEGIN IMMEDIATE").execute(&mut conn).unwrap();
        diesel::sql_query("UPDATE server_settings SET value = value")
            .execute(&mut conn)
            .unwrap();
        Some(conn)
    }
}

/// A TCP proxy that can be switched off, to take PostgreSQL (or Redis) away from a running server.
pub mod proxy {
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    pub struct Proxy {
        pub port: u16,
        task: JoinHandle<()>,
    }

    impl Proxy {
        pub async fn start(upstream: String) -> Self {
            Self::start_on(0, upstream).await
        }

        /// As `start`, on a given port (0: any free one), e.g. the port of a stopped proxy.
        pub async fn start_on(port: u16, upstream: String) -> Self {
            let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let task = tokio::spawn(async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    connections.spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            });
            Self { port, task }
        }

        /// Closes the listener and every proxied connection.
        pub fn stop(self) {
            self.task.abort();
        }
    }
}

pub const REDIRECT_URI: &str = "https://client.example.com/cb";

/// A registered client as the tests know it.
#[derive(Clone, Debug)]
pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
}

/// PKCE pair computed independently of the server's code.
pub fn pkce_pair() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let verifier = oxidp::crypto::random_token() + "-pkce";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

impl TestApp {
    pub async fn create_client(&self, spec: oxidp::oauth::clients::ClientSpec) -> TestClient {
        let created = oxidp::oauth::clients::create(
            &self.state.db,
            self.state.clock.now(),
            &self.state.config.tokens,
            &oxidp::audit::Actor::system(),
            spec,
        )
        .await
        .expect("create client");
        TestClient {
            id: created.client.id.to_string(),
            secret: created.secret,
            redirect_uri: created
                .client
                .redirect_uris
                .first()
                .map(|r| r.as_str().to_owned())
                .unwrap_or_default(),
        }
    }

    /// A confidential web app: code + refresh + client_credentials, consent required.
    pub async fn web_client(&self) -> TestClient {
        self.create_client(oxidp::oauth::clients::ClientSpec {
            name: Some("Example Shop".into()),
            redirect_uris: Some(vec![REDIRECT_URI.into(), "http://127.0.0.1/native-cb".into()]),
            post_logout_redirect_uris: Some(vec!["https://client.example.com/bye".into()]),
            grant_types: Some(vec![
                "authorization_code".into(),
                "refresh_token".into(),
                "client_credentials".into(),
            ]),
            scopes: Some("openid profile email phone address offline_access api:read api:write".into()),
            ..Default::default()
        })
        .await
    }

    /// A public client (SPA / native): no secret, PKCE required.
    pub async fn public_client(&self) -> TestClient {
        self.create_client(oxidp::oauth::clients::ClientSpec {
            name: Some("Example SPA".into()),
            auth_method: Some("none".into()),
            redirect_uris: Some(vec![REDIRECT_URI.into()]),
            grant_types: Some(vec!["authorization_code".into(), "refresh_token".into()]),
            ..Default::default()
        })
        .await
    }

    /// Resolves a Location header against this server.
    fn absolute(&self, location: &str) -> String {
        if location.starts_with('/') {
            self.url(location)
        } else {
            location.to_owned()
        }
    }

    /// Drives a browser from `start` through sign-in and consent (allowing) until the
    /// server redirects to a URL that is not its own; returns that URL.
    pub async fn follow_to_client(
        &self,
        browser: &reqwest::Client,
        start: &str,
        username: &str,
        password: &str,
    ) -> url::Url {
        let mut response = browser.get(start).send().await.unwrap();
        for _ in 0..12 {
            let status = response.status();
            let location = match response.headers().get("location") {
                Some(l) => self.absolute(l.to_str().unwrap()),
                None => panic!("stuck at {status}: {}", response.text().await.unwrap()),
            };
            if !location.starts_with(&self.address) && !location.starts_with(&format!("http://localhost:{}", self.port))
            {
                return url::Url::parse(&location).unwrap();
            }
            let path = url::Url::parse(&location).unwrap();
            response = match path.path() {
                "/login" => {
                    let page = browser.get(&location).send().await.unwrap().text().await.unwrap();
                    let csrf = csrf_of(&page);
                    let document = scraper::Html::parse_document(&page);
                    let selector = scraper::Selector::parse(r#"input[name="return_to"]"#).unwrap();
                    let return_to = document
                        .select(&selector)
                        .next()
                        .unwrap()
                        .value()
                        .attr("value")
                        .unwrap()
                        .to_owned();
                    self.post_login(browser, &csrf, username, password, Some(&return_to))
                        .await
                }
                "/consent" => {
                    let page = browser.get(&location).send().await.unwrap().text().await.unwrap();
                    let csrf = csrf_of(&page);
                    let request = path.query_pairs().find(|(k, _)| k == "request").unwrap().1.into_owned();
                    browser
                        .post(self.url("/consent"))
                        .form(&[
                            ("csrf_token", csrf.as_str()),
                            ("request", request.as_str()),
                            ("decision", "allow"),
                        ])
                        .send()
                        .await
                        .unwrap()
                }
                _ => browser.get(&location).send().await.unwrap(),
            };
        }
        panic!("too many redirects");
    }

    /// An authorization URL for `client` with the given extra parameters.
    pub fn authorize_url(&self, client: &TestClient, extra: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.url("/authorize")).unwrap();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &client.id);
            q.append_pair("redirect_uri", &client.redirect_uri);
            q.append_pair("response_type", "code");
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        url.to_string()
    }

    /// Runs the whole front channel and returns (code, verifier) for `client`.
    pub async fn code_for(
        &self,
        client: &TestClient,
        browser: &reqwest::Client,
        username: &str,
        scope: &str,
    ) -> (String, String) {
        let (verifier, challenge) = pkce_pair();
        let start = self.authorize_url(
            client,
            &[
                ("scope", scope),
                ("state", "xyz"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("nonce", "n-0S6"),
            ],
        );
        let back = self.follow_to_client(browser, &start, username, PASSWORD).await;
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .expect("code in redirect")
            .1
            .into_owned();
        (code, verifier)
    }

    /// POSTs to the token endpoint with client_secret_basic (or client_id only for public clients).
    pub async fn token(&self, client: &TestClient, form: &[(&str, &str)]) -> reqwest::Response {
        let http = reqwest::Client::new();
        let mut request = http.post(self.url("/token"));
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        match &client.secret {
            Some(secret) => request = request.basic_auth(&client.id, Some(secret)),
            None => fields.push(("client_id", &client.id)),
        }
        request.form(&fields).send().await.unwrap()
    }

    pub async fn redeem(&self, client: &TestClient, code: &str, verifier: &str) -> reqwest::Response {
        self.token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &client.redirect_uri),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    pub async fn introspect(&self, client: &TestClient, token: &str) -> serde_json::Value {
        let response = reqwest::Client::new()
            .post(self.url("/introspect"))
            .basic_auth(&client.id, client.secret.as_deref())
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    pub async fn userinfo_status(&self, token: &str) -> (u16, String) {
        let response = reqwest::Client::new()
            .get(self.url("/userinfo"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (response.status().as_u16(), challenge)
    }
}

/// The payload of a JWT, decoded without verification (the tests check claims;
/// signature checks are covered by the relying-party tests).
pub fn jwt_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url payload"),
    )
    .expect("JSON payload")
}

impl TestApp {
    /// A service account: a confidential client allowed client_credentials.
    pub async fn service_client(&self, scopes: &str, audience: Option<&str>) -> TestClient {
        self.create_client(oxidp::oauth::clients::ClientSpec {
            name: Some("Service".into()),
            grant_types: Some(vec!["client_credentials".into()]),
            scopes: Some(scopes.into()),
            audience: audience.map(str::to_owned),
            ..Default::default()
        })
        .await
    }

    /// client_credentials for `client`; returns the token response.
    pub async fn client_token(&self, client: &TestClient, extra: &[(&str, &str)]) -> serde_json::Value {
        let mut form = vec![("grant_type", "client_credentials")];
        form.extend_from_slice(extra);
        let response = self.token(client, &form).await;
        assert_eq!(response.status(), 200, "client_credentials failed");
        response.json().await.unwrap()
    }

    /// An access token of a client holding the `admin` role (for oxidp's own audience).
    pub async fn admin_token(&self) -> String {
        let client = self.service_client("email", None).await;
        oxidp::rbac::assign(
            self.state.rbac_change(),
            &oxidp::audit::Actor::system(),
            oxidp::rbac::Subject::Client(client.id.clone()),
            "admin",
        )
        .await
        .expect("assign admin");
        self.client_token(&client, &[]).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}
