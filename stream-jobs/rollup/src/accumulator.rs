//! One grain key's metrics over one window: what a beacon adds, and the document it makes.
//!
//! The accumulator keeps exact counts and sums, a [`Sketch`] per latency-like metric (created on its
//! first sample, so keys that never see one cost nothing), a `{sum, count}` per gauge, and the
//! 64-bit hashes of the session ids it must count distinctly.

use std::collections::HashSet;

use qoe_schemas::{Beacon, BeaconType, ErrorCategory, Family};
use qoe_sketch::Sketch;

use crate::doc::{Hist, RollupDoc, Stats};

/// A set of session-id hashes.
pub(crate) type SessionSet = HashSet<u64, foldhash::fast::RandomState>;

/// The latency-like metrics: each has percentiles and a `_hist` field.
#[derive(Debug, Clone, Copy)]
enum Latency {
    FirstFrame,
    Dns,
    Connect,
    FirstPacket,
    StartupSkip,
    Live,
    Rtt,
}

const LATENCIES: usize = 7;

/// The gauges: averaged per sample.
#[derive(Debug, Clone, Copy)]
enum Gauge {
    Bitrate,
    Buffer,
    EncodeFps,
    OutputKbps,
    TargetKbps,
    CpuPct,
}

const GAUGES: usize = 6;

/// Sum and count of a gauge's samples.
#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    count: u64,
}

impl Mean {
    fn add(&mut self, value: f64) {
        self.sum += value;
        self.count += 1;
    }

    fn stats(&self) -> Option<Stats> {
        (self.count > 0).then(|| Stats {
            avg: self.sum / self.count as f64,
            sum: self.sum,
            count: self.count,
            p50: None,
            p90: None,
            p99: None,
        })
    }
}

/// The metrics of one key in one window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Accumulator {
    play_starts: u64,
    first_frames: u64,
    play_ends: u64,
    ebvs: u64,
    fatal_errors: u64,
    business_errors: u64,
    joins: u64,
    leaves: u64,
    httpdns_first_frames: u64,
    resolved_first_frames: u64,
    watch_ms: u64,
    stall_ms: u64,
    stall_count: u64,
    dropped_frames: u64,
    push_stall_ms: u64,
    push_dropped_frames: u64,
    /// Sessions with a play beacon (a push beacon on grain `push`).
    pub(crate) active: SessionSet,
    stalled: SessionSet,
    skipped: SessionSet,
    sketches: [Option<Box<Sketch>>; LATENCIES],
    gauges: [Mean; GAUGES],
}

impl Accumulator {
    /// Adds one beacon; `session` is the hash of its session id, `alpha` the sketches' accuracy.
    pub(crate) fn add(&mut self, beacon: &Beacon, session: u64, alpha: f64) {
        let kind = beacon.kind;
        if kind.family() != Family::Room {
            self.active.insert(session);
        }
        match kind {
            BeaconType::PlayStart => self.play_starts += 1,
            BeaconType::FirstFrame => {
                self.first_frames += 1;
                self.sample(Latency::FirstFrame, beacon.first_frame_ms, alpha);
                self.sample(Latency::Dns, beacon.dns_ms, alpha);
                self.sample(Latency::Connect, beacon.connect_ms, alpha);
                self.sample(Latency::FirstPacket, beacon.first_packet_ms, alpha);
                self.sample(Latency::Rtt, beacon.rtt_ms, alpha);
                if let Some(resolver) = beacon.resolver {
                    self.resolved_first_frames += 1;
                    if resolver == qoe_schemas::Resolver::HttpDns {
                        self.httpdns_first_frames += 1;
                    }
                }
            }
            BeaconType::PlayHeartbeat => {
                self.add_interval(beacon, session);
                self.sample(Latency::Live, beacon.latency_ms, alpha);
                self.sample(Latency::Rtt, beacon.rtt_ms, alpha);
                self.gauge(Gauge::Bitrate, beacon.bitrate_kbps.map(|kbps| kbps as f64));
                self.gauge(Gauge::Buffer, beacon.buffer_ms.map(|ms| ms as f64));
                if let Some(skip_ms) = beacon.startup_skip_ms {
                    self.sample(Latency::StartupSkip, Some(skip_ms), alpha);
                    if skip_ms > 0 {
                        self.skipped.insert(session);
                    }
                }
            }
            BeaconType::PlayError => {
                let category = beacon.category;
                if category == Some(ErrorCategory::Business) {
                    self.business_errors += 1;
                } else if category == Some(ErrorCategory::Technical) && beacon.fatal == Some(true) {
                    self.fatal_errors += 1;
                }
            }
            BeaconType::PlayEnd => {
                self.play_ends += 1;
                let without_first_frame = beacon.first_frame_seen == Some(false);
                let by_error = beacon.reason.as_deref() == Some("error");
                if without_first_frame && !by_error {
                    self.ebvs += 1;
                }
                self.add_interval(beacon, session);
            }
            BeaconType::PushStart => {}
            BeaconType::PushHeartbeat | BeaconType::PushEnd => {
                self.push_stall_ms += beacon.stall_ms.unwrap_or(0);
                self.push_dropped_frames += beacon.dropped_frames.unwrap_or(0);
                self.sample(Latency::Rtt, beacon.rtt_ms, alpha);
                self.gauge(Gauge::EncodeFps, beacon.encode_fps);
                self.gauge(Gauge::OutputKbps, beacon.output_kbps.map(|kbps| kbps as f64));
                self.gauge(Gauge::TargetKbps, beacon.target_kbps.map(|kbps| kbps as f64));
                self.gauge(Gauge::CpuPct, beacon.cpu_pct);
            }
            BeaconType::RoomJoin => self.joins += 1,
            BeaconType::RoomLeave => self.leaves += 1,
        }
    }

    /// The interval counters of a `play_heartbeat` or `play_end`.
    fn add_interval(&mut self, beacon: &Beacon, session: u64) {
        self.watch_ms += beacon.watch_ms.unwrap_or(0);
        self.stall_ms += beacon.stall_ms.unwrap_or(0);
        let stall_count = beacon.stall_count.unwrap_or(0);
        self.stall_count += stall_count;
        self.dropped_frames += beacon.dropped_frames.unwrap_or(0);
        if stall_count > 0 {
            self.stalled.insert(session);
        }
    }

    fn sample(&mut self, metric: Latency, value: Option<u64>, alpha: f64) {
        let Some(value) = value else { return };
        let sketch = self.sketches[metric as usize].get_or_insert_with(|| {
            // `alpha` was checked when the engine was configured.
            Box::new(Sketch::new(alpha).unwrap_or_default())
        });
        // Beacon values are validated non-negative integers: `add` cannot refuse them.
        let _ = sketch.add(value as f64);
    }

    fn gauge(&mut self, gauge: Gauge, value: Option<f64>) {
        if let Some(value) = value {
            self.gauges[gauge as usize].add(value);
        }
    }

    /// Fills the metric fields of `doc` (its time, grain and dimensions are the caller's).
    pub(crate) fn fill(&self, doc: &mut RollupDoc) {
        doc.play_starts = self.play_starts;
        doc.first_frames = self.first_frames;
        doc.play_ends = self.play_ends;
        doc.ebvs = self.ebvs;
        doc.fatal_errors = self.fatal_errors;
        doc.business_errors = self.business_errors;
        doc.joins = self.joins;
        doc.leaves = self.leaves;
        doc.active_sessions = self.active.len() as u64;

        let percentiles: &[f64] = &[0.5, 0.9, 0.99];
        let three: &[f64] = &[0.5, 0.9];
        let p90_only: &[f64] = &[0.9];
        (doc.first_frame_ms, doc.first_frame_ms_hist) = self.latency(Latency::FirstFrame, percentiles);
        (doc.dns_ms, doc.dns_ms_hist) = self.latency(Latency::Dns, percentiles);
        (doc.connect_ms, doc.connect_ms_hist) = self.latency(Latency::Connect, percentiles);
        (doc.first_packet_ms, doc.first_packet_ms_hist) = self.latency(Latency::FirstPacket, percentiles);
        (doc.startup_skip_ms, doc.startup_skip_ms_hist) = self.latency(Latency::StartupSkip, p90_only);
        (doc.latency_ms, doc.latency_ms_hist) = self.latency(Latency::Live, three);
        (doc.rtt_ms, doc.rtt_ms_hist) = self.latency(Latency::Rtt, three);

        doc.httpdns_first_frames = self.httpdns_first_frames;
        doc.resolved_first_frames = self.resolved_first_frames;
        doc.httpdns_share = ratio(self.httpdns_first_frames as f64, self.resolved_first_frames as f64);

        doc.watch_ms = self.watch_ms;
        doc.stall_ms = self.stall_ms;
        doc.stall_count = self.stall_count;
        doc.stall_ratio = ratio(self.stall_ms as f64, (self.watch_ms + self.stall_ms) as f64);
        doc.stalls_per_hour = ratio(self.stall_count as f64, self.watch_ms as f64 / 3_600_000.0);
        doc.stalled_sessions = self.stalled.len() as u64;
        doc.startup_skip_sessions = self.skipped.len() as u64;
        doc.dropped_frames = self.dropped_frames;

        doc.bitrate_kbps = self.gauges[Gauge::Bitrate as usize].stats();
        doc.buffer_ms = self.gauges[Gauge::Buffer as usize].stats();
        doc.encode_fps = self.gauges[Gauge::EncodeFps as usize].stats();
        doc.output_kbps = self.gauges[Gauge::OutputKbps as usize].stats();
        doc.target_kbps = self.gauges[Gauge::TargetKbps as usize].stats();
        doc.cpu_pct = self.gauges[Gauge::CpuPct as usize].stats();
        doc.push_stall_ms = self.push_stall_ms;
        doc.push_dropped_frames = self.push_dropped_frames;
    }

    /// The statistics (with the percentiles `quantiles`) and the histogram of a latency metric.
    fn latency(&self, metric: Latency, quantiles: &[f64]) -> (Option<Stats>, Option<Hist>) {
        let Some(sketch) = self.sketches[metric as usize].as_deref() else {
            return (None, None);
        };
        let Some(avg) = sketch.mean() else {
            return (None, None);
        };
        let pick = |q: f64| quantiles.contains(&q).then(|| sketch.quantile(q)).flatten();
        let stats = Stats {
            avg,
            sum: sketch.sum(),
            count: sketch.count(),
            p50: pick(0.5),
            p90: pick(0.9),
            p99: pick(0.99),
        };
        let histogram = sketch.histogram();
        let hist = Hist {
            values: histogram.values,
            counts: histogram.counts,
        };
        (Some(stats), Some(hist))
    }
}

/// `numerator / denominator`, `None` when the denominator is 0.
fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}
