//! Shared harness: a collector on 127.0.0.1:0 in front of any Kafka-protocol broker, and a reader that
//! consumes a topic back over the real protocol.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use qoe_runtime::kafka::{ClientSpec, KafkaOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use qoe_collector::{CollectorConfig, CollectorError};

pub const SECRET: &str = "test-secret-1";
pub const BEACONS: &str = "qoe.beacons.v1";
pub const DLQ: &str = "qoe.beacons.dlq";

/// A mock cluster of `brokers` brokers holding the beacon topic (4 partitions) and the dead-letter
/// topic (2 partitions), each replicated on every broker; and its bootstrap servers.
pub fn mock_cluster(
    brokers: i32,
) -> (
    rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    String,
) {
    let cluster = rdkafka::mocking::MockCluster::new(brokers).unwrap();
    cluster.create_topic(BEACONS, 4, brokers).unwrap();
    cluster.create_topic(DLQ, 2, brokers).unwrap();
    let servers = cluster.bootstrap_servers();
    (cluster, servers)
}

pub struct Collector {
    pub address: SocketAddr,
    pub shutdown: CancellationToken,
    pub handle: JoinHandle<Result<(), CollectorError>>,
    pub client: reqwest::Client,
}

impl Collector {
    /// Starts a collector and waits until `/readyz` says 200.
    pub async fn start(config: CollectorConfig) -> Collector {
        let collector = Collector::spawn(config).await;
        collector.wait_ready(Duration::from_secs(30)).await;
        collector
    }

    /// Starts a collector without waiting for it to be ready.
    pub async fn spawn(config: CollectorConfig) -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(qoe_collector::serve(listener, config, shutdown.clone()));
        let collector = Collector {
            address,
            shutdown,
            handle,
            client: reqwest::Client::new(),
        };
        // Wait until it listens (answers anything at all).
        let deadline = Instant::now() + Duration::from_secs(30);
        while collector.client.get(collector.url("/healthz")).send().await.is_err() {
            assert!(
                !collector.handle.is_finished(),
                "the collector stopped before listening"
            );
            assert!(Instant::now() < deadline, "collector not listening");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        collector
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// GET `path`: status and body text.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "collector not ready within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Posts a JSON batch; returns the status, the Retry-After header and the JSON body.
    pub async fn post(&self, beacons: &[Value]) -> (u16, Option<String>, Value) {
        let body = json!({"sent_at": now_ms(), "beacons": beacons});
        let response = self
            .client
            .post(self.url("/v1/beacons"))
            .header("authorization", format!("Bearer {SECRET}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_string());
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
        (status, retry_after, body)
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

pub fn config(brokers: &str) -> CollectorConfig {
    let mut config = CollectorConfig::default();
    config.kafka.brokers = brokers.to_string();
    config.write_keys = vec![format!("test:{SECRET}")];
    config
}

pub fn now_ms() -> u64 {
    qoe_runtime::clock::epoch_ms()
}

/// A valid beacon of room `room`, identified by `(session, seq)`.
pub fn beacon(session: &str, seq: u64, room: &str) -> Value {
    json!({
        "v": 1, "type": "play_heartbeat", "ts": now_ms() - 1_000, "session_id": session, "seq": seq,
        "room_id": room, "platform": "android", "cdn": "cdn-a", "interval_ms": 10_000, "watch_ms": 9_500,
        "stall_count": 0, "stall_ms": 0
    })
}

/// Every record of `topic`, read from the beginning of every partition: until `expected` records
/// arrived and then nothing more for a second (so extra copies would be seen too), or 60 s passed.
///
/// High watermarks are not used to decide when to stop: tansu 0.6.0 reports the base offset of the
/// last batch plus one, not the last offset plus one, so a watermark-bounded read misses records.
pub fn read_topic(brokers: &str, topic: &str, expected: usize) -> Vec<(Option<String>, Value)> {
    let consumer: BaseConsumer = ClientSpec::consumer(
        "the test's reader",
        &KafkaOptions::new(brokers),
        &format!("qoe-test-reader-{}", now_ms()),
    )
    .create()
    .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        assignment
            .add_partition_offset(topic, partition.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_arrival = Instant::now();
    while Instant::now() < deadline {
        let quiet_long_enough = last_arrival.elapsed() > Duration::from_secs(1);
        if records.len() >= expected && quiet_long_enough {
            break;
        }
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.unwrap();
        let key = message.key().map(|key| String::from_utf8_lossy(key).to_string());
        let value: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
        records.push((key, value));
        last_arrival = Instant::now();
    }
    records
}
