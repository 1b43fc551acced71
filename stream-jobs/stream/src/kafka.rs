//! `--input kafka`: `qoe.beacons.v1` through the engine.
//!
//! One job reads **every** partition of the topic (manual assignment, no group rebalancing): the
//! rollup keys (CDN, edge, room, publisher) cut across the room-keyed partitions, so a job that read
//! only some partitions would write partial documents over complete ones. A second job with the same
//! settings writes the same documents with the same ids; scale-out is the Arroyo path
//! (`stream-jobs/arroyo/`).
//!
//! Delivery guarantee: the consumer group's committed offsets are the engine's [`Checkpoint`], and each
//! offset carries the checkpoint's metadata (`{"v":1,"closed_through_ms":…,"max_event_ms":…}`). They
//! are committed only after every output wrote the windows they cover. A job killed at any moment
//! resumes from them and writes the same final documents (see [`qoe_rollup::engine`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use qoe_rollup::{Checkpoint, Engine, EngineConfig, PartitionCheckpoint};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::driver::{now_ms, Driver, StreamReport};
use crate::metrics::Metrics;
use crate::output::Output;
use crate::StreamError;

/// How long broker requests at start (metadata, committed offsets) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the engine is polled for closed windows, at most.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Where the Kafka input reads from.
#[derive(Debug, Clone)]
pub struct KafkaInput {
    /// Bootstrap servers.
    pub brokers: String,
    /// The beacon topic.
    pub topic: String,
    /// The consumer group whose committed offsets hold the checkpoint.
    pub group_id: String,
    /// Extra librdkafka properties.
    pub options: Vec<(String, String)>,
    /// Close every window and stop when no record arrived for this long (after the first record, or
    /// at least 60 s before it); `None` runs until shutdown. For backfills, tests and demos: windows
    /// closed this way are final, and beacons of them that arrive later are dropped as already final.
    pub exit_when_idle: Option<Duration>,
    /// Write early results of open windows this often.
    pub early_every: Option<Duration>,
}

/// The metadata committed with each partition's offset.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsetMetadata {
    v: u32,
    closed_through_ms: i64,
    max_event_ms: Option<i64>,
}

fn kafka_error(context: &str, error: impl std::fmt::Display) -> StreamError {
    StreamError::Kafka(format!("{context}: {error}"))
}

/// Reads the checkpoint from the group's committed offsets of `partitions`.
fn committed_checkpoint(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<Option<Checkpoint>, StreamError> {
    let mut wanted = TopicPartitionList::new();
    for partition in partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .map_err(|error| kafka_error("fetching the group's committed offsets", error))?;
    let mut closed_through: Option<i64> = None;
    let mut resume = BTreeMap::new();
    for element in committed.elements() {
        let Offset::Offset(offset) = element.offset() else {
            continue;
        };
        let partition = element.partition();
        let metadata: OffsetMetadata = serde_json::from_str(element.metadata()).map_err(|error| {
            StreamError::Checkpoint {
                path: format!("{topic}/{partition} (consumer group offset metadata)"),
                problem: format!(
                    "offset {offset} is committed without the stream job's checkpoint ({error}): was the group used by another consumer, or does the broker drop commit metadata? Use a new --group-id to start over"
                ),
            }
        })?;
        if closed_through.is_some_and(|seen| seen != metadata.closed_through_ms) {
            return Err(StreamError::Checkpoint {
                path: format!("{topic} (consumer group offset metadata)"),
                problem: "partitions disagree on closed_through_ms: the offsets were not committed together"
                    .to_string(),
            });
        }
        closed_through = Some(metadata.closed_through_ms);
        resume.insert(
            partition,
            PartitionCheckpoint {
                offset,
                max_event_ms: metadata.max_event_ms,
            },
        );
    }
    Ok(closed_through.map(|closed_through_ms| Checkpoint {
        closed_through_ms,
        partitions: resume,
    }))
}

fn commit(consumer: &BaseConsumer, topic: &str, checkpoint: &Checkpoint) -> Result<(), StreamError> {
    let mut offsets = TopicPartitionList::new();
    for (partition, resume) in &checkpoint.partitions {
        let metadata = OffsetMetadata {
            v: 1,
            closed_through_ms: checkpoint.closed_through_ms,
            max_event_ms: resume.max_event_ms,
        };
        offsets
            .add_partition_offset(topic, *partition, Offset::Offset(resume.offset))
            .map_err(|error| kafka_error("building the offset commit", error))?;
        if let Some(mut element) = offsets.find_partition(topic, *partition) {
            element.set_metadata(serde_json::to_string(&metadata).unwrap_or_default());
        }
    }
    if offsets.count() == 0 {
        return Ok(());
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .map_err(|error| kafka_error("committing offsets", error))
}

/// Reads every partition of the beacon topic through the engine into `outputs` until `shutdown`
/// (or idleness, if asked). On shutdown, open windows are left to the next run, which resumes from
/// the last committed checkpoint.
pub fn run_kafka(
    input: &KafkaInput,
    engine_config: EngineConfig,
    outputs: &mut [Box<dyn Output>],
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<StreamReport, StreamError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &input.brokers)
        .set("group.id", &input.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false");
    for (key, value) in &input.options {
        client.set(key, value);
    }
    let consumer: BaseConsumer = client
        .create()
        .map_err(|error| kafka_error("creating the consumer", error))?;
    let metadata = consumer
        .fetch_metadata(Some(&input.topic), REQUEST_TIMEOUT)
        .map_err(|error| kafka_error(&format!("topic {:?}", input.topic), error))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|topic| topic.name() == input.topic && topic.error().is_none())
        .flat_map(|topic| topic.partitions().iter().map(|partition| partition.id()))
        .collect();
    if partitions.is_empty() {
        return Err(StreamError::Kafka(format!(
            "topic {:?} does not exist or has no partitions (create it with `qoe topics create`)",
            input.topic
        )));
    }
    let restored = committed_checkpoint(&consumer, &input.topic, &partitions)?;
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        let offset = restored
            .as_ref()
            .and_then(|checkpoint| checkpoint.partitions.get(partition))
            .map_or(Offset::Stored, |resume| Offset::Offset(resume.offset));
        assignment
            .add_partition_offset(&input.topic, *partition, offset)
            .map_err(|error| kafka_error("building the assignment", error))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|error| kafka_error("assigning partitions", error))?;
    tracing::info!(
        topic = %input.topic,
        partitions = partitions.len(),
        resumed = restored.is_some(),
        "stream job reading"
    );

    let mut engine = Engine::new(engine_config, restored.as_ref())?;
    engine.expect_partitions(&partitions, now_ms());
    let topic = input.topic.clone();
    let mut save = |checkpoint: Checkpoint| commit(&consumer, &topic, &checkpoint);
    let mut driver = Driver::new(&mut engine, outputs, metrics, &mut save);
    let started = Instant::now();
    let mut last_record: Option<Instant> = None;
    let mut last_poll = Instant::now();
    let mut next_early = input.early_every.map(|every| Instant::now() + every);
    let mut last_warning: Option<Instant> = None;
    let mut finished = false;
    while !shutdown.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(error)) if last_warning.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(10)) => {
                tracing::warn!(%error, "kafka consumer error (retrying; logged at most every 10 s)");
                last_warning = Some(Instant::now());
            }
            Some(Err(_)) => {}
            Some(Ok(message)) => {
                last_record = Some(Instant::now());
                let payload = message.payload().unwrap_or_default();
                driver.offer(message.partition(), message.offset(), payload);
            }
        }
        if last_poll.elapsed() >= POLL_INTERVAL {
            last_poll = Instant::now();
            let emissions = driver.engine.poll(now_ms());
            driver.deliver(emissions)?;
            if let (Some(due), Some(every)) = (next_early, input.early_every) {
                if Instant::now() >= due {
                    let early = driver.engine.early();
                    driver.deliver(early)?;
                    next_early = Some(Instant::now() + every);
                }
            }
        }
        if let Some(idle) = input.exit_when_idle {
            let quiet = match last_record {
                Some(at) => at.elapsed() >= idle,
                None => started.elapsed() >= idle.max(Duration::from_secs(60)),
            };
            if quiet {
                let emissions = driver.engine.finish();
                driver.deliver(emissions)?;
                finished = true;
                break;
            }
        }
    }
    if !finished {
        tracing::info!("stream job stopping: open windows are left to the next run");
    }
    driver.save_checkpoint()?;
    Ok(driver.report)
}
