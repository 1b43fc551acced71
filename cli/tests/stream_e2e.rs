//! `qoe stream --input kafka` end to end: the real binary, killed with SIGKILL while beacons
//! arrive and restarted with the same group until a run exits by itself, on a real Kafka-API broker
//! (`KAFKA_BROKERS`; `scripts/test.sh` starts tansu 0.6.0 and sets it; ignored without one: run with
//! `-- --include-ignored`) and on librdkafka's mock cluster served from this test process over TCP.
//!
//! The issue's delivery requirement: offsets are committed only after every output acknowledged the
//! windows that cover them, so a job killed at any moment and restarted converges to the same final
//! documents, no window lost and none double counted. The reference is `qoe stream --input file:`
//! over the same records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qoe_rollup::RollupDoc;
use qoe_simulator::{generate, SimConfig};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// How long one run may take to write something before it is killed anyway.
const RUN_WAIT: Duration = Duration::from_secs(30);

/// Delays between a run's first write and its SIGKILL: at once (mid-write, before the commit), and
/// later (after some commits).
const KILL_DELAYS_MS: [u64; 5] = [0, 3, 40, 150, 700];

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS names the broker for the end-to-end suite")
}

fn qoe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qoe"))
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()
}

/// The records, in production order, as (room key, JSON): 12 simulated minutes, and one record in 40
/// sent twice (what a producer retry does), which the job must count once.
fn records() -> Vec<(String, String)> {
    let config = SimConfig {
        seed: 5,
        start_ms: 1_763_800_020_000,
        duration_ms: 12 * 60_000,
        rooms: 6,
        viewers: 300,
        ..SimConfig::default()
    };
    let mut records = Vec::new();
    for (index, beacon) in generate(&config).enumerate() {
        let record = (beacon.room_id.clone(), serde_json::to_string(&beacon).unwrap());
        if index % 40 == 7 {
            records.push(record.clone());
        }
        records.push(record);
    }
    records
}

/// Produces `records` at about `per_second`, in room-keyed order (the collector's keying); with
/// `one_per_batch`, every record in a record batch of its own.
fn produce_paced(brokers: &str, topic: &str, records: &[(String, String)], per_second: usize, one_per_batch: bool) {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("compression.type", "lz4");
    if one_per_batch {
        config.set("batch.num.messages", "1");
    }
    let producer: ThreadedProducer<DefaultProducerContext> = config.create().expect("producer");
    let chunk = (per_second / 10).max(1);
    let started = Instant::now();
    for (number, records) in records.chunks(chunk).enumerate() {
        let due = started + Duration::from_millis(100 * number as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for (key, text) in records {
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
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Total bytes of the `.ndjson` files in `dir`.
fn written_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().extension().is_some_and(|extension| extension == "ndjson"))
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// Lines in the `.ndjson` files of `dir` (documents written, repeats included).
fn written_lines(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().extension().is_some_and(|extension| extension == "ndjson"))
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap().lines().count())
        .sum()
}

/// The log line of a run that found its first record after its resume offset.
const SKIPPED: &str = "the broker returned records after the resume offset";

/// Ten records in one record batch on partition 0 of a new topic, then a read from offset 5:
/// whether the broker answers from a later offset (tansu 0.6.0 serves fetches from record-batch
/// boundaries: a consumer resuming inside a batch loses the rest of it).
fn broker_skips_inside_a_batch(brokers: &str, topic: &str, records: &[(String, String)]) -> bool {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "200")
        .create()
        .expect("producer");
    // Two batches, so that a read from inside the first has something after it.
    for batch in records[..20].chunks(10) {
        for (_, text) in batch {
            producer
                .send(BaseRecord::to(topic).payload(text.as_str()).key("probe").partition(0))
                .expect("queued");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "qoe-stream-e2e-probe")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Offset(5)).unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            return message.offset() != 5;
        }
    }
    panic!("no record read back from {topic} at {brokers}");
}

/// A job whose checkpoint resumes partition 0 of `topic` at offset 5, inside the first of the
/// probe's batches, on a broker that serves the next batch instead: it must report the skipped
/// records (log line, and the count in its metrics), not pass over them in silence.
fn resume_inside_a_batch_is_reported(brokers: &str, topic: &str, suffix: &str) {
    let checkpoints = format!("{}.probe", checkpoint_topic(suffix));
    let group = format!("qoe-stream-e2e-probe-{suffix}");
    let record = format!(
        r#"{{"v":1,"seq":1,"topic":"{topic}","checkpoint":{{"closed_through_ms":0,"partitions":{{"0":{{"offset":5,"max_event_ms":null}}}}}}}}"#
    );
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::to(&checkpoints).payload(&record).key(&group))
        .expect("queued");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let out = std::env::temp_dir().join(format!("qoe-stream-e2e-probe-{suffix}"));
    let run = qoe()
        .args(["stream", "--input", "kafka", "--brokers", brokers, "--topic", topic])
        .args(["--group-id", &group, "--checkpoint-topic", &checkpoints])
        .args(["--exit-when-idle-secs", "2", "--log", "warn"])
        .arg(format!("--output=ndjson:{}", out.display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{run:?}");
    assert!(
        log.contains(SKIPPED) && log.contains("resume_offset") && log.contains("skipped"),
        "the job resumed inside a batch the broker skipped without saying so:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// Each test run's own checkpoint topic, so that runs against one broker never share checkpoints.
fn checkpoint_topic(suffix: &str) -> String {
    format!("qoe.stream.checkpoints.e2e.{suffix}")
}

struct Job {
    brokers: String,
    checkpoint_topic: String,
    topic: String,
    group: String,
    out: PathBuf,
    logs: PathBuf,
    runs: usize,
}

impl Job {
    fn spawn(&mut self, exit_when_idle: bool) -> Child {
        self.runs += 1;
        let log = std::fs::File::create(self.logs.join(format!("run-{}.log", self.runs))).unwrap();
        let mut command = qoe();
        command
            .args([
                "stream",
                "--input",
                "kafka",
                "--brokers",
                &self.brokers,
                "--topic",
                &self.topic,
            ])
            .args([
                "--group-id",
                &self.group,
                "--checkpoint-topic",
                &self.checkpoint_topic,
                "--room-min-viewers",
                "5",
                "--early-every-secs",
                "1",
            ])
            .arg(format!("--output=ndjson:{}", self.out.display()))
            .args(["--log", "info,qoe_stream::input::checkpoint_topic=debug"])
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if exit_when_idle {
            command.args(["--exit-when-idle-secs", "3"]).arg(format!(
                "--report-json={}",
                self.logs.join("last-report.json").display()
            ));
        }
        command.spawn().expect("qoe stream starts")
    }

    fn log(&self, run: usize) -> String {
        std::fs::read_to_string(self.logs.join(format!("run-{run}.log"))).unwrap_or_default()
    }
}

fn final_docs(dir: &Path) -> BTreeMap<String, RollupDoc> {
    qoe_stream::read_ndjson_dir(dir).expect("the output directory reads back")
}

#[test]
#[ignore = "needs a Kafka-API broker in KAFKA_BROKERS (scripts/test.sh starts one)"]
fn on_a_real_broker_a_stream_job_killed_and_restarted_converges_to_the_file_documents() {
    let brokers = brokers();
    let suffix = format!("{}.{}", now_ms(), std::process::id());
    let topic = format!("qoe.beacons.stream-e2e.{suffix}");
    let created = qoe()
        .args([
            "topics",
            "create",
            "--brokers",
            &brokers,
            "--partitions",
            "4",
            "--replication",
            "1",
        ])
        .args(["--topic", &topic, "--topic", &format!("{topic}.probe")])
        .args([
            "--topic",
            &format!("{}.probe", checkpoint_topic(&suffix)),
            "--log",
            "warn",
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let skips = broker_skips_inside_a_batch(&brokers, &format!("{topic}.probe"), &records());
    println!("the broker at {brokers} skips the rest of a batch on a fetch inside it: {skips}");
    if skips {
        // The job must say so: it resumes inside the probe's batch.
        resume_inside_a_batch_is_reported(&brokers, &format!("{topic}.probe"), &suffix);
    }
    // The job creates its checkpoint topic (compacted, one partition) through the admin API. On a
    // broker that skips, no consumer can resume inside a batch: one record per batch, so that the
    // test checks the job, not the broker.
    killed_and_restarted_converges(&brokers, &topic, &suffix, skips);
}

#[test]
fn on_the_mock_cluster_a_stream_job_killed_and_restarted_converges_to_the_file_documents() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let suffix = format!("mock.{}.{}", now_ms(), std::process::id());
    let topic = format!("qoe.beacons.stream-e2e.{suffix}");
    cluster.create_topic(&topic, 4, 1).expect("topic");
    // The mock cluster does not serve CreateTopics, which the job uses when the topic is missing.
    cluster
        .create_topic(&checkpoint_topic(&suffix), 1, 1)
        .expect("checkpoint topic");
    let brokers = cluster.bootstrap_servers();
    let probe = format!("{topic}.probe");
    cluster.create_topic(&probe, 1, 1).expect("probe topic");
    assert!(
        !broker_skips_inside_a_batch(&brokers, &probe, &records()),
        "the mock cluster serves a fetch inside a batch"
    );
    killed_and_restarted_converges(&brokers, &topic, &suffix, false);
}

/// Produces the records to `topic` (4 partitions) over about 12 s while `qoe stream` runs and is
/// killed with SIGKILL once per [`KILL_DELAYS_MS`]; then a last run exits when idle, and the final
/// documents must equal the file run's.
fn killed_and_restarted_converges(brokers: &str, topic: &str, suffix: &str, one_per_batch: bool) {
    let brokers = brokers.to_string();
    let topic = topic.to_string();
    let dir = std::env::temp_dir().join(format!("qoe-stream-e2e-{suffix}"));
    std::fs::create_dir_all(&dir).unwrap();

    // The reference: the same records, in the same order, from a file.
    let records = records();
    let input = dir.join("beacons.ndjson");
    let text: String = records.iter().map(|(_, line)| format!("{line}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let reference_dir = dir.join("reference");
    let reference = qoe()
        .args([
            "stream",
            "--input",
            &format!("file:{}", input.display()),
            "--room-min-viewers",
            "5",
        ])
        .arg(format!("--output=ndjson:{}", reference_dir.display()))
        .args(["--log", "warn"])
        .output()
        .unwrap();
    assert!(reference.status.success(), "{reference:?}");
    let expected = final_docs(&reference_dir);
    assert!(expected.len() > 300, "{} reference documents", expected.len());
    assert!(expected.values().all(|doc| doc.is_final));

    // Beacons arrive over about 12 s while the job is killed and restarted.
    let producer = {
        let (brokers, topic, records) = (brokers.clone(), topic.clone(), records.clone());
        std::thread::spawn(move || produce_paced(&brokers, &topic, &records, 2_000, one_per_batch))
    };
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut job = Job {
        brokers: brokers.clone(),
        checkpoint_topic: checkpoint_topic(suffix),
        topic: topic.clone(),
        group: format!("qoe-stream-e2e-{suffix}"),
        out: dir.join("out"),
        logs,
        runs: 0,
    };
    let mut kills = Vec::new();
    for delay in KILL_DELAYS_MS {
        let before = written_bytes(&job.out);
        let mut child = job.spawn(false);
        let deadline = Instant::now() + RUN_WAIT;
        while written_bytes(&job.out) <= before && Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("run {} stopped by itself ({status}):\n{}", job.runs, job.log(job.runs));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            written_bytes(&job.out) > before,
            "run {} wrote nothing in {RUN_WAIT:?}:\n{}",
            job.runs,
            job.log(job.runs)
        );
        std::thread::sleep(Duration::from_millis(delay));
        // The last killed run lives until it saved a checkpoint if no run before it did, so that the
        // restart is always tested from a checkpoint a killed run saved: the delays above are
        // shorter than a first idempotent produce to a new topic can take on a real broker (tansu
        // 0.6.0 sometimes), and then every run used to start from the beginning.
        if kills.len() + 1 == KILL_DELAYS_MS.len() {
            let saved = |run: usize| job.log(run).contains("checkpoint saved");
            let deadline = Instant::now() + RUN_WAIT;
            while !(1..=job.runs).any(saved) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Child::kill is SIGKILL on Unix: no shutdown path runs.
        child.kill().unwrap();
        child.wait().unwrap();
        kills.push((delay, written_bytes(&job.out).saturating_sub(before)));
        // Down for a moment, as a restarted pod is: the kills spread over the production.
        std::thread::sleep(Duration::from_millis(800));
    }
    producer.join().expect("producer");

    // The last run reads what is left and exits once the topic is idle.
    let mut child = job.spawn(true);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the last run did not exit when idle:\n{}", job.log(job.runs));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "last run: {status}\n{}", job.log(job.runs));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(job.logs.join("last-report.json")).unwrap()).unwrap();
    println!(
        "{} kills (delay ms, bytes written by the run): {kills:?}; last run: {report}",
        kills.len()
    );
    // The last run resumed from a checkpoint the killed runs saved: it did not read the topic from
    // the start.
    let total = records.len() as u64;
    assert!(
        report["records"].as_u64().unwrap() < total,
        "the last run read every record again: the killed runs committed nothing\n{report}"
    );
    assert!(report["rejected"].as_u64() == Some(0), "no record is invalid: {report}");

    for run in 1..=job.runs {
        assert!(
            !job.log(run).contains(SKIPPED),
            "run {run} resumed past records:\n{}",
            job.log(run)
        );
    }
    let got = final_docs(&job.out);
    println!(
        "{} documents, {} lines written over {} runs",
        got.len(),
        written_lines(&job.out),
        job.runs
    );
    let early: Vec<&String> = got.iter().filter(|(_, doc)| !doc.is_final).map(|(id, _)| id).collect();
    assert!(
        early.is_empty(),
        "early documents never overwritten by a final one: {early:?}"
    );
    let missing: Vec<&String> = expected.keys().filter(|id| !got.contains_key(*id)).collect();
    let extra: Vec<&String> = got.keys().filter(|id| !expected.contains_key(*id)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "document ids differ: {} missing, {} extra; missing {:?}, extra {:?}",
        missing.len(),
        extra.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        extra.iter().take(5).collect::<Vec<_>>()
    );
    let differing: Vec<(&String, String, String)> = expected
        .iter()
        .filter(|(id, doc)| got[*id] != **doc)
        .map(|(id, doc)| {
            (
                id,
                serde_json::to_string(doc).unwrap(),
                serde_json::to_string(&got[id]).unwrap(),
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} documents differ from the file run's; the first (expected, got): {:?}",
        differing.len(),
        expected.len(),
        differing.first()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
