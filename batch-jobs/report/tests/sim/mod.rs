//! Shared by `analysts.rs` and `simulated.rs`: a warehouse built by the batch job (`qoe_batch::run_file`)
//! from simulator beacons, and counts taken straight from those beacons (independent of the batch job
//! and of the reports).
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, NaiveDate};
use qoe_batch::{run_file, JobConfig, Metrics};
use qoe_schemas::Family;
use qoe_simulator::SimConfig;
use tokio_util::sync::CancellationToken;

/// 2025-11-22T22:30:00Z: a three-hour run from here crosses midnight (two UTC days).
pub const START_MS: u64 = 1_763_850_600_000;

/// The simulation used by the tests: 3 hours from 22:30 UTC, 300 viewers in 10 rooms, heartbeats every
/// 30 s, both scripted incidents, a fixed seed.
pub fn config() -> SimConfig {
    SimConfig {
        seed: 7,
        start_ms: START_MS,
        duration_ms: 3 * 3_600_000,
        rooms: 10,
        viewers: 300,
        heartbeat_interval_ms: 30_000,
        ..SimConfig::default()
    }
}

/// What the beacons themselves say, counted without the batch job.
#[derive(Debug, Default)]
pub struct Truth {
    /// Beacons per family.
    pub play_beacons: usize,
    pub push_beacons: usize,
    pub room_beacons: usize,
    /// Distinct `session_id`s of play beacons (`play_*`, `first_frame`).
    pub play_sessions: usize,
    /// Play sessions per UTC day of their earliest play beacon.
    pub sessions_by_start_day: BTreeMap<NaiveDate, usize>,
    /// Of those, sessions whose latest play beacon is on a later UTC day.
    pub crossing_by_start_day: BTreeMap<NaiveDate, usize>,
    /// `play_end` and `push_end` beacons that cover no time (`interval_ms: 0`: the session ended
    /// right at a heartbeat), by beacon type.
    pub zero_interval_ends: BTreeMap<&'static str, usize>,
}

/// A built warehouse (removed when dropped).
pub struct Sim {
    pub config: SimConfig,
    pub dir: tempfile::TempDir,
    pub warehouse: PathBuf,
    /// The UTC days with data, in order.
    pub days: Vec<NaiveDate>,
    pub truth: Truth,
}

fn day_of(ms: u64) -> NaiveDate {
    DateTime::from_timestamp_millis(ms as i64)
        .expect("valid time")
        .date_naive()
}

/// Generates the beacons of `config`, enriches them like the collector (event time = ts + 150 ms),
/// writes them as NDJSON and runs the batch job on the file.
pub fn build(config: SimConfig) -> Sim {
    build_in(config, tempfile::tempdir().expect("tempdir"))
}

/// [`build`] into the given directory.
pub fn build_in(config: SimConfig, dir: tempfile::TempDir) -> Sim {
    let started = Instant::now();
    let input = dir.path().join("beacons.ndjson");
    let mut text = String::new();
    let mut truth = Truth::default();
    let mut spans: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for mut beacon in qoe_simulator::generate(&config) {
        let event_time = beacon.ts + 150;
        beacon.received_at = Some(beacon.ts + 400);
        beacon.event_time = Some(event_time);
        beacon.client_subnet = Some("203.0.113.0/24".to_string());
        beacon.key_id = Some("test".to_string());
        if beacon.interval_ms == Some(0) {
            *truth.zero_interval_ends.entry(beacon.kind.as_str()).or_default() += 1;
        }
        match beacon.kind.family() {
            Family::Play => {
                truth.play_beacons += 1;
                let span = spans
                    .entry(beacon.session_id.clone())
                    .or_insert((event_time, event_time));
                span.0 = span.0.min(event_time);
                span.1 = span.1.max(event_time);
            }
            Family::Push => truth.push_beacons += 1,
            Family::Room => truth.room_beacons += 1,
        }
        text.push_str(&serde_json::to_string(&beacon).expect("beacons serialize"));
        text.push('\n');
    }
    truth.play_sessions = spans.len();
    for (first, last) in spans.values() {
        let start_day = day_of(*first);
        *truth.sessions_by_start_day.entry(start_day).or_default() += 1;
        let crossing = truth.crossing_by_start_day.entry(start_day).or_default();
        if day_of(*last) > start_day {
            *crossing += 1;
        }
    }
    std::fs::write(&input, text).expect("write input");
    let generated = started.elapsed();
    let warehouse = dir.path().join("wh");
    let report = run_file(
        &input,
        JobConfig::new(&warehouse),
        Metrics::new(),
        &CancellationToken::new(),
    )
    .expect("batch job");
    assert_eq!(report.rejected, 0, "{:?}", report.rejection_samples);
    assert_eq!(report.duplicates, 0);
    std::fs::remove_file(&input).expect("remove input");
    let first = day_of(config.start_ms);
    let last = day_of(config.start_ms + config.duration_ms + 60_000);
    let days: Vec<NaiveDate> = first.iter_days().take_while(|day| *day <= last).collect();
    eprintln!(
        "simulated {} play sessions ({} beacons) in {:.1?}, warehouse built in {:.1?}",
        truth.play_sessions,
        truth.play_beacons + truth.push_beacons + truth.room_beacons,
        generated,
        started.elapsed() - generated
    );
    Sim {
        config,
        dir,
        warehouse,
        days,
        truth,
    }
}

/// Distinct values, for messages.
pub fn distinct<T: Ord + Clone>(values: &[T]) -> BTreeSet<T> {
    values.iter().cloned().collect()
}
