//! The commerce resource server (`oxidp commerce`): its own process, listener and
//! database. Sellers, products, options and combinations, the product lifecycle;
//! stock, idempotency keys and asynchronous reservations with their workers.
//! It trusts tokens through `crate::resource_server` only (discovery + JWKS over
//! HTTP) and imports none of the IdP's internals.

pub mod domain;
pub mod http;
pub mod metrics;
pub mod rabbitmq;
pub mod saga_runner;
pub mod storage;
pub mod workers;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpServer, web};

use crate::clock::Clock;
use crate::config::{Config, IntrospectionMode};
use crate::db::{Db, PoolSettings};
use crate::resource_server::{IntrospectionSettings, ResourceServer, Settings};

/// What commerce handlers share: the commerce database and the clock.
pub struct CommerceState {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    /// The `realm` of bearer challenges.
    pub realm: String,
    /// Wakes a local reservation worker (or the RabbitMQ relay) when a request was queued.
    pub queue_wake: Arc<tokio::sync::Notify>,
    /// Reservation and queue counters (`/metrics`, `/readyz`).
    pub queue_metrics: Arc<metrics::QueueMetrics>,
    /// Whether RabbitMQ is the queue (else the database), and whether this
    /// instance consumes (`commerce.reservation_workers > 0`).
    pub queue_rabbitmq: bool,
    pub queue_consumers: bool,
    /// Open reservation event streams (Server-Sent Events), at most `http::reservations::MAX_STREAMS`.
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Set on SIGTERM/SIGINT: `/readyz` answers 503 while the balancer drains us.
    pub draining: crate::shutdown::Draining,
    /// Drives order sagas from requests (lease owner, payment deadline).
    pub sagas: domain::saga::Driver,
}

/// Opens the commerce database and applies its migrations.
pub async fn open_database(config: &Config) -> anyhow::Result<Db> {
    let db = Db::connect(
        &config.commerce_database_url(),
        &PoolSettings {
            max_size: config.database.pool_size,
            connect_timeout: Duration::from_secs(config.database.connect_timeout_secs),
            busy_timeout: Duration::from_millis(config.database.busy_timeout_ms),
            sqlite_cache_kib: config.database.sqlite_cache_kib,
        },
    )
    .map_err(|e| anyhow::anyhow!("commerce.{e}"))?;
    storage::migrations::run(&db).await?;
    Ok(db)
}

/// Introspection settings from `commerce.introspection*` (validated at start).
fn introspection_settings(config: &Config) -> IntrospectionSettings {
    let c = &config.commerce;
    match (&c.introspection_client_id, &c.introspection_client_secret) {
        (Some(client_id), Some(secret)) if c.introspection != IntrospectionMode::Off => IntrospectionSettings {
            mode: c.introspection,
            client_id: client_id.clone(),
            client_secret: secret.clone(),
            cache_secs: c.introspection_cache_secs as i64,
            fallback: c.introspection_fallback,
            cache_capacity: c.token_cache_capacity,
        },
        _ => IntrospectionSettings::off(),
    }
}

pub struct CommerceApp {
    port: u16,
    server: Server,
    pub state: web::Data<CommerceState>,
    pub resource_server: web::Data<ResourceServer>,
    refresh: tokio::task::JoinHandle<()>,
    /// Reservation workers, hold sweeper, idempotency purge.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// `http.drain_secs`.
    drain_secs: u64,
}

impl CommerceApp {
    pub async fn build(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&config.commerce.bind).map_err(|e| {
            anyhow::anyhow!(
                "configuration key `commerce.bind`: cannot listen on {}: {e}",
                config.commerce.bind
            )
        })?;
        Self::with_listener(config, clock, listener).await
    }

    /// Opens the database, loads the persisted key set, fetches the current one
    /// (an unreachable issuer is logged, not fatal), starts the background refresh
    /// and the listener.
    pub async fn with_listener(config: &Config, clock: Arc<dyn Clock>, listener: TcpListener) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        config.validate_commerce_introspection()?;
        let db = open_database(config).await?;
        let audience = config.commerce_audience();
        let settings = Settings {
            issuer: config.commerce_issuer(),
            realm: audience.clone(),
            audience,
            refresh_secs: config.commerce.jwks_refresh_secs,
            min_refetch_secs: config.commerce.jwks_min_refetch_secs,
            max_stale_secs: config.commerce.jwks_max_stale_secs,
            token_cache_capacity: config.commerce.token_cache_capacity,
            introspection: introspection_settings(config),
        };
        let resource_server = web::Data::new(ResourceServer::new(settings, db.clone(), clock.clone()).await?);
        let first_wait = match resource_server.keys.refresh().await {
            Ok(max_age) => max_age.unwrap_or(config.commerce.jwks_refresh_secs),
            Err(_) => config.commerce.jwks_min_refetch_secs.max(1) as u64,
        }
        .clamp(1, config.commerce.jwks_refresh_secs);
        let refresh = resource_server.keys.spawn_refresh(Duration::from_secs(first_wait));
        let queue_wake = Arc::new(tokio::sync::Notify::new());
        let queue_metrics = Arc::new(metrics::QueueMetrics::new());
        let rabbitmq = config.commerce_queue_url().map(|url| rabbitmq::Settings {
            url: url.clone(),
            queue: config.commerce.queue_name.clone(),
            max_deliveries: config.commerce.queue_max_deliveries,
        });
        let queue_rabbitmq = rabbitmq.is_some();
        let background = workers::spawn(
            db.clone(),
            clock.clone(),
            workers::Settings {
                workers: config.commerce.reservation_workers,
                hold_secs: config.commerce.hold_secs,
                lease_secs: config.commerce.reservation_lease_secs,
                rabbitmq,
            },
            queue_wake.clone(),
            queue_metrics.clone(),
        );
        let sagas = domain::saga::Driver {
            owner: format!("commerce-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            lease_secs: domain::saga::LEASE_SECS,
            settings: domain::saga::Settings {
                payment_timeout_secs: config.commerce.payment_timeout_secs,
            },
        };
        let mut background = background;
        background.push(saga_runner::spawn(
            db.clone(),
            clock.clone(),
            sagas.clone(),
            Arc::new(tokio::sync::Notify::new()),
        ));
        let state = web::Data::new(CommerceState {
            db,
            clock,
            realm: config.commerce_audience(),
            queue_wake,
            queue_metrics,
            queue_rabbitmq,
            queue_consumers: config.commerce.reservation_workers > 0,
            event_streams: Arc::new(tokio::sync::Semaphore::new(http::reservations::MAX_STREAMS)),
            draining: crate::shutdown::Draining::default(),
            sagas,
        });
        let workers = match config.http.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        let (app_state, app_rs) = (state.clone(), resource_server.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(app_rs.clone())
                .configure(http::configure)
                .wrap(
                    DefaultHeaders::new()
                        .add(("X-Content-Type-Options", "nosniff"))
                        .add(("Referrer-Policy", "no-referrer")),
                )
        })
        .workers(workers)
        .shutdown_timeout(10)
        // Signals are ours (`run_until_signalled`): drain first, then stop.
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            state,
            resource_server,
            refresh,
            background,
            drain_secs: config.http.drain_secs,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from elsewhere (tests, signals).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The background key-set refresh; aborted when the server stops.
    pub fn refresh_task(&self) -> tokio::task::AbortHandle {
        self.refresh.abort_handle()
    }

    /// The background tasks (workers, sweeper); aborted when the server stops.
    pub fn background_tasks(&self) -> Vec<tokio::task::AbortHandle> {
        self.background.iter().map(|h| h.abort_handle()).collect()
    }

    /// The binary's way to serve: on SIGTERM/SIGINT `/readyz` answers 503 for
    /// `http.drain_secs` while requests are still served, then the server stops
    /// accepting and in-flight requests finish (`crate::shutdown`).
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        let watcher = tokio::spawn(crate::shutdown::on_signal(
            vec![self.server.handle()],
            self.state.draining.clone(),
            Duration::from_secs(self.drain_secs),
        ));
        let result = self.run_until_stopped().await;
        watcher.abort();
        result
    }

    /// Serves until stopped through `handle()` (tests).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.refresh.abort();
        self.background.iter().for_each(|h| h.abort());
        result
    }
}
