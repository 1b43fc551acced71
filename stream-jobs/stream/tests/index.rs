//! The rollup topic and `qoe index`, over the Kafka protocol (librdkafka's in-process mock cluster):
//! `qoe stream --output kafka:` puts every document on `qoe.rollups.v1` keyed by its id, and
//! `qoe index` reads them back into the Elasticsearch sink, skipping (and counting) records that are
//! not rollup documents; a sink that refuses the documents fails the run with no offset committed,
//! so the group indexes them all later.
//!
//! No Elasticsearch can run here: the sink writes to a scripted `_bulk` responder on 127.0.0.1 that
//! acknowledges every item with the response shape of Elastic's API document and records what it
//! was sent. The responder is not Elasticsearch; the sink's own tests check requests and responses
//! against the API document (`stream-jobs/elasticsearch/tests/`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use qoe_es::{EsConfig, Retention};
use qoe_rollup::{EngineConfig, RollupDoc};
use qoe_simulator::{generate, SimConfig};
use qoe_stream::{
    read_ndjson_dir, run_file, run_index, EsOutput, FileRun, KafkaOptions, KafkaOutput, Metrics, NdjsonOutput, Output,
    TopicInput,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const ROLLUPS: &str = "qoe.rollups.v1";

/// What the responder was sent: `(index, id) -> document`, the last version of each.
type Indexed = Arc<Mutex<BTreeMap<(String, String), Value>>>;

async fn bulk(State(indexed): State<Indexed>, uri: Uri, body: Bytes) -> String {
    if uri.path() != "/_bulk" {
        return json!({"acknowledged": true}).to_string();
    }
    let text = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let mut items = Vec::new();
    let mut indexed = indexed.lock().unwrap();
    for pair in lines.chunks(2) {
        let index = pair[0]["index"]["_index"].as_str().unwrap().to_string();
        let id = pair[0]["index"]["_id"].as_str().unwrap().to_string();
        indexed.insert((index.clone(), id.clone()), pair[1].clone());
        items.push(
            json!({"index": {"_index": index, "_id": id, "status": 200, "result": "updated", "_version": 2,
            "_shards": {"total": 1, "successful": 1, "failed": 0}, "_seq_no": 1, "_primary_term": 1}}),
        );
    }
    json!({"took": 1, "errors": false, "items": items}).to_string()
}

/// A `_bulk` endpoint that refuses every document with a mapping error (HTTP 200, per-item 400).
async fn refusing(uri: Uri, body: Bytes) -> String {
    if uri.path() != "/_bulk" {
        return json!({"acknowledged": true}).to_string();
    }
    let text = String::from_utf8(body.to_vec()).unwrap();
    let items: Vec<Value> = text
        .lines()
        .step_by(2)
        .map(|line| {
            let action: Value = serde_json::from_str(line).unwrap();
            json!({"index": {"_index": action["index"]["_index"], "_id": action["index"]["_id"], "status": 400,
                "error": {"type": "document_parsing_exception", "reason": "[1:2] failed to parse field [grain]"}}})
        })
        .collect();
    json!({"took": 1, "errors": true, "items": items}).to_string()
}

async fn responder() -> (String, Indexed) {
    let indexed = Indexed::default();
    let app = axum::Router::new().fallback(bulk).with_state(indexed.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, indexed)
}

fn beacons_file(dir: &std::path::Path) -> std::path::PathBuf {
    let config = SimConfig {
        seed: 11,
        start_ms: 1_763_800_020_000,
        duration_ms: 4 * 60_000,
        rooms: 3,
        viewers: 80,
        ..SimConfig::default()
    };
    let text: String = generate(&config)
        .map(|beacon| serde_json::to_string(&beacon).unwrap() + "\n")
        .collect();
    let path = dir.join("beacons.ndjson");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_go_through_the_topic_into_the_sink() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic(ROLLUPS, 3, 1).unwrap();
    let brokers = cluster.bootstrap_servers();
    let dir = tempdir();
    let beacons = beacons_file(&dir);

    // qoe stream --input file: --output ndjson:DIR --output kafka:qoe.rollups.v1
    let kafka_output = KafkaOutput::new(&KafkaOptions::new(brokers.as_str()), ROLLUPS).unwrap();
    let ndjson_dir = dir.join("ndjson");
    let mut outputs: Vec<Box<dyn Output>> = vec![
        Box::new(NdjsonOutput::new(&ndjson_dir).unwrap()),
        Box::new(kafka_output),
    ];
    let setup = FileRun {
        engine: EngineConfig {
            room_min_viewers: 5,
            ..EngineConfig::default()
        },
        early_every: None,
        checkpoint: None,
    };
    let report = tokio::task::spawn_blocking(move || {
        let report = run_file(
            &beacons,
            setup,
            &mut outputs,
            &Metrics::new(),
            &CancellationToken::new(),
        )
        .unwrap();
        drop(outputs);
        report
    })
    .await
    .unwrap();
    let expected = read_ndjson_dir(&ndjson_dir).unwrap();
    assert_eq!(expected.len() as u64, report.final_documents);
    assert!(expected.len() > 20);

    // Every record on the topic is keyed by its document's id.
    let brokers_for_check = brokers.clone();
    let keyed = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers_for_check)
            .set("group.id", "check")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        consumer.subscribe(&[ROLLUPS]).unwrap();
        let mut keyed = 0;
        let mut seen = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while seen < report.final_documents && std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                seen += 1;
                let doc: RollupDoc = serde_json::from_slice(message.payload().unwrap()).unwrap();
                keyed += u64::from(message.key() == Some(doc.id().as_bytes()));
            }
        }
        keyed
    })
    .await
    .unwrap();
    assert_eq!(keyed, report.final_documents);

    // A record that is not a rollup document, among the good ones.
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    producer
        .send(
            BaseRecord::to(ROLLUPS)
                .key("junk")
                .payload("{\"grain\":\"cdn\",\"stall_ration\":1}"),
        )
        .map_err(|(error, _)| error)
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();

    // qoe index --exit-when-idle-secs 3
    let (url, indexed) = responder().await;
    let config = EsConfig {
        url,
        retention: Retention::None,
        ..EsConfig::default()
    };
    let registry = prometheus::Registry::new();
    let output = EsOutput::connect(config.clone(), qoe_es::EsMetrics::new(&registry))
        .await
        .unwrap();
    let input = TopicInput {
        kafka: KafkaOptions::new(brokers.clone()),
        topic: ROLLUPS.to_string(),
        group_id: "qoe-index".to_string(),
        exit_when_idle: Some(Duration::from_secs(3)),
    };
    let index_registry = registry.clone();
    let report =
        tokio::task::spawn_blocking(move || run_index(&input, &output, &index_registry, &CancellationToken::new()))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(report.invalid, 1);
    assert!(
        report.rejection_samples[0].contains("unknown field `stall_ration`"),
        "{:?}",
        report.rejection_samples
    );
    assert_eq!(report.indexed as usize, expected.len());

    // The sink holds exactly the file run's documents, each in the daily index of its window.
    {
        let indexed = indexed.lock().unwrap();
        assert_eq!(indexed.len(), expected.len());
        for ((index, id), source) in indexed.iter() {
            let doc: RollupDoc = serde_json::from_value(source.clone()).unwrap();
            assert_eq!(&doc, expected.get(id).unwrap());
            let start = qoe_schemas::time::parse_rfc3339_utc(&doc.timestamp).unwrap();
            assert_eq!(index, &config.index_for(start));
        }
    }
    let metrics = qoe_runtime::metrics::render(&registry);
    assert!(
        metrics.contains("qoe_index_records_total{outcome=\"invalid\"} 1"),
        "{metrics}"
    );

    // A sink that refuses every document: the run fails and commits no offset, so the same group
    // later indexes every document into a sink that takes them.
    let app = axum::Router::new().fallback(refusing);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refusing_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let group = "qoe-index-refused";
    let run = |url: String| {
        let brokers = brokers.clone();
        async move {
            let registry = prometheus::Registry::new();
            let config = EsConfig {
                url,
                retention: Retention::None,
                ..EsConfig::default()
            };
            let output = EsOutput::connect(config, qoe_es::EsMetrics::new(&registry))
                .await
                .unwrap();
            let input = TopicInput {
                // The failed run's member is forgotten sooner, so the next run of the group starts
                // sooner.
                kafka: KafkaOptions::new(brokers).with_overrides(vec![
                    ("session.timeout.ms".to_string(), "6000".to_string()),
                    ("heartbeat.interval.ms".to_string(), "500".to_string()),
                ]),
                topic: ROLLUPS.to_string(),
                group_id: group.to_string(),
                exit_when_idle: Some(Duration::from_secs(3)),
            };
            tokio::task::spawn_blocking(move || run_index(&input, &output, &registry, &CancellationToken::new()))
                .await
                .unwrap()
        }
    };
    let refused = run(refusing_url).await.unwrap_err().to_string();
    assert!(refused.contains("document_parsing_exception"), "{refused}");
    let brokers_for_check = brokers.clone();
    let committed = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers_for_check)
            .set("group.id", group)
            .create()
            .unwrap();
        let mut wanted = rdkafka::TopicPartitionList::new();
        for partition in 0..3 {
            wanted.add_partition(ROLLUPS, partition);
        }
        let committed = consumer.committed_offsets(wanted, Duration::from_secs(10)).unwrap();
        committed
            .elements()
            .iter()
            .filter(|element| matches!(element.offset(), rdkafka::Offset::Offset(_)))
            .count()
    })
    .await
    .unwrap();
    assert_eq!(
        committed, 0,
        "offsets committed although the sink refused the documents"
    );
    let (url, indexed) = responder().await;
    let report = run(url).await.unwrap();
    assert_eq!(report.indexed as usize, expected.len(), "{report:?}");
    assert_eq!(indexed.lock().unwrap().len(), expected.len());
    std::fs::remove_dir_all(&dir).ok();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("qoe-index-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
