//! A browser and a relying party talking to the balancer, noting which instance
//! answered each request (HAProxy's `X-Served-By`, on with `HAPROXY_SERVED_BY=1`).
//! The form helpers follow tests/api/helpers.rs (that crate's `TestApp` runs
//! servers in-process, this one only reaches them over HTTP).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use reqwest::Response;
use sha2::Digest;

pub const PASSWORD: &str = "correct horse battery staple";
pub const REDIRECT_URI: &str = "https://client.example.com/cb";

/// The instance that answered, or "-" (an answer of the balancer itself).
pub fn served_by(response: &Response) -> String {
    response
        .headers()
        .get("x-served-by")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// Instances that answered, in order.
#[derive(Clone, Default)]
pub struct Trail(Arc<Mutex<Vec<(String, String)>>>);

impl Trail {
    pub fn note(&self, what: &str, response: &Response) {
        self.0.lock().unwrap().push((what.to_owned(), served_by(response)));
    }

    pub fn entries(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().clone()
    }

    /// (consecutive pairs on different instances, pairs, distinct instances).
    pub fn spread(&self) -> (usize, usize, usize) {
        let instances: Vec<String> = self.entries().into_iter().map(|(_, s)| s).collect();
        let pairs = instances.len().saturating_sub(1);
        let different = instances.windows(2).filter(|w| w[0] != w[1]).count();
        let mut distinct = instances.clone();
        distinct.sort();
        distinct.dedup();
        distinct.retain(|s| s != "-");
        (different, pairs, distinct.len())
    }

    /// Asserts round robin without stickiness: every IdP instance served part of
    /// `what`, and consecutive requests almost always went to another instance
    /// (the commerce instances' own calls to the IdP can interleave).
    pub fn assert_spread(&self, what: &str, instances: usize) {
        let (different, pairs, distinct) = self.spread();
        let sequence: Vec<String> = self.entries().into_iter().map(|(w, s)| format!("{w}@{s}")).collect();
        println!("  {what}: {pairs} consecutive pairs, {different} on different instances, {distinct} instances");
        assert_eq!(distinct, instances, "{what}: not every instance served: {sequence:?}");
        assert!(
            different * 10 >= pairs * 8,
            "{what}: consecutive requests mostly stayed on one instance: {sequence:?}"
        );
    }
}

/// A browser: cookies, no automatic redirects, every answer noted in `trail`.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub trail: Trail,
}

impl Browser {
    pub fn new(base: &str, trail: &Trail) -> Self {
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            base: base.to_owned(),
            trail: trail.clone(),
        }
    }

    /// A browser whose connections come from `address` (a loopback address of its own).
    pub fn from_address(base: &str, trail: &Trail, address: std::net::IpAddr) -> Self {
        Self {
            client: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .local_address(address)
                .build()
                .unwrap(),
            base: base.to_owned(),
            trail: trail.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        self.trail.note(&format!("GET {}", short(path)), &response);
        response
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Response {
        let response = self.client.post(self.url(path)).form(form).send().await.expect("POST");
        self.trail.note(&format!("POST {}", short(path)), &response);
        response
    }

    /// GET a page that must answer 200; its HTML.
    pub async fn page(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.text().await.unwrap()
    }

    /// Signs in with the password form; the answer to the POST.
    pub async fn password_sign_in(&self, username: &str, return_to: Option<&str>) -> Response {
        let page = self.page("/login").await;
        let csrf = csrf_of(&page);
        let mut form = vec![
            ("csrf_token", csrf.as_str()),
            ("username", username),
            ("password", PASSWORD),
        ];
        if let Some(r) = return_to {
            form.push(("return_to", r));
        }
        self.post("/login", &form).await
    }

    /// Drives the front channel from `start` (sign-in, second step with `totp`,
    /// consent) until the IdP redirects away from itself; that URL.
    pub async fn follow_to_client(
        &self,
        start: &str,
        username: &str,
        totp: Option<&(dyn Fn() -> String + Sync)>,
    ) -> url::Url {
        let mut response = self.get(start).await;
        for _ in 0..12 {
            let status = response.status();
            let location = match response.headers().get("location") {
                Some(l) => self.url(l.to_str().unwrap()),
                None => panic!("stuck at {status}: {}", response.text().await.unwrap()),
            };
            if !location.starts_with(&self.base) {
                return url::Url::parse(&location).unwrap();
            }
            let parsed = url::Url::parse(&location).unwrap();
            response = match parsed.path() {
                "/login" => {
                    let page = self.page(&location).await;
                    let return_to = input_value(&page, "return_to").expect("return_to on the sign-in page");
                    let csrf = csrf_of(&page);
                    self.post(
                        "/login",
                        &[
                            ("csrf_token", csrf.as_str()),
                            ("username", username),
                            ("password", PASSWORD),
                            ("return_to", return_to.as_str()),
                        ],
                    )
                    .await
                }
                "/login/mfa" => {
                    let code = totp.expect("a second step was asked for")();
                    let page = self.page(&location).await;
                    let csrf = csrf_of(&page);
                    self.post("/login/mfa", &[("csrf_token", csrf.as_str()), ("code", code.as_str())])
                        .await
                }
                "/consent" => {
                    let page = self.page(&location).await;
                    let csrf = csrf_of(&page);
                    let request = parsed
                        .query_pairs()
                        .find(|(k, _)| k == "request")
                        .unwrap()
                        .1
                        .into_owned();
                    self.post(
                        "/consent",
                        &[
                            ("csrf_token", csrf.as_str()),
                            ("request", request.as_str()),
                            ("decision", "allow"),
                        ],
                    )
                    .await
                }
                _ => self.get(&location).await,
            };
        }
        panic!("too many redirects");
    }
}

fn short(path: &str) -> String {
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    path.split('?').next().unwrap_or(path).to_owned()
}

/// The value of `name="csrf_token"` in a page.
pub fn csrf_of(html: &str) -> String {
    input_value(html, "csrf_token").expect("page has a csrf_token field")
}

pub fn input_value(html: &str, name: &str) -> Option<String> {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(&format!(r#"input[name="{name}"]"#)).unwrap();
    document
        .select(&selector)
        .next()
        .and_then(|e| e.value().attr("value"))
        .map(str::to_owned)
}

pub fn text_of(html: &str, selector: &str) -> Option<String> {
    let document = scraper::Html::parse_document(html);
    let selector = scraper::Selector::parse(selector).unwrap();
    document
        .select(&selector)
        .next()
        .map(|e| e.text().collect::<String>().trim().to_owned())
}

/// A TOTP code for `secret` at `unix` (RFC 6238, SHA-1, 6 digits, 30 s).
pub fn totp_at(secret_b32: &str, unix: u64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret_b32).expect("base32 key");
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_account_name("test")
        .build()
        .unwrap()
        .generate(unix)
        .to_string()
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// PKCE verifier and S256 challenge.
pub fn pkce_pair() -> (String, String) {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// The claims of a JWT, unverified; and its header's `kid`.
pub fn jwt_parts(token: &str) -> (serde_json::Value, String) {
    let decode = |part: &str| -> serde_json::Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .expect("base64url"),
        )
        .expect("JSON")
    };
    let mut parts = token.split('.');
    let header = decode(parts.next().expect("a JWT"));
    let claims = decode(parts.next().expect("a JWT"));
    (claims, header["kid"].as_str().unwrap_or_default().to_owned())
}

/// A registered client as the tests know it.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

/// The token endpoint through the balancer, client_secret_basic.
pub async fn token(http: &reqwest::Client, idp: &str, client: &Client, form: &[(&str, &str)]) -> Response {
    http.post(format!("{idp}/token"))
        .basic_auth(&client.id, Some(&client.secret))
        .form(form)
        .send()
        .await
        .expect("POST /token")
}

/// An authorization URL with PKCE; returns it and the verifier.
pub fn authorize_url(idp: &str, client: &Client, scope: &str) -> (String, String) {
    let (verifier, challenge) = pkce_pair();
    let mut url = url::Url::parse(&format!("{idp}/authorize")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &client.id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("response_type", "code")
        .append_pair("scope", scope)
        .append_pair("state", "st-1")
        .append_pair("nonce", "n-1")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    (url.to_string(), verifier)
}

/// The `code` of a redirect back to the client (state checked).
pub fn code_of(back: &url::Url) -> String {
    let param = |name: &str| back.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    assert_eq!(param("state").as_deref(), Some("st-1"), "{back}");
    param("code").unwrap_or_else(|| panic!("no code in {back}"))
}
