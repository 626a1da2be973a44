//! Graceful shutdown, shared by `oxidp serve` and `oxidp commerce`: on SIGTERM or
//! SIGINT an instance first reports "not ready" on `/readyz` (so a load balancer's
//! health check takes it out of rotation) while it keeps serving for
//! `http.drain_secs`, then stops accepting and lets in-flight requests finish
//! (actix's graceful stop). A second signal skips the rest of the wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;

/// Whether this instance is shutting down; `/readyz` answers 503 once it is set.
#[derive(Debug, Clone, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Waits for SIGTERM or SIGINT, then drains and stops `servers`.
pub async fn on_signal(servers: Vec<ServerHandle>, draining: Draining, drain: Duration) {
    next_signal().await;
    draining.set();
    tracing::info!(
        drain_secs = drain.as_secs(),
        "shutting down: /readyz answers 503 while the balancer drains this instance"
    );
    tokio::select! {
        _ = tokio::time::sleep(drain) => {}
        _ = next_signal() => tracing::info!("second signal: stopping now"),
    }
    tracing::info!("stopping: no new connections; in-flight requests finish");
    for server in servers {
        server.stop(true).await;
    }
}

async fn next_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
