//! The stream job's own metrics (`qoe_stream_*`), in a Prometheus registry of their own.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The stream job's metrics. Labels are bounded: outcome, reject reason, document kind.
#[derive(Clone)]
pub struct Metrics {
    /// The registry holding them all.
    pub registry: Registry,
    /// `qoe_stream_beacons_total{outcome}`: records read, by outcome (`counted`, `duplicate`, `late`,
    /// `already_final`, `rejected`).
    pub beacons: IntCounterVec,
    /// `qoe_stream_records_rejected_total{reason}`: invalid records, by reject reason.
    pub rejected: IntCounterVec,
    /// `qoe_stream_documents_total{kind}`: documents written to every output (`early`, `final`).
    pub documents: IntCounterVec,
    /// `qoe_stream_open_windows`: windows not closed yet.
    pub open_windows: IntGauge,
    /// `qoe_stream_open_keys`: grain keys in open windows (memory is about proportional to it).
    pub open_keys: IntGauge,
    /// `qoe_stream_freshness_seconds`: from the end of a window (event time) to its final documents
    /// written by every output.
    pub freshness: Histogram,
    /// `qoe_stream_committed_offset`: next offset to read after the last checkpoint (the largest over
    /// partitions: one series whatever the partition count).
    pub committed_offset: IntGauge,
}

impl Metrics {
    /// Creates the metrics in a new registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let beacons = IntCounterVec::new(
            Opts::new("qoe_stream_beacons_total", "Records read by the stream job, by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let rejected = IntCounterVec::new(
            Opts::new("qoe_stream_records_rejected_total", "Invalid records, by reject reason"),
            &["reason"],
        )
        .expect("valid metric");
        let documents = IntCounterVec::new(
            Opts::new("qoe_stream_documents_total", "Rollup documents written, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let open_windows = IntGauge::new("qoe_stream_open_windows", "Windows not closed yet").expect("valid metric");
        let open_keys = IntGauge::new("qoe_stream_open_keys", "Grain keys in open windows").expect("valid metric");
        let freshness = Histogram::with_opts(
            HistogramOpts::new(
                "qoe_stream_freshness_seconds",
                "From the end of a window (event time) to its final documents written",
            )
            .buckets(vec![
                1.0, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 70.0, 90.0, 120.0, 300.0, 900.0,
            ]),
        )
        .expect("valid metric");
        let committed_offset = IntGauge::new(
            "qoe_stream_committed_offset",
            "Largest next offset to read over partitions after the last checkpoint",
        )
        .expect("valid metric");
        for collector in [
            Box::new(beacons.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejected.clone()),
            Box::new(documents.clone()),
            Box::new(open_windows.clone()),
            Box::new(open_keys.clone()),
            Box::new(freshness.clone()),
            Box::new(committed_offset.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Metrics {
            registry,
            beacons,
            rejected,
            documents,
            open_windows,
            open_keys,
            freshness,
            committed_offset,
        }
    }

    /// The counter of one outcome.
    pub fn outcome(&self, outcome: &str) -> IntCounter {
        self.beacons.with_label_values(&[outcome])
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let encoder = prometheus::TextEncoder::new();
        // Encoding into a String only fails on invalid UTF-8, which metric names never are.
        let _ = encoder.encode_utf8(&self.registry.gather(), &mut text);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
