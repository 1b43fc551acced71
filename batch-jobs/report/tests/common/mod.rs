//! Test helper: builds small Hive-partitioned warehouses with `ArrowWriter`, following the published
//! schemas (`qoe_schemas::tables::schema`).
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, MapBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::{DataType, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, NaiveDateTime};
use parquet::arrow::ArrowWriter;
use qoe_schemas::tables::{schema, Table};

/// A cell value.
#[derive(Debug, Clone)]
pub enum V {
    S(String),
    I(i64),
    F(f64),
    B(bool),
    /// Milliseconds since the epoch.
    T(i64),
    M(Vec<(String, String)>),
}

/// One row: column name → value (absent columns are null, or a default for non-nullable ones).
#[derive(Debug, Clone, Default)]
pub struct Row(pub Vec<(&'static str, V)>);

impl Row {
    pub fn set(mut self, column: &'static str, value: V) -> Row {
        self.0.retain(|(name, _)| *name != column);
        self.0.push((column, value));
        self
    }
    pub fn s(self, column: &'static str, value: &str) -> Row {
        self.set(column, V::S(value.to_string()))
    }
    pub fn i(self, column: &'static str, value: i64) -> Row {
        self.set(column, V::I(value))
    }
    pub fn b(self, column: &'static str, value: bool) -> Row {
        self.set(column, V::B(value))
    }
    pub fn t(self, column: &'static str, value: &str) -> Row {
        self.set(column, V::T(ms(value)))
    }
    fn get(&self, column: &str) -> Option<&V> {
        self.0.iter().find(|(name, _)| *name == column).map(|(_, v)| v)
    }
}

/// `2026-03-01T10:00:00` (UTC) as epoch milliseconds.
pub fn ms(text: &str) -> i64 {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .and_utc()
        .timestamp_millis()
}

/// A play session row with neutral defaults: started at `start`, lasted 0 s, one play_start.
pub fn session(id: &str, cdn: &str, start: &str) -> Row {
    Row::default()
        .s("session_id", id)
        .s("room_id", "room-1")
        .t("start_time", start)
        .i("first_seq", 0)
        .t("last_time", start)
        .s("platform", "web")
        .s("cdn", cdn)
        .i("beacons", 1)
        .b("has_play_start", true)
        .b("fatal_error", false)
        .b("business_error", false)
        .b("ebvs", false)
}

/// A beacon row (room or play table) of `kind` at `at`.
pub fn beacon(kind: &str, session_id: &str, room: &str, cdn: &str, at: &str) -> Row {
    Row::default()
        .t("event_time", at)
        .t("ts", at)
        .s("type", kind)
        .s("session_id", session_id)
        .s("room_id", room)
        .s("platform", "web")
        .s("user_id", &format!("u-{session_id}"))
        .s("cdn", cdn)
}

/// Writes `rows` of `table` into `<warehouse>/<table>/dt=…/hour=…/<name>.parquet`, one file per
/// partition, partitioned like the real writer (event_time, or start_time for play_sessions).
pub fn write(warehouse: &Path, table: Table, name: &str, rows: &[Row]) {
    let time_column = if table == Table::PlaySessions {
        "start_time"
    } else {
        "event_time"
    };
    let mut parts: std::collections::BTreeMap<(String, String), Vec<Row>> = Default::default();
    for row in rows {
        let Some(V::T(at)) = row.get(time_column) else {
            panic!("{time_column} missing")
        };
        let at = DateTime::from_timestamp_millis(*at).unwrap();
        let key = (at.format("%Y-%m-%d").to_string(), at.format("%H").to_string());
        parts.entry(key).or_default().push(row.clone());
    }
    for ((dt, hour), rows) in parts {
        let dir = warehouse
            .join(table.name())
            .join(format!("dt={dt}"))
            .join(format!("hour={hour}"));
        std::fs::create_dir_all(&dir).unwrap();
        write_file(&dir.join(name), table, &rows);
    }
}

/// Writes one Parquet file with exactly these rows.
pub fn write_file(path: &Path, table: Table, rows: &[Row]) {
    let schema = schema(table);
    let mut columns: Vec<ArrayRef> = Vec::new();
    for field in schema.fields() {
        let name = field.name().as_str();
        let values: Vec<Option<&V>> = rows.iter().map(|row| row.get(name)).collect();
        let required = !field.is_nullable();
        let array: ArrayRef = match field.data_type() {
            DataType::Utf8 => {
                let mut b = StringBuilder::new();
                for v in values {
                    match v {
                        Some(V::S(s)) => b.append_value(s),
                        None if required => b.append_value(""),
                        None => b.append_null(),
                        other => panic!("{name}: {other:?}"),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Int64 => {
                let mut b = Int64Builder::new();
                for v in values {
                    match v {
                        Some(V::I(i)) => b.append_value(*i),
                        None if required => b.append_value(0),
                        None => b.append_null(),
                        other => panic!("{name}: {other:?}"),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::new();
                for v in values {
                    match v {
                        Some(V::F(f)) => b.append_value(*f),
                        None => b.append_null(),
                        other => panic!("{name}: {other:?}"),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::new();
                for v in values {
                    match v {
                        Some(V::B(x)) => b.append_value(*x),
                        None if required => b.append_value(false),
                        None => b.append_null(),
                        other => panic!("{name}: {other:?}"),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Timestamp(TimeUnit::Millisecond, None) => {
                let mut b = TimestampMillisecondBuilder::new();
                for v in values {
                    match v {
                        Some(V::T(t)) => b.append_value(*t),
                        None if required => panic!("{name} is required"),
                        None => b.append_null(),
                        other => panic!("{name}: {other:?}"),
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Map(_, _) => {
                let mut b = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
                for v in values {
                    match v {
                        Some(V::M(entries)) => {
                            for (k, val) in entries {
                                b.keys().append_value(k);
                                b.values().append_value(val);
                            }
                            b.append(true).unwrap();
                        }
                        None => b.append(false).unwrap(),
                        other => panic!("{name}: {other:?}"),
                    }
                }
                Arc::new(b.finish())
            }
            other => panic!("{name}: unexpected type {other}"),
        };
        columns.push(array);
    }
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// Reads a whole Parquet output file.
pub fn read(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches.first().map(|b| b.schema()).expect("at least one batch");
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

/// Asserts two optional floats are equal within 1e-9 (relative).
#[track_caller]
pub fn close(actual: Option<f64>, expected: Option<f64>) {
    match (actual, expected) {
        (Some(a), Some(e)) => assert!((a - e).abs() <= 1e-9 * e.abs().max(1.0), "got {a}, expected {e}"),
        (a, e) => assert_eq!(a, e),
    }
}
