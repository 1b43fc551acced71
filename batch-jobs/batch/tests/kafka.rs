//! The batch job reading `qoe.beacons.v1` over the Kafka protocol: librdkafka's mock cluster for the fast
//! suite, and a real broker (tansu, started by `scripts/test.sh`, address in `KAFKA_BROKERS`) for the
//! end-to-end one. Both check that the warehouse, not the consumer group, decides what is stored: a
//! second group over the same warehouse stores nothing twice.

mod support;

use std::time::{Duration, Instant};

use qoe_batch::{run_kafka, JobConfig, KafkaOptions, Metrics, RunReport, TopicInput};
use qoe_runtime::kafka::{create_topics, ClientSpec};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use support::{line, simulated, warehouse_rows, write_lines};
use tokio_util::sync::CancellationToken;

fn produce(brokers: &str, topic: &str, lines: &[String], keys: &[String]) {
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientSpec::producer("the test producer", &KafkaOptions::new(brokers))
            .default("linger.ms", 5)
            .create()
            .expect("producer");
    for (text, key) in lines.iter().zip(keys) {
        let mut record = BaseRecord::to(topic).payload(text.as_str()).key(key.as_str());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Options on `brokers` with which a member that left is forgotten sooner, so that the next run of
/// the group starts sooner.
fn quick_rejoin(brokers: &str) -> KafkaOptions {
    KafkaOptions::new(brokers).with_overrides(vec![
        ("session.timeout.ms".to_string(), "6000".to_string()),
        ("heartbeat.interval.ms".to_string(), "500".to_string()),
    ])
}

/// Creates `topic` with `partitions` partitions, one replica, on a real broker.
fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcomes = runtime
        .block_on(create_topics(&KafkaOptions::new(brokers), &[topic], partitions, 1, &[]))
        .expect("create topic");
    assert_eq!(outcomes.len(), 1);
}

/// Runs the job until it has been offered `expected` records in all (a real consumer runs until
/// shutdown; the count is the test's way to know it is done), then shuts it down.
fn consume(brokers: &str, topic: &str, group: &str, warehouse: &std::path::Path, expected: u64) -> RunReport {
    let input = TopicInput {
        kafka: quick_rejoin(brokers),
        topic: topic.to_string(),
        group_id: group.to_string(),
        exit_when_idle: None,
    };
    let config = JobConfig {
        flush_records: 700,
        ..JobConfig::new(warehouse)
    };
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let job = {
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        std::thread::spawn(move || run_kafka(&input, config, metrics, &shutdown))
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let offered = || {
        ["accepted", "duplicate", "rejected", "already_stored"]
            .iter()
            .map(|outcome| metrics.records.with_label_values(&[*outcome]).get())
            .sum::<u64>()
    };
    while offered() < expected && Instant::now() < deadline && !job.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "group {group}: {} of {expected} records in {:?}",
        offered(),
        started.elapsed()
    );
    assert_eq!(offered(), expected, "records offered to group {group}");
    shutdown.cancel();
    job.join().expect("job thread").expect("batch job")
}

/// Stores beacons from the topic, then more beacons with retries of earlier ones, then runs a new group
/// over the same warehouse; the warehouse must equal the one built from a file of the same beacons.
fn exactly_once_across_groups(brokers: &str, topic: &str) {
    // Small enough that no partition passes the mock cluster's log size limit (about 5 MB per partition,
    // beyond which it drops the oldest records).
    let beacons = simulated(20, 80, 8, 5);
    let lines: Vec<String> = beacons.iter().map(line).collect();
    let keys: Vec<String> = beacons.iter().map(|beacon| beacon.room_id.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    let half = lines.len() / 2;

    produce(brokers, topic, &lines[..half], &keys[..half]);
    let first = consume(brokers, topic, "batch-a", &warehouse, half as u64);
    assert_eq!(first.accepted as usize, half);

    // The rest, plus SDK retries of 100 beacons of the first half.
    let mut rest: Vec<String> = lines[half..].to_vec();
    let mut rest_keys: Vec<String> = keys[half..].to_vec();
    rest.extend(lines[..100].iter().cloned());
    rest_keys.extend(keys[..100].iter().cloned());
    produce(brokers, topic, &rest, &rest_keys);
    let second = consume(brokers, topic, "batch-a", &warehouse, rest.len() as u64);
    assert_eq!(second.accepted as usize, lines.len() - half);
    assert_eq!(second.duplicates, 100);

    let fresh_group = consume(brokers, topic, "batch-b", &warehouse, (lines.len() + 100) as u64);
    assert_eq!(fresh_group.accepted, 0);
    assert_eq!(fresh_group.already_stored as usize, lines.len() + 100);

    let reference = dir.path().join("reference");
    let input = write_lines(dir.path(), "beacons.ndjson", &lines);
    qoe_batch::run_file(
        &input,
        JobConfig::new(&reference),
        Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(warehouse_rows(&warehouse), warehouse_rows(&reference));
}

#[test]
fn mock_cluster_partitions_land_exactly_once() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(qoe_schemas::BEACONS_TOPIC, 4, 1).unwrap();
    exactly_once_across_groups(&cluster.bootstrap_servers(), qoe_schemas::BEACONS_TOPIC);
}

#[test]
#[ignore = "needs a Kafka broker in KAFKA_BROKERS (scripts/test.sh starts tansu)"]
fn real_broker_partitions_land_exactly_once() {
    let brokers = std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS");
    let topic = format!("qoe.beacons.batch-e2e-{}", std::process::id());
    create_topic(&brokers, &topic, 3);
    exactly_once_across_groups(&brokers, &topic);
}

/// A source resumed inside a record batch: every record after the resume point is either stored or
/// reported as skipped (`qoe_batch_resume_skipped_offsets_total`). On a broker that serves a fetch
/// from inside a batch (Apache Kafka, the mock cluster) all are stored; tansu 0.6.0 answers from the
/// next batch, and the job must say so rather than pass over the rest of the batch in silence.
#[test]
#[ignore = "needs a Kafka broker in KAFKA_BROKERS (scripts/test.sh starts tansu)"]
fn real_broker_a_resume_inside_a_batch_stores_or_reports_every_record() {
    let brokers = std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS");
    let topic = format!("qoe.beacons.batch-resume-{}", std::process::id());
    let group = format!("batch-resume-{}", std::process::id());
    create_topic(&brokers, &topic, 1);
    let lines: Vec<String> = simulated(20, 80, 8, 5).iter().take(20).map(line).collect();
    let keys = vec!["room".to_string(); lines.len()];
    // Two record batches of ten.
    produce(&brokers, &topic, &lines[..10], &keys[..10]);
    produce(&brokers, &topic, &lines[10..], &keys[10..]);
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    // The warehouse holds offsets 0..5 of partition 0 (stored from a mock-cluster topic with just
    // those five records: a source is named by its partition), and the group resumes at offset 5:
    // inside the broker's first batch.
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic(&topic, 1, 1).unwrap();
    produce(&mock.bootstrap_servers(), &topic, &lines[..5], &keys[..5]);
    let input = |brokers: &str| TopicInput {
        kafka: quick_rejoin(brokers),
        topic: topic.clone(),
        group_id: group.clone(),
        exit_when_idle: Some(Duration::from_secs(3)),
    };
    let first = run_kafka(
        &input(&mock.bootstrap_servers()),
        JobConfig::new(&warehouse),
        Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(first.accepted, 5);
    // Moves the group's committed offset back to 5, as a group member that committed it would.
    let consumer: BaseConsumer = ClientSpec::consumer("the test's group member", &KafkaOptions::new(&brokers), &group)
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(&topic, 0, Offset::Offset(5)).unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(consumer);
    let input = input(&brokers);
    let metrics = Metrics::new();
    let second = run_kafka(
        &input,
        JobConfig::new(&warehouse),
        metrics.clone(),
        &CancellationToken::new(),
    )
    .unwrap();
    let skipped = metrics.resume_skipped.get();
    eprintln!(
        "second run: {} stored, {skipped} offsets reported skipped",
        second.accepted
    );
    assert!(skipped == 0 || skipped == 5, "skipped {skipped}");
    assert_eq!(
        second.accepted + skipped,
        15,
        "every record after the resume point is stored or reported"
    );
}

/// `qoe_batch_assigned_partitions` shows the partitions the consumer group gave the job: the whole
/// topic for a single member.
#[test]
fn the_assigned_partitions_gauge_shows_the_whole_assignment() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic(qoe_schemas::BEACONS_TOPIC, 4, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input = TopicInput {
        kafka: KafkaOptions::new(cluster.bootstrap_servers()),
        topic: qoe_schemas::BEACONS_TOPIC.to_string(),
        group_id: "batch-gauge".to_string(),
        exit_when_idle: None,
    };
    let metrics = Metrics::new();
    assert_eq!(metrics.assigned_partitions.get(), 0);
    let shutdown = CancellationToken::new();
    let job = {
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        let config = JobConfig::new(dir.path().join("warehouse"));
        std::thread::spawn(move || run_kafka(&input, config, metrics, &shutdown))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.assigned_partitions.get() == 0 && Instant::now() < deadline && !job.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metrics.assigned_partitions.get(), 4);
    assert!(metrics.render().contains("qoe_batch_assigned_partitions 4"));
    shutdown.cancel();
    job.join().expect("job thread").expect("batch job");
}

/// A `--kafka-option` for a property the job fixes is refused before any client is created, by an
/// error that names the topic and whose source names the option and the setting that owns it.
#[test]
fn a_kafka_option_the_job_fixes_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = TopicInput {
        kafka: KafkaOptions::new("127.0.0.1:1")
            .with_overrides(vec![("enable.partition.eof".to_string(), "true".to_string())]),
        topic: qoe_schemas::BEACONS_TOPIC.to_string(),
        group_id: "batch-refused".to_string(),
        exit_when_idle: Some(Duration::from_secs(1)),
    };
    let error = run_kafka(
        &input,
        JobConfig::new(dir.path().join("warehouse")),
        Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap_err();
    assert!(matches!(error, qoe_batch::BatchError::KafkaClient { .. }), "{error:?}");
    assert_eq!(error.to_string(), "building the consumer of \"qoe.beacons.v1\"");
    let source = std::error::Error::source(&error).expect("a source").to_string();
    assert_eq!(
        source,
        "kafka option \"enable.partition.eof=true\": set by the pipeline (the job does not read \
         end-of-partition events), remove it from the pass-through options"
    );
}
