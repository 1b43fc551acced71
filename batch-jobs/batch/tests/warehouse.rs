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

/// A column of a record batch as its concrete array type.
fn typed<T: Clone + 'static>(batch: &arrow::record_batch::RecordBatch, name: &str) -> T {
    batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
        .clone()
}

/// Runs the job over a file into a warehouse, flushing every `flush_records` records.
fn ingest(
    input: &std::path::Path,
    warehouse: &std::path::Path,
    flush_records: usize,
) -> Result<qoe_batch::RunReport, BatchError> {
    run_file(
        input,
        config(warehouse, flush_records),
        Metrics::new(),
        &CancellationToken::new(),
    )
}

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

/// End beacons that cover no time (contract v1 accepts `interval_ms: 0` with zero counters on
/// `play_end` and `push_end`), beside those the simulator sends when a session ends right at a
/// heartbeat: every other exit before video start and every other publisher end carry them. Asserts
/// that each kind is present, so the checks below cover them.
fn with_zero_interval_ends(mut beacons: Vec<Beacon>) -> Vec<Beacon> {
    let (mut ebvs_ends, mut push_ends) = (0, 0);
    for beacon in beacons.iter_mut() {
        let pick = match beacon.kind {
            BeaconType::PlayEnd if beacon.first_frame_seen == Some(false) && beacon.interval_ms.is_none() => {
                ebvs_ends += 1;
                ebvs_ends % 2 == 0
            }
            BeaconType::PushEnd => {
                push_ends += 1;
                push_ends % 2 == 0
            }
            _ => false,
        };
        if pick {
            beacon.interval_ms = Some(0);
            beacon.stall_ms = Some(0);
            beacon.stall_count = Some(0);
            beacon.dropped_frames = Some(0);
            if beacon.kind == BeaconType::PlayEnd {
                beacon.watch_ms = Some(0);
            }
        }
    }
    let zero = |kind, first_frame_seen| {
        beacons
            .iter()
            .filter(|beacon| {
                beacon.kind == kind && beacon.interval_ms == Some(0) && beacon.first_frame_seen == first_frame_seen
            })
            .count()
    };
    assert!(
        zero(BeaconType::PlayEnd, Some(false)) > 0,
        "no zero-interval exit before video start"
    );
    assert!(
        zero(BeaconType::PlayEnd, Some(true)) > 0,
        "the simulator sent no play_end at a heartbeat"
    );
    assert!(zero(BeaconType::PushEnd, None) > 0, "no zero-interval push_end");
    beacons
}

#[test]
fn simulator_traffic_lands_once_per_beacon_with_one_row_per_session() {
    let beacons = with_zero_interval_ends(simulated(150, 300, 12, 7));
    let (lines, retries) = messy_lines(&beacons);
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "beacons.ndjson", &lines);
    let warehouse = dir.path().join("warehouse");
    let report = ingest(&input, &warehouse, 4_000).unwrap();

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
            let ints = |name| typed::<Int64Array>(&batch, name);
            let bools = |name| typed::<BooleanArray>(&batch, name);
            let times = |name| typed::<arrow::array::TimestampMillisecondArray>(&batch, name);
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
    ingest(&input, &whole, 1_000).unwrap();
    let again = ingest(&input, &whole, 1_000).unwrap();
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
    let first = ingest(&input, &growing, 1_000).unwrap();
    assert_eq!(first.accepted as usize, half);
    write_lines(input.parent().unwrap(), "beacons.ndjson", &lines);
    let second = ingest(&input, &growing, 1_000).unwrap();
    assert_eq!(second.already_stored as usize, half);
    assert_eq!(second.accepted as usize, lines.len() - half);
    let grown = warehouse_rows(&growing);
    for table in [Table::Play, Table::Push, Table::Room, Table::PlaySessions] {
        assert_eq!(grown[table.name()], reference[table.name()], "{}", table.name());
    }
}

#[test]
fn a_run_stopped_by_shutdown_commits_what_it_read_and_the_next_run_finishes_the_file() {
    // Several parse blocks' worth of lines, so that blocks are in flight when the run stops.
    let beacons = simulated(40, 600, 10, 5);
    let (lines, _) = messy_lines(&beacons);
    assert!(lines.len() > 20_000, "{} lines", lines.len());
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "beacons.ndjson", &lines);
    let whole = dir.path().join("whole");
    ingest(&input, &whole, 3_000).unwrap();

    let stopped = dir.path().join("stopped");
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let first = run_file(&input, config(&stopped, 3_000), Metrics::new(), &shutdown).unwrap();
    let read = first.accepted + first.duplicates + first.rejected;
    assert!(read > 0 && (read as usize) < lines.len(), "{first:?}");
    assert!(
        leftovers(&stopped).0.is_empty(),
        "temporary files left: {:?}",
        leftovers(&stopped).0
    );
    let second = ingest(&input, &stopped, 3_000).unwrap();
    assert_eq!(second.already_stored, read, "{second:?}");
    assert_eq!(
        (first.accepted + second.accepted) as usize,
        warehouse_rows(&whole)[Table::Play.name()].len()
            + warehouse_rows(&whole)[Table::Push.name()].len()
            + warehouse_rows(&whole)[Table::Room.name()].len()
    );
    let resumed = warehouse_rows(&stopped);
    let reference = warehouse_rows(&whole);
    for table in [Table::Play, Table::Push, Table::Room, Table::PlaySessions] {
        assert_eq!(resumed[table.name()], reference[table.name()], "{}", table.name());
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
    ingest(&input, &reference_dir, 250).unwrap();
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
        let resumed = ingest(&input, &warehouse, 250).unwrap();
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

fn heartbeat(session: &str, seq: u64, time_ms: u64) -> Beacon {
    Beacon {
        v: 1,
        kind: BeaconType::PlayHeartbeat,
        ts: time_ms,
        session_id: session.to_string(),
        seq,
        room_id: "room-long".to_string(),
        platform: qoe_schemas::Platform::Tv,
        cdn: Some("cdn-a".to_string()),
        interval_ms: Some(10_000),
        watch_ms: Some(10_000),
        stall_count: Some(0),
        stall_ms: Some(0),
        ..Default::default()
    }
}

#[test]
fn long_sessions_are_cut_and_very_late_beacons_are_not_folded_whatever_the_flushes() {
    const MINUTE: u64 = 60_000;
    let t0 = 1_763_800_000_000;
    // Session "long" beats every 20 minutes for 5 hours; "late" sends one beacon from t0 at the end.
    let mut beacons: Vec<Beacon> = (0..16).map(|i| heartbeat("long", i, t0 + i * 20 * MINUTE)).collect();
    beacons.push(heartbeat("late", 0, t0));
    let lines: Vec<String> = beacons.iter().map(line).collect();
    let dir = tempfile::tempdir().unwrap();
    let input = write_lines(dir.path(), "long.ndjson", &lines);
    let horizon = std::time::Duration::from_secs(2 * 3600);

    // The rule, written out: a beacon joins the current row while the row started at most the horizon
    // before the largest event time seen before it; otherwise it starts a new row.
    let mut expected_rows: Vec<u64> = Vec::new();
    let (mut row_start, mut watermark) = (None::<u64>, 0u64);
    for beacon in &beacons[..16] {
        let joins = row_start.is_some_and(|start| start + horizon.as_millis() as u64 >= watermark);
        if joins {
            *expected_rows.last_mut().unwrap() += 1;
        } else {
            expected_rows.push(1);
            row_start = Some(beacon.ts);
        }
        watermark = watermark.max(beacon.ts);
    }
    assert!(expected_rows.len() >= 2, "{expected_rows:?}");

    let mut outcomes = Vec::new();
    for flush_records in [1, 3, 1_000] {
        let warehouse = dir.path().join(format!("flush-{flush_records}"));
        let config = JobConfig {
            flush_records,
            session_horizon: horizon,
            ..JobConfig::new(&warehouse)
        };
        let metrics = Metrics::new();
        run_file(&input, config, metrics.clone(), &CancellationToken::new()).unwrap();
        assert_eq!(metrics.session_late.get(), 1);
        let rows = warehouse_rows(&warehouse);
        assert_eq!(rows["play"].len(), beacons.len(), "every beacon is stored in play");
        let sessions = &rows["play_sessions"];
        assert!(sessions.iter().all(|row| row.starts_with("long|")), "{sessions:?}");
        let mut counts: Vec<(String, u64)> = Vec::new();
        for file in qoe_batch::warehouse::Warehouse::open(&warehouse)
            .unwrap()
            .files_since(Table::PlaySessions, 0, |_| true)
            .unwrap()
        {
            for batch in read_parquet(&file, &["start_time", "beacons"]).unwrap() {
                let starts = batch.column_by_name("start_time").unwrap();
                let starts = starts.as_primitive::<arrow::datatypes::TimestampMillisecondType>();
                let count = batch
                    .column_by_name("beacons")
                    .unwrap()
                    .as_primitive::<arrow::datatypes::Int64Type>();
                for row in 0..batch.num_rows() {
                    counts.push((starts.value(row).to_string(), count.value(row) as u64));
                }
            }
        }
        counts.sort();
        assert_eq!(
            counts.iter().map(|(_, count)| *count).collect::<Vec<_>>(),
            expected_rows
        );
        outcomes.push(rows);
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[1], outcomes[2]);
}

#[test]
fn another_file_of_the_same_name_is_refused_and_an_unfinished_last_line_waits() {
    let beacons = simulated(10, 40, 3, 21);
    let lines: Vec<String> = beacons.iter().map(line).collect();
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    let first_dir = dir.path().join("day1").tap_mkdir();
    let second_dir = dir.path().join("day2").tap_mkdir();

    // The last line is still being written: no newline yet.
    let path = first_dir.join("beacons.ndjson");
    std::fs::write(&path, format!("{}\n{}", lines[..10].join("\n"), lines[10])).unwrap();
    let report = ingest(&path, &warehouse, 100).unwrap();
    assert!(report.incomplete_last_line);
    assert_eq!(report.accepted, 10);
    std::fs::write(&path, format!("{}\n", lines[..11].join("\n"))).unwrap();
    let report = ingest(&path, &warehouse, 100).unwrap();
    assert_eq!(
        (report.accepted, report.already_stored, report.incomplete_last_line),
        (1, 10, false)
    );

    let other = write_lines(&second_dir, "beacons.ndjson", &lines[20..]);
    let error = ingest(&other, &warehouse, 100).unwrap_err();
    assert!(matches!(error, BatchError::InputMismatch { .. }), "{error}");
    assert!(error.to_string().contains("its first line differs"), "{error}");
}

/// A damaged manifest stops the job with an error naming the manifest, whose source is the JSON
/// error (said once, not repeated in the message); a missing input names the file and the step.
#[test]
fn a_damaged_manifest_and_a_missing_input_are_named_with_their_cause_as_source() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    let input = write_lines(dir.path(), "beacons.ndjson", &[line(&simulated(1, 2, 1, 3)[0])]);
    let manifests = warehouse.join("_manifests").join("f-beacons_ndjson");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifest = manifests.join("000000000001.json");
    std::fs::write(&manifest, "{not json").unwrap();
    let error = ingest(&input, &warehouse, 100).unwrap_err();
    assert!(matches!(error, BatchError::ManifestJson { .. }), "{error:?}");
    assert_eq!(error.to_string(), format!("reading manifest {manifest:?}"));
    let source = std::error::Error::source(&error).expect("the JSON error");
    assert!(source.is::<serde_json::Error>(), "{source:?}");
    assert!(!error.to_string().contains(&source.to_string()));

    let missing = dir.path().join("missing.ndjson");
    let error = ingest(&missing, &dir.path().join("other"), 100).unwrap_err();
    assert_eq!(error.to_string(), format!("opening {missing:?}"));
    let source = std::error::Error::source(&error).expect("the io error");
    let source = source.downcast_ref::<std::io::Error>().expect("an io error");
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
}
