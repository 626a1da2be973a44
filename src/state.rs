//! Application state shared by every request handler and CLI command: no globals.

use std::sync::Arc;

use crate::authn::password::PasswordHasher;
use crate::authn::risk::Limiters;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{Db, PoolSettings};
use crate::oauth::clients::ClientRegistry;
use crate::oidc::keys::KeyStore;
use crate::rbac::claims::RbacCache;
use crate::secrets::ServerSecrets;

pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub secrets: Arc<ServerSecrets>,
    pub hasher: Arc<PasswordHasher>,
    /// HMAC key for CSRF tokens, derived from the key-encryption secret.
    pub csrf_key: [u8; 32],
    /// JWT signing keys, shared through the database, refreshed periodically.
    pub keys: KeyStore,
    /// Registered clients, cached in memory.
    pub clients: ClientRegistry,
    /// Roles and permissions of clients (service accounts), cached like clients.
    /// These two and `keys` are dropped or reloaded on the other instances'
    /// notifications (PostgreSQL, `crate::invalidation`).
    pub rbac: RbacCache,
    /// Sign-in and client-authentication limiters (the sign-in ones in Redis
    /// when `redis_url` is set).
    pub limiters: Limiters,
    /// HMAC key for username counter keys and known-device cookies.
    pub login_key: [u8; 32],
    /// Process counters for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// client_credentials issuances waiting to be audited.
    pub issuance: crate::audit::IssuanceCounter,
    /// Set on SIGTERM/SIGINT: `/readyz` answers 503 while the balancer drains us.
    pub draining: crate::shutdown::Draining,
    /// The WebAuthn relying party (`[webauthn]`); `None` when security keys and
    /// passkeys are off.
    pub webauthn: Option<Arc<webauthn_rs::Webauthn>>,
}

impl AppState {
    /// Connects to the database, applies migrations, loads (or generates) secrets
    /// and checks them against the ones the database was set up with.
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        // What the configuration alone decides is settled before the database is
        // touched or secrets are written.
        let webauthn = crate::authn::webauthn::relying_party::from_config(&config)?.map(Arc::new);
        if webauthn.is_none() {
            tracing::warn!(
                issuer = %config.issuer(),
                "security keys and passkeys are turned off (webauthn.enabled = false, or the origin is an IP address)"
            );
        }
        let url = config.database_url();
        let db = Db::connect(
            &url,
            &PoolSettings {
                max_size: config.database.pool_size,
                connect_timeout: std::time::Duration::from_secs(config.database.connect_timeout_secs),
                busy_timeout: std::time::Duration::from_millis(config.database.busy_timeout_ms),
                sqlite_cache_kib: config.database.sqlite_cache_kib,
            },
        )?;
        let applied = db
            .migrate()
            .await
            .map_err(|e| anyhow::anyhow!("database ({}): {e:#}", db.backend().name()))?;
        if !applied.is_empty() {
            tracing::info!(backend = db.backend().name(), migrations = ?applied, "database migrated");
        }
        let secrets = ServerSecrets::load_or_generate(&config)?;
        secrets.check_against(&db).await?;
        let hasher = PasswordHasher::new(&config.argon2, secrets.pepper())?;
        let csrf_key = secrets.derive_key("csrf");
        let login_key = secrets.derive_key("login");
        let metrics = crate::metrics::Metrics::default();
        let mut limiters = Limiters::new(&config.login);
        if let Some(url) = &config.redis_url {
            use secrecy::ExposeSecret;
            let shared = crate::authn::shared_limits::SharedLimits::new(
                url.expose_secret(),
                config.issuer_str(),
                login_key,
                metrics.rate_limiter.clone(),
            )?;
            limiters = limiters.with_shared(shared);
        }
        let secrets = Arc::new(secrets);
        let keys = KeyStore::default();
        keys.initialize(&db, &secrets, clock.now()).await?;
        let cache_ttl = std::time::Duration::from_secs(config.tokens.client_cache_secs);
        let clients = ClientRegistry::new(cache_ttl);
        let rbac = RbacCache::new(cache_ttl);
        Ok(Self {
            config: Arc::new(config),
            db,
            clock,
            secrets,
            hasher,
            csrf_key,
            keys,
            clients,
            rbac,
            limiters,
            login_key,
            metrics,
            issuance: Default::default(),
            draining: Default::default(),
            webauthn,
        })
    }

    /// What a WebAuthn ceremony needs, with the time now.
    pub fn webauthn_ceremony(&self) -> crate::authn::webauthn::relying_party::Ceremony<'_> {
        crate::authn::webauthn::relying_party::Ceremony {
            db: &self.db,
            rp: self.webauthn.as_deref(),
            now: self.clock.now(),
        }
    }

    /// What an RBAC change needs, with the time now.
    pub fn rbac_change(&self) -> crate::rbac::Change<'_> {
        crate::rbac::Change {
            db: &self.db,
            cache: &self.rbac,
            now: self.clock.now(),
        }
    }
}

/// What the invalidation listener drops when another instance (or the CLI)
/// announces a change, and everything after a reconnection.
impl crate::invalidation::Caches for AppState {
    async fn invalidate(&self, change: crate::invalidation::Change) {
        use crate::invalidation::Change;
        match change {
            Change::Client(id) => {
                self.clients.forget(&id);
                self.rbac.forget_client(&id);
            }
            Change::Rbac => self.rbac.clear(),
            Change::Keys => self.reload_keys().await,
        }
    }

    async fn invalidate_all(&self) {
        self.clients.clear();
        self.rbac.clear();
        self.reload_keys().await;
    }
}

impl AppState {
    async fn reload_keys(&self) {
        if let Err(error) = self.keys.refresh(&self.db, &self.secrets, self.clock.now()).await {
            tracing::warn!(%error, "signing key refresh after an invalidation failed; the periodic refresh retries");
        }
    }
}
