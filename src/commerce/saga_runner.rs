//! The saga runner of a commerce instance: claims orders whose saga has work to
//! do (placing or compensating left by a request that died, or awaiting a payment
//! past its deadline) under a lease, and drives them (`domain::saga::drive`). On
//! PostgreSQL every instance's runner shares the work (`FOR UPDATE SKIP LOCKED`);
//! a runner that dies holding leases only delays those sagas until the leases run out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::commerce::domain::saga::{self, Driver};
use crate::db::Db;

/// How long an idle runner waits before looking again (payment deadlines and
/// sagas left by other instances arrive without a local wake-up).
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Starts the runner; abort the handle to stop it.
pub fn spawn(db: Db, clock: Arc<dyn Clock>, driver: Driver, wake: Arc<Notify>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let owner = format!("{}/runner", driver.owner);
        loop {
            let now = clock.now();
            match saga::claim_due(&db, &owner, now, now + driver.lease_secs).await {
                Ok(claimed) if !claimed.is_empty() => {
                    for id in claimed {
                        match saga::drive(&db, &id, driver.settings, clock.now()).await {
                            Ok(phase) => tracing::debug!(order = %id, ?phase, "saga driven"),
                            Err(error) => tracing::warn!(order = %id, %error, "saga step failed; retried later"),
                        }
                        saga::release_lease(&db, &id, &owner).await;
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot claim sagas");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}
