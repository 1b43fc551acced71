//! `--input kafka`: `qoe.beacons.v1` through the engine.
//!
//! One job reads **every** partition of the topic (manual assignment, no group rebalancing): the
//! rollup keys (CDN, edge, room, publisher) cut across the room-keyed partitions, so a job that read
//! only some partitions would write partial documents over complete ones. A second job with the same
//! settings writes the same documents with the same ids; scale-out is the Arroyo path
//! (`stream-jobs/arroyo/`).
//!
//! Delivery guarantee: the engine's [`Checkpoint`] (offsets, the windows already final, each
//! partition's largest event time) is written to the checkpoint topic (`qoe.stream.checkpoints`,
//! keyed by the consumer group; see `checkpoint_topic.rs`) only after every output wrote the windows
//! it covers, and the group's offsets are committed after that, for lag monitoring. A job killed at
//! any moment resumes from the newest checkpoint record and writes the same final documents (see
//! [`qoe_rollup::engine`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use qoe_rollup::{Checkpoint, Engine, EngineConfig};
use qoe_runtime::kafka::{topic_partitions, ClientSpec, TopicInput};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::driver::{Driver, StreamReport};
use crate::error::StreamError;
use crate::input::checkpoint_topic::CheckpointStore;
use crate::metrics::Metrics;
use crate::output::Output;

/// How long broker requests at start (metadata, committed offsets) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the engine is polled for closed windows, at most.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Where the Kafka input reads from.
#[derive(Debug, Clone)]
pub struct KafkaInput {
    /// The beacon topic, the brokers and the consumer group: the group is the checkpoint's key on
    /// `checkpoint_topic`, and the group whose offsets show the job's lag. With
    /// `exit_when_idle`, every window is closed at the stop: windows closed this way are final,
    /// and beacons of them that arrive later are dropped as already final.
    pub source: TopicInput,
    /// The compacted topic that holds the checkpoint ([`CHECKPOINT_TOPIC`](crate::CHECKPOINT_TOPIC) by default); created
    /// with one partition if missing.
    pub checkpoint_topic: String,
    /// Write early results of open windows this often.
    pub early_every: Option<Duration>,
}

/// The partitions of `partitions` for which the group has committed an offset.
fn committed_partitions(consumer: &BaseConsumer, topic: &str, partitions: &[i32]) -> Result<Vec<i32>, StreamError> {
    let mut wanted = TopicPartitionList::new();
    for partition in partitions {
        wanted.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .map_err(StreamError::kafka("fetching the group's committed offsets"))?;
    Ok(committed
        .elements()
        .iter()
        .filter(|element| matches!(element.offset(), Offset::Offset(_)))
        .map(|element| element.partition())
        .collect())
}

/// Commits the checkpoint's offsets to the group, for lag monitoring (the checkpoint topic is what a
/// restart reads). A failure is logged, not fatal.
fn commit_for_monitoring(consumer: &BaseConsumer, topic: &str, checkpoint: &Checkpoint) {
    let mut offsets = TopicPartitionList::new();
    for (partition, resume) in &checkpoint.partitions {
        if let Err(error) = offsets.add_partition_offset(topic, *partition, Offset::Offset(resume.offset)) {
            tracing::warn!(%error, partition, "offset not committed");
        }
    }
    if offsets.count() == 0 {
        return;
    }
    if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
        tracing::warn!(%error, "committing the group's offsets failed (they only show the lag; the checkpoint is saved)");
    }
}

/// Reports a partition whose first record after the resume is not at the resume offset: the
/// broker skipped records (tansu 0.6.0 answers a fetch at an offset inside a record batch from the
/// next batch), which the job cannot count.
fn check_resume(partition: i32, asked: i64, got: i64, metrics: &Metrics) {
    if got <= asked {
        return;
    }
    let skipped = (got - asked) as u64;
    metrics.resume_skipped.inc_by(skipped);
    tracing::error!(
        partition,
        resume_offset = asked,
        first_offset = got,
        skipped,
        "the broker returned records after the resume offset: the records between were skipped (a broker that serves fetches from record-batch boundaries only, or a compacted or deleted log)"
    );
}

/// Reads every partition of the beacon topic through the engine into `outputs` until `shutdown`
/// (or idleness, if asked). On shutdown, open windows are left to the next run, which resumes from
/// the last saved checkpoint. Runs inside a Tokio runtime context (e.g. `spawn_blocking`), on which
/// it waits for the broker's acknowledgements.
pub fn run_kafka(
    input: &KafkaInput,
    engine_config: EngineConfig,
    outputs: &mut [Box<dyn Output>],
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<StreamReport, StreamError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(StreamError::KafkaSetup(
            "run_kafka needs a Tokio runtime context (call it from spawn_blocking)".to_string(),
        ));
    }
    let source = &input.source;
    let consumer: BaseConsumer = ClientSpec::consumer("the stream job's consumer", &source.kafka, &source.group_id)
        .require(
            "enable.auto.offset.store",
            &[],
            "false",
            "the pipeline (offsets are committed from the checkpoint)",
        )
        .require(
            "enable.partition.eof",
            &[],
            "false",
            "the pipeline (the job does not read end-of-partition events)",
        )
        .create()?;
    let Some(partitions) = topic_partitions(&consumer, &source.topic)? else {
        return Err(StreamError::KafkaSetup(format!(
            "topic {:?} does not exist or has no partitions (create it with `qoe topics create`)",
            input.source.topic
        )));
    };
    let (mut store, restored) = CheckpointStore::open(
        &source.kafka,
        &input.checkpoint_topic,
        &input.source.group_id,
        &input.source.topic,
    )?;
    if restored.is_none() {
        let committed = committed_partitions(&consumer, &input.source.topic, &partitions)?;
        if !committed.is_empty() {
            return Err(StreamError::Checkpoint {
                path: format!("{} (key {:?})", input.checkpoint_topic, input.source.group_id),
                problem: format!(
                    "group {:?} has committed offsets on {:?} (partitions {committed:?}) but no checkpoint: was the group used by another consumer, or the checkpoint topic deleted? Use a new --group-id to start over",
                    input.source.group_id, input.source.topic
                ),
            });
        }
    }
    let mut assignment = TopicPartitionList::new();
    // Where each restored partition resumes: its first record must be there.
    let mut resume_at: BTreeMap<i32, i64> = restored
        .as_ref()
        .map(|checkpoint| {
            checkpoint
                .partitions
                .iter()
                .map(|(partition, resume)| (*partition, resume.offset))
                .collect()
        })
        .unwrap_or_default();
    for partition in &partitions {
        // Without a checkpoint the group has no offsets (checked above): `auto.offset.reset` decides.
        // A partition the checkpoint does not cover (added since, or not read before the save)
        // starts at its beginning.
        let offset = match &restored {
            None => Offset::Stored,
            Some(checkpoint) => checkpoint
                .partitions
                .get(partition)
                .map_or(Offset::Beginning, |resume| Offset::Offset(resume.offset)),
        };
        assignment
            .add_partition_offset(&input.source.topic, *partition, offset)
            .map_err(StreamError::kafka("building the assignment"))?;
    }
    consumer
        .assign(&assignment)
        .map_err(StreamError::kafka("assigning partitions"))?;
    tracing::info!(
        topic = %input.source.topic,
        partitions = partitions.len(),
        resumed = restored.is_some(),
        "stream job reading"
    );

    let mut engine = Engine::new(engine_config, restored.as_ref())?;
    engine.expect_partitions(&partitions, qoe_runtime::clock::epoch_ms_i64());
    let topic = input.source.topic.clone();
    let mut save = |checkpoint: Checkpoint| {
        store.save(&checkpoint)?;
        commit_for_monitoring(&consumer, &topic, &checkpoint);
        Ok(())
    };
    let mut driver = Driver::new(&mut engine, outputs, metrics, &mut save);
    let started = Instant::now();
    let mut last_record: Option<Instant> = None;
    let mut last_poll = Instant::now();
    let mut next_early = input.early_every.map(|every| Instant::now() + every);
    let mut last_warning: Option<Instant> = None;
    let mut finished = false;
    while !shutdown.is_cancelled() {
        let message = consumer.poll(Duration::from_millis(100));
        // Idle only when the poll itself found nothing: after a long delivery the records that came
        // meanwhile are waiting in the consumer's queue, and the time since the last one processed
        // says nothing about them.
        if let (None, Some(idle)) = (&message, input.source.exit_when_idle) {
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
        match message {
            None => {}
            Some(Err(error)) if last_warning.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(10)) => {
                tracing::warn!(%error, "kafka consumer error (retrying; logged at most every 10 s)");
                last_warning = Some(Instant::now());
            }
            Some(Err(_)) => {}
            Some(Ok(message)) => {
                last_record = Some(Instant::now());
                if let Some(asked) = resume_at.remove(&message.partition()) {
                    check_resume(message.partition(), asked, message.offset(), metrics);
                }
                let payload = message.payload().unwrap_or_default();
                driver.offer(message.partition(), message.offset(), payload);
            }
        }
        if last_poll.elapsed() >= POLL_INTERVAL {
            last_poll = Instant::now();
            let emissions = driver.engine.poll(qoe_runtime::clock::epoch_ms_i64());
            driver.deliver(emissions)?;
            if let (Some(due), Some(every)) = (next_early, input.early_every) {
                if Instant::now() >= due {
                    let early = driver.engine.early();
                    driver.deliver(early)?;
                    next_early = Some(Instant::now() + every);
                }
            }
        }
    }
    if !finished {
        tracing::info!("stream job stopping: open windows are left to the next run");
    }
    driver.save_checkpoint()?;
    Ok(driver.report)
}
