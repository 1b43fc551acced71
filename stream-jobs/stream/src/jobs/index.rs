//! `qoe index`: rollup documents from Kafka (`qoe.rollups.v1`, written by `qoe stream --output
//! kafka:` or by the Arroyo pipeline) into Elasticsearch with the same sink as `qoe stream`.
//!
//! Delivery guarantee: at least once, and idempotent. Offsets are committed only after
//! Elasticsearch acknowledged every document before them; a restart sends the uncommitted ones
//! again under the same ids, which overwrites them. A record that is not a rollup document v1 is
//! counted (`qoe_index_records_total{outcome="invalid"}`), logged with its partition and offset,
//! and skipped: the documents beside it are still indexed.
//!
//! Several `qoe index` processes with the same group share the partitions (consumer-group
//! rebalancing); the ids make their writes commute.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use prometheus::Registry;
use qoe_rollup::RollupDoc;
use qoe_runtime::kafka::TopicInput;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::StreamError;
use crate::jobs::rollup_topic::{parse, subscribe};
use crate::output::EsOutput;

/// Documents per Elasticsearch write, at most.
const BATCH_DOCS: usize = 5_000;

/// How long a partial batch waits for more documents.
const BATCH_WAIT: Duration = Duration::from_secs(1);

/// How many rejection messages the report keeps.
const REJECTION_SAMPLES: usize = 10;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IndexReport {
    /// Records read.
    pub records: u64,
    /// Documents written to Elasticsearch.
    pub indexed: u64,
    /// Records that are not rollup documents v1.
    pub invalid: u64,
    /// The first invalid records, as `<partition>@<offset>: <problem>`.
    pub rejection_samples: Vec<String>,
}

/// Reads `input` into `output` until shutdown (or idleness), committing after each write.
/// Metrics: `qoe_index_records_total{outcome}` (`indexed`, `invalid`) in `registry`.
pub fn run_index(
    input: &TopicInput,
    output: &EsOutput,
    registry: &Registry,
    shutdown: &CancellationToken,
) -> Result<IndexReport, StreamError> {
    let records = qoe_runtime::metrics::counter_vec(
        registry,
        "qoe_index_records_total",
        "Rollup records read by qoe index, by outcome",
        &["outcome"],
    );
    let consumer = subscribe(input)?;
    tracing::info!(topic = %input.topic, group = %input.group_id, "indexer reading");

    let mut report = IndexReport::default();
    let mut batch: Vec<(i64, RollupDoc)> = Vec::new();
    // Next offset to commit per partition, once the batch is written.
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut batch_started: Option<Instant> = None;
    let started = Instant::now();
    let mut last_record: Option<Instant> = None;
    let mut last_warning: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        let polled = consumer.poll(Duration::from_millis(100));
        if let Some(Err(error)) = &polled {
            if last_warning.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(%error, "kafka consumer error (retrying; logged at most every 10 s)");
                last_warning = Some(Instant::now());
            }
        }
        if let Some(Ok(message)) = polled {
            last_record = Some(Instant::now());
            report.records += 1;
            next.insert(message.partition(), message.offset() + 1);
            let payload = message.payload().unwrap_or_default();
            match parse(payload) {
                Ok(entry) => {
                    batch.push(entry);
                    batch_started.get_or_insert_with(Instant::now);
                }
                Err(problem) => {
                    report.invalid += 1;
                    records.with_label_values(&["invalid"]).inc();
                    let sample = format!("{}@{}: {problem}", message.partition(), message.offset());
                    tracing::warn!(partition = message.partition(), offset = message.offset(), %problem, "not a rollup document v1: skipped");
                    if report.rejection_samples.len() < REJECTION_SAMPLES {
                        report.rejection_samples.push(sample);
                    }
                }
            }
        }
        let due = batch.len() >= BATCH_DOCS || batch_started.is_some_and(|started| started.elapsed() >= BATCH_WAIT);
        // Before the first record, joining the group and the first fetch may take a while.
        let idle = input.exit_when_idle.is_some_and(|idle| match last_record {
            Some(at) => at.elapsed() >= idle,
            None => started.elapsed() >= idle.max(Duration::from_secs(60)),
        });
        if due || (idle && !next.is_empty()) {
            let written = flush(&consumer, &input.topic, output, &mut batch, &mut next)?;
            report.indexed += written;
            records.with_label_values(&["indexed"]).inc_by(written);
            batch_started = None;
        }
        if idle {
            break;
        }
    }
    let written = flush(&consumer, &input.topic, output, &mut batch, &mut next)?;
    report.indexed += written;
    records.with_label_values(&["indexed"]).inc_by(written);
    Ok(report)
}

fn flush(
    consumer: &BaseConsumer,
    topic: &str,
    output: &EsOutput,
    batch: &mut Vec<(i64, RollupDoc)>,
    next: &mut BTreeMap<i32, i64>,
) -> Result<u64, StreamError> {
    let written = output.write_docs(batch.iter().map(|(start, doc)| (*start, doc)))? as u64;
    batch.clear();
    if next.is_empty() {
        return Ok(written);
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in next.iter() {
        offsets
            .add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(StreamError::kafka("building the offset commit"))?;
    }
    // A commit refused after a rebalance is harmless: the partition's new owner indexes the same
    // documents again under the same ids.
    if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
        tracing::warn!(%error, "offset commit refused (after a rebalance?): the new owner re-indexes");
    }
    next.clear();
    Ok(written)
}
