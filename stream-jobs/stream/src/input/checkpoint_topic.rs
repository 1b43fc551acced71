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
use qoe_runtime::kafka::{ensure_topic, ClientSpec, KafkaOptions, NewTopicSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

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

impl CheckpointStore {
    /// Opens the store on `checkpoint_topic` (created, compacted with one partition, if missing) and
    /// returns the newest checkpoint of `group_id` for `input_topic`, if there is one. Runs inside a
    /// Tokio runtime context (it waits for acknowledgements on it).
    pub(crate) fn open(
        kafka: &KafkaOptions,
        checkpoint_topic: &str,
        group_id: &str,
        input_topic: &str,
    ) -> Result<(Self, Option<Checkpoint>), StreamError> {
        if checkpoint_topic.is_empty() || checkpoint_topic == input_topic {
            return Err(StreamError::KafkaSetup(format!(
                "--checkpoint-topic {checkpoint_topic:?}: must name a topic of its own"
            )));
        }
        // librdkafka wants a group id to assign partitions; the reader never joins it nor commits.
        let reader: BaseConsumer =
            ClientSpec::consumer("the checkpoint reader", kafka, &format!("{group_id}.checkpoint-reader"))
                // A low watermark gone by the time it is fetched (retention, DeleteRecords): read from
                // the new start, never skip to the end.
                .require(
                    "auto.offset.reset",
                    &[],
                    "earliest",
                    "the pipeline (a checkpoint is never skipped)",
                )
                .require(
                    "enable.partition.eof",
                    &[],
                    "true",
                    "the pipeline (the checkpoint topic is read to its end)",
                )
                .create()?;
        let topic = NewTopicSpec {
            name: checkpoint_topic,
            partitions: 1,
            config: &[("cleanup.policy", "compact")],
        };
        let partitions = ensure_topic(kafka, &reader, &topic).map_err(|source| StreamError::KafkaRequest {
            context: format!("checkpoint topic {checkpoint_topic:?} (create it yourself: one partition, cleanup.policy=compact; or name another with --checkpoint-topic)"),
            source: Box::new(source),
        })?;
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
        let producer = KafkaOutput::new(kafka, checkpoint_topic)?;
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
        let payload = serde_json::to_vec(&record).map_err(|source| StreamError::Encode {
            what: format!("the checkpoint for {}", self.checkpoint_topic),
            source,
        })?;
        self.producer.send_all(vec![(self.group_id.clone(), payload)])?;
        tracing::debug!(seq, topic = %self.checkpoint_topic, "checkpoint saved");
        self.seq = seq;
        Ok(())
    }
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
            .map_err(StreamError::kafka(format!("offsets of {topic}/{partition}")))?;
        if high > low {
            assignment
                .add_partition_offset(topic, *partition, Offset::Offset(low))
                .map_err(StreamError::kafka("building the checkpoint assignment"))?;
            unread.insert(*partition, high);
        }
    }
    if unread.is_empty() {
        return Ok(None);
    }
    consumer
        .assign(&assignment)
        .map_err(StreamError::kafka("assigning the checkpoint topic"))?;
    // Per partition, the group's last record: its offset and payload (`None`: a tombstone, the key
    // deleted). Only these are parsed, so an old bad record does not block the start.
    let mut last: BTreeMap<i32, (i64, Option<Vec<u8>>)> = BTreeMap::new();
    // The deadline moves with progress: a long topic (a broker that does not compact) is read
    // through as long as it advances.
    let mut deadline = Instant::now() + READ_TIMEOUT;
    while !unread.is_empty() {
        if Instant::now() > deadline {
            return Err(StreamError::KafkaSetup(format!(
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
        let record: CheckpointRecord =
            serde_json::from_slice(&payload).map_err(|source| StreamError::CheckpointFormat {
                path: format!("{topic}/{partition} offset {offset} (key {group_id:?})"),
                what: "a stream job checkpoint v1",
                source,
            })?;
        if record.v != 1 {
            return Err(bad(format!("checkpoint format v{}, this job reads v1", record.v)));
        }
        if newest.as_ref().is_none_or(|seen| record.seq > seen.seq) {
            newest = Some(record);
        }
    }
    Ok(newest)
}
