//! The `oxidp` command: `serve` (the default), `migrate`, and administration commands.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;

mod cli;

use clap::{Args, Parser, Subcommand};
use oxidp::accounts::{self, Credential, NewAccount, Profile};
use oxidp::audit::Actor;
use oxidp::clock::SystemClock;
use oxidp::config::Config;
use oxidp::db::models::users::UserRow;
use oxidp::domain::Password;
use oxidp::startup::Application;
use oxidp::state::AppState;

const ENV_HELP: &str = "\
Configuration is layered: built-in defaults, then the TOML file given with --config
(or OXIDP_CONFIG), then environment variables. Every key has an environment name:
  issuer                        OXIDP_ISSUER (default http://localhost:8080)
  bind                          OXIDP_BIND (default 127.0.0.1:8080)
  data_dir                      OXIDP_DATA_DIR (default ./data)
  database_url                  OXIDP_DATABASE_URL (default sqlite://{data_dir}/oxidp.db)
  pepper                        OXIDP_PEPPER (generated into {data_dir}/secrets.toml if unset)
  key_encryption_secret         OXIDP_KEY_ENCRYPTION_SECRET (likewise)
  database.pool_size            OXIDP_DATABASE__POOL_SIZE (16)
  database.connect_timeout_secs OXIDP_DATABASE__CONNECT_TIMEOUT_SECS (3)
  database.busy_timeout_ms      OXIDP_DATABASE__BUSY_TIMEOUT_MS (5000, SQLite only)
  database.wal_checkpoint_secs  OXIDP_DATABASE__WAL_CHECKPOINT_SECS (30, SQLite only; 0 = SQLite's own)
  database.sqlite_cache_kib     OXIDP_DATABASE__SQLITE_CACHE_KIB (2048 per pooled connection)
  database.purge_interval_secs  OXIDP_DATABASE__PURGE_INTERVAL_SECS (60)
  session.idle_timeout_secs     OXIDP_SESSION__IDLE_TIMEOUT_SECS (1800)
  session.absolute_timeout_secs OXIDP_SESSION__ABSOLUTE_TIMEOUT_SECS (43200)
  session.warn_before_secs      OXIDP_SESSION__WARN_BEFORE_SECS (300)
  session.single_session        OXIDP_SESSION__SINGLE_SESSION (false)
  argon2.memory_kib             OXIDP_ARGON2__MEMORY_KIB (19456)
  argon2.iterations             OXIDP_ARGON2__ITERATIONS (2)
  argon2.parallelism            OXIDP_ARGON2__PARALLELISM (1)
  argon2.max_concurrent         OXIDP_ARGON2__MAX_CONCURRENT (2 x cores)
  http.max_body_bytes           OXIDP_HTTP__MAX_BODY_BYTES (65536)
  http.workers                  OXIDP_HTTP__WORKERS (0 = one per core)
  tokens.access_token_ttl_secs  OXIDP_TOKENS__ACCESS_TOKEN_TTL_SECS (600, default for new clients)
  tokens.refresh_token_ttl_secs OXIDP_TOKENS__REFRESH_TOKEN_TTL_SECS (2592000, likewise)
  tokens.code_ttl_secs          OXIDP_TOKENS__CODE_TTL_SECS (60)
  tokens.request_ttl_secs       OXIDP_TOKENS__REQUEST_TTL_SECS (3600)
  tokens.client_cache_secs      OXIDP_TOKENS__CLIENT_CACHE_SECS (5)
  tokens.refresh_reuse_grace_secs OXIDP_TOKENS__REFRESH_REUSE_GRACE_SECS (10, 0 = off)
  keys.rotation_days            OXIDP_KEYS__ROTATION_DAYS (90, 0 = never)
  keys.publish_ahead_secs       OXIDP_KEYS__PUBLISH_AHEAD_SECS (3600)
  keys.retain_secs              OXIDP_KEYS__RETAIN_SECS (86400)
  keys.refresh_secs             OXIDP_KEYS__REFRESH_SECS (60)
  admin.bootstrap               OXIDP_ADMIN__BOOTSTRAP (true: create the admin user on first start)
  admin.username                OXIDP_ADMIN__USERNAME (admin)
  admin.initial_password        OXIDP_ADMIN__INITIAL_PASSWORD (random, printed once to the log)
  login.ip_per_minute           OXIDP_LOGIN__IP_PER_MINUTE (30; IPv6 by /64)
  login.ip_burst                OXIDP_LOGIN__IP_BURST (20)
  login.account_per_minute      OXIDP_LOGIN__ACCOUNT_PER_MINUTE (10)
  login.account_burst           OXIDP_LOGIN__ACCOUNT_BURST (10)
  login.client_failures_per_minute OXIDP_LOGIN__CLIENT_FAILURES_PER_MINUTE (20, at /token)
  login.delay_after             OXIDP_LOGIN__DELAY_AFTER (5 failures, then 1 s, 2 s, 4 s ...)
  login.delay_max_secs          OXIDP_LOGIN__DELAY_MAX_SECS (900)
  login.lockout_after           OXIDP_LOGIN__LOCKOUT_AFTER (100, at most 100)
  login.window_secs             OXIDP_LOGIN__WINDOW_SECS (900, risk signal window)
  login.stuffing_usernames      OXIDP_LOGIN__STUFFING_USERNAMES (10 per network and window)
  login.deny_score              OXIDP_LOGIN__DENY_SCORE (60)
  login.trusted_proxies         OXIDP_LOGIN__TRUSTED_PROXIES (comma-separated IPs/CIDRs; none)
  login.device_cookie_days      OXIDP_LOGIN__DEVICE_COOKIE_DAYS (365)
  login.attempts_retention_days OXIDP_LOGIN__ATTEMPTS_RETENTION_DAYS (90)
  login.device_max_failures     OXIDP_LOGIN__DEVICE_MAX_FAILURES (5 wrong passwords per device cookie)
  login.second_step_delay_after OXIDP_LOGIN__SECOND_STEP_DELAY_AFTER (3 failed second steps, then 1 s, 2 s ...)
  login.second_step_lockout_after OXIDP_LOGIN__SECOND_STEP_LOCKOUT_AFTER (50, at most 100)
  webauthn.enabled              OXIDP_WEBAUTHN__ENABLED (on unless the issuer is an IP address)
  webauthn.rp_id                OXIDP_WEBAUTHN__RP_ID (the issuer's host)
  webauthn.origin               OXIDP_WEBAUTHN__ORIGIN (the issuer's origin)
  webauthn.rp_name              OXIDP_WEBAUTHN__RP_NAME (the issuer's host)
  audit.retention_days          OXIDP_AUDIT__RETENTION_DAYS (90, 0 = forever)
  log.format                    OXIDP_LOG__FORMAT (text | json)
  log.level                     OXIDP_LOG__LEVEL (info)
  commerce.bind                 OXIDP_COMMERCE__BIND (127.0.0.1:8081)
  commerce.public_url           OXIDP_COMMERCE__PUBLIC_URL (http://localhost:8081)
  commerce.database_url         OXIDP_COMMERCE__DATABASE_URL (default sqlite://{data_dir}/commerce.db)
  commerce.issuer               OXIDP_COMMERCE__ISSUER (default: issuer)
  commerce.audience             OXIDP_COMMERCE__AUDIENCE (default: commerce.public_url)
  commerce.jwks_refresh_secs    OXIDP_COMMERCE__JWKS_REFRESH_SECS (300)
  commerce.jwks_min_refetch_secs OXIDP_COMMERCE__JWKS_MIN_REFETCH_SECS (10)
  commerce.jwks_max_stale_secs  OXIDP_COMMERCE__JWKS_MAX_STALE_SECS (86400)
  commerce.token_cache_capacity OXIDP_COMMERCE__TOKEN_CACHE_CAPACITY (100000)
  commerce.introspection        OXIDP_COMMERCE__INTROSPECTION (sensitive; off | sensitive | all)
  commerce.introspection_client_id OXIDP_COMMERCE__INTROSPECTION_CLIENT_ID (required unless off)
  commerce.introspection_client_secret OXIDP_COMMERCE__INTROSPECTION_CLIENT_SECRET (required unless off)
  commerce.introspection_cache_secs OXIDP_COMMERCE__INTROSPECTION_CACHE_SECS (10)
  commerce.introspection_fallback OXIDP_COMMERCE__INTROSPECTION_FALLBACK (local; local | deny)
  commerce.reservation_workers  OXIDP_COMMERCE__RESERVATION_WORKERS (4; 0 = accept only)
  commerce.hold_secs            OXIDP_COMMERCE__HOLD_SECS (600)
  commerce.reservation_lease_secs OXIDP_COMMERCE__RESERVATION_LEASE_SECS (30)
  metrics.bind                  OXIDP_METRICS__BIND (127.0.0.1:9464; off = no metrics listener)
  metrics.token                 OXIDP_METRICS__TOKEN (none; bearer token for /metrics, also on the public listener)";

#[derive(Parser)]
#[command(name = "oxidp", version, about = "OAuth 2.0 / OpenID Connect identity provider", after_help = ENV_HELP)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "OXIDP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage JWT signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage roles, permissions and their assignment (RBAC).
    #[command(subcommand)]
    Role(cli::role::RoleCommand),
    /// Query the audit log (sign-ins, lockouts, administrative changes).
    Audit(cli::audit::AuditArgs),
    /// Run the commerce resource server (its own process and database), or migrate it.
    Commerce {
        #[command(subcommand)]
        command: Option<CommerceCommand>,
    },
}

#[derive(Subcommand)]
enum CommerceCommand {
    /// Serve the commerce API (the default).
    Serve,
    /// Apply pending commerce database migrations and exit.
    Migrate,
    /// Manage sellers (on the commerce database).
    #[command(subcommand)]
    Seller(cli::commerce::SellerCommand),
}

#[derive(Args)]
struct ClientFields {
    /// Display name shown on the consent page.
    #[arg(long)]
    name: Option<String>,
    /// client_secret_basic (default), client_secret_post, private_key_jwt, or none (public client, PKCE required).
    #[arg(long)]
    auth_method: Option<String>,
    /// Exact redirect URI; repeat for several.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Exact post-logout redirect URI; repeat for several.
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// Allowed grant type (authorization_code, refresh_token, client_credentials); repeat for several.
    #[arg(long = "grant-type")]
    grant_types: Vec<String>,
    /// Space-separated scopes the client may request.
    #[arg(long)]
    scopes: Option<String>,
    /// Default audience of its access tokens.
    #[arg(long)]
    audience: Option<String>,
    /// Access-token lifetime in seconds.
    #[arg(long)]
    access_token_ttl: Option<i64>,
    /// Absolute refresh-token lifetime in seconds.
    #[arg(long)]
    refresh_token_ttl: Option<i64>,
    /// ID-token signing algorithm: ES256 (default), RS256 or EdDSA.
    #[arg(long)]
    id_token_alg: Option<String>,
    /// A first-party client: no consent screen.
    #[arg(long, conflicts_with = "require_consent")]
    first_party: bool,
    /// Ask for consent (the default for new clients).
    #[arg(long)]
    require_consent: bool,
    /// Issue refresh tokens even without the offline_access scope.
    #[arg(long)]
    refresh_without_offline_access: Option<bool>,
    /// Require a second factor for every sign-in to this client (true/false).
    #[arg(long)]
    require_mfa: Option<bool>,
    /// One active sign-in per person at this client: tokens from a new sign-in
    /// revoke that person's older grants here (true/false).
    #[arg(long)]
    single_session: Option<bool>,
    /// File with the client's public JWK Set (for private_key_jwt).
    #[arg(long)]
    jwks_file: Option<PathBuf>,
}

impl ClientFields {
    fn into_spec(self) -> anyhow::Result<oxidp::oauth::clients::ClientSpec> {
        let jwks = match &self.jwks_file {
            Some(path) => Some(serde_json::from_str(&std::fs::read_to_string(path)?)?),
            None => None,
        };
        let list = |v: Vec<String>| if v.is_empty() { None } else { Some(v) };
        Ok(oxidp::oauth::clients::ClientSpec {
            id: None,
            name: self.name,
            auth_method: self.auth_method,
            jwks,
            redirect_uris: list(self.redirect_uris),
            post_logout_redirect_uris: list(self.post_logout_redirect_uris),
            grant_types: list(self.grant_types),
            scopes: self.scopes,
            audience: self.audience,
            access_token_ttl: self.access_token_ttl,
            refresh_token_ttl: self.refresh_token_ttl,
            id_token_alg: self.id_token_alg,
            require_consent: if self.first_party {
                Some(false)
            } else if self.require_consent {
                Some(true)
            } else {
                None
            },
            refresh_without_offline_access: self.refresh_without_offline_access,
            require_mfa: self.require_mfa,
            single_session: self.single_session,
        })
    }
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client. A secret, if any, is printed once and never stored in clear.
    Create {
        /// The client_id (default: random).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        fields: ClientFields,
        #[command(flatten)]
        output: Output,
    },
    /// List clients.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
        #[command(flatten)]
        output: Output,
    },
    /// Show one client.
    Show {
        client_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Change a client; options not given stay as they are (list options replace the list).
    Update {
        client_id: String,
        #[command(flatten)]
        fields: ClientFields,
        #[command(flatten)]
        output: Output,
    },
    /// Delete a client with its codes, grants and consents.
    Delete {
        client_id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Issue a new secret; the old one stops working at once. Printed once.
    RotateSecret {
        client_id: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List signing keys and their state.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Rotate: publish a new key now; it signs after keys.publish_ahead_secs (or at once with --now).
    Rotate {
        /// ES256, RS256 or EdDSA (default: all three).
        #[arg(long)]
        alg: Option<String>,
        /// Start signing with the new key immediately (tokens verified by cached JWKS may fail briefly).
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Args)]
struct Output {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PasswordSource {
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. The password is prompted for, or read with --password-stdin.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        /// Mark the e-mail address as verified.
        #[arg(long)]
        email_verified: bool,
        /// Full name (OIDC `name`).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        given_name: Option<String>,
        #[arg(long)]
        family_name: Option<String>,
        #[arg(long)]
        locale: Option<String>,
        /// Create the user without a password (it cannot sign in with one until set).
        #[arg(long, conflicts_with = "password_stdin")]
        no_password: bool,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        output: Output,
    },
    /// List users.
    List {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, default_value_t = 0)]
        offset: i64,
        /// Only accounts still carrying an imported legacy hash (wrapped or bare); prints their count.
        #[arg(long)]
        legacy: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Show one user, by id or username.
    Show {
        user: String,
        #[command(flatten)]
        output: Output,
    },
    /// Disable a user: sign-in is refused and their sessions end.
    Disable {
        user: String,
        #[command(flatten)]
        output: Output,
    },
    /// Enable a disabled user.
    Enable {
        user: String,
        #[command(flatten)]
        output: Output,
    },
    /// Lift a sign-in lockout or delay (after too many failed sign-ins).
    Unlock {
        user: String,
        #[command(flatten)]
        output: Output,
    },
    /// Set a user's password (policy and history apply; also lifts a lockout).
    SetPassword {
        user: String,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        output: Output,
    },
    /// Import users from a JSON Lines file (`-` for standard input). Each line:
    /// {"username": "...", "email": "...", "password_hash": "$2b$..." | "$pbkdf2-sha256$..." | "pbkdf2_sha256$..."}.
    /// Legacy hashes are replaced by argon2id at the user's next sign-in.
    Import {
        file: PathBuf,
        /// Import legacy hashes below the floor (bcrypt cost < 10, PBKDF2 < 100,000 iterations).
        #[arg(long)]
        allow_weak_legacy: bool,
        #[command(flatten)]
        output: Output,
    },
    /// Wrap legacy hashes imported before wrapping existed in argon2id (one-off;
    /// safe to interrupt, re-run, and run while servers are up). Progress on stderr.
    RewrapLegacy {
        #[command(flatten)]
        output: Output,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("oxidp: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    oxidp::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("oxidp: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(config).await,
            Command::Migrate => {
                let state = AppState::build(config, Arc::new(SystemClock)).await?;
                println!("database ({}) is up to date", state.db.backend().name());
                Ok(())
            }
            Command::User(command) => {
                let state = AppState::build(config, Arc::new(SystemClock)).await?;
                user_command(&state, command).await
            }
            Command::Client(command) => {
                let state = AppState::build(config, Arc::new(SystemClock)).await?;
                client_command(&state, command).await
            }
            Command::Keys(command) => {
                let state = AppState::build(config, Arc::new(SystemClock)).await?;
                keys_command(&state, command).await
            }
            Command::Audit(args) => {
                let state = AppState::build(config, Arc::new(SystemClock)).await?;
                cli::audit::run(&state, args).await
            }
            Command::Role(command) => {
                let state = AppState::build(config, Arc::new(SystemClock)).await?;
                cli::role::run(&state, command).await
            }
            Command::Commerce { command } => match command.unwrap_or(CommerceCommand::Serve) {
                CommerceCommand::Serve => serve_commerce(config).await,
                CommerceCommand::Migrate => {
                    let db = oxidp::commerce::open_database(&config).await?;
                    println!("commerce database ({}) is up to date", db.backend().name());
                    Ok(())
                }
                CommerceCommand::Seller(command) => cli::commerce::run(&config, command).await,
            },
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("oxidp: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve_commerce(config: Config) -> anyhow::Result<()> {
    let app = oxidp::commerce::CommerceApp::build(&config, Arc::new(SystemClock)).await?;
    tracing::info!(
        bind = %config.commerce.bind,
        issuer = %config.commerce_issuer(),
        audience = %config.commerce_audience(),
        "commerce API listening"
    );
    app.run_until_stopped().await?;
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let issuer = config.issuer();
    let bind = config.bind.clone();
    let app = Application::build(config, Arc::new(SystemClock)).await?;
    match oxidp::admin::bootstrap(&app.state()).await {
        Ok(Some(admin)) => announce_admin(&admin, &issuer),
        Ok(None) => {}
        Err(error) => anyhow::bail!("creating the first administrator: {error}"),
    }
    match accounts::legacy::recompute(&app.state()).await {
        Ok(stats) if stats.bare > 0 => tracing::warn!(
            bare = stats.bare,
            "accounts with a bare (unwrapped) legacy password hash remain: run `oxidp user rewrap-legacy`"
        ),
        Ok(stats) if stats.accounts > 0 => tracing::info!(
            legacy_accounts = stats.accounts,
            "accounts still on a wrapped legacy password hash; each moves to argon2id at its next sign-in"
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "counting legacy password hashes failed"),
    }
    tracing::info!(%issuer, %bind, port = app.port(), metrics_port = app.metrics_port(), "oxidp is listening");
    app.run_until_stopped().await?;
    tracing::info!("oxidp stopped");
    Ok(())
}

/// The one time the generated administrator password is shown: a single log event
/// (the "printed once to the log"; it is never stored or logged again).
fn announce_admin(admin: &oxidp::admin::Bootstrapped, issuer: &str) {
    match &admin.generated_password {
        Some(password) => tracing::warn!(
            username = %admin.username,
            initial_password = %password,
            sign_in = %format!("{issuer}/login"),
            "FIRST START: created the administrator with the `admin` role; this password is shown only once, change it after signing in"
        ),
        None => tracing::warn!(
            username = %admin.username,
            "FIRST START: created the administrator with the password from admin.initial_password"
        ),
    }
}

fn read_password(source: &PasswordSource) -> anyhow::Result<Password> {
    if source.password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        return Ok(Password::new(line));
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("no password given: use --password-stdin, or run in a terminal to be prompted");
    }
    let first = rpassword::prompt_password("New password: ")?;
    let second = rpassword::prompt_password("Repeat password: ")?;
    if first != second {
        anyhow::bail!("the passwords do not match");
    }
    Ok(Password::new(&first))
}

#[derive(serde::Serialize)]
struct UserView<'a> {
    #[serde(flatten)]
    user: &'a UserRow,
    password_scheme: Option<&'static str>,
}

fn view(user: &UserRow) -> UserView<'_> {
    UserView {
        user,
        password_scheme: user.password_hash.as_deref().map(oxidp::authn::password::scheme_of),
    }
}

fn print_user(user: &UserRow, output: &Output) -> anyhow::Result<()> {
    if output.json {
        println!("{}", serde_json::to_string_pretty(&view(user))?);
    } else {
        println!("id:             {}", user.id);
        println!("username:       {}", user.username);
        println!(
            "email:          {}{}",
            user.email.as_deref().unwrap_or("-"),
            if user.email_verified { " (verified)" } else { "" }
        );
        println!("name:           {}", user.name.as_deref().unwrap_or("-"));
        println!("disabled:       {}", user.disabled);
        println!(
            "password:       {}",
            user.password_hash
                .as_deref()
                .map(oxidp::authn::password::scheme_of)
                .unwrap_or("none")
        );
        println!("created:        {}", oxidp::views::format_time(user.created_at));
    }
    Ok(())
}

async fn user_command(state: &AppState, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            username,
            email,
            email_verified,
            name,
            given_name,
            family_name,
            locale,
            no_password,
            password,
            output,
        } => {
            let credential = if no_password {
                Credential::None
            } else {
                Credential::Password(read_password(&password)?)
            };
            let user = accounts::create(
                state,
                &Actor::cli(),
                NewAccount {
                    username,
                    email,
                    email_verified,
                    profile: Profile {
                        name,
                        given_name,
                        family_name,
                        locale,
                        ..Profile::default()
                    },
                    credential,
                    disabled: false,
                },
            )
            .await?;
            print_user(&user, &output)
        }
        UserCommand::List {
            limit,
            offset,
            legacy,
            output,
        } => {
            let (limit, offset) = (limit.clamp(1, 1000), offset.max(0));
            let users = if legacy {
                let stats = accounts::legacy::recompute(state).await?;
                let users = accounts::legacy::list(state, limit, offset).await?;
                if output.json {
                    let views: Vec<_> = users.iter().map(view).collect();
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({
                            "legacy_accounts": stats.accounts,
                            "bare": stats.bare,
                            "users": views,
                        }))?
                    );
                    return Ok(());
                }
                eprintln!(
                    "{} account(s) still carry a legacy hash ({} not yet wrapped: run `oxidp user rewrap-legacy`)",
                    stats.accounts, stats.bare
                );
                users
            } else {
                accounts::list(state, limit, offset).await?
            };
            if output.json {
                let views: Vec<_> = users.iter().map(view).collect();
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                println!("{:<36}  {:<24}  {:<32}  status", "id", "username", "email");
                for user in &users {
                    println!(
                        "{:<36}  {:<24}  {:<32}  {}",
                        user.id,
                        user.username,
                        user.email.as_deref().unwrap_or("-"),
                        if user.disabled { "disabled" } else { "active" }
                    );
                }
            }
            Ok(())
        }
        UserCommand::Show { user, output } => print_user(&accounts::find(state, &user).await?, &output),
        UserCommand::Disable { user, output } => {
            let user = accounts::set_disabled(state, &Actor::cli(), &user, true).await?;
            print_user(&user, &output)
        }
        UserCommand::Enable { user, output } => {
            let user = accounts::set_disabled(state, &Actor::cli(), &user, false).await?;
            print_user(&user, &output)
        }
        UserCommand::Unlock { user, output } => {
            let user = accounts::find(state, &user).await?;
            oxidp::authn::login::unlock(state, &Actor::cli(), &user).await?;
            if output.json {
                println!("{}", serde_json::json!({ "id": user.id, "unlocked": true }));
            } else {
                println!("{} may sign in again", user.username);
            }
            Ok(())
        }
        UserCommand::SetPassword { user, password, output } => {
            let user = accounts::find(state, &user).await?;
            let password = read_password(&password)?;
            accounts::set_password(state, &Actor::cli(), &user, &password, None).await?;
            if output.json {
                println!("{}", serde_json::json!({ "id": user.id, "password_changed": true }));
            } else {
                println!("password changed for {}", user.username);
            }
            Ok(())
        }
        UserCommand::Import {
            file,
            allow_weak_legacy,
            output,
        } => {
            let mut text = String::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)?;
            } else {
                text = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            }
            let outcomes = accounts::import(state, &Actor::cli(), &text, allow_weak_legacy).await;
            let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
            if output.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "imported": outcomes.len() - failed,
                        "failed": failed,
                        "results": outcomes,
                    }))?
                );
            } else {
                for outcome in &outcomes {
                    match &outcome.error {
                        None => println!(
                            "line {}: imported {}",
                            outcome.line,
                            outcome.username.as_deref().unwrap_or("")
                        ),
                        Some(error) => println!("line {}: FAILED: {error}", outcome.line),
                    }
                }
                println!("{} imported, {failed} failed", outcomes.len() - failed);
            }
            if failed > 0 {
                anyhow::bail!("{failed} record(s) were not imported");
            }
            Ok(())
        }
        UserCommand::RewrapLegacy { output } => {
            let started = std::time::Instant::now();
            let report = accounts::legacy::rewrap(state, &Actor::cli(), |done, total| {
                eprint!("\rrewrap-legacy: {done}/{total} legacy rows scanned");
            })
            .await;
            eprintln!();
            let report = report?;
            let stats = accounts::legacy::recompute(state).await?;
            if output.json {
                println!(
                    "{}",
                    serde_json::json!({ "scanned": report.scanned, "wrapped": report.wrapped,
                        "skipped": report.skipped, "legacy_accounts": stats.accounts, "bare": stats.bare })
                );
            } else {
                println!(
                    "{} legacy hash(es) wrapped in argon2id ({} changed meanwhile, left alone) in {:.1} s; \
                     {} account(s) still on a legacy hash, {} bare",
                    report.wrapped,
                    report.skipped,
                    started.elapsed().as_secs_f64(),
                    stats.accounts,
                    stats.bare
                );
            }
            Ok(())
        }
    }
}

fn print_client(created: &oxidp::oauth::clients::Client, secret: Option<&str>, output: &Output) -> anyhow::Result<()> {
    let mut view = oxidp::oauth::clients::describe(created);
    if let Some(secret) = secret {
        view["client_secret"] = serde_json::json!(secret);
    }
    if output.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        for (key, value) in view.as_object().into_iter().flatten() {
            println!(
                "{key:<28} {}",
                value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())
            );
        }
        if secret.is_some() {
            println!("\nThe client secret is shown only this once. Store it now.");
        }
    }
    Ok(())
}

async fn client_command(state: &AppState, command: ClientCommand) -> anyhow::Result<()> {
    use oxidp::oauth::clients;
    match command {
        ClientCommand::Create { id, fields, output } => {
            let mut spec = fields.into_spec()?;
            spec.id = id;
            let created = clients::create(state, &Actor::cli(), spec).await?;
            print_client(&created.client, created.secret.as_deref(), &output)
        }
        ClientCommand::List { limit, offset, output } => {
            let all = clients::list(state, limit.clamp(1, 1000), offset.max(0)).await?;
            if output.json {
                let views: Vec<_> = all.iter().map(clients::describe).collect();
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                println!("{:<34}  {:<24}  {:<20}  grants", "client_id", "name", "auth_method");
                for c in &all {
                    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.name()).collect();
                    println!(
                        "{:<34}  {:<24}  {:<20}  {}",
                        c.id,
                        c.name,
                        c.auth_method.name(),
                        grants.join(",")
                    );
                }
            }
            Ok(())
        }
        ClientCommand::Show { client_id, output } => {
            print_client(&clients::find(state, &client_id).await?, None, &output)
        }
        ClientCommand::Update {
            client_id,
            fields,
            output,
        } => {
            let updated = clients::update(state, &Actor::cli(), &client_id, fields.into_spec()?).await?;
            print_client(&updated.client, updated.secret.as_deref(), &output)
        }
        ClientCommand::Delete { client_id, output } => {
            clients::delete(state, &Actor::cli(), &client_id).await?;
            if output.json {
                println!("{}", serde_json::json!({ "client_id": client_id, "deleted": true }));
            } else {
                println!("client {client_id} deleted");
            }
            Ok(())
        }
        ClientCommand::RotateSecret { client_id, output } => {
            let secret = clients::rotate_secret(state, &Actor::cli(), &client_id).await?;
            if output.json {
                println!(
                    "{}",
                    serde_json::json!({ "client_id": client_id, "client_secret": secret })
                );
            } else {
                println!(
                    "new client secret for {client_id}: {secret}\nShown only this once; the old secret no longer works."
                );
            }
            Ok(())
        }
    }
}

async fn keys_command(state: &AppState, command: KeysCommand) -> anyhow::Result<()> {
    use oxidp::oidc::keys::{self, SigningAlg};
    let now = state.clock.now();
    match command {
        KeysCommand::List { output } => {
            let rows = state.db.run(oxidp::db::models::keys::all).await?;
            let views: Vec<serde_json::Value> = rows
                .iter()
                .map(|k| {
                    let status = if k.expires_at.is_some_and(|e| e <= now) {
                        "removed"
                    } else if k.retires_at.is_some_and(|r| r <= now) {
                        "retired (verifies only)"
                    } else if k.activates_at > now {
                        "published (signs later)"
                    } else {
                        "active"
                    };
                    serde_json::json!({
                        "kid": k.kid, "alg": k.alg, "status": status, "created_at": k.created_at,
                        "activates_at": k.activates_at, "retires_at": k.retires_at, "expires_at": k.expires_at,
                    })
                })
                .collect();
            if output.json {
                println!("{}", serde_json::to_string_pretty(&views)?);
            } else {
                println!("{:<18} {:<6} {:<24} created", "kid", "alg", "status");
                for v in &views {
                    println!(
                        "{:<18} {:<6} {:<24} {}",
                        v["kid"].as_str().unwrap_or_default(),
                        v["alg"].as_str().unwrap_or_default(),
                        v["status"].as_str().unwrap_or_default(),
                        oxidp::views::format_time(v["created_at"].as_i64().unwrap_or_default())
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Rotate {
            alg,
            now: immediately,
            output,
        } => {
            let algs = match alg {
                Some(name) => {
                    vec![SigningAlg::parse(&name).ok_or_else(|| anyhow::anyhow!("--alg: ES256, RS256 or EdDSA"))?]
                }
                None => SigningAlg::ALL.to_vec(),
            };
            let ahead = if immediately {
                0
            } else {
                state.config.keys.publish_ahead_secs
            };
            let mut rotated = Vec::new();
            for alg in algs {
                let row = keys::rotate(
                    &state.db,
                    &state.secrets,
                    alg,
                    now,
                    ahead,
                    state.config.keys.retain_secs,
                )
                .await?;
                rotated.push(serde_json::json!({ "kid": row.kid, "alg": row.alg, "activates_at": row.activates_at }));
            }
            if output.json {
                println!("{}", serde_json::to_string_pretty(&rotated)?);
            } else {
                for r in &rotated {
                    println!(
                        "new {} key {} signs from {}",
                        r["alg"].as_str().unwrap_or_default(),
                        r["kid"].as_str().unwrap_or_default(),
                        oxidp::views::format_time(r["activates_at"].as_i64().unwrap_or_default())
                    );
                }
            }
            Ok(())
        }
    }
}
