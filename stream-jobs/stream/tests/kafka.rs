//! The stream job reading `qoe.beacons.v1` over the Kafka protocol (librdkafka's in-process mock
//! cluster): the documents equal those of the same beacons read from a file, and a job stopped in the
//! middle and started again (resuming from its checkpoint on the checkpoint topic) leaves the same
//! documents; the checkpoint of one group is not another's.

use std::path::Path;
use std::time::{Duration, Instant};

use qoe_rollup::EngineConfig;
use qoe_simulator::{generate, SimConfig};
use qoe_stream::{
    read_ndjson_dir, run_file, run_kafka, FileRun, KafkaInput, KafkaOptions, Metrics, NdjsonOutput, Output, TopicInput,
};
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "qoe.beacons.v1";

fn lines() -> Vec<(String, String)> {
    let config = SimConfig {
        seed: 3,
        start_ms: 1_763_800_020_000,
        duration_ms: 6 * 60_000,
        rooms: 4,
        viewers: 150,
        ..SimConfig::default()
    };
    generate(&config)
        .map(|beacon| (beacon.room_id.clone(), serde_json::to_string(&beacon).unwrap()))
        .collect()
}

fn produce(brokers: &str, records: &[(String, String)]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (key, text) in records {
        let mut record = BaseRecord::to(TOPIC).payload(text.as_str()).key(key.as_str());
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

/// A mock cluster with the beacon topic (`partitions` partitions) and the checkpoint topic, and its
/// bootstrap servers. The mock cluster does not serve CreateTopics, which the job uses when the
/// checkpoint topic is missing.
fn mock_cluster(partitions: i32) -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String) {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic(TOPIC, partitions, 1).expect("topic");
    cluster
        .create_topic(qoe_stream::CHECKPOINT_TOPIC, 1, 1)
        .expect("checkpoint topic");
    let brokers = cluster.bootstrap_servers();
    (cluster, brokers)
}

fn engine() -> EngineConfig {
    EngineConfig {
        room_min_viewers: 5,
        ..EngineConfig::default()
    }
}

fn outputs(dir: &Path) -> Vec<Box<dyn Output>> {
    vec![Box::new(NdjsonOutput::new(dir).unwrap())]
}

fn input(brokers: &str, group: &str, exit_when_idle: Option<Duration>) -> KafkaInput {
    KafkaInput {
        source: TopicInput {
            kafka: KafkaOptions::new(brokers),
            topic: TOPIC.to_string(),
            group_id: group.to_string(),
            exit_when_idle,
        },
        checkpoint_topic: qoe_stream::CHECKPOINT_TOPIC.to_string(),
        early_every: None,
    }
}

/// The documents of the same beacons read from a file.
fn from_file(records: &[(String, String)], dir: &Path) -> String {
    let path = dir.join("beacons.ndjson");
    let text: String = records.iter().map(|(_, line)| format!("{line}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let setup = FileRun {
        engine: engine(),
        early_every: None,
        checkpoint: None,
    };
    let out = dir.join("from-file");
    run_file(
        &path,
        setup,
        &mut outputs(&out),
        &Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    as_text(&out)
}

fn as_text(dir: &Path) -> String {
    read_ndjson_dir(dir)
        .unwrap()
        .values()
        .map(|doc| serde_json::to_string(doc).unwrap() + "\n")
        .collect()
}

#[test]
fn kafka_documents_equal_file_documents_and_survive_a_stop_in_the_middle() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _context = runtime.enter();
    let (_cluster, brokers) = mock_cluster(3);
    let records = lines();
    produce(&brokers, &records);
    let dir = std::env::temp_dir().join(format!("qoe-stream-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let expected = from_file(&records, &dir);
    assert!(expected.lines().count() > 100, "{} documents", expected.lines().count());

    // One uninterrupted run.
    let whole = dir.join("whole");
    let report = run_kafka(
        &input(&brokers, "whole", Some(Duration::from_secs(2))),
        engine(),
        &mut outputs(&whole),
        &Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(report.counted, records.len() as u64, "{report:?}");
    assert_eq!(as_text(&whole), expected, "kafka and file documents");

    // A second group: a run over the first 60 % of the records, stopped once it wrote final documents
    // (its open windows are left to the next run); then the rest is produced and a second run of the
    // group resumes from the committed checkpoint.
    let (_cluster, brokers) = mock_cluster(3);
    let split = records.len() * 3 / 5;
    produce(&brokers, &records[..split]);
    let stopped = dir.join("stopped");
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let slow = input(&brokers, "stopped", None);
    let first = std::thread::scope(|scope| {
        let job = scope.spawn(|| {
            let _context = runtime.enter();
            run_kafka(&slow, engine(), &mut outputs(&stopped), &metrics, &shutdown)
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let final_documents = || metrics.documents.with_label_values(&["final"]).get();
        let counted = || metrics.outcome("counted").get();
        while (final_documents() == 0 || counted() < split as u64) && Instant::now() < deadline && !job.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        shutdown.cancel();
        job.join().unwrap().unwrap()
    });
    assert!(
        first.windows >= 1,
        "the first run closed a window before it stopped: {first:?}"
    );
    assert_eq!(first.counted, split as u64, "{first:?}");
    produce(&brokers, &records[split..]);
    let second = run_kafka(
        &input(&brokers, "stopped", Some(Duration::from_secs(2))),
        engine(),
        &mut outputs(&stopped),
        &Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    assert!(
        second.counted < records.len() as u64,
        "the second run resumed, not restarted: {second:?}"
    );
    assert!(
        first.counted + second.counted >= records.len() as u64,
        "{first:?} {second:?}"
    );
    assert_eq!(as_text(&stopped), expected, "documents after a stop and a restart");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn each_group_resumes_from_its_own_checkpoint_only() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _context = runtime.enter();
    let (_cluster, brokers) = mock_cluster(2);
    let records = lines();
    produce(&brokers, &records);
    let dir = std::env::temp_dir().join(format!("qoe-stream-kafka-groups-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = |group: &str, out: &str| {
        run_kafka(
            &input(&brokers, group, Some(Duration::from_secs(2))),
            engine(),
            &mut outputs(&dir.join(out)),
            &Metrics::new(),
            &CancellationToken::new(),
        )
    };
    let first = run("group-a", "a").unwrap();
    assert_eq!(first.counted, records.len() as u64, "{first:?}");
    // Group a saved its checkpoint: run again after one more record (a producer retry of the last
    // one), it reads only that.
    produce(&brokers, &records[records.len() - 1..]);
    let again = run("group-a", "a").unwrap();
    assert_eq!(again.records, 1, "group a resumed at the end: {again:?}");
    assert_eq!(again.counted, 0, "{again:?}");
    // Group b shares the checkpoint topic but not the key: it reads everything.
    let other = run("group-b", "b").unwrap();
    assert_eq!(other.records, records.len() as u64 + 1, "{other:?}");
    assert_eq!(other.counted, records.len() as u64, "{other:?}");
    assert_eq!(as_text(&dir.join("a")), as_text(&dir.join("b")));

    // A group with committed offsets but no checkpoint is refused, not read from the start.
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "group-c")
        .create()
        .unwrap();
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset(TOPIC, 0, rdkafka::Offset::Offset(5))
        .unwrap();
    rdkafka::consumer::Consumer::commit(&consumer, &offsets, rdkafka::consumer::CommitMode::Sync).unwrap();
    let refused = run("group-c", "c").unwrap_err().to_string();
    assert!(
        refused.contains("has committed offsets") && refused.contains("group-c"),
        "{refused}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_checkpoint_with_the_largest_save_number_wins_whatever_its_partition() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _context = runtime.enter();
    let (cluster, brokers) = mock_cluster(1);
    let checkpoints = "qoe.stream.checkpoints.two-partitions";
    cluster.create_topic(checkpoints, 2, 1).expect("checkpoint topic");
    let records = lines();
    produce(&brokers, &records);
    let checkpoint = |seq: u64, offset: i64| {
        format!(
            r#"{{"v":1,"seq":{seq},"topic":"{TOPIC}","checkpoint":{{"closed_through_ms":0,"partitions":{{"0":{{"offset":{offset},"max_event_ms":null}}}}}}}}"#
        )
    };
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
    // Partition 0: the newest save (100). Partition 1, read after it: an old record that is not a
    // checkpoint at all, then an older save (40).
    let newest = checkpoint(7, 100);
    let older = checkpoint(6, 40);
    for (partition, payload) in [(0, newest.as_str()), (1, "not json"), (1, older.as_str())] {
        producer
            .send(
                BaseRecord::to(checkpoints)
                    .partition(partition)
                    .key("two")
                    .payload(payload),
            )
            .map_err(|(error, _)| error)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    }
    let mut resumed = input(&brokers, "two", Some(Duration::from_secs(2)));
    resumed.checkpoint_topic = checkpoints.to_string();
    let dir = std::env::temp_dir().join(format!("qoe-stream-kafka-seq-{}", std::process::id()));
    let report = run_kafka(
        &resumed,
        engine(),
        &mut outputs(&dir),
        &Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report.records, records.len() as u64 - 100, "{report:?}");
}

/// An output whose first write takes `delay`, as a slow Elasticsearch bulk would.
struct SlowFirstWrite {
    inner: NdjsonOutput,
    delay: Option<Duration>,
}

impl Output for SlowFirstWrite {
    fn name(&self) -> String {
        "slow-first-write".to_string()
    }

    fn write(&mut self, emissions: &[qoe_rollup::Emission]) -> Result<(), qoe_stream::StreamError> {
        if let Some(delay) = self.delay.take() {
            std::thread::sleep(delay);
        }
        self.inner.write(emissions)
    }
}

/// `exit_when_idle` means no record for that long, not that long since the last record processed:
/// a write longer than the idle time, with records waiting in the topic, must not end the run.
#[test]
fn a_write_longer_than_the_idle_time_does_not_end_the_run_early() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _context = runtime.enter();
    let (_cluster, brokers) = mock_cluster(1);
    let records = lines();
    produce(&brokers, &records);
    let dir = std::env::temp_dir().join(format!("qoe-stream-kafka-slow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut outputs: Vec<Box<dyn Output>> = vec![Box::new(SlowFirstWrite {
        inner: NdjsonOutput::new(&dir).unwrap(),
        delay: Some(Duration::from_millis(2_500)),
    })];
    let report = run_kafka(
        &input(&brokers, "slow-write", Some(Duration::from_secs(1))),
        engine(),
        &mut outputs,
        &Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(report.records, records.len() as u64, "{report:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
