//! The stream job's own metrics (`qoe_stream_*`), in a Prometheus registry of their own.

use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto;
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};
use qoe_runtime::metrics;

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
    /// `qoe_stream_beacon_freshness_seconds{result}`: per counted beacon, from its event time to the
    /// first document including it written by every output (`result="early"`, an early or a final
    /// document) and to its window's final documents written (`result="final"`).
    pub beacon_freshness: BeaconFreshness,
    /// `qoe_stream_committed_offset`: next offset to read after the last checkpoint (the largest over
    /// partitions: one series whatever the partition count).
    pub committed_offset: IntGauge,
    /// `qoe_stream_resume_skipped_offsets_total`: offsets between where a partition resumed and the
    /// first record the broker returned (records the broker skipped; 0 on a correct broker for a
    /// topic that is not compacted or transactional).
    pub resume_skipped: IntCounter,
}

impl Metrics {
    /// Creates the metrics in a new registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let beacons = metrics::counter_vec(
            r,
            "qoe_stream_beacons_total",
            "Records read by the stream job, by outcome",
            &["outcome"],
        );
        let rejected = metrics::counter_vec(
            r,
            "qoe_stream_records_rejected_total",
            "Invalid records, by reject reason",
            &["reason"],
        );
        let documents = metrics::counter_vec(
            r,
            "qoe_stream_documents_total",
            "Rollup documents written, by kind",
            &["kind"],
        );
        let open_windows = metrics::gauge(r, "qoe_stream_open_windows", "Windows not closed yet");
        let open_keys = metrics::gauge(r, "qoe_stream_open_keys", "Grain keys in open windows");
        let freshness = metrics::histogram(
            r,
            "qoe_stream_freshness_seconds",
            "From the end of a window (event time) to its final documents written",
            Some(vec![
                1.0, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 70.0, 90.0, 120.0, 300.0, 900.0,
            ]),
        );
        let beacon_freshness = metrics::register(r, BeaconFreshness::new());
        let committed_offset = metrics::gauge(
            r,
            "qoe_stream_committed_offset",
            "Largest next offset to read over partitions after the last checkpoint",
        );
        let resume_skipped = metrics::counter(
            r,
            "qoe_stream_resume_skipped_offsets_total",
            "Offsets between a partition's resume position and the first record the broker returned",
        );
        Metrics {
            registry,
            beacons,
            rejected,
            documents,
            open_windows,
            open_keys,
            freshness,
            beacon_freshness,
            committed_offset,
            resume_skipped,
        }
    }

    /// The counter of one outcome.
    pub fn outcome(&self, outcome: &str) -> IntCounter {
        self.beacons.with_label_values(&[outcome])
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

/// Upper bounds of the beacon freshness buckets, seconds.
const FRESHNESS_BUCKETS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 65.0, 70.0, 75.0, 90.0, 120.0, 300.0, 900.0,
];

/// Which documents a freshness is measured to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreshnessResult {
    /// The first document, early or final, that includes the beacon.
    Early,
    /// The final document of the beacon's window.
    Final,
}

impl FreshnessResult {
    fn label(self) -> &'static str {
        match self {
            FreshnessResult::Early => "early",
            FreshnessResult::Final => "final",
        }
    }
}

#[derive(Debug, Clone, Default)]
struct FreshnessSeries {
    /// Per bucket (and a last one for +Inf), not cumulative.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

/// `qoe_stream_beacon_freshness_seconds{result}`, a Prometheus histogram that takes many beacons of
/// the same freshness in one call ([`BeaconFreshness::observe_many`]): the driver counts beacons
/// per window and event-time slot, and observes each slot once per delivery, so the per-beacon cost
/// stays one counter increment.
#[derive(Clone)]
pub struct BeaconFreshness {
    desc: Arc<Desc>,
    series: Arc<Mutex<[FreshnessSeries; 2]>>,
}

impl BeaconFreshness {
    fn new() -> Self {
        let desc = Desc::new(
            "qoe_stream_beacon_freshness_seconds".to_string(),
            "Per counted beacon, from its event time to the first document including it (early) or its window's final documents (final) written"
                .to_string(),
            vec!["result".to_string()],
            Default::default(),
        )
        .expect("valid metric");
        let empty = FreshnessSeries {
            buckets: vec![0; FRESHNESS_BUCKETS.len() + 1],
            ..FreshnessSeries::default()
        };
        BeaconFreshness {
            desc: Arc::new(desc),
            series: Arc::new(Mutex::new([empty.clone(), empty])),
        }
    }

    /// Records `beacons` beacons whose freshness is `seconds`.
    pub fn observe_many(&self, result: FreshnessResult, seconds: f64, beacons: u64) {
        if beacons == 0 {
            return;
        }
        let bucket = FRESHNESS_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(FRESHNESS_BUCKETS.len());
        let mut series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let series = &mut series[result as usize];
        series.buckets[bucket] += beacons;
        series.sum += seconds * beacons as f64;
        series.count += beacons;
    }

    /// Beacons observed so far with `result`.
    pub fn count(&self, result: FreshnessResult) -> u64 {
        let series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        series[result as usize].count
    }
}

impl Collector for BeaconFreshness {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<proto::MetricFamily> {
        let series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut metrics = Vec::with_capacity(2);
        for result in [FreshnessResult::Early, FreshnessResult::Final] {
            let one = &series[result as usize];
            let mut histogram = proto::Histogram::default();
            histogram.set_sample_count(one.count);
            histogram.set_sample_sum(one.sum);
            let mut cumulative = 0;
            let buckets = FRESHNESS_BUCKETS
                .iter()
                .zip(&one.buckets)
                .map(|(bound, count)| {
                    cumulative += count;
                    let mut bucket = proto::Bucket::default();
                    bucket.set_cumulative_count(cumulative);
                    bucket.set_upper_bound(*bound);
                    bucket
                })
                .collect();
            histogram.set_bucket(buckets);
            let mut label = proto::LabelPair::default();
            label.set_name("result".to_string());
            label.set_value(result.label().to_string());
            let mut metric = proto::Metric::default();
            metric.set_label(vec![label]);
            metric.set_histogram(histogram);
            metrics.push(metric);
        }
        let mut family = proto::MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(proto::MetricType::HISTOGRAM);
        family.set_metric(metrics);
        vec![family]
    }
}
