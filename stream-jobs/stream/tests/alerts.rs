//! Alerting wired into the jobs, over the Kafka protocol (librdkafka's in-process mock cluster):
//! `qoe stream --alert-rules default` writes its events to NDJSON, the `qoe.alerts` topic and an
//! Alertmanager-compatible webhook (a receiver on 127.0.0.1 in this test), and `qoe alert` over the
//! rollup topic raises the same events, with the same ids, as the embedded path.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use qoe_alert::{AlertEvent, AlertState, Level, RuleSet};
use qoe_rollup::EngineConfig;
use qoe_simulator::{generate, SimConfig};
use qoe_stream::{
    run_alerts, run_file, AlertOutput, AlertSink, FileRun, KafkaOptions, KafkaOutput, Metrics, Output, TopicInput,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

type Received = Arc<Mutex<Vec<Value>>>;

async fn receive(State(received): State<Received>, body: Bytes) -> &'static str {
    received.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
    "ok"
}

fn read_events(path: &std::path::Path) -> Vec<AlertEvent> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_and_kafka_alerting_raise_the_same_localised_events() {
    let dir = std::env::temp_dir().join(format!("qoe-alerts-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = SimConfig {
        seed: 7,
        start_ms: 1_763_800_020_000,
        duration_ms: 3 * 3_600_000,
        rooms: 8,
        viewers: 300,
        ..SimConfig::default()
    };
    let beacons = dir.join("beacons.ndjson");
    let text: String = generate(&config)
        .map(|beacon| serde_json::to_string(&beacon).unwrap() + "\n")
        .collect();
    std::fs::write(&beacons, text).unwrap();

    let cluster = MockCluster::new(3).unwrap();
    // librdkafka's mock cluster keeps about 5 MB per partition and drops older records: three
    // hours of rollups need more than three partitions' worth.
    cluster.create_topic("qoe.rollups.v1", 16, 1).unwrap();
    cluster.create_topic("qoe.alerts", 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();

    let received = Received::default();
    let app = axum::Router::new().fallback(receive).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook = format!("http://{}/alerts", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // qoe stream --input file: --output kafka:qoe.rollups.v1 --alert-rules default
    //   --alert-output ndjson:DIR --alert-output kafka:qoe.alerts --alert-output webhook:URL
    let embedded_dir = dir.join("embedded");
    let sinks = vec![
        AlertSink::Ndjson(embedded_dir.clone()),
        AlertSink::Kafka(KafkaOutput::new(&KafkaOptions::new(brokers.as_str()), "qoe.alerts").unwrap()),
        AlertSink::Webhook(webhook),
    ];
    let alerts = AlertOutput::new(RuleSet::default_rules(), sinks, Some(dir.join("alert-state.json"))).unwrap();
    let rollups = KafkaOutput::new(&KafkaOptions::new(brokers.as_str()), "qoe.rollups.v1").unwrap();
    let mut outputs: Vec<Box<dyn Output>> = vec![Box::new(rollups), Box::new(alerts)];
    tokio::task::spawn_blocking(move || {
        let setup = FileRun {
            engine: EngineConfig::default(),
            early_every: None,
            checkpoint: None,
        };
        run_file(
            &beacons,
            setup,
            &mut outputs,
            &Metrics::new(),
            &CancellationToken::new(),
        )
        .unwrap();
    })
    .await
    .unwrap();
    let embedded = read_events(&embedded_dir.join("alerts.ndjson"));

    // Exactly the two incidents, each firing then resolved, each localised.
    let firing: Vec<&AlertEvent> = embedded
        .iter()
        .filter(|event| event.state == AlertState::Firing)
        .collect();
    let places: Vec<(Level, &str)> = firing
        .iter()
        .map(|event| (event.localisation.level, event.localisation.target.as_str()))
        .collect();
    assert_eq!(places.len(), 2, "{embedded:#?}");
    assert!(places.contains(&(Level::Cdn, "cdn-b")), "{places:?}");
    assert!(places.contains(&(Level::Publisher, "room-0001")), "{places:?}");
    assert_eq!(embedded.len(), 4, "each alert fires and resolves once");
    assert!(dir.join("alert-state.json").exists());
    // Every field of the events is in the qoe-alerts mappings (strict: an unmapped one is refused).
    let mappings = qoe_es::template::alert_mappings();
    for event in &embedded {
        for (field, value) in serde_json::to_value(event).unwrap().as_object().unwrap() {
            let mapping = &mappings["properties"][field];
            assert!(mapping.is_object(), "{field} is not mapped");
            if let Some(known) = mapping["properties"]
                .as_object()
                .filter(|_| mapping["dynamic"] == "strict")
            {
                assert!(
                    value.as_object().unwrap().keys().all(|key| known.contains_key(key)),
                    "{field}: {value}"
                );
            }
        }
    }

    // The webhook got Alertmanager payloads for the same four transitions.
    let payloads = received.lock().unwrap().clone();
    let webhook_alerts: Vec<&Value> = payloads
        .iter()
        .flat_map(|payload| payload["alerts"].as_array().unwrap())
        .collect();
    assert_eq!(webhook_alerts.len(), 4);
    assert!(payloads.iter().all(|payload| payload["version"] == "4"));
    assert!(webhook_alerts
        .iter()
        .any(|alert| alert["labels"]["target"] == "cdn-b" && alert["status"] == "resolved"));

    // The qoe.alerts topic has the four events, keyed by fingerprint.
    let on_topic = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", "check")
                .set("auto.offset.reset", "earliest")
                .create()
                .unwrap();
            consumer.subscribe(&["qoe.alerts"]).unwrap();
            let mut events = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while events.len() < 4 && std::time::Instant::now() < deadline {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    let event: AlertEvent = serde_json::from_slice(message.payload().unwrap()).unwrap();
                    assert_eq!(message.key(), Some(event.fingerprint.as_bytes()));
                    events.push(event);
                }
            }
            events
        }
    })
    .await
    .unwrap();
    assert_eq!(on_topic, embedded);

    // qoe alert over qoe.rollups.v1: the same events, the same ids.
    let kafka_dir = dir.join("from-kafka");
    let mut output = AlertOutput::new(
        RuleSet::default_rules(),
        vec![AlertSink::Ndjson(kafka_dir.clone())],
        None,
    )
    .unwrap();
    let input = TopicInput {
        kafka: KafkaOptions::new(brokers),
        topic: "qoe.rollups.v1".to_string(),
        group_id: "qoe-alert".to_string(),
        exit_when_idle: Some(Duration::from_secs(5)),
    };
    let report = tokio::task::spawn_blocking(move || run_alerts(&input, &mut output, &CancellationToken::new()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.invalid, 0, "{report:?}");
    assert_eq!(report.events, 4, "{report:?}");
    assert_eq!(read_events(&kafka_dir.join("alerts.ndjson")), embedded);
    std::fs::remove_dir_all(&dir).ok();
}
