//! The RabbitMQ queue backend through the real servers and a real broker
//! (127.0.0.1:5672, guest/guest; each test its own queue names): exactness under a
//! burst (one instance, and two sharing the database and the queue), a message
//! published twice, a consumer dying between its commit and its ack, RabbitMQ
//! unreachable at start and lost mid-run (a TCP forwarder in front of it), and a
//! poison message dead-lettered after `queue_max_deliveries` and counted.
//!
//! Without a broker on 127.0.0.1:5672 these tests print `SKIPPED` and pass, unless
//! `OXIDP_REQUIRE_RABBITMQ=1` (set by `.ci/run`), where they fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions, ExchangeDeleteOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use oxidp::commerce::metrics::QueueMetrics;
use oxidp::commerce::rabbitmq::{self, Decision, Processor};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::CommerceTest;
use super::stock::{Item, Market, market};

const BROKER: &str = "127.0.0.1:5672";

/// The broker's URL, or `None` (test skipped) when none listens and
/// `OXIDP_REQUIRE_RABBITMQ` is unset.
fn broker(test: &str) -> Option<String> {
    let open = std::net::TcpStream::connect_timeout(&BROKER.parse().unwrap(), Duration::from_secs(1)).is_ok();
    if !open {
        assert!(
            std::env::var_os("OXIDP_REQUIRE_RABBITMQ").is_none(),
            "OXIDP_REQUIRE_RABBITMQ is set but nothing listens on {BROKER}"
        );
        eprintln!("SKIPPED {test}: no RabbitMQ on {BROKER} (OXIDP_REQUIRE_RABBITMQ=1 makes this a failure)");
        return None;
    }
    Some(format!("amqp://guest:guest@{BROKER}/%2f"))
}

/// A queue name of its own for one test.
fn queue_name() -> String {
    format!("oxidp.test.{}", uuid::Uuid::new_v4().simple())
}

fn use_rabbit(c: &mut oxidp::config::Config, url: &str, queue: &str, max_deliveries: u32) {
    c.commerce.queue_url = Some(url.to_owned().into());
    c.commerce.queue_name = queue.to_owned();
    c.commerce.queue_max_deliveries = max_deliveries;
    c.database.connect_timeout_secs = 20;
}

/// The test's own connection to the broker (to publish, inspect, clean up).
struct Broker {
    _connection: Connection,
    channel: Channel,
    queue: String,
}

impl Broker {
    async fn open(url: &str, queue: &str) -> Broker {
        let connection = Connection::connect(url, ConnectionProperties::default()).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        Broker {
            _connection: connection,
            channel,
            queue: queue.to_owned(),
        }
    }

    /// Messages ready in `queue` (passive declare).
    async fn ready(&self, queue: &str) -> u32 {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap()
            .message_count()
    }

    /// Publishes `payload` to the reservation queue, as the relay does.
    async fn publish(&self, payload: &str) {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                self.queue.clone().into(),
                BasicPublishOptions::default(),
                payload.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        drop(confirm);
    }

    async fn clean_up(self) {
        for queue in [self.queue.clone(), format!("{}.dead", self.queue)] {
            let _ = self
                .channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self
            .channel
            .exchange_delete(format!("{}.dlx", self.queue).into(), ExchangeDeleteOptions::default())
            .await;
    }
}

async fn metrics_text(commerce: &CommerceTest) -> String {
    commerce.get("/metrics", None).await.text().await.unwrap()
}

/// The value of one sample line of `/metrics` (`name{labels}`), 0 when absent.
async fn metric(commerce: &CommerceTest, sample: &str) -> i64 {
    let text = metrics_text(commerce).await;
    text.lines()
        .find_map(|line| line.strip_prefix(sample).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

/// Polls `metric` until it reaches `at_least` (at most 60 s).
async fn metric_reaches(commerce: &CommerceTest, sample: &str, at_least: i64) -> i64 {
    for _ in 0..600 {
        let value = metric(commerce, sample).await;
        if value >= at_least {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sample} did not reach {at_least} in 60 s");
}

async fn readyz(commerce: &CommerceTest) -> (u16, Value) {
    let r = commerce.get("/readyz", None).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

fn body(item: &Item) -> Value {
    json!({"product_id": item.product, "combination_id": item.combination})
}

async fn reserve_many(m: &Market, prefix: &str, item: &Item, n: usize) -> Vec<String> {
    let requests = (0..n).map(|i| {
        let key = format!("{prefix}-{i}");
        async move { m.reserve(&key, &body(item)).await }
    });
    let mut ids = Vec::new();
    for r in futures_util::future::join_all(requests).await {
        assert_eq!(r.status(), 202);
        ids.push(r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// (confirmed, failed sold_out) among `ids`, once none is PENDING.
async fn outcomes(m: &Market, ids: &[String]) -> (usize, usize) {
    let (mut confirmed, mut sold_out) = (0, 0);
    for id in ids {
        let outcome = m.outcome(&m.buyer, id).await;
        match (outcome["status"].as_str().unwrap(), outcome["reason"].as_str()) {
            ("CONFIRMED", None) => confirmed += 1,
            ("FAILED", Some("sold_out")) => sold_out += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    (confirmed, sold_out)
}

#[tokio::test]
async fn rabbitmq_two_hundred_requests_for_fifty_units_confirm_exactly_fifty() {
    let Some(url) = broker("rabbitmq_two_hundred_requests_for_fifty_units_confirm_exactly_fifty") else {
        return;
    };
    let queue = queue_name();
    let m = market(|c| use_rabbit(c, &url, &queue, 5)).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 50).await;
    super::reservations::burst(&m, &[&m.commerce], &item, None).await;
    let broker = Broker::open(&url, &queue).await;
    assert_eq!(broker.ready(&queue).await, 0);
    let c = &m.commerce;
    assert_eq!(metric(c, "commerce_reservations_accepted_total").await, 200);
    assert_eq!(metric(c, "commerce_reservations_confirmed_total").await, 50);
    assert_eq!(
        metric(c, "commerce_reservations_failed_total{reason=\"sold_out\"}").await,
        150
    );
    assert!(metric(c, "commerce_queue_messages_total{event=\"published\"}").await >= 200);
    assert!(metric(c, "commerce_queue_messages_total{event=\"consumed\"}").await >= 200);
    assert_eq!(metric(c, "commerce_reservations_pending").await, 0);
    assert_eq!(metric(c, "commerce_outbox_backlog").await, 0);
    assert_eq!(metric(c, "commerce_queue_backend_up{state=\"connected\"}").await, 1);
    let (status, ready) = readyz(c).await;
    assert_eq!(status, 200);
    assert_eq!(
        ready["queue"],
        json!({"backend": "rabbitmq", "state": "connected", "pending": 0, "outbox_backlog": 0})
    );
    broker.clean_up().await;
}

#[tokio::test]
async fn rabbitmq_two_instances_share_the_database_and_the_queue_exactly() {
    let Some(url) = broker("rabbitmq_two_instances_share_the_database_and_the_queue_exactly") else {
        return;
    };
    let queue = queue_name();
    let m = market(|c| use_rabbit(c, &url, &queue, 5)).await;
    let second = m.commerce.another(|_| {}).await;
    let item = m.item("RESERVABLE", true).await;
    m.stock_up(&item, Some("2026-12-31"), 50).await;
    super::reservations::burst(&m, &[&m.commerce, &second], &item, Some("2026-12-31")).await;
    let consumed = |c| metric(c, "commerce_queue_messages_total{event=\"consumed\"}");
    let (first_took, second_took) = (consumed(&m.commerce).await, consumed(&second).await);
    assert!(first_took + second_took >= 200, "{first_took} + {second_took}");
    assert!(first_took > 0 && second_took > 0, "{first_took} / {second_took}");
    let confirmed = metric(&m.commerce, "commerce_reservations_confirmed_total").await
        + metric(&second, "commerce_reservations_confirmed_total").await;
    assert_eq!(confirmed, 50);
    second.stop().await;
    Broker::open(&url, &queue).await.clean_up().await;
}

#[tokio::test]
async fn rabbitmq_a_message_published_twice_changes_nothing_twice() {
    let Some(url) = broker("rabbitmq_a_message_published_twice_changes_nothing_twice") else {
        return;
    };
    let queue = queue_name();
    let m = market(|c| use_rabbit(c, &url, &queue, 5)).await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 5).await;
    let r = m.reserve("once", &body(&item)).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let first = m.outcome(&m.buyer, &id).await;
    assert_eq!(first["status"], "CONFIRMED");
    m.drained().await;
    assert_eq!(m.available(&item, None).await, 4);

    // The same message twice more, as an at-least-once relay may publish it.
    let broker = Broker::open(&url, &queue).await;
    broker.publish(&id).await;
    broker.publish(&id).await;
    metric_reaches(&m.commerce, "commerce_queue_messages_total{event=\"duplicate\"}", 2).await;
    assert_eq!(m.available(&item, None).await, 4);
    assert_eq!(
        m.outcome(&m.buyer, &id).await,
        first,
        "the duplicate changed the reservation"
    );
    assert_eq!(metric(&m.commerce, "commerce_reservations_confirmed_total").await, 1);
    for _ in 0..100 {
        if broker.ready(&queue).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(broker.ready(&queue).await, 0, "duplicates are acked");
    broker.clean_up().await;
}

#[tokio::test]
async fn rabbitmq_a_consumer_dying_between_commit_and_ack_is_redelivered_with_one_effect() {
    let Some(url) = broker("rabbitmq_a_consumer_dying_between_commit_and_ack_is_redelivered_with_one_effect") else {
        return;
    };
    let queue = queue_name();
    // This instance relays but does not consume: the test is the first consumer.
    let m = market(|c| {
        use_rabbit(c, &url, &queue, 5);
        c.commerce.reservation_workers = 0;
    })
    .await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 5).await;
    let r = m.reserve("dies-before-ack", &body(&item)).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    // The doomed consumer: the real processing code, then its channel closes
    // before the ack.
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.clone().into(),
            "doomed".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(60), consumer.next())
        .await
        .expect("the relay published the request")
        .unwrap()
        .unwrap();
    assert_eq!(std::str::from_utf8(&delivery.data).unwrap(), id);
    let processor = Processor::new(
        rabbitmq::Context {
            db: m.commerce.database(),
            clock: m.commerce.clock.clone(),
            hold_secs: 600,
            metrics: Arc::new(QueueMetrics::new()),
        },
        5,
    );
    assert_eq!(processor.decide(&delivery).await, Decision::Ack);
    assert_eq!(m.outcome(&m.buyer, &id).await["status"], "CONFIRMED");
    assert_eq!(m.available(&item, None).await, 4);
    channel.close(200, "dying before the ack".into()).await.unwrap();
    drop(consumer);
    drop(connection);

    // A consumer of another instance gets the message again and only acks it.
    let workers = m.commerce.another(|c| c.commerce.reservation_workers = 2).await;
    metric_reaches(&workers, "commerce_queue_messages_total{event=\"redelivered\"}", 1).await;
    metric_reaches(&workers, "commerce_queue_messages_total{event=\"duplicate\"}", 1).await;
    assert_eq!(metric(&workers, "commerce_reservations_confirmed_total").await, 0);
    assert_eq!(m.available(&item, None).await, 4, "a redelivery held stock twice");
    let broker = Broker::open(&url, &queue).await;
    for _ in 0..100 {
        if broker.ready(&queue).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(broker.ready(&queue).await, 0);
    workers.stop().await;
    broker.clean_up().await;
}

/// A TCP forwarder to the broker that refuses (accepts and drops) while down and
/// can cut every forwarded connection: RabbitMQ unreachable, then back, then lost.
struct Forwarder {
    port: u16,
    up: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
}

impl Forwarder {
    async fn start() -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(0u64);
        let (flag, cuts) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(BROKER).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Forwarder { port, up, cut }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Drops every forwarded connection (and refuses new ones until `set_up(true)`).
    fn cut(&self) {
        self.set_up(false);
        self.cut.send_modify(|n| *n += 1);
    }
}

#[tokio::test]
async fn rabbitmq_unreachable_at_start_or_lost_midway_loses_nothing() {
    let Some(url) = broker("rabbitmq_unreachable_at_start_or_lost_midway_loses_nothing") else {
        return;
    };
    let queue = queue_name();
    let forwarder = Forwarder::start().await;
    let m = market(|c| use_rabbit(c, &forwarder.url(), &queue, 5)).await;
    let c = &m.commerce;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 15).await;

    // Down at start: the instance serves, requests are accepted and kept.
    let (status, ready) = readyz(c).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["queue"]["backend"], "rabbitmq");
    assert_eq!(ready["queue"]["state"], "disconnected");
    let first = reserve_many(&m, "while-down", &item, 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(metric(c, "commerce_reservations_pending").await, 20);
    assert_eq!(metric(c, "commerce_outbox_backlog").await, 20);
    assert!(
        metrics_text(c)
            .await
            .contains("commerce_queue_backend_up{state=\"disconnected\"} 0")
    );
    assert!(metric(c, "commerce_queue_connections_total{result=\"failed\"}").await >= 1);
    assert_eq!(readyz(c).await.1["queue"]["outbox_backlog"], 20);

    // Back: every accepted request is processed.
    forwarder.set_up(true);
    assert_eq!(outcomes(&m, &first).await, (15, 5));
    m.drained().await;
    metric_reaches(c, "commerce_queue_backend_up{state=\"connected\"}", 1).await;
    let connects = metric(c, "commerce_queue_connections_total{result=\"connected\"}").await;
    assert!(connects >= 2, "relay and consumers connected: {connects}");

    // Lost mid-run: requests keep being accepted; after the reconnect they are
    // processed too.
    forwarder.cut();
    for _ in 0..300 {
        if readyz(c).await.1["queue"]["state"] == "disconnected" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(readyz(c).await.1["queue"]["state"], "disconnected");
    assert!(
        metrics_text(c)
            .await
            .contains("commerce_queue_backend_up{state=\"disconnected\"} 0")
    );
    m.stock_up(&item, None, 4).await;
    let second = reserve_many(&m, "after-loss", &item, 6).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(metric(c, "commerce_reservations_pending").await, 6);
    forwarder.set_up(true);
    assert_eq!(outcomes(&m, &second).await, (4, 2));
    m.drained().await;
    assert_eq!(m.available(&item, None).await, 0);
    assert!(metric(c, "commerce_queue_connections_total{result=\"connected\"}").await >= connects + 2);
    assert_eq!(metric(c, "commerce_reservations_accepted_total").await, 26);
    Broker::open(&url, &queue).await.clean_up().await;
}

#[tokio::test]
async fn rabbitmq_a_poison_message_is_dead_lettered_after_max_deliveries() {
    let Some(url) = broker("rabbitmq_a_poison_message_is_dead_lettered_after_max_deliveries") else {
        return;
    };
    let queue = queue_name();
    let m = market(|c| use_rabbit(c, &url, &queue, 3)).await;
    let c = &m.commerce;
    metric_reaches(c, "commerce_queue_backend_up{state=\"connected\"}", 1).await;
    let broker = Broker::open(&url, &queue).await;
    broker.publish("not-a-reservation").await;

    let dead = format!("{queue}.dead");
    for _ in 0..600 {
        if broker.ready(&dead).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(broker.ready(&dead).await, 1, "dead-lettered");
    assert_eq!(broker.ready(&queue).await, 0);
    assert_eq!(
        metric(c, "commerce_queue_messages_total{event=\"dead_lettered\"}").await,
        1
    );
    assert_eq!(metric(c, "commerce_queue_messages_total{event=\"consumed\"}").await, 3);
    assert_eq!(metric(c, "commerce_queue_messages_total{event=\"requeued\"}").await, 2);
    assert_eq!(
        metric(c, "commerce_queue_messages_total{event=\"redelivered\"}").await,
        2
    );
    metric_reaches(c, "commerce_queue_depth{queue=\"dead_letter\"}", 1).await;
    let parked = broker
        .channel
        .basic_get(dead.clone().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the dead letter");
    assert_eq!(parked.delivery.data, b"not-a-reservation");

    // The queue keeps working behind it.
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 1).await;
    let r = m.reserve("after-poison", &body(&item)).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(m.outcome(&m.buyer, &id).await["status"], "CONFIRMED");
    broker.clean_up().await;
}

#[tokio::test]
async fn rabbitmq_holds_still_expire_and_idempotency_keys_are_still_purged() {
    let Some(url) = broker("rabbitmq_holds_still_expire_and_idempotency_keys_are_still_purged") else {
        return;
    };
    let queue = queue_name();
    let mut m = market(|c| {
        use_rabbit(c, &url, &queue, 5);
        c.commerce.hold_secs = 60;
    })
    .await;
    let item = m.item("REALTIME", true).await;
    m.stock_up(&item, None, 1).await;
    let r = m.reserve("held", &body(&item)).await;
    let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(m.outcome(&m.buyer, &id).await["status"], "CONFIRMED");
    assert_eq!(m.available(&item, None).await, 0);
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM idempotency_keys").await, 1);

    // Past the hold: the sweeper releases it.
    m.commerce.clock.advance(61);
    m.fresh_buyer().await;
    for _ in 0..300 {
        if m.available(&item, None).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view: Value = m
        .commerce
        .get(&format!("/v1/reservations/{id}"), Some(&m.buyer))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (view["status"].as_str(), view["reason"].as_str()),
        (Some("EXPIRED"), Some("hold_expired"))
    );
    assert_eq!(m.available(&item, None).await, 1);
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM idempotency_keys").await, 1);
    // A day after the request: the key is purged.
    m.commerce.clock.advance(24 * 3600 - 61);
    for _ in 0..300 {
        if m.commerce.count("SELECT COUNT(*) AS n FROM idempotency_keys").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(m.commerce.count("SELECT COUNT(*) AS n FROM idempotency_keys").await, 0);
    Broker::open(&url, &queue).await.clean_up().await;
}
