//! The published Arrow schemas of the Parquet warehouse: one table per beacon family (`play`, `push`,
//! `room`) and the derived `play_sessions` table.
//!
//! Layout (written by `qoe batch`, read by `qoe report`, DuckDB and anything that reads Hive-partitioned
//! Parquet): `<warehouse>/<table>/dt=YYYY-MM-DD/hour=HH/<file>.parquet`, partitioned by the UTC date and
//! hour of `event_time` (beacon tables) or of `start_time` (`play_sessions`). The partition columns
//! `dt` and `hour` live in the path only, not in the files.
//!
//! Column rules, the same for every table:
//! - a beacon field keeps its wire name; integers are `Int64` (every range of the contract fits), numbers
//!   `Float64`, booleans `Boolean`, strings and enum values `Utf8`, `exp` a `Map<Utf8, Utf8>`;
//! - times (`ts`, `event_time`, `received_at`, and the `*_time` columns of `play_sessions`) are
//!   `Timestamp(Millisecond)` holding UTC, without a zone annotation, so that engines without a time-zone
//!   library (DuckDB without ICU, for one) read them as plain timestamps;
//! - a column is nullable exactly when the field is optional for some type of the family.
//!
//! ```
//! use qoe_schemas::tables::{self, Table};
//! let play = tables::schema(Table::Play);
//! assert_eq!(play.field_with_name("event_time").unwrap().is_nullable(), false);
//! assert!(play.field_with_name("first_frame_ms").unwrap().is_nullable());
//! assert!(tables::schema(Table::Room).field_with_name("first_frame_ms").is_err());
//! assert_eq!(Table::PlaySessions.name(), "play_sessions");
//! ```

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::beacon::Family;

/// A warehouse table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Viewer beacons: `play_*` and `first_frame`.
    Play,
    /// Publisher beacons: `push_*`.
    Push,
    /// Room presence beacons: `room_join`, `room_leave`.
    Room,
    /// One row per play session, derived from `play`.
    PlaySessions,
}

impl Table {
    /// Every table, beacon tables first.
    pub const ALL: [Table; 4] = [Table::Play, Table::Push, Table::Room, Table::PlaySessions];

    /// The directory name under the warehouse root.
    pub fn name(self) -> &'static str {
        match self {
            Table::Play => "play",
            Table::Push => "push",
            Table::Room => "room",
            Table::PlaySessions => "play_sessions",
        }
    }

    /// The beacon table of a family.
    pub fn of_family(family: Family) -> Table {
        match family {
            Family::Play => Table::Play,
            Family::Push => Table::Push,
            Family::Room => Table::Room,
        }
    }

    /// The columns each file is sorted by, in order: chosen for the report queries (per CDN for
    /// `play`, per room for the others) and for compression (a session's beacons side by side).
    pub fn sort_key(self) -> &'static [&'static str] {
        match self {
            Table::Play => &["cdn", "room_id", "session_id", "seq"],
            Table::Push | Table::Room => &["room_id", "session_id", "seq"],
            Table::PlaySessions => &["cdn", "room_id", "session_id"],
        }
    }
}

/// The type of a column, in the terms of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// `Utf8`.
    Str,
    /// `Int64`.
    Int,
    /// `Float64`.
    Float,
    /// `Boolean`.
    Bool,
    /// `Timestamp(Millisecond)`, UTC without a zone annotation.
    Time,
    /// `Map<Utf8, Utf8>`.
    Map,
}

/// One column: name, type, nullable.
pub type Column = (&'static str, ColumnType, bool);

use ColumnType::{Bool, Float, Int, Map, Str, Time};

/// Columns every beacon table starts with.
pub const COMMON_COLUMNS: &[Column] = &[
    ("event_time", Time, false),
    ("ts", Time, false),
    ("received_at", Time, true),
    ("type", Str, false),
    ("session_id", Str, false),
    ("seq", Int, false),
    ("room_id", Str, false),
    ("platform", Str, false),
    ("user_id", Str, true),
    ("device_id", Str, true),
    ("app_version", Str, true),
    ("os", Str, true),
    ("device_model", Str, true),
    ("network", Str, true),
    ("isp", Str, true),
    ("region", Str, true),
    ("cdn", Str, true),
    ("edge_ip", Str, true),
    ("exp", Map, true),
    ("client_subnet", Str, true),
    ("key_id", Str, true),
];

/// The `play` table's own columns, after [`COMMON_COLUMNS`].
pub const PLAY_COLUMNS: &[Column] = &[
    ("first_frame_ms", Int, true),
    ("dns_ms", Int, true),
    ("connect_ms", Int, true),
    ("first_packet_ms", Int, true),
    ("resolver", Str, true),
    ("rtt_ms", Int, true),
    ("interval_ms", Int, true),
    ("watch_ms", Int, true),
    ("stall_count", Int, true),
    ("stall_ms", Int, true),
    ("dropped_frames", Int, true),
    ("bitrate_kbps", Int, true),
    ("buffer_ms", Int, true),
    ("latency_ms", Int, true),
    ("fps", Float, true),
    ("startup_skip_ms", Int, true),
    ("startup_speedup_ms", Int, true),
    ("code", Str, true),
    ("fatal", Bool, true),
    ("category", Str, true),
    ("stage", Str, true),
    ("reason", Str, true),
    ("first_frame_seen", Bool, true),
];

/// The `push` table's own columns, after [`COMMON_COLUMNS`].
pub const PUSH_COLUMNS: &[Column] = &[
    ("capture_width", Int, true),
    ("capture_height", Int, true),
    ("capture_fps", Float, true),
    ("encoder", Str, true),
    ("interval_ms", Int, true),
    ("cpu_pct", Float, true),
    ("mem_mb", Float, true),
    ("encode_fps", Float, true),
    ("target_kbps", Int, true),
    ("output_kbps", Int, true),
    ("dropped_frames", Int, true),
    ("stall_count", Int, true),
    ("stall_ms", Int, true),
    ("rtt_ms", Int, true),
    ("reason", Str, true),
];

/// The `room` table's own columns, after [`COMMON_COLUMNS`]: `reason` is the free-text leave reason.
pub const ROOM_COLUMNS: &[Column] = &[("reason", Str, true)];

/// The `play_sessions` columns. Definitions of each are in `docs/warehouse.md`.
pub const PLAY_SESSION_COLUMNS: &[Column] = &[
    ("session_id", Str, false),
    ("room_id", Str, false),
    ("start_time", Time, false),
    ("first_seq", Int, false),
    ("last_time", Time, false),
    ("platform", Str, false),
    ("user_id", Str, true),
    ("device_id", Str, true),
    ("app_version", Str, true),
    ("os", Str, true),
    ("device_model", Str, true),
    ("network", Str, true),
    ("isp", Str, true),
    ("region", Str, true),
    ("cdn", Str, true),
    ("edge_ip", Str, true),
    ("exp", Map, true),
    ("beacons", Int, false),
    ("has_play_start", Bool, false),
    ("first_frame_time", Time, true),
    ("first_frame_ms", Int, true),
    ("dns_ms", Int, true),
    ("connect_ms", Int, true),
    ("first_packet_ms", Int, true),
    ("resolver", Str, true),
    ("startup_skip_ms", Int, true),
    ("startup_speedup_ms", Int, true),
    ("heartbeats", Int, false),
    ("watch_ms", Int, false),
    ("stall_ms", Int, false),
    ("stall_count", Int, false),
    ("dropped_frames", Int, false),
    ("max_latency_ms", Int, true),
    ("errors", Int, false),
    ("fatal_error", Bool, false),
    ("fatal_error_code", Str, true),
    ("fatal_error_stage", Str, true),
    ("business_error", Bool, false),
    ("end_time", Time, true),
    ("end_reason", Str, true),
    ("first_frame_seen", Bool, true),
    ("ebvs", Bool, false),
];

/// The columns of a table, in file order.
pub fn columns(table: Table) -> Vec<Column> {
    let own = match table {
        Table::Play => PLAY_COLUMNS,
        Table::Push => PUSH_COLUMNS,
        Table::Room => ROOM_COLUMNS,
        Table::PlaySessions => return PLAY_SESSION_COLUMNS.to_vec(),
    };
    COMMON_COLUMNS.iter().chain(own).copied().collect()
}

/// The Arrow data type of a column type.
pub fn data_type(column_type: ColumnType) -> DataType {
    match column_type {
        ColumnType::Str => DataType::Utf8,
        ColumnType::Int => DataType::Int64,
        ColumnType::Float => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Time => DataType::Timestamp(TimeUnit::Millisecond, None),
        ColumnType::Map => DataType::Map(map_entries(), false),
    }
}

/// The entries field of the `exp` map, as Arrow's `MapBuilder` writes it.
pub fn map_entries() -> Arc<Field> {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, true),
    ]);
    Arc::new(Field::new("entries", DataType::Struct(entries), false))
}

/// The Arrow schema of a table's files (without the `dt`/`hour` partition columns).
pub fn schema(table: Table) -> SchemaRef {
    let fields: Vec<Field> = columns(table)
        .into_iter()
        .map(|(name, column_type, nullable)| Field::new(name, data_type(column_type), nullable))
        .collect();
    Arc::new(Schema::new(fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::FIELDS;

    #[test]
    fn every_beacon_field_has_a_column_in_its_family_table() {
        let skip = ["v"];
        for field in FIELDS {
            if skip.contains(&field.name) {
                continue;
            }
            for kind in crate::BeaconType::ALL {
                if !field.allowed.contains(*kind) {
                    continue;
                }
                let name = if field.name == "ts" { "ts" } else { field.name };
                let table = Table::of_family(kind.family());
                assert!(
                    schema(table).field_with_name(name).is_ok(),
                    "{} of {} has no column in {}",
                    field.name,
                    kind,
                    table.name()
                );
            }
        }
    }

    #[test]
    fn column_names_are_unique() {
        for table in Table::ALL {
            let columns = columns(table);
            let mut names: Vec<_> = columns.iter().map(|column| column.0).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), columns.len(), "{}", table.name());
        }
    }
}
