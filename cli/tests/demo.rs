//! `qoe demo`, the README's main command, run as a user runs it: the real binary with its defaults
//! (three simulated hours through the collector, librdkafka's in-process mock cluster, the stream job
//! and the batch job), in a directory of its own.
//!
//! The demo checks itself and exits non-zero when the alerts are not exactly the two scripted
//! incidents, each localised, or when a job missed records; this test also reads what it wrote: the
//! alert events, the rollups, the warehouse's tables and both HTML reports.

use std::path::{Path, PathBuf};
use std::process::Command;

use qoe_alert::{AlertEvent, AlertState, Level};

fn qoe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qoe"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qoe-demo-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn parquet_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                parquet_files(&path)
            } else {
                usize::from(path.extension().is_some_and(|ext| ext == "parquet"))
            }
        })
        .sum()
}

#[test]
fn the_demo_raises_the_two_incidents_and_writes_every_output() {
    let out = scratch("run");
    let output = qoe()
        .args(["demo", "--log", "warn", "--out"])
        .arg(&out)
        .output()
        .expect("running qoe demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "qoe demo failed\n{stdout}\n{stderr}");
    assert!(stdout.contains("keeps nothing"), "{stdout}");
    assert!(
        stdout.contains("checks     every record reached both jobs; the alerts are exactly the scripted incidents"),
        "{stdout}"
    );
    assert!(stdout.contains("read_parquet("), "no DuckDB query to paste:\n{stdout}");

    let alerts = std::fs::read_to_string(out.join("alerts/alerts.ndjson")).unwrap();
    let events: Vec<AlertEvent> = alerts.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let mut firing: Vec<(String, Level, String)> = events
        .iter()
        .filter(|event| event.state == AlertState::Firing)
        .map(|event| {
            (
                event.rule.clone(),
                event.localisation.level,
                event.localisation.target.clone(),
            )
        })
        .collect();
    firing.sort();
    assert_eq!(
        firing,
        vec![
            ("cdn-stall".to_string(), Level::Cdn, "cdn-b".to_string()),
            ("viewer-reentry".to_string(), Level::Publisher, "room-0001".to_string()),
        ]
    );
    // Both incidents are over before the simulated hours end: each alert resolved.
    assert_eq!(events.len(), 4, "{alerts}");

    // Every rollup document the demo reports is in the NDJSON files, each a typed rollup document.
    let reported: usize = stdout
        .lines()
        .find_map(|line| line.strip_suffix(" rollup documents"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|count| count.parse().ok())
        .expect("the stream line with the count of rollup documents");
    let mut documents = 0;
    for file in std::fs::read_dir(out.join("rollups")).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for line in text.lines() {
            let document: qoe_rollup::RollupDoc = serde_json::from_str(line).unwrap();
            assert!(!document.id().is_empty(), "{line}");
            documents += 1;
        }
    }
    assert!(reported > 1000, "{reported} rollup documents");
    assert_eq!(documents, reported);
    for table in ["play", "push", "room", "play_sessions"] {
        assert!(
            parquet_files(&out.join("warehouse").join(table)) > 0,
            "no {table} files"
        );
    }
    for report in ["report-cdn", "report-rooms"] {
        let html = std::fs::read_to_string(out.join(report).join("report.html")).unwrap();
        assert!(
            html.contains("class=\"chart\"") && html.contains("id=\"chart-data\""),
            "{report}: no chart"
        );
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn the_demo_refuses_a_directory_it_did_not_write() {
    let out = scratch("foreign");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let output = qoe().args(["demo", "--out"]).arg(&out).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not empty and not a directory an earlier demo wrote"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(out.join("notes.txt")).unwrap(), "mine");
    std::fs::remove_dir_all(&out).unwrap();
}
