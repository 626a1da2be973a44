//! What the scenarios share: the running cluster, two people (alice signs in with
//! a second step, bob without), the clients, and bob's browser session.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::topology::Cluster;
use crate::web::{Browser, Client, PASSWORD, REDIRECT_URI, Trail, authorize_url, code_of, token};

/// Why the suite cannot run here, if it cannot; else the PostgreSQL server URL.
pub fn prerequisites() -> Result<String, String> {
    let url = std::env::var("TEST_DATABASE_URL").unwrap_or_default();
    if !url.starts_with("postgres") {
        return Err("needs TEST_DATABASE_URL (PostgreSQL; the cluster runs on PostgreSQL only)".to_owned());
    }
    for tool in ["haproxy", "psql", "curl", "openssl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!(
                "needs `{tool}` on PATH (Debian: apt-get install haproxy postgresql-client curl openssl)"
            ));
        }
    }
    // The server, without the database of the URL.
    let mut server = url::Url::parse(&url).map_err(|e| format!("TEST_DATABASE_URL: {e}"))?;
    server.set_path("");
    server.set_query(None);
    let server = server.to_string().trim_end_matches('/').to_owned();
    openssl::init();
    use diesel::Connection;
    diesel::PgConnection::establish(&format!("{server}/postgres"))
        .map_err(|e| format!("cannot reach PostgreSQL at {server}: {e}"))?;
    Ok(server)
}

pub struct Suite {
    pub cluster: Cluster,
    /// Confidential web app: code (+ PKCE), refresh, client_credentials; consent asked.
    pub web: Client,
    /// client_credentials for the commerce API's audience.
    pub shop_service: Client,
    /// bob, signed in once (no second step); consent to `web` given.
    pub bob: Browser,
}

/// Brings the cluster down if the set-up fails half-way.
struct DownOnPanic<'a>(&'a Cluster);

impl Drop for DownOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            println!("{}", self.0.logs_tail());
            self.0.down();
        }
    }
}

impl Suite {
    pub async fn start() -> Suite {
        let pg = prerequisites().expect("checked before");
        let cluster = tokio::task::block_in_place(|| Cluster::up(pg));
        let guard = DownOnPanic(&cluster);
        for user in ["alice", "bob"] {
            cluster.cli_json(
                &[
                    "user",
                    "create",
                    "--username",
                    user,
                    "--email",
                    &format!("{user}@example.com"),
                    "--email-verified",
                    "--password-stdin",
                    "--json",
                ],
                Some(&format!("{PASSWORD}\n")),
            );
        }
        let web = client_of(&cluster.cli_json(
            &[
                "client",
                "create",
                "--name",
                "Cluster shop",
                "--redirect-uri",
                REDIRECT_URI,
                "--grant-type",
                "authorization_code",
                "--grant-type",
                "refresh_token",
                "--grant-type",
                "client_credentials",
                "--scopes",
                "openid profile email offline_access api:read",
                "--json",
            ],
            None,
        ));
        let shop_service = client_of(&cluster.cli_json(
            &[
                "client",
                "create",
                "--name",
                "Shop reader",
                "--grant-type",
                "client_credentials",
                "--scopes",
                "api:read",
                "--audience",
                &cluster.commerce_url,
                "--access-token-ttl",
                "3600",
                "--json",
            ],
            None,
        ));
        let bob = Browser::new(&cluster.idp_url, &Trail::default());
        let signed_in = bob.password_sign_in("bob", None).await;
        assert_eq!(signed_in.status(), 303, "bob's sign-in");
        drop(guard);
        let suite = Suite {
            cluster,
            web,
            shop_service,
            bob,
        };
        // Consent once, so bob's later codes need no page.
        suite.bob_tokens().await;
        suite
    }

    /// A fresh code for bob (signed in, consent given) and its PKCE verifier.
    pub async fn bob_code(&self) -> (String, String) {
        let (start, verifier) = authorize_url(&self.cluster.idp_url, &self.web, "openid email offline_access");
        let back = self.bob.follow_to_client(&start, "bob", None).await;
        (code_of(&back), verifier)
    }

    /// A new grant for bob: the token response (access, refresh, id token).
    pub async fn bob_tokens(&self) -> Value {
        let (code, verifier) = self.bob_code().await;
        let response = token(
            &crate::topology::http(),
            &self.cluster.idp_url,
            &self.web,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", &verifier),
            ],
        )
        .await;
        assert_eq!(response.status(), 200, "code redemption");
        response.json().await.unwrap()
    }

    /// An access token for the commerce API (client_credentials).
    pub async fn shop_token(&self) -> String {
        let response = token(
            &crate::topology::http(),
            &self.cluster.idp_url,
            &self.shop_service,
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert_eq!(response.status(), 200, "client_credentials for the shop");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

fn client_of(created: &Value) -> Client {
    Client {
        id: created["client_id"].as_str().expect("client_id").to_owned(),
        secret: created["client_secret"].as_str().expect("client_secret").to_owned(),
    }
}
