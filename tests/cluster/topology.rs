//! The topology under test: `deploy/cluster.sh` (the script users run) started with
//! the test's binary, a run directory under the target dir, a fresh pair of databases
//! and its own ports. Plus what the scenarios need to act on it: the CLI against its
//! database, the instances' pids, HAProxy's view of the servers, SQL as the admin.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use diesel::{Connection, RunQueryDsl};

/// `tokens.client_cache_secs` of the suite's instances (the default is 5).
pub const CLIENT_CACHE_SECS: u64 = 300;
/// Where the suite looks for Redis (cluster.sh's `CLUSTER_REDIS`).
pub const REDIS_ADDR: &str = "127.0.0.1:6379";

/// The IdP instances and the commerce instances, as cluster.sh numbers them.
pub const IDPS: [u8; 3] = [1, 2, 3];
pub const COMMERCES: [u8; 2] = [1, 2];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Idp,
    Commerce,
}

impl Kind {
    /// cluster.sh's and HAProxy's name of instance `n`.
    pub fn name(self, n: u8) -> String {
        match self {
            Kind::Idp => format!("idp{n}"),
            Kind::Commerce => format!("commerce{n}"),
        }
    }
}

pub struct Cluster {
    root: PathBuf,
    pub run_dir: PathBuf,
    /// The PostgreSQL server (no database): postgres://user@host:port.
    pub pg: String,
    pub db: String,
    base: u16,
    pub idp_url: String,
    pub commerce_url: String,
    secrets: Vec<(String, String)>,
    /// The Redis the IdP instances share their sign-in limits in (`CLUSTER_REDIS`),
    /// when one answers at 127.0.0.1:6379; else they keep them per instance.
    pub redis: Option<String>,
    /// The CLI's own data directory (it needs one; nothing of it is used).
    cli_dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the whole topology with `deploy/cluster.sh up`, after stopping what a
    /// previous run of this suite may have left in the same run directory.
    pub fn up(pg: String) -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let run_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cluster");
        let base: u16 = std::env::var("CLUSTER_PORT_BASE")
            .ok()
            .and_then(|b| b.parse().ok())
            .unwrap_or(27000);
        let db = std::env::var("CLUSTER_DB").unwrap_or_else(|_| "oxidp_cluster_test".to_owned());
        let mut cluster = Self {
            root,
            run_dir,
            pg,
            db,
            base,
            idp_url: format!("http://localhost:{}", base + 80),
            commerce_url: format!("http://localhost:{}", base + 81),
            secrets: Vec::new(),
            redis: redis_answers(REDIS_ADDR).then(|| format!("redis://{REDIS_ADDR}")),
            cli_dir: tempfile::tempdir().expect("temp dir"),
        };
        std::fs::create_dir_all(&cluster.run_dir).expect("run dir");
        // Leftovers of an interrupted run (pid files in the same directory).
        let _ = cluster.script(&["down"]);
        for entry in std::fs::read_dir(&cluster.run_dir).unwrap().flatten() {
            if entry.file_name().to_string_lossy().ends_with(".log") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        for port in cluster.ports() {
            assert!(
                std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
                "port {port} is taken (another cluster run? set CLUSTER_PORT_BASE)"
            );
        }
        let started = Instant::now();
        let output = cluster.script(&["up"]);
        assert!(
            output.status.success(),
            "deploy/cluster.sh up failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            cluster.logs_tail()
        );
        println!(
            "cluster up in {:.1} s: IdP {}, commerce {}, run dir {}",
            started.elapsed().as_secs_f64(),
            cluster.idp_url,
            cluster.commerce_url,
            cluster.run_dir.display()
        );
        cluster.secrets = read_exports(&cluster.run_dir.join("secrets.env"));
        cluster
    }

    fn ports(&self) -> Vec<u16> {
        let b = self.base;
        let mut ports = vec![b + 80, b + 81, b + 82];
        ports.extend(IDPS.iter().flat_map(|n| [b + 90 + *n as u16, b + 1090 + *n as u16]));
        ports.extend(COMMERCES.iter().map(|n| b + 100 + *n as u16));
        ports
    }

    /// Runs deploy/cluster.sh with only what it needs from our environment: an
    /// `OXIDP_*` variable of the test run must not reach the servers (the strict
    /// loader refuses unknown ones).
    pub fn script(&self, args: &[&str]) -> Output {
        let mut command = Command::new(self.root.join("deploy/cluster.sh"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CLUSTER_PG", &self.pg)
            .env("CLUSTER_DB", &self.db)
            .env("CLUSTER_PORT_BASE", self.base.to_string())
            .env("CLUSTER_BIN", env!("CARGO_BIN_EXE_oxidp"))
            .env("CLUSTER_DIR", &self.run_dir)
            .env("HAPROXY_SERVED_BY", "1")
            .env("CLUSTER_REDIS", self.redis.as_deref().unwrap_or_default())
            // Caches far longer than the default 5 s: a change seen on every
            // instance within a second can only be the invalidation notice's doing.
            // (cluster.sh passes it on to every instance; commerce ignores it.)
            .env("OXIDP_TOKENS__CLIENT_CACHE_SECS", CLIENT_CACHE_SECS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Ok(home) = std::env::var("HOME") {
            command.env("HOME", home);
        }
        command.output().expect("run deploy/cluster.sh")
    }

    /// `script` on a blocking thread, asserting success.
    pub async fn script_ok(&self, args: &[&str]) {
        let output = tokio::task::block_in_place(|| self.script(args));
        assert!(
            output.status.success(),
            "deploy/cluster.sh {args:?} failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.logs_tail()
        );
    }

    pub fn down(&self) {
        let output = self.script(&["down"]);
        if !output.status.success() {
            eprintln!("cluster.sh down: {}", String::from_utf8_lossy(&output.stderr));
        }
        let _ = self.admin_sql(&format!("DROP DATABASE IF EXISTS {}", self.db));
        let _ = self.admin_sql(&format!("DROP DATABASE IF EXISTS {}_commerce", self.db));
    }

    /// The last lines of every instance's log (for failure messages).
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(&self.run_dir) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last lines)\n", path.display()));
            for line in &lines[lines.len().saturating_sub(8)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    pub fn secret(&self, name: &str) -> String {
        self.secrets
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} in secrets.env"))
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", self.pg, self.db)
    }

    /// What every IdP instance of the cluster shares (cluster.sh's `idp_env`), for
    /// the CLI and for instances the test starts itself.
    pub fn idp_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OXIDP_ISSUER", self.idp_url.clone()),
            ("OXIDP_DATABASE_URL", self.database_url()),
            ("OXIDP_PEPPER", self.secret("OXIDP_PEPPER")),
            (
                "OXIDP_KEY_ENCRYPTION_SECRET",
                self.secret("OXIDP_KEY_ENCRYPTION_SECRET"),
            ),
            ("OXIDP_LOGIN__TRUSTED_PROXIES", "127.0.0.1".to_owned()),
        ]
    }

    /// The `oxidp` binary with `env` (and nothing else of ours).
    pub fn oxidp(&self, args: &[&str], env: &[(&str, String)], data_dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_oxidp"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("OXIDP_DATA_DIR", data_dir)
            .env("OXIDP_LOG__LEVEL", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        command
    }

    /// An administrative command against the cluster's database; JSON on stdout.
    pub fn cli_json(&self, args: &[&str], stdin: Option<&str>) -> serde_json::Value {
        serde_json::from_str(&self.cli(args, stdin)).expect("JSON on stdout")
    }

    /// An administrative command against the cluster's database, asserting
    /// success; its stdout. Returns when the process has exited (its change is
    /// committed).
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut command = self.oxidp(args, &self.idp_env(), self.cli_dir.path());
        command
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = tokio::task::block_in_place(|| {
            let mut child = command.spawn().expect("run oxidp");
            if let Some(input) = stdin {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
            }
            child.wait_with_output().unwrap()
        });
        assert!(
            output.status.success(),
            "oxidp {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 on stdout")
    }

    /// An instance's own address (not the balancer).
    pub fn instance_url(&self, kind: Kind, n: u8) -> String {
        let port = match kind {
            Kind::Idp => self.base + 90 + n as u16,
            Kind::Commerce => self.base + 100 + n as u16,
        };
        format!("http://127.0.0.1:{port}")
    }

    /// IdP instance `n`'s metrics listener (cluster.sh: its port + 1000).
    pub fn metrics_url(&self, n: u8) -> String {
        format!("http://127.0.0.1:{}/metrics", self.base + 1090 + n as u16)
    }

    pub fn pid(&self, kind: Kind, n: u8) -> Option<i32> {
        std::fs::read_to_string(self.run_dir.join(format!("{}.pid", kind.name(n))))
            .ok()
            .and_then(|p| p.trim().parse().ok())
    }

    /// HAProxy's status of each server ("UP", "DOWN", "UP 1/2", "MAINT" …) and the
    /// total sessions it sent there, from the stats page's CSV.
    pub async fn balancer_view(&self) -> Vec<(String, String, u64)> {
        let url = format!("http://127.0.0.1:{}/;csv", self.base + 82);
        let Ok(response) = http().get(url).send().await else {
            return Vec::new();
        };
        let text = response.text().await.unwrap_or_default();
        let mut lines = text.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name: &str| header.iter().position(|h| *h == name).expect("stats column");
        let (sv, status, total) = (col("svname"), col("status"), col("stot"));
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > status && f[sv] != "FRONTEND" && f[sv] != "BACKEND")
            .map(|f| (f[sv].to_owned(), f[status].to_owned(), f[total].parse().unwrap_or(0)))
            .collect()
    }

    pub async fn server_status(&self, server: &str) -> String {
        self.balancer_view()
            .await
            .into_iter()
            .find(|(s, _, _)| s == server)
            .map(|(_, status, _)| status)
            .unwrap_or_default()
    }

    /// Waits until the balancer reports `server` as `status` ("UP" or "DOWN").
    pub async fn wait_balancer(&self, server: &str, status: &str, within: Duration) {
        let until = Instant::now() + within;
        loop {
            let now = self.server_status(server).await;
            if now == status {
                return;
            }
            assert!(
                Instant::now() < until,
                "the balancer still reports {server} as {now:?}, not {status}, after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every instance running and UP in the balancer; restarts what is not (a
    /// scenario that failed half-way leaves the next one a whole cluster).
    pub async fn ensure_whole(&self) {
        for (kind, n) in all_instances() {
            let alive = self.pid(kind, n).is_some_and(process_alive);
            if !alive {
                println!("  (restarting {} left down)", kind.name(n));
                let which = match kind {
                    Kind::Idp => "restart-idp",
                    Kind::Commerce => "restart-commerce",
                };
                self.script_ok(&[which, &n.to_string()]).await;
            }
        }
        for (kind, n) in all_instances() {
            self.wait_balancer(&kind.name(n), "UP", Duration::from_secs(60)).await;
        }
    }

    /// One SQL statement on the server's `postgres` database (admin work).
    pub fn admin_sql(&self, statement: &str) -> Result<usize, String> {
        let mut conn = diesel::PgConnection::establish(&format!("{}/postgres", self.pg)).map_err(|e| e.to_string())?;
        diesel::sql_query(statement)
            .execute(&mut conn)
            .map_err(|e| e.to_string())
    }

    /// One `SELECT count(*) AS n …` on the IdP's database.
    pub fn count(&self, query: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn =
            diesel::PgConnection::establish(&self.database_url()).expect("connect to the cluster's database");
        diesel::sql_query(query)
            .get_result::<N>(&mut conn)
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .n
    }
}

pub fn all_instances() -> Vec<(Kind, u8)> {
    IDPS.iter()
        .map(|n| (Kind::Idp, *n))
        .chain(COMMERCES.iter().map(|n| (Kind::Commerce, *n)))
        .collect()
}

pub fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

pub fn signal(pid: i32, signal: i32) {
    // SAFETY: a signal to a process this suite started (through cluster.sh).
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
}

/// `export K=V` lines of a file.
fn read_exports(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A loopback address of its own for this run (127.100-199.x.y: never 127.0.0.1,
/// the address the rest of the suite comes from). The balancer forwards it
/// (`X-Forwarded-For`) and the instances trust only 127.0.0.1 as a proxy, so
/// they count sign-in attempts and failed client authentications from it apart.
pub fn unique_loopback() -> std::net::IpAddr {
    let mut bytes = [0u8; 3];
    openssl::rand::rand_bytes(&mut bytes).unwrap();
    std::net::Ipv4Addr::new(127, 100 + bytes[0] % 100, bytes[1], bytes[2].max(1)).into()
}

/// `http()` whose connections come from `address`.
pub fn http_from(address: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .local_address(address)
        .build()
        .unwrap()
}

/// A plain HTTP client with a per-request deadline (the machine may be loaded).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Whether Redis answers PING at `addr`.
pub fn redis_answers(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(addr) = addr.parse() else { return false };
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"PING\r\n")?;
            let mut reply = [0u8; 5];
            stream.read_exact(&mut reply)?;
            Ok(&reply == b"+PONG")
        })
        .unwrap_or(false)
}
