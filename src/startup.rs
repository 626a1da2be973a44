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
        .listen(listener)?
        .run();
        spawn_housekeeping(state.clone());
        Ok(Self { port, server, state })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGINT/SIGTERM, then stops accepting and lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await?;
        // The last minute's client_credentials issuances still go to the audit log.
        if let Err(error) = crate::audit::flush_issuance(&self.state, 60).await {
            tracing::warn!(%error, "writing the last client_credentials audit events failed");
        }
        Ok(())
    }
}

/// Background jobs. Every instance runs them; each is idempotent.
/// - key refresh: picks up keys created or rotated by other instances or the CLI;
/// - automatic key rotation (`keys.rotation_days`);
/// - purge of expired sessions, requests, codes, grants, revocations, assertion ids,
///   sign-in attempts older than 90 days; idle limiter state is dropped.
fn spawn_housekeeping(state: web::Data<AppState>) {
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
            if let Err(error) = crate::audit::flush_issuance(&audit_state, 60).await {
                tracing::warn!(%error, "writing client_credentials audit events failed; kept for the next minute");
            }
        }
    });
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(600));
        loop {
            interval.tick().await;
            state.limiters.shrink();
            let now = state.clock.now();
            let purged = state
                .db
                .run(move |conn| {
                    Ok(crate::db::models::codes::purge(conn, now)?
                        + crate::db::models::grants::purge(conn, now)?
                        + crate::db::models::clients::purge_assertions(conn, now)?
                        // Sign-in history (risk signals, the account page) is kept 90 days.
                        + crate::db::models::logins::purge_attempts(conn, now - 90 * 86_400)?
                        + crate::db::models::mfa::purge(conn, now)?
                        + crate::db::models::webauthn::purge(conn, now)?)
                })
                .await;
            match (crate::authn::session::purge_expired(&state).await, purged) {
                (Ok(a), Ok(b)) if a + b > 0 => tracing::debug!(removed = a + b, "expired rows purged"),
                (Err(error), _) | (_, Err(error)) => tracing::warn!(%error, "purge failed"),
                _ => {}
            }
        }
    });
}
