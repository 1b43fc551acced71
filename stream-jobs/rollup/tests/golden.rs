//! Golden tests: each directory under `tests/golden/` holds `input.ndjson` (beacon records, one per
//! line; the line number is the offset), `config.json` (engine settings that differ from the
//! defaults) and `expected.ndjson` (the final documents, in window, grain and dimension order).
//!
//! Every case also runs once per line with a crash there, in the worst spot: after the outputs got the
//! documents of that poll but before the engine acknowledged them. The restarted engine resumes from
//! the last saved checkpoint and must leave the same documents as the uninterrupted run.
//!
//! `QOE_BLESS=1 cargo test -p qoe-rollup --test golden` rewrites the expected files: review the diff by
//! hand against `docs/metrics.md` before committing it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use qoe_rollup::{Checkpoint, Engine, EngineConfig, Offer, RollupDoc};
use serde::Deserialize;

/// A fixed processing time: every partition stays active, and no window closes by the clock.
const NOW: i64 = 0;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CaseConfig {
    room_min_viewers: Option<u64>,
    allowed_lateness_ms: Option<i64>,
    dedup_horizon_ms: Option<i64>,
}

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

fn engine_config(name: &str) -> EngineConfig {
    let text = std::fs::read_to_string(case_dir(name).join("config.json")).unwrap_or_else(|_| "{}".to_string());
    let case: CaseConfig = serde_json::from_str(&text).unwrap_or_else(|error| panic!("{name}/config.json: {error}"));
    let defaults = EngineConfig::default();
    EngineConfig {
        room_min_viewers: case.room_min_viewers.unwrap_or(defaults.room_min_viewers),
        allowed_lateness_ms: case.allowed_lateness_ms.unwrap_or(defaults.allowed_lateness_ms),
        dedup_horizon_ms: case.dedup_horizon_ms.unwrap_or(defaults.dedup_horizon_ms),
        ..defaults
    }
}

fn input(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(case_dir(name).join("input.ndjson")).unwrap();
    text.lines().map(str::to_string).collect()
}

/// What the outputs hold: the last document written per id.
type Store = BTreeMap<String, RollupDoc>;

/// Outcome counts of a run, by name.
type Outcomes = BTreeMap<&'static str, u64>;

/// Runs the engine over `lines` from `checkpoint`; with `crash_at`, stops right after the outputs
/// got the documents of the poll following that line, before acknowledging them. Returns the last
/// checkpoint saved (after each acknowledgement, as `qoe stream` does).
fn run(
    config: &EngineConfig,
    lines: &[String],
    checkpoint: Option<&Checkpoint>,
    crash_at: Option<usize>,
    store: &mut Store,
    outcomes: &mut Outcomes,
) -> Checkpoint {
    let mut engine = Engine::new(config.clone(), checkpoint).unwrap();
    let mut saved = checkpoint.cloned().unwrap_or_default();
    let resume_at = checkpoint
        .and_then(|checkpoint| checkpoint.partitions.get(&0))
        .map_or(0, |partition| partition.offset as usize);
    for (offset, line) in lines.iter().enumerate().skip(resume_at) {
        let outcome = match qoe_schemas::parse_record(line) {
            Ok(beacon) => match engine.offer(0, offset as i64, &beacon, NOW) {
                Offer::Counted => "counted",
                Offer::Duplicate => "duplicate",
                Offer::Late => "late",
                Offer::AlreadyFinal => "already_final",
            },
            Err(_) => {
                engine.skip(0, offset as i64, NOW);
                "rejected"
            }
        };
        *outcomes.entry(outcome).or_default() += 1;
        let emissions = engine.poll(NOW);
        for emission in &emissions {
            for doc in &emission.docs {
                store.insert(doc.id(), doc.clone());
            }
        }
        if crash_at == Some(offset) {
            return saved;
        }
        for emission in &emissions {
            engine.acknowledge(emission.window_start_ms);
        }
        if !emissions.is_empty() {
            saved = engine.checkpoint();
        }
    }
    for emission in engine.finish() {
        for doc in &emission.docs {
            store.insert(doc.id(), doc.clone());
        }
        engine.acknowledge(emission.window_start_ms);
    }
    engine.checkpoint()
}

fn as_lines(store: &Store) -> String {
    let mut docs: Vec<&RollupDoc> = store.values().collect();
    docs.sort_by(|left, right| {
        (&left.timestamp, left.grain, left.dims()).cmp(&(&right.timestamp, right.grain, right.dims()))
    });
    docs.iter()
        .map(|doc| serde_json::to_string(doc).unwrap() + "\n")
        .collect()
}

fn check_case(name: &str, expected_outcomes: &[(&'static str, u64)]) {
    let config = engine_config(name);
    let lines = input(name);
    let mut store = Store::new();
    let mut outcomes = Outcomes::new();
    run(&config, &lines, None, None, &mut store, &mut outcomes);
    let actual = as_lines(&store);
    let expected_path = case_dir(name).join("expected.ndjson");
    if std::env::var_os("QOE_BLESS").is_some() {
        std::fs::write(&expected_path, &actual).unwrap();
    }
    let expected = std::fs::read_to_string(&expected_path).unwrap();
    for (number, (actual, expected)) in actual.lines().zip(expected.lines()).enumerate() {
        let actual: serde_json::Value = serde_json::from_str(actual).unwrap();
        let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
        assert_eq!(actual, expected, "{name}: document {}", number + 1);
    }
    assert_eq!(
        actual.lines().count(),
        expected.lines().count(),
        "{name}: document count"
    );
    let expected_outcomes: Outcomes = expected_outcomes.iter().copied().collect();
    assert_eq!(outcomes, expected_outcomes, "{name}: outcomes");

    for crash_at in 0..lines.len() {
        let mut restarted = Store::new();
        let mut ignored = Outcomes::new();
        let saved = run(&config, &lines, None, Some(crash_at), &mut restarted, &mut ignored);
        run(&config, &lines, Some(&saved), None, &mut restarted, &mut ignored);
        assert_eq!(
            as_lines(&restarted),
            actual,
            "{name}: crash after line {} and restart from {saved:?}",
            crash_at + 1
        );
    }
}

#[test]
fn basic_session_crossing_minutes() {
    check_case("basic", &[("counted", 14)]);
}

#[test]
fn late_and_duplicate_beacons() {
    check_case("late_and_duplicates", &[("counted", 5), ("duplicate", 2), ("late", 2)]);
}

#[test]
fn ebvs_and_errors() {
    check_case("ebvs_and_errors", &[("counted", 12), ("rejected", 2)]);
}

/// End beacons that cover no time (`interval_ms: 0`, the session or push ended right at a heartbeat):
/// counted as ends (EBVS included), adding nothing to the sums; a heartbeat of 0 ms and an end of 0 ms
/// with a stall in it are refused.
#[test]
fn zero_interval_ends() {
    check_case("zero_interval_ends", &[("counted", 12), ("rejected", 2)]);
}
