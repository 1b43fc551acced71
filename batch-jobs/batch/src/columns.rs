//! Beacons to Arrow record batches that follow the published schemas of [`qoe_schemas::tables`].
//!
//! Each column is filled by an accessor chosen once per column (a function pointer), so building a batch
//! costs one call per cell and no name lookups.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, MapBuilder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use qoe_schemas::tables::{self, ColumnType, Table};
use qoe_schemas::Beacon;

/// One cell of a beacon, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cell<'a> {
    Str(Option<&'a str>),
    Int(Option<u64>),
    Float(Option<f64>),
    Bool(Option<bool>),
    Map(Option<&'a BTreeMap<String, String>>),
}

type Accessor = for<'a> fn(&'a Beacon) -> Cell<'a>;

/// The accessor of a beacon-table column, or `None` for a name that is no beacon field.
fn accessor(name: &str) -> Option<Accessor> {
    use Cell::{Bool, Float, Int, Map, Str};
    let accessor: Accessor = match name {
        "event_time" => |b| Int(Some(b.event_time_ms())),
        "ts" => |b| Int(Some(b.ts)),
        "received_at" => |b| Int(b.received_at),
        "type" => |b| Str(Some(b.kind.as_str())),
        "session_id" => |b| Str(Some(&b.session_id)),
        "seq" => |b| Int(Some(b.seq)),
        "room_id" => |b| Str(Some(&b.room_id)),
        "platform" => |b| Str(Some(b.platform.as_str())),
        "user_id" => |b| Str(b.user_id.as_deref()),
        "device_id" => |b| Str(b.device_id.as_deref()),
        "app_version" => |b| Str(b.app_version.as_deref()),
        "os" => |b| Str(b.os.as_deref()),
        "device_model" => |b| Str(b.device_model.as_deref()),
        "network" => |b| Str(b.network.map(|value| value.as_str())),
        "isp" => |b| Str(b.isp.as_deref()),
        "region" => |b| Str(b.region.as_deref()),
        "cdn" => |b| Str(b.cdn.as_deref()),
        "edge_ip" => |b| Str(b.edge_ip.as_deref()),
        "exp" => |b| Map(b.exp.as_ref()),
        "client_subnet" => |b| Str(b.client_subnet.as_deref()),
        "key_id" => |b| Str(b.key_id.as_deref()),
        "first_frame_ms" => |b| Int(b.first_frame_ms),
        "dns_ms" => |b| Int(b.dns_ms),
        "connect_ms" => |b| Int(b.connect_ms),
        "first_packet_ms" => |b| Int(b.first_packet_ms),
        "resolver" => |b| Str(b.resolver.map(|value| value.as_str())),
        "rtt_ms" => |b| Int(b.rtt_ms),
        "interval_ms" => |b| Int(b.interval_ms),
        "watch_ms" => |b| Int(b.watch_ms),
        "stall_count" => |b| Int(b.stall_count),
        "stall_ms" => |b| Int(b.stall_ms),
        "dropped_frames" => |b| Int(b.dropped_frames),
        "bitrate_kbps" => |b| Int(b.bitrate_kbps),
        "buffer_ms" => |b| Int(b.buffer_ms),
        "latency_ms" => |b| Int(b.latency_ms),
        "fps" => |b| Float(b.fps),
        "startup_skip_ms" => |b| Int(b.startup_skip_ms),
        "startup_speedup_ms" => |b| Int(b.startup_speedup_ms),
        "code" => |b| Str(b.code.as_deref()),
        "fatal" => |b| Bool(b.fatal),
        "category" => |b| Str(b.category.map(|value| value.as_str())),
        "stage" => |b| Str(b.stage.map(|value| value.as_str())),
        "reason" => |b| Str(b.reason.as_deref()),
        "first_frame_seen" => |b| Bool(b.first_frame_seen),
        "capture_width" => |b| Int(b.capture_width),
        "capture_height" => |b| Int(b.capture_height),
        "capture_fps" => |b| Float(b.capture_fps),
        "encoder" => |b| Str(b.encoder.as_deref()),
        "cpu_pct" => |b| Float(b.cpu_pct),
        "mem_mb" => |b| Float(b.mem_mb),
        "encode_fps" => |b| Float(b.encode_fps),
        "target_kbps" => |b| Int(b.target_kbps),
        "output_kbps" => |b| Int(b.output_kbps),
        _ => return None,
    };
    Some(accessor)
}

/// A growable Arrow array of one column type.
pub(crate) enum ColumnBuilder {
    Str(StringBuilder),
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMillisecondBuilder),
    Map(Box<MapBuilder<StringBuilder, StringBuilder>>),
}

impl ColumnBuilder {
    pub(crate) fn new(column_type: ColumnType, capacity: usize) -> Self {
        match column_type {
            ColumnType::Str => ColumnBuilder::Str(StringBuilder::with_capacity(capacity, capacity * 8)),
            ColumnType::Int => ColumnBuilder::Int(Int64Builder::with_capacity(capacity)),
            ColumnType::Float => ColumnBuilder::Float(Float64Builder::with_capacity(capacity)),
            ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnType::Time => ColumnBuilder::Time(TimestampMillisecondBuilder::with_capacity(capacity)),
            ColumnType::Map => ColumnBuilder::Map(Box::new(MapBuilder::new(
                None,
                StringBuilder::new(),
                StringBuilder::new(),
            ))),
        }
    }

    /// Appends one cell; a cell of the wrong kind for the column is a bug in the column tables.
    pub(crate) fn append(&mut self, cell: Cell<'_>) -> Result<(), ArrowError> {
        match (self, cell) {
            (ColumnBuilder::Str(builder), Cell::Str(value)) => builder.append_option(value),
            (ColumnBuilder::Int(builder), Cell::Int(value)) => builder.append_option(value.map(to_i64)),
            (ColumnBuilder::Time(builder), Cell::Int(value)) => builder.append_option(value.map(to_i64)),
            (ColumnBuilder::Float(builder), Cell::Float(value)) => builder.append_option(value),
            (ColumnBuilder::Bool(builder), Cell::Bool(value)) => builder.append_option(value),
            (ColumnBuilder::Map(builder), Cell::Map(value)) => {
                if let Some(map) = value {
                    for (key, arm) in map {
                        builder.keys().append_value(key);
                        builder.values().append_value(arm);
                    }
                }
                builder.append(value.is_some())?;
            }
            _ => {
                return Err(ArrowError::SchemaError(
                    "cell does not match its column type".to_string(),
                ))
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Str(mut builder) => Arc::new(builder.finish()),
            ColumnBuilder::Int(mut builder) => Arc::new(builder.finish()),
            ColumnBuilder::Float(mut builder) => Arc::new(builder.finish()),
            ColumnBuilder::Bool(mut builder) => Arc::new(builder.finish()),
            ColumnBuilder::Time(mut builder) => Arc::new(builder.finish()),
            ColumnBuilder::Map(mut builder) => Arc::new(builder.finish()),
        }
    }
}

/// Every value of the contract is at most 2^53 - 1 or an epoch ms before 2100, so it fits an `i64`.
fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Builds the record batch of a beacon table from beacons of its family, in the given order.
pub(crate) fn beacon_batch(table: Table, beacons: &[&Beacon]) -> Result<RecordBatch, ArrowError> {
    let schema: SchemaRef = tables::schema(table);
    let mut arrays = Vec::with_capacity(schema.fields().len());
    for (name, column_type, _) in tables::columns(table) {
        let Some(get) = accessor(name) else {
            return Err(ArrowError::SchemaError(format!("column {name:?} is no beacon field")));
        };
        let mut builder = ColumnBuilder::new(column_type, beacons.len());
        for beacon in beacons {
            builder.append(get(beacon))?;
        }
        arrays.push(builder.finish());
    }
    RecordBatch::try_new(schema, arrays)
}

/// Sorts beacons of one table by the table's published sort key.
pub(crate) fn sort_for_table(table: Table, beacons: &mut [&Beacon]) {
    match table {
        Table::Play => beacons.sort_by(|a, b| {
            (a.cdn.as_deref(), &a.room_id, &a.session_id, a.seq).cmp(&(
                b.cdn.as_deref(),
                &b.room_id,
                &b.session_id,
                b.seq,
            ))
        }),
        _ => beacons.sort_by(|a, b| (&a.room_id, &a.session_id, a.seq).cmp(&(&b.room_id, &b.session_id, b.seq))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use qoe_schemas::BeaconType;

    #[test]
    fn every_beacon_table_column_has_an_accessor_and_the_batch_matches_the_schema() {
        let beacon = Beacon {
            v: 1,
            kind: BeaconType::PlayHeartbeat,
            ts: 1_763_800_000_000,
            session_id: "s".into(),
            seq: 3,
            room_id: "r".into(),
            cdn: Some("cdn-a".into()),
            exp: Some(BTreeMap::from([("abr_v2".to_string(), "treatment".to_string())])),
            watch_ms: Some(9000),
            ..Default::default()
        };
        for table in [Table::Play, Table::Push, Table::Room] {
            let batch = beacon_batch(table, &[&beacon]).unwrap();
            assert_eq!(batch.schema(), tables::schema(table));
            assert_eq!(batch.num_rows(), 1);
        }
    }
}
