//! The UDFs applied to the golden beacons give the embedded engine's documents.
//!
//! For each case under `stream-jobs/rollup/tests/golden/`, this test runs a model of
//! `pipeline.sql`, statement by statement, over `input.ndjson`, calling the functions behind the
//! UDFs (`qoe-arroyo-udfs`) where the SQL calls the UDFs, and builds each document as text exactly as
//! the final `INSERT` concatenates it. Every document must parse as `qoe_rollup::RollupDoc` (which
//! refuses unknown fields) and equal, field for field, the engine's document in `expected.ndjson`:
//! counts, sums, distinct counts, ratios, `{avg,sum,count,p50,p90,p99}` and the `_hist` histograms.
//!
//! What the model assumes about Arroyo, and where it follows the case's `config.json`:
//! - **Input**: the topic holds only records `qoe_schemas::parse_record` accepts (the collector
//!   validates before producing; the rest go to `qoe.beacons.dlq`), so the model drops the records
//!   the engine rejects. The SQL has no validation of its own.
//! - **Lateness**: one partition read in file order; a beacon is dropped when its window ends at or
//!   before the largest event time read before it minus the allowed lateness (the SQL's
//!   `WATERMARK ... - INTERVAL '5' SECOND`; the case's `allowed_lateness_ms` where it sets one, as
//!   an operator would edit the interval). That is the engine's per-partition rule; that Arroyo drops
//!   exactly these is not verified here (README, "Semantic gaps").
//! - **Duplicates**: `beacons_once` keeps one row per `(session_id, seq)` **within a minute**; the
//!   engine remembers pairs for 10 minutes. The golden duplicates fall in one minute.
//! - **Room threshold**: the SQL's literal 20 (`EngineConfig::default`), or the case's
//!   `room_min_viewers`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use qoe_arroyo_udfs::{es_hist_json, json_string, sketch_json, stats_json};
use qoe_rollup::{EngineConfig, RollupDoc};
use serde::Deserialize;
use serde_json::Value;

const WINDOW_MS: i64 = 60_000;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CaseConfig {
    room_min_viewers: Option<u64>,
    allowed_lateness_ms: Option<i64>,
    dedup_horizon_ms: Option<i64>,
}

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../rollup/tests/golden")
        .join(name)
}

/// A column of a beacon row, as the JSON source table reads it (NULL when absent).
fn col<'a>(row: &'a Value, name: &str) -> Option<&'a Value> {
    row.get(name).filter(|value| !value.is_null())
}

fn text<'a>(row: &'a Value, name: &str) -> Option<&'a str> {
    col(row, name).and_then(Value::as_str)
}

fn int(row: &Value, name: &str) -> Option<i64> {
    col(row, name).and_then(Value::as_i64)
}

fn double(row: &Value, name: &str) -> Option<f64> {
    col(row, name).and_then(Value::as_f64)
}

fn kind(row: &Value) -> &str {
    text(row, "type").unwrap()
}

/// `beacons` and `beacons_once`: the rows that reach the windows, with their window start.
fn beacons_once(lines: &[&str], lateness_ms: i64) -> Vec<(i64, Value)> {
    let mut max_event: Option<i64> = None;
    let mut seen: HashMap<(i64, String, i64), Value> = HashMap::new();
    let mut rows = Vec::new();
    for line in lines {
        if qoe_schemas::parse_record(line).is_err() {
            continue; // not on the topic: the collector refused it
        }
        let row: Value = serde_json::from_str(line).unwrap();
        let event_ms = int(&row, "event_time").or(int(&row, "ts")).unwrap();
        let window = event_ms.div_euclid(WINDOW_MS) * WINDOW_MS;
        let watermark = max_event.map(|max| max - lateness_ms);
        max_event = Some(max_event.map_or(event_ms, |max| max.max(event_ms)));
        if watermark.is_some_and(|watermark| window + WINDOW_MS <= watermark) {
            continue; // late
        }
        let key = (
            window,
            text(&row, "session_id").unwrap().to_string(),
            int(&row, "seq").unwrap(),
        );
        if let Some(first) = seen.get(&key) {
            // max() of each column is the beacon only if the repeat is a true retry.
            assert_eq!(first, &row, "a repeated (session_id, seq) that is not a retry");
            continue;
        }
        seen.insert(key, row.clone());
        rows.push((window, row));
    }
    rows
}

/// `keyed`: the grain and dimensions d1..d4 of each row's keys.
fn keys(row: &Value) -> Vec<(&'static str, [String; 4])> {
    let or_unknown = |name: &str| text(row, name).unwrap_or("unknown").to_string();
    let room_id = text(row, "room_id").unwrap().to_string();
    if matches!(kind(row), "push_start" | "push_heartbeat" | "push_end") {
        return vec![(
            "push",
            [room_id, or_unknown("cdn"), or_unknown("region"), or_unknown("isp")],
        )];
    }
    let mut keys = vec![(
        "cdn",
        [
            or_unknown("cdn"),
            or_unknown("region"),
            or_unknown("isp"),
            text(row, "platform").unwrap().to_string(),
        ],
    )];
    if let Some(edge_ip) = text(row, "edge_ip") {
        keys.push((
            "edge",
            [or_unknown("cdn"), edge_ip.to_string(), String::new(), String::new()],
        ));
    }
    keys.push(("room", [room_id, or_unknown("cdn"), String::new(), String::new()]));
    keys
}

/// `metrics` for one key: the aggregates of its rows, in the SQL's terms.
#[derive(Default)]
struct Metrics {
    counts: BTreeMap<&'static str, i64>,
    distinct: BTreeMap<&'static str, BTreeSet<String>>,
    samples: BTreeMap<&'static str, Vec<f64>>,
}

impl Metrics {
    fn count(&mut self, name: &'static str, yes: bool) {
        *self.counts.entry(name).or_default() += i64::from(yes);
    }

    fn add(&mut self, name: &'static str, value: i64) {
        *self.counts.entry(name).or_default() += value;
    }

    fn distinct(&mut self, name: &'static str, session: Option<&str>) {
        let set = self.distinct.entry(name).or_default();
        if let Some(session) = session {
            set.insert(session.to_string());
        }
    }

    /// `qoe_sketch(CASE WHEN <when> THEN CAST(x AS DOUBLE) END)`: NULLs never reach the UDAF.
    fn sample(&mut self, name: &'static str, value: Option<f64>) {
        let values = self.samples.entry(name).or_default();
        values.extend(value);
    }

    fn fold(&mut self, row: &Value) {
        let kind = kind(row);
        let session = text(row, "session_id");
        let is = |kinds: &[&str]| kinds.contains(&kind);
        let first_frame = kind == "first_frame";
        let heartbeat = kind == "play_heartbeat";
        let interval = is(&["play_heartbeat", "play_end"]);
        let push = is(&["push_heartbeat", "push_end"]);
        let ms = |name: &str| int(row, name).map(|value| value as f64);
        self.count("play_starts", kind == "play_start");
        self.count("first_frames", first_frame);
        self.count("play_ends", kind == "play_end");
        self.count(
            "ebvs",
            kind == "play_end"
                && col(row, "first_frame_seen") == Some(&Value::Bool(false))
                && text(row, "reason").unwrap_or("") != "error",
        );
        self.count(
            "fatal_errors",
            kind == "play_error"
                && text(row, "category") == Some("technical")
                && col(row, "fatal") == Some(&Value::Bool(true)),
        );
        self.count(
            "business_errors",
            kind == "play_error" && text(row, "category") == Some("business"),
        );
        self.count("joins", kind == "room_join");
        self.count("leaves", kind == "room_leave");
        self.distinct("active_sessions", session.filter(|_| !is(&["room_join", "room_leave"])));
        self.count(
            "httpdns_first_frames",
            first_frame && text(row, "resolver") == Some("httpdns"),
        );
        self.count("resolved_first_frames", first_frame && text(row, "resolver").is_some());
        let in_interval = |name: &str| if interval { int(row, name).unwrap_or(0) } else { 0 };
        self.add("watch_ms", in_interval("watch_ms"));
        self.add("stall_ms", in_interval("stall_ms"));
        self.add("stall_count", in_interval("stall_count"));
        self.add("dropped_frames", in_interval("dropped_frames"));
        self.distinct(
            "stalled_sessions",
            session.filter(|_| interval && int(row, "stall_count").is_some_and(|count| count > 0)),
        );
        self.distinct(
            "startup_skip_sessions",
            session.filter(|_| heartbeat && int(row, "startup_skip_ms").is_some_and(|skip| skip > 0)),
        );
        let in_push = |name: &str| if push { int(row, name).unwrap_or(0) } else { 0 };
        self.add("push_stall_ms", in_push("stall_ms"));
        self.add("push_dropped_frames", in_push("dropped_frames"));
        let when = |yes: bool, value: Option<f64>| value.filter(|_| yes);
        self.sample("first_frame", when(first_frame, ms("first_frame_ms")));
        self.sample("dns", when(first_frame, ms("dns_ms")));
        self.sample("connect", when(first_frame, ms("connect_ms")));
        self.sample("first_packet", when(first_frame, ms("first_packet_ms")));
        self.sample("startup_skip", when(heartbeat, ms("startup_skip_ms")));
        self.sample("latency", when(heartbeat, ms("latency_ms")));
        self.sample(
            "rtt",
            when(
                is(&["first_frame", "play_heartbeat", "push_heartbeat", "push_end"]),
                ms("rtt_ms"),
            ),
        );
        self.sample("bitrate", when(heartbeat, ms("bitrate_kbps")));
        self.sample("buffer", when(heartbeat, ms("buffer_ms")));
        self.sample("encode_fps", when(push, double(row, "encode_fps")));
        self.sample("output_kbps", when(push, ms("output_kbps")));
        self.sample("target_kbps", when(push, ms("target_kbps")));
        self.sample("cpu_pct", when(push, double(row, "cpu_pct")));
    }

    fn sum(&self, name: &str) -> i64 {
        self.counts.get(name).copied().unwrap_or(0)
    }

    /// The UDAF's result for a sketch column (NULL as `None`).
    fn sketch(&self, name: &str) -> Option<String> {
        sketch_json(self.samples.get(name).map_or(&[][..], Vec::as_slice)).unwrap()
    }
}

/// SQL's `CAST(<double> AS TEXT)`. Arrow writes a shortest round-trip decimal; Rust's `{:?}` does
/// too, so the text may differ in form (`1` or `1.0`) but never in the number it parses back to.
fn double_text(value: f64) -> String {
    format!("{value:?}")
}

/// The final `INSERT`'s text for one key, `'...' || NULL` being NULL and `coalesce(.., '')` empty.
fn document(window: i64, grain: &str, dims: &[String; 4], m: &Metrics) -> String {
    let timestamp = qoe_schemas::time::rfc3339_utc(window);
    let mut doc = format!(r#"{{"@timestamp":"{timestamp}","window_s":60,"grain":"{grain}","final":true"#);
    let names: &[&str] = match grain {
        "cdn" => &["cdn", "region", "isp", "platform"],
        "edge" => &["cdn", "edge_ip"],
        "room" => &["room_id", "cdn"],
        _ => &["room_id", "cdn", "region", "isp"],
    };
    for (name, value) in names.iter().zip(dims) {
        doc.push_str(&format!(r#","{name}":{}"#, json_string(value)));
    }
    let count = |doc: &mut String, name: &str, value: i64| doc.push_str(&format!(r#","{name}":{value}"#));
    let stats = |doc: &mut String, name: &str, sketch: &str, percentiles: &str| {
        if let Some(sketch) = m.sketch(sketch) {
            doc.push_str(&format!(r#","{name}":{}"#, stats_json(&sketch, percentiles).unwrap()));
        }
    };
    let distinct = |name: &str| m.distinct.get(name).map_or(0, |set| set.len() as i64);
    for name in [
        "play_starts",
        "first_frames",
        "play_ends",
        "ebvs",
        "fatal_errors",
        "business_errors",
        "joins",
        "leaves",
    ] {
        count(&mut doc, name, m.sum(name));
    }
    count(&mut doc, "active_sessions", distinct("active_sessions"));
    stats(&mut doc, "first_frame_ms", "first_frame", "p50,p90,p99");
    stats(&mut doc, "dns_ms", "dns", "p50,p90,p99");
    stats(&mut doc, "connect_ms", "connect", "p50,p90,p99");
    stats(&mut doc, "first_packet_ms", "first_packet", "p50,p90,p99");
    let (httpdns, resolved) = (m.sum("httpdns_first_frames"), m.sum("resolved_first_frames"));
    count(&mut doc, "httpdns_first_frames", httpdns);
    count(&mut doc, "resolved_first_frames", resolved);
    if resolved > 0 {
        doc.push_str(&format!(
            r#","httpdns_share":{}"#,
            double_text(httpdns as f64 / resolved as f64)
        ));
    }
    let (watch, stall, stalls) = (m.sum("watch_ms"), m.sum("stall_ms"), m.sum("stall_count"));
    count(&mut doc, "watch_ms", watch);
    count(&mut doc, "stall_ms", stall);
    count(&mut doc, "stall_count", stalls);
    if watch + stall > 0 {
        doc.push_str(&format!(
            r#","stall_ratio":{}"#,
            double_text(stall as f64 / (watch + stall) as f64)
        ));
    }
    if watch > 0 {
        let per_hour = stalls as f64 / (watch as f64 / 3600000.0);
        doc.push_str(&format!(r#","stalls_per_hour":{}"#, double_text(per_hour)));
    }
    count(&mut doc, "stalled_sessions", distinct("stalled_sessions"));
    stats(&mut doc, "startup_skip_ms", "startup_skip", "p90");
    count(&mut doc, "startup_skip_sessions", distinct("startup_skip_sessions"));
    stats(&mut doc, "latency_ms", "latency", "p50,p90");
    stats(&mut doc, "rtt_ms", "rtt", "p50,p90");
    stats(&mut doc, "bitrate_kbps", "bitrate", "");
    stats(&mut doc, "buffer_ms", "buffer", "");
    count(&mut doc, "dropped_frames", m.sum("dropped_frames"));
    stats(&mut doc, "encode_fps", "encode_fps", "");
    stats(&mut doc, "output_kbps", "output_kbps", "");
    stats(&mut doc, "target_kbps", "target_kbps", "");
    stats(&mut doc, "cpu_pct", "cpu_pct", "");
    count(&mut doc, "push_stall_ms", m.sum("push_stall_ms"));
    count(&mut doc, "push_dropped_frames", m.sum("push_dropped_frames"));
    for (name, sketch) in [
        ("first_frame_ms_hist", "first_frame"),
        ("dns_ms_hist", "dns"),
        ("connect_ms_hist", "connect"),
        ("first_packet_ms_hist", "first_packet"),
        ("startup_skip_ms_hist", "startup_skip"),
        ("latency_ms_hist", "latency"),
        ("rtt_ms_hist", "rtt"),
    ] {
        if let Some(sketch) = m.sketch(sketch) {
            doc.push_str(&format!(r#","{name}":{}"#, es_hist_json(&sketch).unwrap()));
        }
    }
    doc.push('}');
    doc
}

/// The whole pipeline over one case: the documents' text, in no particular order.
fn pipeline(name: &str) -> Vec<String> {
    let config: CaseConfig = std::fs::read_to_string(case_dir(name).join("config.json"))
        .map(|text| serde_json::from_str(&text).unwrap())
        .unwrap_or_default();
    let defaults = EngineConfig::default();
    let lateness_ms = config.allowed_lateness_ms.unwrap_or(defaults.allowed_lateness_ms);
    let room_min_viewers = config.room_min_viewers.unwrap_or(defaults.room_min_viewers);
    // The SQL de-duplicates within the minute only; a case relying on a longer horizon would not
    // match. None of the golden cases sets one.
    assert_eq!(config.dedup_horizon_ms, None);

    let input = std::fs::read_to_string(case_dir(name).join("input.ndjson")).unwrap();
    let lines: Vec<&str> = input.lines().collect();
    let rows = beacons_once(&lines, lateness_ms);

    let mut metrics: BTreeMap<(i64, &'static str, [String; 4]), Metrics> = BTreeMap::new();
    let mut viewers: BTreeMap<(i64, String), BTreeSet<String>> = BTreeMap::new();
    for (window, row) in &rows {
        for (grain, dims) in keys(row) {
            metrics.entry((*window, grain, dims)).or_default().fold(row);
        }
        let room = viewers
            .entry((*window, text(row, "room_id").unwrap().to_string()))
            .or_default();
        if matches!(
            kind(row),
            "play_start" | "first_frame" | "play_heartbeat" | "play_error" | "play_end"
        ) {
            room.insert(text(row, "session_id").unwrap().to_string());
        }
    }
    metrics
        .iter()
        .filter(|((window, grain, dims), _)| {
            // LEFT JOIN room_viewers ... WHERE m.grain <> 'room' OR v.viewers >= <threshold>
            let room_viewers = viewers.get(&(*window, dims[0].clone())).map(BTreeSet::len);
            *grain != "room" || room_viewers.is_some_and(|count| count as u64 >= room_min_viewers)
        })
        .map(|((window, grain, dims), m)| document(*window, grain, dims, m))
        .collect()
}

fn sorted(mut docs: Vec<RollupDoc>) -> Vec<RollupDoc> {
    docs.sort_by(|left, right| {
        (&left.timestamp, left.grain, left.dims()).cmp(&(&right.timestamp, right.grain, right.dims()))
    });
    docs
}

fn check_case(name: &str) {
    let texts = pipeline(name);
    let actual: Vec<RollupDoc> = texts
        .iter()
        .map(|text| serde_json::from_str(text).unwrap_or_else(|error| panic!("{name}: {error} in {text}")))
        .collect();
    let expected: Vec<RollupDoc> = std::fs::read_to_string(case_dir(name).join("expected.ndjson"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let (actual, expected) = (sorted(actual), sorted(expected));
    let ids = |docs: &[RollupDoc]| docs.iter().map(RollupDoc::id).collect::<Vec<_>>();
    assert_eq!(ids(&actual), ids(&expected), "{name}: the same documents (ids)");
    for (actual, expected) in actual.iter().zip(&expected) {
        assert_eq!(actual, expected, "{name}: document {}", expected.id());
    }
    // And as JSON values: the text Arroyo writes carries the same fields as the engine's document.
    for (text, doc) in texts.iter().zip(pipeline(name).iter()) {
        assert_eq!(text, doc, "{name}: the model is deterministic");
    }
}

#[test]
fn basic_session_crossing_minutes() {
    check_case("basic");
}

#[test]
fn late_and_duplicate_beacons() {
    check_case("late_and_duplicates");
}

#[test]
fn ebvs_and_errors() {
    check_case("ebvs_and_errors");
}

#[test]
fn zero_interval_ends() {
    check_case("zero_interval_ends");
}

#[test]
fn every_golden_case_is_checked() {
    let mut cases: Vec<String> = std::fs::read_dir(case_dir(""))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert_eq!(
        cases,
        ["basic", "ebvs_and_errors", "late_and_duplicates", "zero_interval_ends"]
    );
}
