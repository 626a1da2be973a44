//! Builds the HTTP server: state, middleware, routes, listener; and the background
//! jobs. `Application::build` binds (port 0 in tests) and returns before serving.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

use crate::clock::Clock;
use crate::config::Config;
use crate::http;
use crate::state::AppState;

pub struct Application {
    port: u16,
    server: Server,
    /// The metrics listener (`metrics.bind`), when it is on.
    metrics: Option<(u16, Server)>,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&config.bind)
            .map_err(|e| anyhow::anyhow!("configuration key `bind`: cannot listen on {}: {e}", config.bind))?;
        let state = web::Data::new(AppState::build(config, clock).await?);
        Self::with_listener(state, listener)
    }

    pub fn with_listener(state: web::Data<AppState>, listener: TcpListener) -> anyhow::Result<Self> {
        let port = listener.local_addr()?.port();
        let workers = match state.config.http.workers {
            0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            n => n,
        };
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .configure(|cfg| http::routes::configure(cfg, &app_state))
                .wrap(http::middleware::security_headers(&app_state.config))
                .wrap(actix_web::middleware::from_fn(http::middleware::request_log))
        })
        .workers(workers)
        .shutdown_timeout(30)
        // Signals are ours (`run_until_signalled`): drain first, then stop.
        .disable_signals()
        .listen(listener)?
        .run();
        let metrics = Self::metrics_server(&state)?;
        spawn_housekeeping(state.clone());
        Ok(Self {
            port,
            server,
            metrics,
            state,
        })
    }

    /// `/metrics` on its own listener (loopback by default), away from the public one.
    fn metrics_server(state: &web::Data<AppState>) -> anyhow::Result<Option<(u16, Server)>> {
        let Some(addr) = state.config.metrics.listen_addr()? else {
            return Ok(None);
        };
        let listener = TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("configuration key `metrics.bind`: cannot listen on {addr}: {e}"))?;
        let port = listener.local_addr()?.port();
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .configure(http::routes::configure_metrics)
        })
        .workers(1)
        .shutdown_timeout(5)
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Some((port, server)))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server from elsewhere (tests stop the IdP to drill an outage).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The port of the metrics listener, if it is on.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// The binary's way to serve: on SIGTERM/SIGINT `/readyz` answers 503 for
    /// `http.drain_secs` while requests are still served (the balancer drains this
    /// instance), then it stops accepting and in-flight requests finish
    /// (`crate::shutdown`).
    pub async fn run_until_signalled(self, signals: crate::shutdown::Signals) -> std::io::Result<()> {
        let mut servers = vec![self.server.handle()];
        servers.extend(self.metrics.as_ref().map(|(_, server)| server.handle()));
        let draining = self.state.draining.clone();
        let drain = Duration::from_secs(self.state.config.http.drain_secs);
        crate::shutdown::run_until_signalled(self.run_until_stopped(), servers, draining, drain, signals).await
    }

    /// Serves until stopped through `handle()` (tests), then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics.map(|(_, server)| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        self.server.await?;
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        // The last minute's client_credentials issuances still go to the audit log.
        if let Err(error) =
            crate::audit::flush_issuance(&self.state.db, &self.state.issuance, self.state.clock.now(), 60).await
        {
            tracing::warn!(%error, "writing the last client_credentials audit events failed");
        }
        Ok(())
    }
}

/// Background jobs. Every instance runs them; each is idempotent.
/// - PostgreSQL: the cache invalidation listener (`crate::invalidation`);
/// - key refresh: picks up keys created or rotated by other instances or the CLI
///   (the fallback when a notification was missed);
/// - automatic key rotation (`keys.rotation_days`);
/// - retention (`housekeeping::purge_once`, every `database.purge_interval_secs`):
///   expired sessions, requests, codes, grants, revocations, assertion ids, audit
///   events and sign-in attempts past their retention, in small batches; idle
///   limiter state is dropped;
/// - SQLite: `wal_checkpoint(TRUNCATE)` every `database.wal_checkpoint_secs`, or
///   within a second once the WAL reaches `housekeeping::WAL_CHECKPOINT_BYTES`.
fn spawn_housekeeping(state: web::Data<AppState>) {
    if state.db.backend() == crate::db::Backend::Postgres {
        tokio::spawn(crate::invalidation::listen(
            state.config.database_url(),
            state.clone().into_inner(),
            state.metrics.invalidation.clone(),
        ));
    }
    let keys_state = state.clone();
    tokio::spawn(async move {
        let period = Duration::from_secs(keys_state.config.keys.refresh_secs.max(1));
        let mut interval = tokio::time::interval(period);
        interval.tick().await;
        loop {
            interval.tick().await;
            let s = &keys_state;
            let now = s.clock.now();
            if let Err(error) = crate::oidc::keys::rotate_due(&s.db, &s.secrets, now, &s.config.keys).await {
                tracing::warn!(error = %error, "automatic key rotation failed");
            }
            if let Err(error) = s.keys.refresh(&s.db, &s.secrets, now).await {
                tracing::warn!(error = %error, "signing key refresh failed");
            }
        }
    });
    let memory_state = state.clone();
    tokio::spawn(async move {
        // argon2 regions unused for a while go back to the kernel (issue 12 item 11),
        // and the gauge of accounts still on a legacy hash follows upgrades elsewhere.
        let mut interval = tokio::time::interval(crate::authn::password::POOL_IDLE);
        let mut ticks = 0u64;
        loop {
            interval.tick().await;
            memory_state.hasher.release_idle_memory();
            ticks += 1;
            // Heap pages freed on other threads' glibc arenas (a pooled SQLite
            // connection's page cache moves between blocking threads) stay in the
            // RSS until trimmed; every 30 s, whether or not argon2 released anything.
            if ticks.is_multiple_of(6) {
                crate::heap::trim();
            }
            if ticks.is_multiple_of(12)
                && let Err(error) = crate::accounts::legacy::refresh_count(&memory_state).await
            {
                tracing::warn!(%error, "counting legacy password hashes failed");
            }
        }
    });
    let audit_state = state.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(60));
        interval.tick().await;
        loop {
            interval.tick().await;
            if let Err(error) =
                crate::audit::flush_issuance(&audit_state.db, &audit_state.issuance, audit_state.clock.now(), 60).await
            {
                tracing::warn!(%error, "writing client_credentials audit events failed; kept for the next minute");
            }
        }
    });
    let wal_state = state.clone();
    let checkpoint_every = state.config.database.wal_checkpoint_secs;
    if checkpoint_every > 0 && state.db.sqlite_path().is_some() {
        tokio::spawn(async move {
            let s = &wal_state;
            let normal = Duration::from_millis(s.config.database.busy_timeout_ms);
            let period = Duration::from_secs(checkpoint_every);
            let Some(path) = s.db.sqlite_path().map(|p| p.to_owned()) else {
                return;
            };
            // Look at the WAL's size every second; checkpoint when due (see `checkpoint_due`).
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = tokio::time::Instant::now();
            loop {
                interval.tick().await;
                let wal = crate::db::maintenance::wal_bytes(&path);
                if !crate::housekeeping::checkpoint_due(wal, last.elapsed(), period) {
                    continue;
                }
                last = tokio::time::Instant::now();
                match crate::housekeeping::checkpoint_once(&s.db, &s.metrics, normal).await {
                    Ok(Some(c)) if c.busy => tracing::debug!("WAL checkpoint busy; retried next run"),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "WAL checkpoint failed"),
                }
            }
        });
    }
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(state.config.database.purge_interval_secs));
        let retention = crate::housekeeping::Retention {
            audit_days: state.config.audit.retention_days,
            attempts_days: state.config.login.attempts_retention_days,
            device_days: state.config.login.device_cookie_days,
        };
        loop {
            interval.tick().await;
            state.limiters.shrink();
            let now = state.clock.now();
            let purged = crate::housekeeping::purge_once(&state.db, now, retention).await;
            match (crate::authn::session::purge_expired(&state).await, purged) {
                (Ok(a), Ok(b)) => {
                    let removed = a + b.rows;
                    state
                        .metrics
                        .rows_purged
                        .fetch_add(removed as u64, std::sync::atomic::Ordering::Relaxed);
                    if removed > 0 {
                        tracing::debug!(
                            removed,
                            batches = b.batches,
                            longest_batch_ms = b.longest_batch.as_millis() as u64,
                            slow_batches = b.slow_batches,
                            "expired rows purged"
                        );
                    }
                }
                (Err(error), _) | (_, Err(error)) => tracing::warn!(%error, "purge failed"),
            }
        }
    });
}
