//! The rollups computed a second time, independently, by the real DuckDB CLI (PyPI's `duckdb-cli`,
//! installed by `scripts/test.sh`) with SQL written from `docs/metrics.md`, over the same simulator
//! beacons (with SDK retries and disorder mixed in). Every document must match: counts and sums
//! exactly, percentiles within the sketch's relative accuracy of DuckDB's order statistics, and the
//! same set of documents (so the room threshold and the grains agree too).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use qoe_rollup::{doc_id, Engine, EngineConfig, Offer, RollupDoc, Stats};
use qoe_simulator::{generate, SimConfig};
use serde_json::{Map, Value};

/// The DuckDB CLI: `$DUCKDB`, else the copy `scripts/lib.sh` installs into the cache.
fn duckdb() -> PathBuf {
    if let Some(path) = std::env::var_os("DUCKDB").filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let cached = home.join(".cache/qoe/duckdb-cli-1.5.6/bin/duckdb");
    assert!(
        cached.is_file(),
        "no DuckDB CLI: set DUCKDB, or run scripts/test.sh (it installs duckdb-cli into {})",
        cached.display()
    );
    cached
}

/// A room threshold that some room meets exactly in some minute (so `>=` against `>` matters), with
/// rooms on both sides of it.
fn room_min_viewers(lines: &[String]) -> u64 {
    let mut sessions: BTreeMap<(String, u64), std::collections::BTreeSet<String>> = BTreeMap::new();
    for line in lines {
        let beacon = qoe_schemas::parse_record(line).unwrap();
        if beacon.kind.family() == qoe_schemas::Family::Play {
            let minute = beacon.event_time_ms() / 60_000;
            sessions
                .entry((beacon.room_id, minute))
                .or_default()
                .insert(beacon.session_id);
        }
    }
    let mut counts: Vec<u64> = sessions.values().map(|set| set.len() as u64).collect();
    counts.sort_unstable();
    counts[counts.len() * 3 / 4]
}

/// The beacons: 12 simulated minutes with both incidents; every 40th beacon sent again 25 lines
/// later (an SDK retry), and each run of 60 lines reversed (about two seconds of disorder, well
/// inside the allowed lateness).
fn beacon_lines() -> Vec<String> {
    let config = SimConfig {
        seed: 7,
        start_ms: 1_763_800_020_000,
        duration_ms: 12 * 60_000,
        rooms: 6,
        viewers: 400,
        ..SimConfig::default()
    };
    let lines = with_zero_interval_ends(generate(&config).collect(), config.start_ms);
    let mut with_retries = Vec::with_capacity(lines.len() * 41 / 40);
    for (at, line) in lines.iter().enumerate() {
        with_retries.push(line.clone());
        if at >= 25 && (at - 25) % 40 == 0 {
            with_retries.push(lines[at - 25].clone());
        }
    }
    with_retries
        .chunks(60)
        .flat_map(|chunk| chunk.iter().rev().cloned())
        .collect()
}

/// End beacons that cover no time, beside those the simulator sends (sessions that end right at a
/// heartbeat): every other exit before video start carries `interval_ms: 0` with zero counters, and a
/// publisher in room `room-zero` streams for 30 s and ends right at its last heartbeat. Asserts that
/// the input holds each kind, so the comparison below covers them.
fn with_zero_interval_ends(mut beacons: Vec<qoe_schemas::Beacon>, start_ms: u64) -> Vec<String> {
    use qoe_schemas::BeaconType::{PlayEnd, PushEnd, PushHeartbeat, PushStart};
    let mut ebvs_ends = 0;
    for beacon in beacons.iter_mut() {
        if beacon.kind == PlayEnd && beacon.first_frame_seen == Some(false) && beacon.interval_ms.is_none() {
            ebvs_ends += 1;
            if ebvs_ends % 2 == 0 {
                beacon.interval_ms = Some(0);
                beacon.watch_ms = Some(0);
                beacon.stall_ms = Some(0);
                beacon.stall_count = Some(0);
                beacon.dropped_frames = Some(0);
            }
        }
    }
    let publisher = |kind, seq: u64, ts: u64| {
        let mut text = serde_json::json!({
            "v": 1, "type": kind, "ts": ts, "session_id": "pub-zero", "seq": seq, "room_id": "room-zero",
            "platform": "pc", "cdn": "cdn-a", "region": "eu-west", "isp": "isp-zero"
        });
        if kind != "push_start" {
            let interval = if kind == "push_end" { 0 } else { 10_000 };
            text["interval_ms"] = interval.into();
            text["stall_ms"] = (if kind == "push_end" { 0 } else { 700 }).into();
            text["stall_count"] = (if kind == "push_end" { 0 } else { 2 }).into();
            text["dropped_frames"] = (if kind == "push_end" { 0 } else { 40 }).into();
        }
        if kind == "push_end" {
            text["reason"] = "ended".into();
        }
        qoe_schemas::parse_beacon(&text.to_string()).unwrap()
    };
    let at = start_ms + 95_000;
    beacons.push(publisher("push_start", 0, at));
    for seq in 1..=3 {
        beacons.push(publisher("push_heartbeat", seq, at + seq * 10_000));
    }
    beacons.push(publisher("push_end", 4, at + 30_000));
    beacons.sort_by_key(|beacon| beacon.ts);

    let zero_ends = |kind, first_frame_seen: Option<bool>| {
        beacons
            .iter()
            .filter(|beacon| beacon.kind == kind && beacon.interval_ms == Some(0))
            .filter(|beacon| first_frame_seen.is_none() || beacon.first_frame_seen == first_frame_seen)
            .count()
    };
    assert!(
        zero_ends(PlayEnd, Some(true)) > 0,
        "the simulator sent no play_end at a heartbeat"
    );
    assert!(
        zero_ends(PlayEnd, Some(false)) > 0,
        "no exit before video start with interval_ms 0"
    );
    assert!(zero_ends(PushEnd, None) > 0);
    assert!(beacons
        .iter()
        .any(|beacon| beacon.kind == PushHeartbeat && beacon.session_id == "pub-zero"));
    assert!(beacons.iter().any(|beacon| beacon.kind == PushStart));
    beacons
        .iter()
        .map(|beacon| serde_json::to_string(beacon).unwrap())
        .collect()
}

/// The rollups in DuckDB SQL, shared with the benchmark.
fn sql() -> String {
    // At run time, not `include_str!`: the file lives outside the crate (in `scripts/`).
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let path = PathBuf::from(manifest_dir).join("../../scripts/rollups-duckdb.sql");
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Percentile fields of each latency-like metric, as (quantile, field).
const PERCENTILES: &[(&str, &[(f64, &str)])] = &[
    ("first_frame_ms", &[(0.5, "p50"), (0.9, "p90"), (0.99, "p99")]),
    ("dns_ms", &[(0.5, "p50"), (0.9, "p90"), (0.99, "p99")]),
    ("connect_ms", &[(0.5, "p50"), (0.9, "p90"), (0.99, "p99")]),
    ("first_packet_ms", &[(0.5, "p50"), (0.9, "p90"), (0.99, "p99")]),
    ("startup_skip_ms", &[(0.9, "p90")]),
    ("latency_ms", &[(0.5, "p50"), (0.9, "p90")]),
    ("rtt_ms", &[(0.5, "p50"), (0.9, "p90")]),
    ("bitrate_kbps", &[]),
    ("buffer_ms", &[]),
    ("encode_fps", &[]),
    ("output_kbps", &[]),
    ("target_kbps", &[]),
    ("cpu_pct", &[]),
];

const COUNTS: &[&str] = &[
    "play_starts",
    "first_frames",
    "play_ends",
    "ebvs",
    "fatal_errors",
    "business_errors",
    "joins",
    "leaves",
    "active_sessions",
    "httpdns_first_frames",
    "resolved_first_frames",
    "watch_ms",
    "stall_ms",
    "stall_count",
    "stalled_sessions",
    "startup_skip_sessions",
    "dropped_frames",
    "push_stall_ms",
    "push_dropped_frames",
];

fn engine_docs(lines: &[String], room_min_viewers: u64) -> (BTreeMap<String, RollupDoc>, BTreeMap<&'static str, u64>) {
    let config = EngineConfig {
        room_min_viewers,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, None).unwrap();
    let mut outcomes = BTreeMap::new();
    let mut docs = BTreeMap::new();
    for (offset, line) in lines.iter().enumerate() {
        let beacon = qoe_schemas::parse_record(line).unwrap();
        let outcome = match engine.offer(0, offset as i64, &beacon, 0) {
            Offer::Counted => "counted",
            Offer::Duplicate => "duplicate",
            Offer::Late => "late",
            Offer::AlreadyFinal => "already_final",
        };
        *outcomes.entry(outcome).or_default() += 1;
        if offset % 500 == 0 {
            for emission in engine.poll(0) {
                docs.extend(emission.docs.into_iter().map(|doc| (doc.id(), doc)));
            }
        }
    }
    for emission in engine.finish() {
        docs.extend(emission.docs.into_iter().map(|doc| (doc.id(), doc)));
    }
    (docs, outcomes)
}

fn duckdb_rows(lines: &[String], room_min_viewers: u64) -> Vec<Map<String, Value>> {
    let dir = std::env::temp_dir().join(format!("qoe-rollup-duckdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("beacons.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let sql = sql()
        .replace("INPUT", &input.display().to_string())
        .replace("MIN_VIEWERS", &room_min_viewers.to_string());
    let output = Command::new(duckdb())
        .args(["-json", "-c", &sql])
        .output()
        .expect("running duckdb");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "duckdb failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("duckdb output: {error}\n{stdout}"))
}

fn stats_of<'a>(doc: &'a RollupDoc, metric: &str) -> Option<&'a Stats> {
    match metric {
        "first_frame_ms" => doc.first_frame_ms.as_ref(),
        "dns_ms" => doc.dns_ms.as_ref(),
        "connect_ms" => doc.connect_ms.as_ref(),
        "first_packet_ms" => doc.first_packet_ms.as_ref(),
        "startup_skip_ms" => doc.startup_skip_ms.as_ref(),
        "latency_ms" => doc.latency_ms.as_ref(),
        "rtt_ms" => doc.rtt_ms.as_ref(),
        "bitrate_kbps" => doc.bitrate_kbps.as_ref(),
        "buffer_ms" => doc.buffer_ms.as_ref(),
        "encode_fps" => doc.encode_fps.as_ref(),
        "output_kbps" => doc.output_kbps.as_ref(),
        "target_kbps" => doc.target_kbps.as_ref(),
        _ => doc.cpu_pct.as_ref(),
    }
}

/// DuckDB's order statistic `x_⌊q(n−1)⌋` of a list.
fn order_statistic(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
}

#[test]
fn engine_documents_equal_duckdb_sql_over_the_same_beacons() {
    let lines = beacon_lines();
    let room_min_viewers = room_min_viewers(&lines);
    let (docs, outcomes) = engine_docs(&lines, room_min_viewers);
    assert_eq!(
        outcomes.get("late"),
        None,
        "the disorder stays inside the allowed lateness"
    );
    assert!(outcomes["duplicate"] > 300, "{outcomes:?}");
    let rows = duckdb_rows(&lines, room_min_viewers);
    assert_eq!(
        rows.len(),
        docs.len(),
        "documents: DuckDB {} against the engine's {}",
        rows.len(),
        docs.len()
    );
    let alpha = EngineConfig::default().relative_accuracy;
    let mut percentiles_checked = 0;
    for row in &rows {
        let dims: Vec<&str> = row["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|dim| dim.as_str().unwrap())
            .collect();
        let id = doc_id(row["ts"].as_str().unwrap(), 60, row["grain"].as_str().unwrap(), &dims);
        let doc = docs
            .get(&id)
            .unwrap_or_else(|| panic!("no engine document for DuckDB's {row:?}"));
        let json = serde_json::to_value(doc).unwrap();
        let label = format!("{} {} {dims:?}", doc.timestamp, doc.grain);
        for name in COUNTS {
            assert_eq!(json[name].as_u64(), row[*name].as_u64(), "{label}: {name}");
        }
        for (metric, quantiles) in PERCENTILES {
            let values: Vec<f64> = row[*metric]
                .as_array()
                .map(|values| values.iter().map(|value| value.as_f64().unwrap()).collect())
                .unwrap_or_default();
            let Some(stats) = stats_of(doc, metric) else {
                assert!(
                    values.is_empty(),
                    "{label}: {metric} missing with {} samples",
                    values.len()
                );
                continue;
            };
            assert_eq!(stats.count, values.len() as u64, "{label}: {metric}.count");
            let sum: f64 = values.iter().sum();
            assert!(
                (stats.sum - sum).abs() <= 1e-9 * sum.abs().max(1.0),
                "{label}: {metric}.sum"
            );
            assert!((stats.avg - sum / values.len() as f64).abs() <= 1e-9 * stats.avg.abs().max(1.0));
            for (q, field) in *quantiles {
                let exact = order_statistic(&values, *q);
                let ours = json[*metric][*field].as_f64().unwrap();
                assert!(
                    (ours - exact).abs() <= alpha * exact + 1e-9,
                    "{label}: {metric}.{field} = {ours}, DuckDB's order statistic {exact}"
                );
                percentiles_checked += 1;
            }
        }
        for (ratio, numerator, denominator) in [
            ("stall_ratio", doc.stall_ms as f64, (doc.watch_ms + doc.stall_ms) as f64),
            (
                "httpdns_share",
                doc.httpdns_first_frames as f64,
                doc.resolved_first_frames as f64,
            ),
        ] {
            let expected = (denominator > 0.0).then(|| numerator / denominator);
            assert_eq!(json[ratio].as_f64(), expected, "{label}: {ratio}");
        }
    }
    let grains: std::collections::BTreeSet<&str> = rows.iter().map(|row| row["grain"].as_str().unwrap()).collect();
    assert_eq!(grains.len(), 4, "every grain is compared: {grains:?}");
    assert!(
        percentiles_checked > 1_000,
        "{percentiles_checked} percentiles compared"
    );
}
