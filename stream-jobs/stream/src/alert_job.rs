//! `qoe alert`: the alert rules over rollup documents from Kafka (`qoe.rollups.v1`), for rollups
//! produced elsewhere (the Arroyo pipeline, or a `qoe stream` without `--alert-rules`).
//!
//! A window's documents are spread over the topic's partitions, and partitions are read at
//! different paces (a backlog is fetched partition by partition). The stream job writes a window's
//! documents, and waits for the broker's acknowledgement, before the next window's, so a partition
//! that delivered a document of a later window has delivered all of its documents of the earlier
//! ones. A window is therefore evaluated once **every** partition has either delivered a later
//! window or reached its end, and the newest window has been seen for [`GRACE`] (so a partition
//! whose end was reached just before new documents arrived catches up); or when the input goes idle.
//! Early (non-final) documents are skipped.
//!
//! Delivery guarantee: offsets are committed only below the documents of windows not yet evaluated
//! and written; with `--alert-state` a restart continues the rules' history and skips windows it
//! had evaluated.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use qoe_rollup::{Emission, RollupDoc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::alerts::AlertOutput;
use crate::index::{parse, subscribe, IndexInput};
use crate::output::Output;
use crate::StreamError;

/// How long after the first document of a later window a window is taken as complete.
pub(crate) const GRACE: Duration = Duration::from_secs(5);

/// What a `qoe alert` run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AlertRunReport {
    /// Records read.
    pub records: u64,
    /// Final documents evaluated.
    pub documents: u64,
    /// Early documents skipped.
    pub early: u64,
    /// Records that are not rollup documents v1.
    pub invalid: u64,
    /// Windows evaluated.
    pub windows: u64,
    /// Alert events written.
    pub events: u64,
}

/// A window's documents and, per partition, the offset of its first record.
#[derive(Default)]
struct Pending {
    docs: Vec<RollupDoc>,
    first_offsets: BTreeMap<i32, i64>,
}

/// Reads `input` and evaluates `output`'s rules window by window until shutdown (or idleness).
pub fn run_alerts(
    input: &IndexInput,
    output: &mut AlertOutput,
    shutdown: &CancellationToken,
) -> Result<AlertRunReport, StreamError> {
    let consumer = subscribe(input, true)?;
    let mut report = AlertRunReport::default();
    let mut windows: BTreeMap<i64, Pending> = BTreeMap::new();
    let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut newest: Option<(i64, Instant)> = None;
    // Per partition: the newest window it delivered, and whether it is at its end.
    let mut frontier: BTreeMap<i32, (Option<i64>, bool)> = BTreeMap::new();
    let started = Instant::now();
    let mut last_record: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        let polled = consumer.poll(Duration::from_millis(100));
        if let Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) = polled {
            frontier.entry(partition).or_default().1 = true;
        }
        if let Some(Ok(message)) = polled {
            last_record = Some(Instant::now());
            frontier.entry(message.partition()).or_default().1 = false;
            report.records += 1;
            next_offsets.insert(message.partition(), message.offset() + 1);
            match parse(message.payload().unwrap_or_default()) {
                Err(problem) => {
                    report.invalid += 1;
                    tracing::warn!(partition = message.partition(), offset = message.offset(), %problem, "not a rollup document v1: skipped");
                }
                Ok((_, doc)) if !doc.is_final => report.early += 1,
                Ok((start, doc)) => {
                    report.documents += 1;
                    let pending = windows.entry(start).or_default();
                    pending
                        .first_offsets
                        .entry(message.partition())
                        .or_insert(message.offset());
                    pending.docs.push(doc);
                    let delivered = &mut frontier.entry(message.partition()).or_default().0;
                    *delivered = Some(delivered.map_or(start, |seen| seen.max(start)));
                    if newest.is_none_or(|(window, _)| start > window) {
                        newest = Some((start, Instant::now()));
                    }
                }
            }
        }
        let idle = input.exit_when_idle.is_some_and(|idle| match last_record {
            Some(at) => at.elapsed() >= idle,
            None => started.elapsed() >= idle.max(Duration::from_secs(60)),
        });
        let complete_below = match newest {
            _ if idle => i64::MAX,
            Some((window, seen)) if seen.elapsed() >= GRACE => frontier
                .values()
                .map(|(delivered, at_end)| if *at_end { window } else { delivered.unwrap_or(i64::MIN) })
                .min()
                .unwrap_or(i64::MIN),
            _ => i64::MIN,
        };
        let ready: Vec<i64> = windows.range(..complete_below).map(|(start, _)| *start).collect();
        if !ready.is_empty() {
            for start in ready {
                let Some(pending) = windows.remove(&start) else {
                    continue;
                };
                let before = output.raised().len();
                let emission = Emission {
                    window_start_ms: start,
                    is_final: true,
                    docs: pending.docs,
                };
                output.write(std::slice::from_ref(&emission))?;
                report.windows += 1;
                report.events += (output.raised().len() - before) as u64;
            }
            commit(&consumer, &input.topic, &windows, &next_offsets);
        }
        if idle {
            break;
        }
    }
    Ok(report)
}

/// Commits, per partition, the offset of the first record of a window still pending, or the next
/// offset when none is.
fn commit(consumer: &BaseConsumer, topic: &str, windows: &BTreeMap<i64, Pending>, next_offsets: &BTreeMap<i32, i64>) {
    let mut offsets = TopicPartitionList::new();
    for (partition, next) in next_offsets {
        let pending_first = windows
            .values()
            .filter_map(|pending| pending.first_offsets.get(partition))
            .min();
        let offset = pending_first.copied().unwrap_or(*next);
        if offsets
            .add_partition_offset(topic, *partition, Offset::Offset(offset))
            .is_err()
        {
            return;
        }
    }
    // A refused commit (after a rebalance) only means more is read again after a restart.
    if let Err(error) = consumer.commit(&offsets, CommitMode::Sync) {
        tracing::warn!(%error, "offset commit refused (after a rebalance?)");
    }
}
