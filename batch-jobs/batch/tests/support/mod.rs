//! Shared by the batch job's tests: simulator beacons as NDJSON lines, and a reader that dumps a
//! warehouse table as sorted text rows, checking each file's partition against its rows.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, TimestampMillisecondArray};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use qoe_batch::warehouse::{date_hour, read_parquet};
use qoe_schemas::tables::Table;
use qoe_schemas::Beacon;
use qoe_simulator::SimConfig;

/// Beacons of a small simulated service, with collector enrichment (event time = ts + 150 ms).
pub fn simulated(duration_minutes: u64, viewers: u32, rooms: u32, seed: u64) -> Vec<Beacon> {
    let config = SimConfig {
        seed,
        duration_ms: duration_minutes * 60_000,
        viewers: viewers as _,
        rooms: rooms as _,
        ..SimConfig::default()
    };
    qoe_simulator::generate(&config)
        .map(|mut beacon| {
            beacon.received_at = Some(beacon.ts + 400);
            beacon.event_time = Some(beacon.ts + 150);
            beacon.client_subnet = Some("203.0.113.0/24".to_string());
            beacon.key_id = Some("test".to_string());
            beacon
        })
        .collect()
}

pub fn line(beacon: &Beacon) -> String {
    serde_json::to_string(beacon).expect("beacons serialize")
}

pub fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&path, text).expect("write input");
    path
}

/// Every row of a table as text (columns joined by `|`), sorted; asserts that every row of every file
/// lies in the partition hour of its path and that no temporary file is visible.
pub fn table_rows(warehouse: &Path, table: Table) -> Vec<String> {
    let mut rows = Vec::new();
    let root = warehouse.join(table.name());
    let time_column = if table == Table::PlaySessions {
        "start_time"
    } else {
        "event_time"
    };
    for file in walk(&root) {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            name.ends_with(".parquet") && !name.starts_with('.'),
            "stray file {}",
            file.display()
        );
        let hour_dir = dir_name(file.parent().unwrap());
        let date_dir = dir_name(file.parent().unwrap().parent().unwrap());
        for batch in read_parquet(&file, &[]).unwrap() {
            let times = batch
                .column_by_name(time_column)
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap()
                .clone();
            let options = FormatOptions::default().with_null("∅");
            let formatters: Vec<_> = batch
                .columns()
                .iter()
                .map(|column| ArrayFormatter::try_new(column.as_ref(), &options).unwrap())
                .collect();
            for row in 0..batch.num_rows() {
                let (date, hour) = date_hour(times.value(row));
                assert_eq!(format!("dt={date}"), date_dir, "{}", file.display());
                assert_eq!(format!("hour={hour:02}"), hour_dir, "{}", file.display());
                let text: Vec<String> = formatters.iter().map(|format| format.value(row).to_string()).collect();
                rows.push(text.join("|"));
            }
            assert!(times.null_count() == 0);
        }
    }
    rows.sort();
    rows
}

fn dir_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every table's rows.
pub fn warehouse_rows(warehouse: &Path) -> BTreeMap<&'static str, Vec<String>> {
    Table::ALL
        .iter()
        .map(|table| (table.name(), table_rows(warehouse, *table)))
        .collect()
}

/// Files left in the commit area: temporary files and manifests per source.
pub fn leftovers(warehouse: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    (walk(&warehouse.join("_tmp")), walk(&warehouse.join("_manifests")))
}
