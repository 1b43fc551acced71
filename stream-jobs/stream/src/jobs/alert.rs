//! `qoe alert`: the alert rules over rollup documents from Kafka (`qoe.rollups.v1`), for rollups
//! produced elsewhere (the Arroyo pipeline, or a `qoe stream` without `--alert-rules`).
//!
//! A window's documents are spread over the topic's partitions, and partitions are read at
//! different paces (a backlog is fetched partition by partition). The stream job writes a window's
//! documents, and waits for the broker's acknowledgement, before the next window's, so a partition
//! that delivered a document of a later window has delivered all of its documents of the earlier
//! ones. A window is therefore evaluated once **every** partition of the topic (all are assigned to
//! this one reader: run one `qoe alert` per group) has either delivered a later window, or reached
//! its end with the newest window seen for [`GRACE`] (so that a partition whose end was reached just
//! before new documents arrived catches up); or when the input goes idle. Early (non-final)
//! documents are skipped.
//!
//! Limit: a producer that writes a window's documents after a later window's into the same partition
//! (Arroyo with several sink subtasks may) breaks the ordering this relies on; those documents
//! arrive after their window was evaluated and are ignored. Give such a pipeline one sink subtask,
//! or run the rules in `qoe stream --alert-rules`.
//!
//! Delivery guarantee: offsets are committed only below the documents of windows not yet evaluated
//! and written; with `--alert-state` a restart continues the rules' history and skips windows it
//! had evaluated.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use qoe_rollup::{Emission, RollupDoc};
use qoe_runtime::kafka::TopicInput;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::StreamError;
use crate::jobs::rollup_topic::{assign_all, parse};
use crate::output::AlertOutput;
use crate::output::Output;

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
    input: &TopicInput,
    output: &mut AlertOutput,
    shutdown: &CancellationToken,
) -> Result<AlertRunReport, StreamError> {
    let consumer = assign_all(input)?;
    let mut report = AlertRunReport::default();
    let mut windows: BTreeMap<i64, Pending> = BTreeMap::new();
    let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let mut newest: Option<(i64, Instant)> = None;
    // Per partition: the newest window it delivered, and whether it is at its end.
    let mut frontier: BTreeMap<i32, (Option<i64>, bool)> = consumer
        .assignment()
        .map_err(StreamError::kafka("reading the assignment"))?
        .elements()
        .iter()
        .map(|element| (element.partition(), (None, false)))
        .collect();
    let started = Instant::now();
    let mut last_record: Option<Instant> = None;
    let mut last_warning: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        let polled = consumer.poll(Duration::from_millis(100));
        match &polled {
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(partition))) => {
                frontier.entry(*partition).or_default().1 = true;
            }
            Some(Err(error)) if last_warning.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(10)) => {
                tracing::warn!(%error, "kafka consumer error (retrying; logged at most every 10 s)");
                last_warning = Some(Instant::now());
            }
            _ => {}
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
        // A partition holds back the windows after the newest it delivered, unless it is at its end
        // and the newest window has had time to reach it.
        let settled = newest
            .filter(|(_, seen)| seen.elapsed() >= GRACE)
            .map(|(window, _)| window);
        let complete_below = if idle {
            i64::MAX
        } else {
            frontier
                .values()
                .map(|(delivered, at_end)| match (delivered, settled) {
                    (_, Some(window)) if *at_end => window,
                    (Some(delivered), _) => *delivered,
                    (None, _) => i64::MIN,
                })
                .min()
                .unwrap_or(i64::MIN)
        };
        let ready: Vec<i64> = windows.range(..complete_below).map(|(start, _)| *start).collect();
        if !ready.is_empty() {
            for start in ready {
                let Some(pending) = windows.remove(&start) else {
                    continue;
                };
                let before = output.events_written();
                let emission = Emission {
                    window_start_ms: start,
                    is_final: true,
                    docs: pending.docs,
                };
                output.write(std::slice::from_ref(&emission))?;
                report.windows += 1;
                report.events += output.events_written() - before;
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
