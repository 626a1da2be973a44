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

/// SIGTERM and SIGINT, watched from the moment this is made. The binaries make
/// it before they log that they listen, so a signal sent right after that line
/// is drained like any other (watching lazily, when the watcher first ran, let a
/// SIGTERM that came first kill the process outright).
pub struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts watching. Must run inside the tokio runtime.
    pub fn watch() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let watch = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(error) => {
                    tracing::warn!(%error, signal = name, "cannot watch this signal");
                    None
                }
            };
            Signals {
                term: watch(SignalKind::terminate(), "SIGTERM"),
                int: watch(SignalKind::interrupt(), "SIGINT"),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        match (&mut self.term, &mut self.int) {
            (Some(term), Some(int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Some(only), None) | (None, Some(only)) => {
                only.recv().await;
            }
            (None, None) => std::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The binaries' way to serve, for both servers: runs `serve` (the server's
/// run-until-stopped future); on the first signal `/readyz` answers 503 for
/// `drain` while requests are still served, then `servers` stop accepting and
/// in-flight requests finish. A second signal skips the rest of the wait.
pub async fn run_until_signalled(
    serve: impl std::future::Future<Output = std::io::Result<()>>,
    servers: Vec<ServerHandle>,
    draining: Draining,
    drain: Duration,
    signals: Signals,
) -> std::io::Result<()> {
    let watcher = tokio::spawn(on_signal(signals, servers, draining, drain));
    let result = serve.await;
    watcher.abort();
    result
}

async fn on_signal(mut signals: Signals, servers: Vec<ServerHandle>, draining: Draining, drain: Duration) {
    signals.next().await;
    draining.set();
    tracing::info!(
        drain_secs = drain.as_secs(),
        "shutting down: /readyz answers 503 while the balancer drains this instance"
    );
    tokio::select! {
        _ = tokio::time::sleep(drain) => {}
        _ = signals.next() => tracing::info!("second signal: stopping now"),
    }
    tracing::info!("stopping: no new connections; in-flight requests finish");
    for server in servers {
        server.stop(true).await;
    }
}
