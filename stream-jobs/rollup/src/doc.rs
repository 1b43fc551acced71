//! The rollup document v1: one grain key's metrics over one window, as Elasticsearch indexes it, as
//! `qoe.rollups.v1` carries it and as `ndjson:` outputs write it. `docs/metrics.md` defines every
//! field with its formula and edge cases.
//!
//! Absent values are left out, never written as `null`: a statistic without samples, a ratio whose
//! denominator is zero, a dimension the grain does not have. Counts and sums are always written.

use std::fmt;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

/// The contract version: part of every document id, so that a v2 never overwrites a v1 document.
pub const ROLLUP_VERSION: u32 = 1;

/// The Kafka topic that carries rollup documents, keyed by [`RollupDoc::id`].
pub const ROLLUPS_TOPIC: &str = "qoe.rollups.v1";

/// What a document's dimensions are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    /// Viewers per `cdn`, `region`, `isp`, `platform`.
    Cdn,
    /// Viewers per `cdn`, `edge_ip`.
    Edge,
    /// Viewers per `room_id`, `cdn`, for rooms at or over the viewer threshold.
    Room,
    /// Publishers per `room_id`, `cdn`, `region`, `isp`.
    Push,
}

impl Grain {
    /// Every grain, in contract order.
    pub const ALL: [Grain; 4] = [Grain::Cdn, Grain::Edge, Grain::Room, Grain::Push];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Cdn => "cdn",
            Grain::Edge => "edge",
            Grain::Room => "room",
            Grain::Push => "push",
        }
    }

    /// The names of the grain's dimensions, in [`Dims`] order.
    pub fn dim_names(self) -> &'static [&'static str] {
        match self {
            Grain::Cdn => &["cdn", "region", "isp", "platform"],
            Grain::Edge => &["cdn", "edge_ip"],
            Grain::Room => &["room_id", "cdn"],
            Grain::Push => &["room_id", "cdn", "region", "isp"],
        }
    }
}

/// `cdn`: the default only so that documents can be built field by field (`..Default::default()`).
impl Default for Grain {
    fn default() -> Self {
        Grain::Cdn
    }
}

impl fmt::Display for Grain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A grain's dimension values, in [`Grain::dim_names`] order; a value the beacon did not carry is
/// [`UNKNOWN`].
pub type Dims = Vec<String>;

/// The value of a dimension a beacon did not carry (`region`, `isp`, a room beacon's `cdn`).
pub const UNKNOWN: &str = "unknown";

/// `{avg, sum, count}` of a gauge, and the percentiles of latency-like metrics.
///
/// `sum` and `count` are there so that dashboards average over many documents correctly
/// (Σsum / Σcount), never as an average of averages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Mean of the samples.
    pub avg: f64,
    /// Sum of the samples.
    pub sum: f64,
    /// Number of samples (at least 1: a metric without samples is left out).
    pub count: u64,
    /// Median, from the sketch (within its relative-error bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    /// 90th percentile, from the sketch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    /// 99th percentile, from the sketch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

/// Buckets of a latency-like metric in Elasticsearch's `histogram` field format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hist {
    /// Bucket values, strictly ascending.
    pub values: Vec<f64>,
    /// Samples per bucket, all positive.
    pub counts: Vec<u64>,
}

/// A count or sum field of [`RollupDoc`]: always present, added when documents are merged.
pub type CountField = (&'static str, fn(&RollupDoc) -> u64);

/// Every count and sum field of [`RollupDoc`], by its JSON name (Elasticsearch maps them as `long`;
/// alert rules and dashboards add them across documents).
pub const COUNT_FIELDS: &[CountField] = &[
    ("play_starts", |d| d.play_starts),
    ("first_frames", |d| d.first_frames),
    ("play_ends", |d| d.play_ends),
    ("ebvs", |d| d.ebvs),
    ("fatal_errors", |d| d.fatal_errors),
    ("business_errors", |d| d.business_errors),
    ("joins", |d| d.joins),
    ("leaves", |d| d.leaves),
    ("active_sessions", |d| d.active_sessions),
    ("httpdns_first_frames", |d| d.httpdns_first_frames),
    ("resolved_first_frames", |d| d.resolved_first_frames),
    ("watch_ms", |d| d.watch_ms),
    ("stall_ms", |d| d.stall_ms),
    ("stall_count", |d| d.stall_count),
    ("stalled_sessions", |d| d.stalled_sessions),
    ("startup_skip_sessions", |d| d.startup_skip_sessions),
    ("dropped_frames", |d| d.dropped_frames),
    ("push_stall_ms", |d| d.push_stall_ms),
    ("push_dropped_frames", |d| d.push_dropped_frames),
];

/// One rollup document v1. Field meanings: `docs/metrics.md`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupDoc {
    /// Window start, RFC 3339 UTC (`2026-11-20T09:31:00Z`).
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    /// Window length, seconds.
    pub window_s: u32,
    /// The grain.
    pub grain: Grain,
    /// Whether the window is closed (`false`: an early result the final one overwrites).
    #[serde(rename = "final")]
    pub is_final: bool,

    /// Dimension: CDN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn: Option<String>,
    /// Dimension: region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Dimension: ISP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isp: Option<String>,
    /// Dimension: platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Dimension: edge node IP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_ip: Option<String>,
    /// Dimension: room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,

    /// `play_start` beacons.
    pub play_starts: u64,
    /// `first_frame` beacons.
    pub first_frames: u64,
    /// `play_end` beacons.
    pub play_ends: u64,
    /// `play_end` beacons without a first frame, for a reason other than `error`.
    pub ebvs: u64,
    /// Fatal technical `play_error` beacons.
    pub fatal_errors: u64,
    /// Business `play_error` beacons.
    pub business_errors: u64,
    /// `room_join` beacons.
    pub joins: u64,
    /// `room_leave` beacons.
    pub leaves: u64,
    /// Distinct sessions with a play beacon in the window.
    pub active_sessions: u64,

    /// First-frame time, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_frame_ms: Option<Stats>,
    /// Its DNS part, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<Stats>,
    /// Its connect part, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<Stats>,
    /// Its first-packet part, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_packet_ms: Option<Stats>,
    /// `first_frame` beacons resolved by HTTPDNS.
    pub httpdns_first_frames: u64,
    /// `first_frame` beacons that said how they resolved.
    pub resolved_first_frames: u64,
    /// `httpdns_first_frames / resolved_first_frames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub httpdns_share: Option<f64>,

    /// Σ watch time, ms.
    pub watch_ms: u64,
    /// Σ stall time, ms.
    pub stall_ms: u64,
    /// Σ stalls started.
    pub stall_count: u64,
    /// `stall_ms / (watch_ms + stall_ms)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_ratio: Option<f64>,
    /// `stall_count / (watch_ms / 3,600,000)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalls_per_hour: Option<f64>,
    /// Distinct sessions with a stall in the window.
    pub stalled_sessions: u64,

    /// Startup skip, ms (`{avg, sum, count, p90}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_skip_ms: Option<Stats>,
    /// Distinct sessions that reported a startup skip above 0.
    pub startup_skip_sessions: u64,
    /// Live latency, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Stats>,
    /// Round-trip time, ms (to the edge for viewers, to the origin on grain `push`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<Stats>,
    /// Bitrate, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<Stats>,
    /// Buffered media, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_ms: Option<Stats>,
    /// Σ dropped frames.
    pub dropped_frames: u64,

    /// Publisher encoder output frame rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_fps: Option<Stats>,
    /// Publisher bitrate sent, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_kbps: Option<Stats>,
    /// Publisher bitrate aimed at, kbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_kbps: Option<Stats>,
    /// Publisher app CPU, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_pct: Option<Stats>,
    /// Σ publisher stall time, ms.
    pub push_stall_ms: u64,
    /// Σ publisher dropped frames.
    pub push_dropped_frames: u64,

    /// Histogram of `first_frame_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_frame_ms_hist: Option<Hist>,
    /// Histogram of `dns_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_ms_hist: Option<Hist>,
    /// Histogram of `connect_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms_hist: Option<Hist>,
    /// Histogram of `first_packet_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_packet_ms_hist: Option<Hist>,
    /// Histogram of `startup_skip_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_skip_ms_hist: Option<Hist>,
    /// Histogram of `latency_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms_hist: Option<Hist>,
    /// Histogram of `rtt_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms_hist: Option<Hist>,
}

impl RollupDoc {
    /// The grain's dimension values, in [`Grain::dim_names`] order.
    pub fn dims(&self) -> Vec<&str> {
        self.grain
            .dim_names()
            .iter()
            .map(|name| {
                let value = match *name {
                    "cdn" => &self.cdn,
                    "region" => &self.region,
                    "isp" => &self.isp,
                    "platform" => &self.platform,
                    "edge_ip" => &self.edge_ip,
                    _ => &self.room_id,
                };
                value.as_deref().unwrap_or(UNKNOWN)
            })
            .collect()
    }

    /// Sets the grain's dimension fields from `values`, in [`Grain::dim_names`] order.
    pub fn set_dims(&mut self, values: &[String]) {
        for (name, value) in self.grain.dim_names().iter().zip(values) {
            let slot = match *name {
                "cdn" => &mut self.cdn,
                "region" => &mut self.region,
                "isp" => &mut self.isp,
                "platform" => &mut self.platform,
                "edge_ip" => &mut self.edge_ip,
                _ => &mut self.room_id,
            };
            *slot = Some(value.clone());
        }
    }

    /// The deterministic document id: 32 hex digits of xxh3-128 over
    /// `v1|<window start>|<window_s>|<grain>|<dim>=<value>|...`, so a replay or a final result
    /// overwrites the earlier document of the same window and key (see [`doc_id`]).
    pub fn id(&self) -> String {
        doc_id(&self.timestamp, self.window_s, self.grain.as_str(), &self.dims())
    }
}

/// The id of the document of `grain` and `dims` (in [`Grain::dim_names`] order) for the window that
/// starts at `timestamp` (RFC 3339, as in the document).
///
/// ```
/// let id = qoe_rollup::doc_id("2026-11-20T09:31:00Z", 60, "edge", &["cdn-a", "192.0.2.7"]);
/// assert_eq!(id.len(), 32);
/// assert_ne!(id, qoe_rollup::doc_id("2026-11-20T09:31:00Z", 60, "edge", &["cdn-a", "192.0.2.8"]));
/// ```
pub fn doc_id(timestamp: &str, window_s: u32, grain: &str, dims: &[&str]) -> String {
    let mut text = format!("v{ROLLUP_VERSION}|{timestamp}|{window_s}|{grain}");
    for (name, value) in dims.iter().enumerate() {
        // Lengths before values: no choice of values can make two keys print alike.
        text.push_str(&format!("|{name}:{}:{value}", value.len()));
    }
    format!("{:032x}", xxh3_128(text.as_bytes()))
}
