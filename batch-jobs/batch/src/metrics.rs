//! The batch job's own metrics (`qoe_batch_*`), in a Prometheus registry of their own.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};
use qoe_runtime::metrics;

/// The batch job's metrics. Labels are bounded: outcome, reject reason, table, source (a Kafka
/// partition or an input file).
#[derive(Clone)]
pub struct Metrics {
    /// The registry holding them all.
    pub registry: Registry,
    /// `qoe_batch_records_total{outcome}`: records offered, by outcome (`accepted`, `duplicate`,
    /// `rejected`, `already_stored`).
    pub records: IntCounterVec,
    /// `qoe_batch_records_rejected_total{reason}`: invalid records, by reject reason.
    pub rejected: IntCounterVec,
    /// `qoe_batch_rows_written_total{table}`: rows written to Parquet (`play_sessions` rows count each
    /// time their file is rewritten).
    pub rows: IntCounterVec,
    /// `qoe_batch_flushes_total`: committed flushes.
    pub flushes: IntCounter,
    /// `qoe_batch_flush_duration_seconds`: time to write and commit one flush.
    pub flush_seconds: Histogram,
    /// `qoe_batch_committed_offset{source}`: next offset to read per source, after the last commit.
    pub committed_offset: IntGaugeVec,
    /// `qoe_batch_session_late_total`: play beacons older than the session horizon when they arrived,
    /// stored in `play` but not folded into `play_sessions`.
    pub session_late: IntCounter,
    /// `qoe_batch_resume_skipped_offsets_total`: offsets between where a partition's source resumed
    /// (its manifest) and the first record the broker returned after it (records never stored).
    pub resume_skipped: IntCounter,
    /// `qoe_batch_assigned_partitions`: partitions of the beacon topic the consumer group assigned to
    /// this job (`--input kafka`; 0 before the first assignment and after a revocation).
    pub assigned_partitions: IntGauge,
    /// `records{outcome="accepted"}`, resolved once.
    pub accepted: IntCounter,
    /// `records{outcome="duplicate"}`, resolved once.
    pub duplicates: IntCounter,
    /// `records{outcome="rejected"}`, resolved once.
    pub rejected_records: IntCounter,
    /// `records{outcome="already_stored"}`, resolved once.
    pub already_stored: IntCounter,
}

impl Metrics {
    /// Creates the metrics in a new registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let records = metrics::counter_vec(
            &registry,
            "qoe_batch_records_total",
            "Records offered to the batch job, by outcome",
            &["outcome"],
        );
        let rejected = metrics::counter_vec(
            &registry,
            "qoe_batch_records_rejected_total",
            "Invalid records, by reject reason",
            &["reason"],
        );
        let rows = metrics::counter_vec(
            &registry,
            "qoe_batch_rows_written_total",
            "Rows written to Parquet, by table",
            &["table"],
        );
        let flushes = metrics::counter(&registry, "qoe_batch_flushes_total", "Committed flushes");
        let flush_seconds = metrics::histogram(
            &registry,
            "qoe_batch_flush_duration_seconds",
            "Time to write and commit one flush",
            None,
        );
        let committed_offset = metrics::gauge_vec(
            &registry,
            "qoe_batch_committed_offset",
            "Next offset to read per source after the last commit",
            &["source"],
        );
        let session_late = metrics::counter(
            &registry,
            "qoe_batch_session_late_total",
            "Play beacons older than the session horizon, not folded into play_sessions",
        );
        let resume_skipped = metrics::counter(
            &registry,
            "qoe_batch_resume_skipped_offsets_total",
            "Offsets between a source's resume point and the first record the broker returned after it",
        );
        let assigned_partitions = metrics::gauge(
            &registry,
            "qoe_batch_assigned_partitions",
            "Partitions of the beacon topic assigned to this job by its consumer group",
        );
        Metrics {
            accepted: records.with_label_values(&["accepted"]),
            duplicates: records.with_label_values(&["duplicate"]),
            rejected_records: records.with_label_values(&["rejected"]),
            already_stored: records.with_label_values(&["already_stored"]),
            session_late,
            resume_skipped,
            assigned_partitions,
            registry,
            records,
            rejected,
            rows,
            flushes,
            flush_seconds,
            committed_offset,
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
