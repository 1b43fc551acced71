//! End to end against a real Kafka-API broker process (`KAFKA_BROKERS`; `scripts/test.sh` starts
//! tansu 0.6.0 and sets it). Ignored without a broker: run with `-- --include-ignored`.
//!
//! Each test writes to its own topics, so a long-lived broker can be reused across runs.

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use support::{beacon, config, now_ms, read_topic, Collector};

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS names the broker for the end-to-end suite")
}

async fn create(brokers: &str, topics: &[&str]) {
    let outcomes =
        qoe_runtime::kafka::create_topics(&qoe_runtime::kafka::KafkaOptions::new(brokers), topics, 4, 1, &[])
            .await
            .unwrap();
    assert!(outcomes
        .iter()
        .all(|(_, outcome)| *outcome == qoe_runtime::kafka::TopicOutcome::Created));
}

/// A collector config writing to topics of this test's own: (config, beacon topic, dead-letter topic).
fn e2e_config(test: &str) -> (qoe_collector::CollectorConfig, String, String) {
    let (topic, dlq_topic) = unique_topics(test);
    let mut config = config(&brokers());
    config.kafka.topic = topic.clone();
    config.kafka.dlq_topic = dlq_topic.clone();
    (config, topic, dlq_topic)
}

fn unique_topics(test: &str) -> (String, String) {
    let suffix = format!("{test}.{}", now_ms());
    (
        format!("qoe.beacons.e2e.{suffix}"),
        format!("qoe.beacons.dlq.e2e.{suffix}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka-API broker in KAFKA_BROKERS (scripts/test.sh starts one)"]
async fn beacons_reach_a_real_broker_enriched_and_in_room_order() {
    let brokers = brokers();
    let (config, topic, dlq_topic) = e2e_config("order");

    // The collector never creates topics: until they exist it is unready and answers 503.
    let collector = Collector::spawn(config).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (status, text) = collector.get("/readyz").await;
    assert_eq!(
        (status, text.trim()),
        (503, format!("topic {topic} does not exist").as_str())
    );
    let (status, _, body) = collector.post(&[beacon("order", 0, "room-a")]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "kafka_unavailable");
    create(&brokers, &[&topic, &dlq_topic]).await;
    collector.wait_ready(std::time::Duration::from_secs(30)).await;

    let rooms = ["room-a", "room-b", "room-c", "room-d", "room-e"];
    let mut sent = 0;
    for request in 0..10u64 {
        let mut batch: Vec<Value> = (0..50u64)
            .map(|i| {
                let seq = request * 50 + i;
                beacon("order", seq, rooms[(seq % rooms.len() as u64) as usize])
            })
            .collect();
        batch.push(json!({"v": 1, "type": "play_start"}));
        let (status, _, body) = collector.post(&batch).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], 50);
        assert_eq!(body["rejected"].as_array().unwrap().len(), 1);
        sent += 50;
    }

    let records = read_topic(&brokers, &topic, sent);
    assert_eq!(records.len(), sent, "every acknowledged beacon is in the topic, once");
    let mut seqs_by_room: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (key, record) in &records {
        assert_eq!(key.as_deref(), record["room_id"].as_str());
        assert_eq!(record["key_id"], "test");
        assert!(record["event_time"].is_u64() && record["received_at"].is_u64());
        seqs_by_room
            .entry(record["room_id"].as_str().unwrap().to_string())
            .or_default()
            .push(record["seq"].as_u64().unwrap());
    }
    assert_eq!(seqs_by_room.len(), rooms.len());
    for (room, seqs) in &seqs_by_room {
        // read_topic returns each partition's records in offset order, and a room lives in one partition.
        assert!(
            seqs.windows(2).all(|pair| pair[0] < pair[1]),
            "{room} out of order: {seqs:?}"
        );
    }
    let letters = read_topic(&brokers, &dlq_topic, 10);
    assert_eq!(letters.len(), 10);
    assert!(letters
        .iter()
        .all(|(_, letter)| letter["error"] == "ts: required on play_start beacons"));
    collector.stop().await;
}

/// The whole foundation path: the simulator posts gzip batches over HTTP, the collector validates and
/// produces, the broker stores. Every beacon the collector counted as accepted is in the beacon topic
/// exactly once, every rejected one is in the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka-API broker in KAFKA_BROKERS (scripts/test.sh starts one)"]
async fn simulated_traffic_lands_in_the_broker_exactly_as_acknowledged() {
    let brokers = brokers();
    let (config, topic, dlq_topic) = e2e_config("simulator");
    create(&brokers, &[&topic, &dlq_topic]).await;
    let collector = Collector::start(config).await;

    let duration_ms = 5 * 60_000;
    let simulation = qoe_simulator::SimConfig {
        seed: 42,
        start_ms: now_ms() - duration_ms - 60_000,
        duration_ms,
        rooms: 5,
        viewers: 100,
        invalid_fraction: 0.02,
        gzip: true,
        target: qoe_simulator::Target::Http {
            url: format!("http://{}", collector.address),
            write_key: support::SECRET.to_string(),
        },
        ..qoe_simulator::SimConfig::default()
    };
    let report = qoe_simulator::run(simulation, Default::default()).await.unwrap();
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.accepted > 1_000 && report.rejected > 0, "{report}");
    assert_eq!(report.accepted + report.rejected, report.sent);

    let records = read_topic(&brokers, &topic, report.accepted as usize);
    assert_eq!(records.len() as u64, report.accepted);
    let mut identities = std::collections::HashSet::new();
    for (_, record) in &records {
        let identity = (
            record["session_id"].as_str().unwrap().to_string(),
            record["seq"].as_u64().unwrap(),
        );
        assert!(identities.insert(identity), "a beacon stored twice: {record}");
    }
    assert_eq!(
        read_topic(&brokers, &dlq_topic, report.rejected as usize).len() as u64,
        report.rejected
    );
    collector.stop().await;
}
