//! The RabbitMQ queue backend (`commerce.queue_url = amqp://…`, via `lapin`).
//!
//! - **Relay**: reservations are still written with an outbox row in one database
//!   transaction. The relay claims outbox rows (a lease, `SKIP LOCKED` on
//!   PostgreSQL, so the relays of several instances share the backlog), publishes
//!   them persistent and `mandatory` to a durable quorum queue on a channel in
//!   confirm mode, and deletes a row only after the broker confirmed it; a row
//!   that was not confirmed (nack, unroutable, connection lost) is given back.
//!   So a message is published at least once and never lost.
//! - **Consumers** (`commerce.reservation_workers` channels, prefetch 1): a
//!   delivery is processed in one database transaction (the idempotent consumer
//!   of `domain::reservations::process`, keyed by reservation id) and acked only
//!   after the commit. A duplicate or a redelivery finds the reservation decided
//!   and is only acked.
//! - **Dead letters**: the queue is a quorum queue whose `x-delivery-limit` is
//!   `queue_max_deliveries - 1`, dead-lettering (at-least-once) through the
//!   exchange `{queue}.dlx` into `{queue}.dead`. A consumer that fails a message
//!   requeues it (the broker counts the delivery in `x-delivery-count`); on the
//!   `queue_max_deliveries`-th failed delivery it rejects it into the dead-letter
//!   queue itself and counts it. Deliveries lost to crashed consumers count too,
//!   and the broker dead-letters past the limit. A database that cannot be
//!   reached is not the message's fault: the consumer keeps the delivery and
//!   retries with backoff instead of burning deliveries.
//! - **Outages**: connections are retried with exponential backoff (0.1 s to 5 s).
//!   While RabbitMQ is unreachable, also at start, requests are still accepted
//!   (202, their outbox rows wait) and relayed once it is back; the state is
//!   logged, in `/metrics` (`commerce_queue_backend_up`) and in `/readyz`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::domain::reservations::TOPIC;
use super::metrics::QueueMetrics;
use super::storage::reservations as outbox;
use super::workers::{Attempt, attempt};
use crate::clock::Clock;
use crate::db::Db;

/// Outbox rows one relay claims and publishes at a time.
const RELAY_BATCH: i64 = 200;
/// How long an idle relay waits for a wake-up before looking at the outbox again
/// (requests accepted by other instances arrive without a local wake-up).
const IDLE_POLL: Duration = Duration::from_millis(200);
/// How often the queue depths are sampled for `/metrics`.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A session that lasted this long resets the reconnect backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);
/// While RabbitMQ stays unreachable, the warning is repeated this often.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// `commerce.queue_url`, `commerce.queue_name`, `commerce.queue_max_deliveries`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: SecretString,
    pub queue: String,
    pub max_deliveries: u32,
}

impl Settings {
    /// The dead-letter queue.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.queue)
    }

    /// The dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.queue)
    }

    /// The broker's address without credentials, for logs.
    pub fn endpoint(&self) -> String {
        match url::Url::parse(self.url.expose_secret()) {
            Ok(url) => format!(
                "{}://{}:{}{}",
                url.scheme(),
                url.host_str().unwrap_or("?"),
                url.port().unwrap_or(5672),
                url.path()
            ),
            Err(_) => "(unparsable queue_url)".to_owned(),
        }
    }
}

/// What processing a message needs.
#[derive(Clone)]
pub struct Context {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub hold_secs: i64,
    pub metrics: Arc<QueueMetrics>,
}

/// Starts the relay and (with `consumers > 0`) the consumers.
pub fn spawn(
    ctx: Context,
    settings: Settings,
    instance: &str,
    consumers: usize,
    lease_secs: i64,
    wake: Arc<Notify>,
) -> Vec<JoinHandle<()>> {
    let settings = Arc::new(settings);
    let relay = Relay {
        ctx: ctx.clone(),
        settings: settings.clone(),
        name: format!("{instance}/relay"),
        lease_secs,
        wake,
    };
    let mut handles = vec![tokio::spawn(relay.run())];
    if consumers > 0 {
        handles.push(tokio::spawn(consume(ctx, settings, instance.to_owned(), consumers)));
    }
    handles
}

/// Opens a connection (bounded by `CONNECT_TIMEOUT`).
pub async fn connect(settings: &Settings, name: &str) -> Result<Connection, String> {
    let properties = ConnectionProperties::default().with_connection_name(format!("oxidp-commerce {name}").into());
    match tokio::time::timeout(
        CONNECT_TIMEOUT,
        Connection::connect(settings.url.expose_secret(), properties),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// Declares the dead-letter exchange and queue and the queue (idempotent; a queue
/// declared before with other arguments is refused by the broker: delete it or
/// keep the old `queue_max_deliveries`).
pub async fn declare(channel: &Channel, settings: &Settings) -> lapin::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut quorum = FieldTable::default();
    quorum.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    channel
        .exchange_declare(
            settings.dead_letter_exchange().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(settings.dead_letter_queue().into(), durable, quorum.clone())
        .await?;
    channel
        .queue_bind(
            settings.dead_letter_queue().into(),
            settings.dead_letter_exchange().into(),
            settings.queue.clone().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut arguments = quorum;
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(i32::try_from(settings.max_deliveries.saturating_sub(1)).unwrap_or(i32::MAX)),
    );
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(settings.dead_letter_exchange().into()),
    );
    arguments.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString("at-least-once".into()),
    );
    // At-least-once dead-lettering needs the queue to refuse publishes when full
    // (the relay then keeps the outbox rows) rather than drop its head.
    arguments.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
    channel
        .queue_declare(settings.queue.clone().into(), durable, arguments)
        .await?;
    Ok(())
}

/// Exponential backoff with jitter between `BACKOFF_MIN` and `BACKOFF_MAX`.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(BACKOFF_MIN)
    }

    fn reset(&mut self) {
        self.0 = BACKOFF_MIN;
    }

    async fn wait(&mut self) {
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        tokio::time::sleep(self.0.mul_f64(jitter)).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
    }
}

/// Keeps one connection for `role` up: connects with backoff, runs `session` on
/// it until it fails, logs and counts, and starts again.
async fn supervise<F, Fut>(
    settings: &Settings,
    metrics: &QueueMetrics,
    role: &str,
    up: &std::sync::atomic::AtomicU64,
    mut session: F,
) where
    F: FnMut(Connection) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let endpoint = settings.endpoint();
    let mut backoff = Backoff::new();
    let mut down_since: Option<Instant> = None;
    let mut warned_at: Option<Instant> = None;
    loop {
        match connect(settings, role).await {
            Ok(connection) => {
                QueueMetrics::inc(&metrics.connects);
                up.store(1, Ordering::Relaxed);
                match down_since.take() {
                    Some(since) => tracing::info!(
                        %endpoint, role, down_secs = since.elapsed().as_secs(),
                        "RabbitMQ connection re-established"
                    ),
                    None => tracing::info!(%endpoint, role, "RabbitMQ connected"),
                }
                warned_at = None;
                let started = Instant::now();
                let result = session(connection).await;
                // A session that fails at once (a refused declare: the queue exists
                // with other arguments) keeps backing off instead of spinning.
                if started.elapsed() >= STABLE_SESSION {
                    backoff.reset();
                }
                up.store(0, Ordering::Relaxed);
                down_since = Some(Instant::now());
                match result {
                    Ok(()) => tracing::warn!(%endpoint, role, "RabbitMQ session ended; reconnecting"),
                    Err(error) => tracing::warn!(%endpoint, role, %error, "RabbitMQ connection lost; reconnecting"),
                }
            }
            Err(error) => {
                QueueMetrics::inc(&metrics.connect_failures);
                down_since.get_or_insert_with(Instant::now);
                if warned_at.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    warned_at = Some(Instant::now());
                    tracing::warn!(
                        %endpoint, role, %error,
                        "RabbitMQ unavailable; reservations are accepted and kept in the outbox until it is back"
                    );
                } else {
                    tracing::debug!(%endpoint, role, %error, "RabbitMQ still unavailable");
                }
            }
        }
        backoff.wait().await;
    }
}

// ---------------------------------------------------------------- relay

struct Relay {
    ctx: Context,
    settings: Arc<Settings>,
    name: String,
    lease_secs: i64,
    wake: Arc<Notify>,
}

impl Relay {
    async fn run(self) {
        let (settings, metrics) = (self.settings.clone(), self.ctx.metrics.clone());
        supervise(&settings, &metrics, "relay", &metrics.relay_up, |connection| {
            self.session(connection)
        })
        .await;
    }

    async fn session(&self, connection: Connection) -> anyhow::Result<()> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        declare(&channel, &self.settings).await?;
        let monitor = connection.create_channel().await?;
        let mut sampled: Option<Instant> = None;
        loop {
            if sampled.is_none_or(|at| at.elapsed() >= SAMPLE_EVERY) {
                self.sample(&monitor).await?;
                sampled = Some(Instant::now());
            }
            let now = self.ctx.clock.now();
            let (name, lease_until) = (self.name.clone(), now + self.lease_secs);
            let batch = self
                .ctx
                .db
                .run(move |conn| outbox::claim_batch(conn, TOPIC, &name, now, lease_until, RELAY_BATCH))
                .await;
            match batch {
                Ok(batch) if batch.is_empty() => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                    }
                    if !connection.status().connected() {
                        anyhow::bail!("the connection closed");
                    }
                }
                Ok(batch) => self.publish(&channel, batch).await?,
                Err(error) => {
                    tracing::warn!(%error, "the outbox relay cannot read the outbox");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Publishes a batch, waits for the broker's confirms, deletes the confirmed
    /// rows and gives the others back.
    async fn publish(&self, channel: &Channel, batch: Vec<outbox::Claimed>) -> anyhow::Result<()> {
        let mut confirms = Vec::with_capacity(batch.len());
        let mut error: Option<lapin::Error> = None;
        for message in &batch {
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(message.id.clone().into())
                .with_content_type("text/plain".into())
                .with_type(TOPIC.into());
            match channel
                .basic_publish(
                    "".into(),
                    self.settings.queue.clone().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    message.payload.as_bytes(),
                    properties,
                )
                .await
            {
                Ok(confirm) => confirms.push((message.id.clone(), confirm)),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let mut confirmed = Vec::with_capacity(confirms.len());
        for (id, confirm) in confirms {
            match confirm.await {
                Ok(confirmation) => {
                    let acked = confirmation.is_ack();
                    // `mandatory`: a message no queue took comes back with the ack.
                    if acked && confirmation.take_message().is_none() {
                        confirmed.push(id);
                    }
                }
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        let refused: Vec<String> = batch
            .into_iter()
            .map(|m| m.id)
            .filter(|id| !confirmed.contains(id))
            .collect();
        if !confirmed.is_empty() {
            QueueMetrics::add(&self.ctx.metrics.published, confirmed.len() as u64);
            let name = self.name.clone();
            if let Err(e) = self
                .ctx
                .db
                .run(move |conn| outbox::relayed(conn, &confirmed, &name))
                .await
            {
                // Published but still in the outbox: republished after the lease,
                // a duplicate the consumers ignore.
                tracing::warn!(error = %e, "confirmed messages could not be removed from the outbox");
            }
        }
        if !refused.is_empty() {
            let (name, n) = (self.name.clone(), refused.len());
            if let Err(e) = self
                .ctx
                .db
                .run(move |conn| outbox::release(conn, &refused, &name))
                .await
            {
                tracing::warn!(error = %e, "unpublished messages stay leased until their lease runs out");
            }
            if error.is_none() {
                tracing::warn!(
                    messages = n,
                    "RabbitMQ refused or returned messages; they stay in the outbox and are retried"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                declare(channel, &self.settings).await?;
            }
        }
        match error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Samples the depths of the queue and of the dead-letter queue.
    async fn sample(&self, channel: &Channel) -> lapin::Result<()> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        for (queue, gauge) in [
            (self.settings.queue.clone(), &self.ctx.metrics.queue_depth),
            (self.settings.dead_letter_queue(), &self.ctx.metrics.dead_letter_depth),
        ] {
            let q = channel
                .queue_declare(queue.into(), passive, FieldTable::default())
                .await?;
            gauge.store(i64::from(q.message_count()), Ordering::Relaxed);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- consumers

async fn consume(ctx: Context, settings: Arc<Settings>, instance: String, consumers: usize) {
    let metrics = ctx.metrics.clone();
    let processor = Arc::new(Processor {
        ctx,
        max_deliveries: settings.max_deliveries,
    });
    supervise(&settings, &metrics, "consumers", &metrics.consumers_up, |connection| {
        consumer_session(
            connection,
            settings.clone(),
            processor.clone(),
            instance.clone(),
            consumers,
        )
    })
    .await;
}

async fn consumer_session(
    connection: Connection,
    settings: Arc<Settings>,
    processor: Arc<Processor>,
    instance: String,
    consumers: usize,
) -> anyhow::Result<()> {
    let setup = connection.create_channel().await?;
    declare(&setup, &settings).await?;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..consumers {
        let channel = connection.create_channel().await?;
        channel.basic_qos(1, BasicQosOptions::default()).await?;
        let consumer = channel
            .basic_consume(
                settings.queue.clone().into(),
                format!("{instance}/{n}").into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let processor = processor.clone();
        tasks.spawn(async move {
            let _channel = channel;
            let mut consumer = consumer;
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery?;
                let decision = processor.decide(&delivery).await;
                settle(&delivery, decision).await?;
            }
            anyhow::Ok(())
        });
    }
    // One consumer ending (connection lost, cancelled by the broker) ends the session.
    let ended = tasks.join_next().await;
    tasks.abort_all();
    match ended {
        Some(Ok(result)) => result,
        Some(Err(join)) => Err(join.into()),
        None => Ok(()),
    }
}

/// What to do with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Processed (or already processed): ack.
    Ack,
    /// Failed: back to the queue (one failed delivery counted).
    Requeue,
    /// Failed for the `queue_max_deliveries`-th time: to the dead-letter queue.
    DeadLetter,
}

/// Decides deliveries: processes the reservation a message names.
pub struct Processor {
    pub ctx: Context,
    pub max_deliveries: u32,
}

/// How many times the broker delivered the message before (quorum queues'
/// `x-delivery-count`; 0 on the first delivery).
pub fn previous_deliveries(delivery: &Delivery) -> u64 {
    let Some(headers) = delivery.properties.headers() else {
        return 0;
    };
    match headers.inner().get("x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => u64::from(*n),
        Some(AMQPValue::ShortInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortUInt(n)) => u64::from(*n),
        Some(AMQPValue::ShortShortInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::ShortShortUInt(n)) => u64::from(*n),
        _ => 0,
    }
}

impl Processor {
    pub fn new(ctx: Context, max_deliveries: u32) -> Self {
        Self { ctx, max_deliveries }
    }

    /// Processes a delivery in one database transaction and decides its fate; the
    /// caller acks (or requeues) with `settle`, after the commit.
    pub async fn decide(&self, delivery: &Delivery) -> Decision {
        let metrics = &self.ctx.metrics;
        QueueMetrics::inc(&metrics.consumed);
        let previous = previous_deliveries(delivery);
        if delivery.redelivered || previous > 0 {
            QueueMetrics::inc(&metrics.redelivered);
        }
        let id = std::str::from_utf8(&delivery.data)
            .ok()
            .filter(|id| uuid::Uuid::parse_str(id).is_ok());
        let mut unavailable = Backoff::new();
        let cause = loop {
            let Some(id) = id else {
                break "the message is not a reservation id".to_owned();
            };
            match attempt(&self.ctx.db, self.ctx.clock.as_ref(), self.ctx.hold_secs, metrics, id).await {
                Attempt::Done(_) => return Decision::Ack,
                Attempt::Failed(cause) => break cause,
                Attempt::Unavailable(cause) => {
                    // Not the message's fault: keep it (unacked) and wait for the database.
                    tracing::warn!(reservation = %id, %cause, "database unavailable; the delivery waits");
                    unavailable.wait().await;
                }
            }
        };
        let deliveries = previous + 1;
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        if deliveries >= u64::from(self.max_deliveries) {
            QueueMetrics::inc(&metrics.dead_lettered);
            tracing::error!(
                message = %message_id, deliveries, %cause,
                queue = %format!("{}.dead", delivery.routing_key.as_str()),
                "reservation message dead-lettered after failed deliveries"
            );
            Decision::DeadLetter
        } else {
            QueueMetrics::inc(&metrics.requeued);
            tracing::warn!(message = %message_id, deliveries, %cause, "reservation message failed; requeued");
            tokio::time::sleep(Duration::from_millis(100)).await;
            Decision::Requeue
        }
    }
}

/// Acks, requeues or dead-letters a delivery.
pub async fn settle(delivery: &Delivery, decision: Decision) -> lapin::Result<()> {
    match decision {
        Decision::Ack => delivery.ack(BasicAckOptions::default()).await?,
        Decision::Requeue => {
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await?
        }
        Decision::DeadLetter => delivery.reject(BasicRejectOptions { requeue: false }).await?,
    };
    Ok(())
}
