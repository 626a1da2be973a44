//! Reservation and queue counters of one commerce instance, in the Prometheus text
//! format beside the resource-server counters (`GET /metrics`). Counters are per
//! instance (sum them across instances); `pending` and `outbox_backlog` are read
//! from the shared database, so every instance reports the same figure.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::commerce::domain::reservations::FailureReason;

/// The queue backend's connection state, as a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendState {
    /// The database queue: always usable when the database is.
    Database,
    /// RabbitMQ, connected (relay and consumers).
    Connected,
    /// RabbitMQ, not (yet) connected: requests are accepted into the outbox and
    /// relayed once it is back.
    Disconnected,
}

impl BackendState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, Default)]
pub struct QueueMetrics {
    /// Reservations accepted (202, not replays).
    pub accepted: AtomicU64,
    pub confirmed: AtomicU64,
    pub failed_sold_out: AtomicU64,
    pub failed_not_on_sale: AtomicU64,
    pub failed_combination_unavailable: AtomicU64,
    pub failed_date_not_offered: AtomicU64,
    /// Messages whose reservation was already decided (duplicates, redeliveries).
    pub duplicates: AtomicU64,
    /// RabbitMQ: outbox rows published and confirmed by the broker.
    pub published: AtomicU64,
    /// Messages taken by this instance's consumers (both backends).
    pub consumed: AtomicU64,
    /// RabbitMQ deliveries marked redelivered by the broker.
    pub redelivered: AtomicU64,
    /// Messages given back after a failed attempt.
    pub requeued: AtomicU64,
    /// RabbitMQ: messages this instance sent to the dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// RabbitMQ: successful connections and failed connection attempts.
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    /// RabbitMQ: 1 while the relay, resp. the consumers, hold a live connection.
    pub relay_up: AtomicU64,
    pub consumers_up: AtomicU64,
    /// RabbitMQ: depth of the queue and of the dead-letter queue, last sampled
    /// (-1: never sampled).
    pub queue_depth: AtomicI64,
    pub dead_letter_depth: AtomicI64,
}

impl QueueMetrics {
    pub fn new() -> Self {
        let m = Self::default();
        m.queue_depth.store(-1, Ordering::Relaxed);
        m.dead_letter_depth.store(-1, Ordering::Relaxed);
        m
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn failed(&self, reason: FailureReason) {
        Self::inc(match reason {
            FailureReason::SoldOut => &self.failed_sold_out,
            FailureReason::ProductNotOnSale => &self.failed_not_on_sale,
            FailureReason::CombinationUnavailable => &self.failed_combination_unavailable,
            FailureReason::DateNotOffered => &self.failed_date_not_offered,
        });
    }

    /// The backend's state; `rabbitmq` false for the database queue.
    pub fn state(&self, rabbitmq: bool, consumers: bool) -> BackendState {
        if !rabbitmq {
            return BackendState::Database;
        }
        let relay = Self::get(&self.relay_up) == 1;
        let consuming = !consumers || Self::get(&self.consumers_up) == 1;
        if relay && consuming {
            BackendState::Connected
        } else {
            BackendState::Disconnected
        }
    }
}

/// What the database says about the queue, read at scrape time.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct QueueDepth {
    /// Reservations still PENDING.
    pub pending: i64,
    /// Outbox rows not yet consumed (database queue) or not yet relayed (RabbitMQ).
    pub outbox_backlog: i64,
}

/// The reservation and queue metrics as Prometheus text.
pub fn render(m: &QueueMetrics, state: BackendState, depth: Option<QueueDepth>) -> String {
    let get = QueueMetrics::get;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, lines: &[(String, i64)]| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in lines {
            out.push_str(&format!("{name}{labels} {value}\n"));
        }
    };
    let n = |c: &AtomicU64| i64::try_from(get(c)).unwrap_or(i64::MAX);
    family(
        "commerce_reservations_accepted_total",
        "counter",
        "Reservation requests accepted (202) by this instance.",
        &[(String::new(), n(&m.accepted))],
    );
    family(
        "commerce_reservations_confirmed_total",
        "counter",
        "Reservations confirmed by this instance's consumers.",
        &[(String::new(), n(&m.confirmed))],
    );
    family(
        "commerce_reservations_failed_total",
        "counter",
        "Reservations refused by this instance's consumers, by reason.",
        &[
            ("{reason=\"sold_out\"}".into(), n(&m.failed_sold_out)),
            ("{reason=\"product_not_on_sale\"}".into(), n(&m.failed_not_on_sale)),
            (
                "{reason=\"combination_unavailable\"}".into(),
                n(&m.failed_combination_unavailable),
            ),
            ("{reason=\"date_not_offered\"}".into(), n(&m.failed_date_not_offered)),
        ],
    );
    family(
        "commerce_queue_messages_total",
        "counter",
        "Queue messages by event: published (RabbitMQ, broker-confirmed), consumed, redelivered (RabbitMQ), \
         duplicate (reservation already decided), requeued (failed attempt), dead_lettered (RabbitMQ).",
        &[
            ("{event=\"published\"}".into(), n(&m.published)),
            ("{event=\"consumed\"}".into(), n(&m.consumed)),
            ("{event=\"redelivered\"}".into(), n(&m.redelivered)),
            ("{event=\"duplicate\"}".into(), n(&m.duplicates)),
            ("{event=\"requeued\"}".into(), n(&m.requeued)),
            ("{event=\"dead_lettered\"}".into(), n(&m.dead_lettered)),
        ],
    );
    family(
        "commerce_queue_connections_total",
        "counter",
        "RabbitMQ connection attempts by result.",
        &[
            ("{result=\"connected\"}".into(), n(&m.connects)),
            ("{result=\"failed\"}".into(), n(&m.connect_failures)),
        ],
    );
    family(
        "commerce_queue_backend_up",
        "gauge",
        "The queue backend: 1 usable (database, or RabbitMQ connected), 0 RabbitMQ disconnected \
         (requests still accepted into the outbox).",
        &[(
            format!("{{state=\"{}\"}}", state.name()),
            i64::from(state != BackendState::Disconnected),
        )],
    );
    if let Some(depth) = depth {
        family(
            "commerce_reservations_pending",
            "gauge",
            "Reservations still PENDING (whole database).",
            &[(String::new(), depth.pending)],
        );
        family(
            "commerce_outbox_backlog",
            "gauge",
            "Outbox messages not yet consumed (database queue) or not yet relayed to RabbitMQ (whole database).",
            &[(String::new(), depth.outbox_backlog)],
        );
    }
    if state != BackendState::Database {
        family(
            "commerce_queue_depth",
            "gauge",
            "RabbitMQ messages ready in the queue and in the dead-letter queue, last sampled (-1: not yet).",
            &[
                ("{queue=\"main\"}".into(), m.queue_depth.load(Ordering::Relaxed)),
                (
                    "{queue=\"dead_letter\"}".into(),
                    m.dead_letter_depth.load(Ordering::Relaxed),
                ),
            ],
        );
    }
    out
}
