//! The rollup topic (`qoe.rollups.v1`, written by `qoe stream --output kafka:` or by the Arroyo
//! pipeline) as the input of `qoe index` and `qoe alert`: its consumers and its record format.

use std::time::Duration;

use qoe_rollup::RollupDoc;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::StreamError;

/// Where `qoe index` and `qoe alert` read.
#[derive(Debug, Clone)]
pub struct RollupTopicInput {
    /// Bootstrap servers.
    pub brokers: String,
    /// The rollup topic.
    pub topic: String,
    /// The consumer group.
    pub group_id: String,
    /// Extra librdkafka properties.
    pub options: Vec<(String, String)>,
    /// Stop when nothing arrived for this long (after the first record, or at least 60 s before
    /// it), for tests and backfills; `None` runs until shutdown.
    pub exit_when_idle: Option<Duration>,
}

/// A consumer of `input`'s group, committing by hand; `partition_eof` reports the end of each
/// partition. `max.poll.interval.ms` is above the sink's longest retry (10 min by default), so that
/// an Elasticsearch outage does not cost the group membership.
fn consumer(input: &RollupTopicInput, partition_eof: bool) -> Result<BaseConsumer, StreamError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &input.brokers)
        .set("group.id", &input.group_id)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("max.poll.interval.ms", "900000")
        .set("enable.partition.eof", partition_eof.to_string());
    for (key, value) in &input.options {
        client.set(key, value);
    }
    client
        .create()
        .map_err(|error| StreamError::Kafka(format!("creating the consumer: {error}")))
}

/// A consumer subscribed to `input`'s topic: the group's members share the partitions.
pub(crate) fn subscribe(input: &RollupTopicInput) -> Result<BaseConsumer, StreamError> {
    let consumer = consumer(input, false)?;
    consumer
        .subscribe(&[&input.topic])
        .map_err(|error| StreamError::Kafka(format!("subscribing to {:?}: {error}", input.topic)))?;
    Ok(consumer)
}

/// A consumer assigned every partition of `input`'s topic, from the group's committed offsets, with
/// end-of-partition events.
pub(crate) fn assign_all(input: &RollupTopicInput) -> Result<BaseConsumer, StreamError> {
    let consumer = consumer(input, true)?;
    let metadata = consumer
        .fetch_metadata(Some(&input.topic), Duration::from_secs(30))
        .map_err(|error| StreamError::Kafka(format!("topic {:?}: {error}", input.topic)))?;
    let mut assignment = TopicPartitionList::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|topic| topic.name() == input.topic && topic.error().is_none())
    {
        for partition in topic.partitions() {
            assignment
                .add_partition_offset(&input.topic, partition.id(), Offset::Stored)
                .map_err(|error| StreamError::Kafka(format!("building the assignment: {error}")))?;
        }
    }
    if assignment.count() == 0 {
        return Err(StreamError::Kafka(format!(
            "topic {:?} does not exist or has no partitions",
            input.topic
        )));
    }
    consumer
        .assign(&assignment)
        .map_err(|error| StreamError::Kafka(format!("assigning partitions: {error}")))?;
    Ok(consumer)
}

/// A record's document and its window start.
pub(crate) fn parse(payload: &[u8]) -> Result<(i64, RollupDoc), String> {
    let doc: RollupDoc = serde_json::from_slice(payload).map_err(|error| {
        // serde lists every field it expected: the unknown one is what the reader needs.
        let text = error.to_string();
        match text.split_once(", expected one of") {
            Some((problem, _)) => problem.to_string(),
            None => text,
        }
    })?;
    let window_start = qoe_schemas::time::parse_rfc3339_utc(&doc.timestamp)
        .ok_or_else(|| format!("@timestamp: {:?} is not RFC 3339 UTC", doc.timestamp))?;
    Ok((window_start, doc))
}
