//! The batch job over NDJSON files built from simulator data: what lands in the warehouse is checked
//! against counts and session folds computed independently here, and a crash at every file-system
//! step of the job converges to the same warehouse as an uninterrupted run.

mod support;

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, AsArray, BooleanArray, Int64Array};
use qoe_batch::warehouse::read_parquet;
use qoe_batch::{run_file, BatchError, JobConfig, Metrics};
use qoe_schemas::tables::Table;
use qoe_schemas::{Beacon, BeaconType, Family};
use support::{leftovers, line, simulated, warehouse_rows, write_lines};
use tokio_util::sync::CancellationToken;

fn config(warehouse: &std::path::Path, flush_records: usize) -> JobConfig {
    JobConfig {
        flush_records,
        ..JobConfig::new(warehouse)
    }
}

/// Lines with SDK retries (every 40th beacon sent again 25 lines later), beacons delivered late (every
/// 97th moved to the end) and three invalid records.
fn messy_lines(beacons: &[Beacon]) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut late = Vec::new();
    let mut retries = 0;
    let mut pending_retries: Vec<(usize, String)> = Vec::new();
    for (index, beacon) in beacons.iter().enumerate() {
        let text = line(beacon);
        if index % 97 == 13 {
            late.push(text);
            continue;
        }
        if index % 40 == 7 {
            pending_retries.push((index + 25, text.clone()));
        }
        lines.push(text);
        while pending_retries.first().is_some_and(|(due, _)| *due <= index) {
            let (_, retry) = pending_retries.remove(0);
            lines.push(retry);
            retries += 1;
        }
    }
    for (_, retry) in pending_retries {
        lines.push(retry);
        retries += 1;
    }
    lines.extend(late);
    lines.insert(5, "{not json".to_string());
    lines.insert(
        50,
        r#"{"v":1,"type":"room_join","ts":1763800000000,"session_id":"x","seq":0,"room_id":"r","platform":"web"}"#
            .to_string(),
    );
    lines.insert(500, line(beacons.first().unwrap()).replace(r#""v":1"#, r#""v":2"#));
    (lines, retries)
}

#[test]
fn simulator_traffic_lands_once_per_beacon_with_one_row_per_session() {
    let beacons = simulated(150, 300, 12, 7);
    let (lines, retries) = messy_lines(&beacons);
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "beacons.ndjson", &lines);
    let warehouse = dir.path().join("warehouse");
    let report = run_file(
        &input,
        config(&warehouse, 4_000),
        Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();

    assert_eq!(report.accepted as usize, beacons.len());
    assert_eq!(report.duplicates as usize, retries);
    assert_eq!(report.rejected, 3, "{:?}", report.rejection_samples);
    assert!(report
        .rejection_samples
        .iter()
        .any(|sample| sample.contains("user_id: required on room_join")));
    assert!(report.flushes > 3, "flushes: {}", report.flushes);

    let rows = warehouse_rows(&warehouse);
    for (family, table) in [
        (Family::Play, Table::Play),
        (Family::Push, Table::Push),
        (Family::Room, Table::Room),
    ] {
        let expected = beacons.iter().filter(|beacon| beacon.kind.family() == family).count();
        assert_eq!(rows[table.name()].len(), expected, "{}", table.name());
    }
    let (tmp, manifests) = leftovers(&warehouse);
    assert!(tmp.is_empty(), "{tmp:?}");
    assert_eq!(manifests.len(), 1, "{manifests:?}");

    // play_sessions against a fold written out plainly here.
    #[derive(Default, Debug, PartialEq)]
    struct Expected {
        beacons: i64,
        watch_ms: i64,
        stall_count: i64,
        has_play_start: bool,
        first_frame_ms: Option<i64>,
        end_reason: Option<String>,
        ebvs: bool,
        fatal_error: bool,
        start_time: i64,
    }
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    let mut play: Vec<&Beacon> = beacons
        .iter()
        .filter(|beacon| beacon.kind.family() == Family::Play)
        .collect();
    play.sort_by_key(|beacon| (beacon.event_time_ms(), beacon.seq));
    for beacon in play {
        let entry = expected.entry(beacon.session_id.clone()).or_insert_with(|| Expected {
            start_time: beacon.event_time_ms() as i64,
            ..Default::default()
        });
        entry.beacons += 1;
        if matches!(beacon.kind, BeaconType::PlayHeartbeat | BeaconType::PlayEnd) {
            entry.watch_ms += beacon.watch_ms.unwrap_or(0) as i64;
            entry.stall_count += beacon.stall_count.unwrap_or(0) as i64;
        }
        entry.has_play_start |= beacon.kind == BeaconType::PlayStart;
        if beacon.kind == BeaconType::FirstFrame && entry.first_frame_ms.is_none() {
            entry.first_frame_ms = beacon.first_frame_ms.map(|ms| ms as i64);
        }
        if beacon.kind == BeaconType::PlayEnd {
            entry.end_reason = beacon.reason.clone();
            entry.ebvs = beacon.first_frame_seen == Some(false) && beacon.reason.as_deref() != Some("error");
        }
        if beacon.kind == BeaconType::PlayError
            && beacon.fatal == Some(true)
            && beacon.category == Some(qoe_schemas::ErrorCategory::Technical)
        {
            entry.fatal_error = true;
        }
    }
    let mut seen = HashSet::new();
    let mut crossing_hours = 0;
    let files = qoe_batch::warehouse::Warehouse::open(&warehouse)
        .unwrap()
        .files_since(Table::PlaySessions, 0, |_| true)
        .unwrap();
    for file in files {
        for batch in read_parquet(&file, &[]).unwrap() {
            let ints = |name| {
                batch
                    .column_by_name(name)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .clone()
            };
            let bools = |name| {
                batch
                    .column_by_name(name)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .unwrap()
                    .clone()
            };
            let times = |name| {
                batch
                    .column_by_name(name)
                    .unwrap()
                    .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                    .clone()
            };
            let sessions = batch.column_by_name("session_id").unwrap().as_string::<i32>().clone();
            let reasons = batch.column_by_name("end_reason").unwrap().as_string::<i32>().clone();
            let (count, watch, stalls, first_frame) = (
                ints("beacons"),
                ints("watch_ms"),
                ints("stall_count"),
                ints("first_frame_ms"),
            );
            let (start_flag, ebvs, fatal) = (bools("has_play_start"), bools("ebvs"), bools("fatal_error"));
            let (start, last) = (times("start_time"), times("last_time"));
            for row in 0..batch.num_rows() {
                let session = sessions.value(row).to_string();
                assert!(seen.insert(session.clone()), "session {session} has two rows");
                if start.value(row) / 3_600_000 != last.value(row) / 3_600_000 {
                    crossing_hours += 1;
                }
                let actual = Expected {
                    beacons: count.value(row),
                    watch_ms: watch.value(row),
                    stall_count: stalls.value(row),
                    has_play_start: start_flag.value(row),
                    first_frame_ms: first_frame.is_valid(row).then(|| first_frame.value(row)),
                    end_reason: reasons.is_valid(row).then(|| reasons.value(row).to_string()),
                    ebvs: ebvs.value(row),
                    fatal_error: fatal.value(row),
                    start_time: start.value(row),
                };
                assert_eq!(Some(&actual), expected.get(&session), "session {session}");
            }
        }
    }
    assert_eq!(seen.len(), expected.len());
    assert!(
        crossing_hours > 10,
        "only {crossing_hours} sessions cross an hour: the test needs more"
    );
    assert!(expected.values().any(|session| session.ebvs));
    assert!(expected.values().any(|session| session.fatal_error));
}

#[test]
fn a_second_run_over_the_same_file_adds_nothing_and_an_appended_file_resumes() {
    let beacons = simulated(40, 150, 6, 3);
    let lines: Vec<String> = beacons.iter().map(line).collect();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    let input = write_lines(dir.path(), "beacons.ndjson", &lines);
    run_file(&input, config(&whole, 1_000), Metrics::new(), &CancellationToken::new()).unwrap();
    let again = run_file(&input, config(&whole, 1_000), Metrics::new(), &CancellationToken::new()).unwrap();
    assert_eq!(again.accepted, 0);
    assert_eq!(again.already_stored as usize, lines.len());
    let reference = warehouse_rows(&whole);

    let growing = dir.path().join("growing");
    let half = lines.len() / 2;
    let input = write_lines(
        &dir.path().join("growing-input").tap_mkdir(),
        "beacons.ndjson",
        &lines[..half],
    );
    let first = run_file(
        &input,
        config(&growing, 1_000),
        Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(first.accepted as usize, half);
    write_lines(input.parent().unwrap(), "beacons.ndjson", &lines);
    let second = run_file(
        &input,
        config(&growing, 1_000),
        Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(second.already_stored as usize, half);
    assert_eq!(second.accepted as usize, lines.len() - half);
    let grown = warehouse_rows(&growing);
    for table in [Table::Play, Table::Push, Table::Room, Table::PlaySessions] {
        assert_eq!(grown[table.name()], reference[table.name()], "{}", table.name());
    }
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[test]
fn a_crash_at_any_step_leaves_no_partial_file_no_gap_and_no_duplicate() {
    let beacons = simulated(20, 80, 4, 11);
    let (lines, _) = messy_lines(&beacons[..1_500]);
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "beacons.ndjson", &lines);
    let reference_dir = dir.path().join("reference");
    run_file(
        &input,
        config(&reference_dir, 250),
        Metrics::new(),
        &CancellationToken::new(),
    )
    .unwrap();
    let reference = warehouse_rows(&reference_dir);
    assert!(reference["play_sessions"].len() > 10);

    let mut crashes = 0;
    for step in 1.. {
        let warehouse = dir.path().join(format!("crash-{step}"));
        let crashing = JobConfig {
            crash_at_step: Some(step),
            ..config(&warehouse, 250)
        };
        match run_file(&input, crashing, Metrics::new(), &CancellationToken::new()) {
            Err(BatchError::InjectedCrash(at)) => assert_eq!(at, step),
            Err(other) => panic!("step {step}: {other}"),
            Ok(_) => break,
        }
        crashes += 1;
        let resumed = run_file(
            &input,
            config(&warehouse, 250),
            Metrics::new(),
            &CancellationToken::new(),
        )
        .unwrap();
        assert!(resumed.already_stored as usize <= lines.len());
        let rows = warehouse_rows(&warehouse);
        for table in Table::ALL {
            assert_eq!(
                rows[table.name()],
                reference[table.name()],
                "crash at step {step}: {}",
                table.name()
            );
        }
        let (tmp, manifests) = leftovers(&warehouse);
        assert!(tmp.is_empty(), "crash at step {step}: {tmp:?}");
        assert_eq!(manifests.len(), 1, "crash at step {step}: {manifests:?}");
        std::fs::remove_dir_all(&warehouse).unwrap();
    }
    assert!(crashes > 40, "only {crashes} steps were crashed at");
}
