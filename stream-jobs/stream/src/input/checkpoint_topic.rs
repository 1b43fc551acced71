//! The Kafka input's checkpoint, kept as records on a compacted topic (`qoe.stream.checkpoints` by
//! default), keyed by the job's consumer group.
//!
//! Why a topic and not the metadata of the committed offsets: the checkpoint needs more than an
//! offset per partition (the windows already final, each partition's largest event time), and a
//! broker is free to drop offset-commit metadata: tansu 0.6.0 stores it but answers OffsetFetch
//! with an empty one, so a job that kept its checkpoint there could not resume. A record on a
//! topic is read back by every broker that serves Fetch.
//!
//! Delivery guarantee: [`CheckpointStore::save`] returns only when the broker acknowledged the
//! record (idempotent producer, `acks=all`). The group's offsets are committed after it, for lag
//! monitoring only; a restart reads the newest record of the group's key, so a job killed between
//! the two resumes from the record. Every record holds the whole checkpoint and a save number
//! (`seq`), so compaction (keep the newest record per key) loses nothing, and the newest record is
//! found whatever partition it is on; a tombstone (null value) deletes the group's checkpoint. On a
//! broker that does not compact, the topic grows by one small record per save and is read through
//! at start.
//!
//! Two jobs must not share a group id: they would overwrite each other's checkpoint.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use qoe_rollup::Checkpoint;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::error::StreamError;
use crate::output::KafkaOutput;

/// The checkpoint topic's default name.
pub const CHECKPOINT_TOPIC: &str = "qoe.stream.checkpoints";

/// How long reading the checkpoint topic through at start may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One record on the checkpoint topic.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointRecord {
    /// Format version, 1.
    v: u32,
    /// Save number of the group's job, one more than the checkpoint it resumed from: the newest
    /// record is the one with the largest, whatever partition and offset it landed on.
    seq: u64,
    /// The input topic the offsets belong to.
    topic: String,
    /// The engine's checkpoint.
    checkpoint: Checkpoint,
}

/// Where the Kafka input keeps its checkpoint.
pub(crate) struct CheckpointStore {
    producer: KafkaOutput,
    /// The last save's number.
    seq: u64,
    checkpoint_topic: String,
    group_id: String,
    input_topic: String,
}

fn kafka_error(context: &str, error: impl std::fmt::Display) -> StreamError {
    StreamError::Kafka(format!("{context}: {error}"))
}

impl CheckpointStore {
    /// Opens the store on `checkpoint_topic` (created, compacted with one partition, if missing) and
    /// returns the newest checkpoint of `group_id` for `input_topic`, if there is one. Runs inside a
    /// Tokio runtime context (it waits for acknowledgements on it).
    pub(crate) fn open(
        brokers: &str,
        options: &[(String, String)],
        checkpoint_topic: &str,
        group_id: &str,
        input_topic: &str,
    ) -> Result<(Self, Option<Checkpoint>), StreamError> {
        if checkpoint_topic.is_empty() || checkpoint_topic == input_topic {
            return Err(StreamError::Kafka(format!(
                "--checkpoint-topic {checkpoint_topic:?}: must name a topic of its own"
            )));
        }
        let mut client = ClientConfig::new();
        for (key, value) in options {
            client.set(key, value);
        }
        client.set("bootstrap.servers", brokers);
        let mut reader_config = client.clone();
        // librdkafka wants a group id to assign partitions; the reader never joins it nor commits.
        reader_config
            .set("group.id", format!("{group_id}.checkpoint-reader"))
            .set("enable.auto.commit", "false")
            // A low watermark gone by the time it is fetched (retention, DeleteRecords): read from
            // the new start, never skip to the end.
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true");
        let reader: BaseConsumer = reader_config
            .create()
            .map_err(|error| kafka_error("creating the checkpoint reader", error))?;
        let partitions = ensure_topic(&client, &reader, checkpoint_topic)?;
        let newest = read_newest(&reader, checkpoint_topic, &partitions, group_id)?;
        let seq = newest.as_ref().map_or(0, |record| record.seq);
        let restored = match newest {
            None => None,
            Some(record) if record.topic != input_topic => {
                return Err(StreamError::Checkpoint {
                    path: format!("{checkpoint_topic} (key {group_id:?})"),
                    problem: format!(
                        "the group's checkpoint is for topic {:?}, not {input_topic:?}: use another --group-id",
                        record.topic
                    ),
                });
            }
            Some(record) => Some(record.checkpoint),
        };
        let producer = KafkaOutput::new(brokers, checkpoint_topic, options)?;
        let store = CheckpointStore {
            producer,
            seq,
            checkpoint_topic: checkpoint_topic.to_string(),
            group_id: group_id.to_string(),
            input_topic: input_topic.to_string(),
        };
        Ok((store, restored))
    }

    /// Writes `checkpoint` as the group's newest record and waits for the broker's acknowledgement.
    pub(crate) fn save(&mut self, checkpoint: &Checkpoint) -> Result<(), StreamError> {
        let seq = self.seq + 1;
        let record = CheckpointRecord {
            v: 1,
            seq,
            topic: self.input_topic.clone(),
            checkpoint: checkpoint.clone(),
        };
        let payload = serde_json::to_vec(&record)
            .map_err(|error| kafka_error(&format!("encoding the checkpoint for {}", self.checkpoint_topic), error))?;
        self.producer
            .send_all(vec![(self.group_id.clone(), payload)])
            .map_err(|error| kafka_error(&format!("saving the checkpoint to {}", self.checkpoint_topic), error))?;
        self.seq = seq;
        Ok(())
    }
}

/// The partitions of `topic`, creating it (one partition, `cleanup.policy=compact`, three replicas or
/// one per broker if there are fewer) when it does not exist.
fn ensure_topic(client: &ClientConfig, consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, StreamError> {
    if let Some(partitions) = topic_partitions(consumer, topic)? {
        return Ok(partitions);
    }
    let admin: AdminClient<DefaultClientContext> = client
        .create()
        .map_err(|error| kafka_error("creating the admin client", error))?;
    // As Kafka's own offsets topic: three replicas, or as many as there are brokers.
    let brokers = consumer
        .fetch_metadata(None, Duration::from_secs(30))
        .map_err(|error| kafka_error("metadata of the cluster", error))?
        .brokers()
        .len();
    let replicas = i32::try_from(brokers.clamp(1, 3)).unwrap_or(1);
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(replicas)).set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = Handle::current()
        .block_on(admin.create_topics([&new_topic], &options))
        .map_err(|error| {
            kafka_error(
                &format!("creating the checkpoint topic {topic:?} (create it yourself: one partition, cleanup.policy=compact; or name another with --checkpoint-topic)"),
                error,
            )
        })?;
    for result in results {
        match result {
            Ok(_) => tracing::info!(topic, replicas, "checkpoint topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(StreamError::Kafka(format!(
                    "creating the checkpoint topic {topic:?}: {code}; create it yourself (one partition, cleanup.policy=compact) or name another with --checkpoint-topic"
                )));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(partitions) = topic_partitions(consumer, topic)? {
            return Ok(partitions);
        }
        if Instant::now() > deadline {
            return Err(StreamError::Kafka(format!(
                "checkpoint topic {topic:?}: created, but not in the broker's metadata after 30 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The partitions of `topic`, or `None` when the broker does not know it.
pub(crate) fn topic_partitions(consumer: &BaseConsumer, topic: &str) -> Result<Option<Vec<i32>>, StreamError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(|error| kafka_error(&format!("metadata of {topic:?}"), error))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic && found.error().is_none())
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect();
    Ok((!partitions.is_empty()).then_some(partitions))
}

/// Reads every partition of the checkpoint topic to its end and returns the newest record with key
/// `group_id`.
fn read_newest(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    group_id: &str,
) -> Result<Option<CheckpointRecord>, StreamError> {
    let mut assignment = TopicPartitionList::new();
    let mut unread = BTreeMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, *partition, Duration::from_secs(30))
            .map_err(|error| kafka_error(&format!("offsets of {topic}/{partition}"), error))?;
        if high > low {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(low))
                .map_err(|error| kafka_error("building the checkpoint assignment", error))?;
            unread.insert(*partition, high);
        }
    }
    if unread.is_empty() {
        return Ok(None);
    }
    consumer
        .assign(&assignment)
        .map_err(|error| kafka_error("assigning the checkpoint topic", error))?;
    // Per partition, the group's last record: its offset and payload (`None`: a tombstone, the key
    // deleted). Only these are parsed, so an old bad record does not block the start.
    let mut last: BTreeMap<i32, (i64, Option<Vec<u8>>)> = BTreeMap::new();
    // The deadline moves with progress: a long topic (a broker that does not compact) is read
    // through as long as it advances.
    let mut deadline = Instant::now() + READ_TIMEOUT;
    while !unread.is_empty() {
        if Instant::now() > deadline {
            return Err(StreamError::Kafka(format!(
                "reading the checkpoint topic {topic:?}: partitions {:?} did not advance for {READ_TIMEOUT:?}",
                unread.keys().collect::<Vec<_>>()
            )));
        }
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                unread.remove(&partition);
                continue;
            }
            Some(Err(error)) => {
                tracing::warn!(%error, topic, "checkpoint topic read error (retrying)");
                continue;
            }
            Some(Ok(message)) => message,
        };
        deadline = Instant::now() + READ_TIMEOUT;
        let (partition, offset) = (message.partition(), message.offset());
        if unread.get(&partition).is_some_and(|high| offset + 1 >= *high) {
            unread.remove(&partition);
        }
        if message.key() == Some(group_id.as_bytes()) {
            last.insert(partition, (offset, message.payload().map(<[u8]>::to_vec)));
        }
    }
    let mut newest: Option<CheckpointRecord> = None;
    for (partition, (offset, payload)) in last {
        let Some(payload) = payload else {
            continue;
        };
        let bad = |problem: String| StreamError::Checkpoint {
            path: format!("{topic}/{partition} offset {offset} (key {group_id:?})"),
            problem,
        };
        let record: CheckpointRecord = serde_json::from_slice(&payload)
            .map_err(|error| bad(format!("not a stream job checkpoint v1: {error}")))?;
        if record.v != 1 {
            return Err(bad(format!("checkpoint format v{}, this job reads v1", record.v)));
        }
        if newest.as_ref().is_none_or(|seen| record.seq > seen.seq) {
            newest = Some(record);
        }
    }
    Ok(newest)
}
