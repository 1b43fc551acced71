//! The rollup topic (`qoe.rollups.v1`, written by `qoe stream --output kafka:` or by the Arroyo
//! pipeline) as the input of `qoe index` and `qoe alert`: its consumers and its record format.

use qoe_rollup::RollupDoc;
use qoe_runtime::kafka::{topic_partitions, ClientSpec, TopicInput};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::error::StreamError;

/// A consumer of `input`'s group, committing by hand; `partition_eof` reports the end of each
/// partition. `max.poll.interval.ms` is above the sink's longest retry (10 min by default), so that
/// an Elasticsearch outage does not cost the group membership.
fn consumer(input: &TopicInput, partition_eof: bool) -> Result<BaseConsumer, StreamError> {
    Ok(
        ClientSpec::consumer("the rollup topic's consumer", &input.kafka, &input.group_id)
            .default("max.poll.interval.ms", 900_000)
            .require(
                "enable.partition.eof",
                &[],
                partition_eof,
                "the pipeline (the job reads end-of-partition events only when it assigns itself every partition)",
            )
            .create()?,
    )
}

/// A consumer subscribed to `input`'s topic: the group's members share the partitions.
pub(crate) fn subscribe(input: &TopicInput) -> Result<BaseConsumer, StreamError> {
    let consumer = consumer(input, false)?;
    consumer
        .subscribe(&[&input.topic])
        .map_err(StreamError::kafka(format!("subscribing to {:?}", input.topic)))?;
    Ok(consumer)
}

/// A consumer assigned every partition of `input`'s topic, from the group's committed offsets, with
/// end-of-partition events.
pub(crate) fn assign_all(input: &TopicInput) -> Result<BaseConsumer, StreamError> {
    let consumer = consumer(input, true)?;
    let mut assignment = TopicPartitionList::new();
    for partition in topic_partitions(&consumer, &input.topic)?.unwrap_or_default() {
        assignment
            .add_partition_offset(&input.topic, partition, Offset::Stored)
            .map_err(StreamError::kafka("building the assignment"))?;
    }
    if assignment.count() == 0 {
        return Err(StreamError::KafkaSetup(format!(
            "topic {:?} does not exist or has no partitions",
            input.topic
        )));
    }
    consumer
        .assign(&assignment)
        .map_err(StreamError::kafka("assigning partitions"))?;
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
