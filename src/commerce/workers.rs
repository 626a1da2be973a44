//! Background tasks of a commerce instance: the reservation workers (consumers of
//! the database outbox, or with `commerce.queue_url` the RabbitMQ relay and
//! consumers of `commerce::rabbitmq`), the hold sweeper and the idempotency-key
//! purge. Several instances on one PostgreSQL database share the queue (`FOR
//! UPDATE SKIP LOCKED`, or the broker); correctness never depends on how many run
//! or on one of them dying: the outcome of a message is decided by a conditional
//! update on the reservation's status (`domain::reservations::process`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::commerce::domain::reservations::{self, Processed, TOPIC};
use crate::commerce::domain::{idempotency, stock};
use crate::commerce::metrics::QueueMetrics;
use crate::commerce::storage::reservations::{self as queue, Claimed};
use crate::db::Db;

/// Version conflicts retried in-process (with backoff) before the message goes
/// back to the queue for any worker to try again.
const MAX_CONFLICT_RETRIES: u32 = 30;
/// Deliveries after which a message that keeps failing is parked (retried only
/// every `PARK_SECS`) and logged as an error.
const MAX_DELIVERIES: i32 = 20;
const PARK_SECS: i64 = 60;
/// How long an idle worker waits for a wake-up before polling the queue again
/// (messages from other instances arrive without a local wake-up).
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often holds are swept and old idempotency keys purged.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Settings {
    /// Reservation workers of this instance (0: this instance only accepts).
    pub workers: usize,
    /// How long a confirmed reservation holds its stock.
    pub hold_secs: i64,
    /// How long a claimed message is its worker's (or relay's) before others may reclaim it.
    pub lease_secs: i64,
    /// `Some`: RabbitMQ is the queue (relay + consumers); `None`: the database.
    pub rabbitmq: Option<crate::commerce::rabbitmq::Settings>,
}

/// Starts the workers (database queue) or the relay and consumers (RabbitMQ), the
/// sweeper and the purge; abort the handles to stop them.
pub fn spawn(
    db: Db,
    clock: Arc<dyn Clock>,
    settings: Settings,
    wake: Arc<Notify>,
    metrics: Arc<QueueMetrics>,
) -> Vec<JoinHandle<()>> {
    let instance = uuid::Uuid::new_v4().simple().to_string();
    let mut handles: Vec<JoinHandle<()>> = match &settings.rabbitmq {
        Some(rabbit) => crate::commerce::rabbitmq::spawn(
            crate::commerce::rabbitmq::Context {
                db: db.clone(),
                clock: clock.clone(),
                hold_secs: settings.hold_secs,
                metrics: metrics.clone(),
            },
            rabbit.clone(),
            &instance[..12],
            settings.workers,
            settings.lease_secs,
            wake,
        ),
        None => (0..settings.workers)
            .map(|n| {
                let worker = Worker {
                    name: format!("{}/{n}", &instance[..12]),
                    db: db.clone(),
                    clock: clock.clone(),
                    settings: settings.clone(),
                    wake: wake.clone(),
                    metrics: metrics.clone(),
                };
                tokio::spawn(worker.run())
            })
            .collect(),
    };
    handles.push(tokio::spawn(sweep(db, clock)));
    handles
}

/// What one message came to, after in-process retries of version conflicts.
#[derive(Debug)]
pub enum Attempt {
    /// Decided (or already decided before): acknowledge the message.
    Done(Processed),
    /// The database cannot be reached: the message is not at fault.
    Unavailable(String),
    /// Anything else (a bug, a corrupt row, version conflicts without end): the
    /// message counts one failed delivery.
    Failed(String),
}

/// Processes the reservation `id` in one transaction (`reservations::process`),
/// retrying version conflicts with backoff, and counts the outcome.
pub async fn attempt(db: &Db, clock: &dyn Clock, hold_secs: i64, metrics: &QueueMetrics, id: &str) -> Attempt {
    for retry in 0..MAX_CONFLICT_RETRIES {
        match reservations::process(db, id.to_owned(), hold_secs, clock.now()).await {
            Ok(Processed::VersionConflict) => stock::backoff(retry).await,
            Ok(outcome) => {
                match &outcome {
                    Processed::Confirmed => QueueMetrics::inc(&metrics.confirmed),
                    Processed::Failed(reason) => metrics.failed(*reason),
                    Processed::AlreadyHandled => QueueMetrics::inc(&metrics.duplicates),
                    Processed::VersionConflict => {}
                }
                tracing::debug!(reservation = %id, ?outcome, "reservation processed");
                return Attempt::Done(outcome);
            }
            Err(error) if error.is_unavailable() => return Attempt::Unavailable(error.to_string()),
            Err(error) => return Attempt::Failed(error.to_string()),
        }
    }
    Attempt::Failed(format!("{MAX_CONFLICT_RETRIES} version conflicts in a row"))
}

struct Worker {
    name: String,
    db: Db,
    clock: Arc<dyn Clock>,
    settings: Settings,
    wake: Arc<Notify>,
    metrics: Arc<QueueMetrics>,
}

impl Worker {
    async fn run(self) {
        loop {
            let now = self.clock.now();
            let (name, lease_until) = (self.name.clone(), now + self.settings.lease_secs);
            let claimed = self
                .db
                .run(move |conn| {
                    if !queue::any_ready(conn, TOPIC, now)? {
                        return Ok(None);
                    }
                    queue::claim(conn, TOPIC, &name, now, lease_until)
                })
                .await;
            match claimed {
                Ok(Some(message)) => self.handle(message).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, worker = %self.name, "cannot claim from the reservation queue");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Processes one message and acks it after the outcome committed. A crash
    /// before the ack leaves the message leased; once the lease runs out another
    /// worker gets it and, the reservation no longer being PENDING, only acks.
    async fn handle(&self, message: Claimed) {
        if message.attempts > MAX_DELIVERIES {
            tracing::error!(message = %message.id, attempts = message.attempts, "reservation message keeps failing; parked");
            self.nack(&message.id, self.clock.now() + PARK_SECS).await;
            return;
        }
        QueueMetrics::inc(&self.metrics.consumed);
        if message.attempts > 1 {
            QueueMetrics::inc(&self.metrics.redelivered);
        }
        match attempt(
            &self.db,
            self.clock.as_ref(),
            self.settings.hold_secs,
            &self.metrics,
            &message.payload,
        )
        .await
        {
            Attempt::Done(_) => {
                let (id, name) = (message.id.clone(), self.name.clone());
                if let Err(error) = self.db.run(move |conn| queue::ack(conn, &id, &name)).await {
                    tracing::warn!(%error, "ack failed; the message is redelivered after its lease");
                }
            }
            Attempt::Unavailable(error) | Attempt::Failed(error) => {
                tracing::warn!(%error, reservation = %message.payload, "reservation processing failed; requeued");
                QueueMetrics::inc(&self.metrics.requeued);
                self.nack(&message.id, self.clock.now()).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    async fn nack(&self, id: &str, available_at: i64) {
        let (id, name) = (id.to_owned(), self.name.clone());
        if let Err(error) = self
            .db
            .run(move |conn| queue::nack(conn, &id, &name, available_at))
            .await
        {
            tracing::warn!(%error, "nack failed; the message is redelivered after its lease");
        }
    }
}

async fn sweep(db: Db, clock: Arc<dyn Clock>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match reservations::expire_holds(&db, clock.now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "expired reservation holds released"),
            Err(error) => tracing::warn!(%error, "hold sweep failed"),
        }
        if let Err(error) = idempotency::purge(&db, clock.now()).await {
            tracing::warn!(%error, "idempotency-key purge failed");
        }
    }
}
