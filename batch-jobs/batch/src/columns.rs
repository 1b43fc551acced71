//! Beacons to Arrow record batches that follow the published schemas of [`qoe_schemas::tables`].
//!
//! Each column is filled by an accessor chosen once per column (a function pointer), so appending a
//! beacon costs one call per cell and no name lookups. Beacons are appended on the thread that parsed
//! them ([`TableBuffer`], unsorted); a partition's rows for a flush ([`PartitionRows`]) are those
//! batches with the rows the job accepted, sorted and gathered once, when it is flushed, by a
//! permutation over integer ranks of the key columns.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Array, Int64Builder, MapBuilder, StringArray, StringBuilder,
    TimestampMillisecondBuilder,
};
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

/// The buffered rows of one beacon-table partition, column by column: a beacon is appended as it is
/// accepted, so the job keeps columns, not beacons, between flushes.
pub(crate) struct TableBuffer {
    table: Table,
    columns: Vec<(Accessor, ColumnBuilder)>,
    rows: usize,
}

impl std::fmt::Debug for TableBuffer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TableBuffer")
            .field("table", &self.table)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Rows a column builder has room for before it first grows: small, because a flush can hold many
/// partitions of a few late beacons each, and the builders double as they fill.
pub(crate) const INITIAL_ROWS: usize = 256;

impl TableBuffer {
    /// An empty buffer for `table`, one of the beacon tables.
    pub(crate) fn new(table: Table) -> Result<Self, ArrowError> {
        Self::with_capacity(table, INITIAL_ROWS)
    }

    /// An empty buffer for `table` with room for `rows` rows before it first grows.
    pub(crate) fn with_capacity(table: Table, rows: usize) -> Result<Self, ArrowError> {
        let mut columns = Vec::new();
        for (name, column_type, _) in tables::columns(table) {
            let Some(get) = accessor(name) else {
                return Err(ArrowError::SchemaError(format!("column {name:?} is no beacon field")));
            };
            columns.push((get, ColumnBuilder::new(column_type, rows)));
        }
        Ok(TableBuffer {
            table,
            columns,
            rows: 0,
        })
    }

    /// Appends one beacon of the table's family.
    pub(crate) fn push(&mut self, beacon: &Beacon) -> Result<(), ArrowError> {
        for (get, builder) in &mut self.columns {
            builder.append(get(beacon))?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows buffered.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// The record batch of the buffered rows, in the order they were appended.
    pub(crate) fn finish(self) -> Result<RecordBatch, ArrowError> {
        let arrays = self.columns.into_iter().map(|(_, builder)| builder.finish()).collect();
        RecordBatch::try_new(tables::schema(self.table), arrays)
    }
}

/// The rows of one beacon-table partition waiting for a flush: record batches of parsed beacons with
/// the rows of each the job accepted (in arrival order), and a buffer for beacons offered one at a
/// time, appended after them.
pub(crate) struct PartitionRows {
    table: Table,
    segments: Vec<(RecordBatch, Vec<u32>)>,
    open: Option<TableBuffer>,
}

impl std::fmt::Debug for PartitionRows {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PartitionRows")
            .field("table", &self.table)
            .field("segments", &self.segments.len())
            .finish_non_exhaustive()
    }
}

impl PartitionRows {
    /// No rows yet, of `table`, one of the beacon tables.
    pub(crate) fn new(table: Table) -> Self {
        PartitionRows {
            table,
            segments: Vec::new(),
            open: None,
        }
    }

    /// Appends one beacon of the table's family.
    pub(crate) fn push(&mut self, beacon: &Beacon) -> Result<(), ArrowError> {
        let open = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(TableBuffer::new(self.table)?),
        };
        open.push(beacon)
    }

    /// Appends the rows `rows` (ascending) of `batch`, a batch of this table's schema.
    pub(crate) fn add(&mut self, batch: RecordBatch, rows: Vec<u32>) -> Result<(), ArrowError> {
        self.close_open()?;
        self.segments.push((batch, rows));
        Ok(())
    }

    fn close_open(&mut self) -> Result<(), ArrowError> {
        if let Some(open) = self.open.take() {
            let rows = u32::try_from(open.rows())
                .map_err(|_| ArrowError::ComputeError(format!("{} rows do not fit one batch", open.rows())))?;
            self.segments.push((open.finish()?, (0..rows).collect()));
        }
        Ok(())
    }

    /// Rows held.
    #[cfg(test)]
    pub(crate) fn rows(&self) -> usize {
        let segments: usize = self.segments.iter().map(|(_, rows)| rows.len()).sum();
        segments + self.open.as_ref().map_or(0, TableBuffer::rows)
    }

    /// The rows in the order of the table's published sort key (rows equal in the key keep their
    /// arrival order), to be gathered column by column.
    pub(crate) fn into_sorted(mut self) -> Result<SortedRows, ArrowError> {
        self.close_open()?;
        let order = sort_order(self.table, &self.segments)?;
        let batches = self.segments.into_iter().map(|(batch, _)| batch).collect();
        Ok(SortedRows {
            table: self.table,
            batches,
            order,
        })
    }

    /// One record batch of the rows, sorted (see [`PartitionRows::into_sorted`]).
    #[cfg(test)]
    pub(crate) fn finish_sorted(self) -> Result<RecordBatch, ArrowError> {
        let sorted = self.into_sorted()?;
        if sorted.batches.is_empty() {
            return Ok(RecordBatch::new_empty(tables::schema(sorted.table)));
        }
        let batches: Vec<&RecordBatch> = sorted.batches.iter().collect();
        arrow::compute::interleave_record_batch(&batches, &sorted.order)
    }
}

/// A partition's rows in sort order: which (batch, row) comes next, and the batches.
pub(crate) struct SortedRows {
    table: Table,
    batches: Vec<RecordBatch>,
    order: Vec<(usize, usize)>,
}

impl SortedRows {
    /// The beacon table.
    pub(crate) fn table(&self) -> Table {
        self.table
    }

    /// Rows.
    pub(crate) fn rows(&self) -> usize {
        self.order.len()
    }

    /// Column `column` (by schema position) of the sorted rows `range`.
    pub(crate) fn column(&self, column: usize, range: std::ops::Range<usize>) -> Result<ArrayRef, ArrowError> {
        let arrays: Vec<&dyn Array> = self.batches.iter().map(|batch| batch.column(column).as_ref()).collect();
        arrow::compute::interleave(&arrays, &self.order[range])
    }
}

/// Column `name` of `batch` as its concrete array type, looked up by name (a projection keeps a file's
/// column order).
pub(crate) fn column_as<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|array| array.as_any().downcast_ref::<T>())
        .ok_or_else(|| ArrowError::SchemaError(format!("column {name:?} missing or mistyped")))
}

/// The chosen rows of `segments` as (segment, row) in the order of the table's sort key: `cdn` (nulls
/// first; `play` only), then `room_id`, `session_id`, `seq`, then arrival order. Strings are compared
/// through their rank among the distinct values, so the sort compares integers, not strings.
fn sort_order(table: Table, segments: &[(RecordBatch, Vec<u32>)]) -> Result<Vec<(usize, usize)>, ArrowError> {
    let total: usize = segments.iter().map(|(_, rows)| rows.len()).sum();
    let by_cdn = table == Table::Play;
    let (mut cdns, mut rooms, mut sessions) = (Vec::new(), Vec::with_capacity(total), Vec::with_capacity(total));
    let mut seqs = Vec::with_capacity(total);
    let mut places = Vec::with_capacity(total);
    for (segment, (batch, rows)) in segments.iter().enumerate() {
        let cdn = if by_cdn {
            Some(column_as::<StringArray>(batch, "cdn")?)
        } else {
            None
        };
        let room = column_as::<StringArray>(batch, "room_id")?;
        let session = column_as::<StringArray>(batch, "session_id")?;
        let seq = column_as::<Int64Array>(batch, "seq")?;
        for &row in rows {
            let at = row as usize;
            if let Some(cdn) = cdn {
                cdns.push(cdn.is_valid(at).then(|| cdn.value(at)));
            }
            rooms.push(room.is_valid(at).then(|| room.value(at)));
            sessions.push(session.is_valid(at).then(|| session.value(at)));
            seqs.push(seq.value(at));
            places.push((segment, at));
        }
    }
    let cdn_ranks = if by_cdn { ranks(&cdns) } else { vec![0; total] };
    let room_ranks = ranks(&rooms);
    let session_ranks = ranks(&sessions);
    let mut keys: Vec<(u32, u32, u32, i64, usize)> = (0..total)
        .map(|at| (cdn_ranks[at], room_ranks[at], session_ranks[at], seqs[at], at))
        .collect();
    keys.sort_unstable();
    Ok(keys.into_iter().map(|key| places[key.4]).collect())
}

/// Each value's rank among the distinct values in byte order, from 1; 0 for null.
fn ranks(values: &[Option<&str>]) -> Vec<u32> {
    let mut ids: HashMap<&str, u32, foldhash::fast::RandomState> = HashMap::default();
    let value_ids: Vec<u32> = values
        .iter()
        .map(|value| {
            let Some(value) = value else { return u32::MAX };
            let next = u32::try_from(ids.len()).unwrap_or(u32::MAX - 1);
            *ids.entry(value).or_insert(next)
        })
        .collect();
    let mut distinct: Vec<(&str, u32)> = ids.into_iter().collect();
    distinct.sort_unstable();
    let mut rank_of_id = vec![0; distinct.len()];
    for (rank, (_, id)) in distinct.iter().enumerate() {
        rank_of_id[*id as usize] = u32::try_from(rank + 1).unwrap_or(u32::MAX);
    }
    value_ids
        .into_iter()
        .map(|id| if id == u32::MAX { 0 } else { rank_of_id[id as usize] })
        .collect()
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
            let mut rows = PartitionRows::new(table);
            rows.push(&beacon).unwrap();
            let batch = rows.finish_sorted().unwrap();
            assert_eq!(batch.schema(), tables::schema(table));
            assert_eq!(batch.num_rows(), 1);
        }
    }

    /// The rank sort against a plain sort of the key tuples (strings compared as strings, `None` first,
    /// ties in arrival order).
    #[test]
    fn rows_come_out_in_sort_key_order() {
        let cdns = [None, Some("cdn-b"), Some("cdn-a"), Some("cdn-aa"), Some("")];
        let rooms = ["r2", "r10", "r1", "r1"];
        let sessions = ["s-3", "s-1", "s-20", "s-2", "s-1"];
        let mut beacons = Vec::new();
        for i in 0..400u64 {
            let pick = |n: u64| usize::try_from((i * 7919 + n * 104_729) % 9973).unwrap();
            beacons.push(Beacon {
                v: 1,
                kind: BeaconType::PlayHeartbeat,
                ts: 1_763_800_000_000 + i,
                session_id: sessions[pick(1) % sessions.len()].into(),
                seq: (pick(2) % 6) as u64,
                room_id: rooms[pick(3) % rooms.len()].into(),
                cdn: cdns[pick(4) % cdns.len()].map(String::from),
                ..Default::default()
            });
        }
        for table in [Table::Play, Table::Room] {
            // Three parsed batches with some of their rows accepted, beacons offered one by one, and a
            // parsed batch with all its rows accepted.
            let mut rows = PartitionRows::new(table);
            let mut accepted = Vec::new();
            for part in beacons[..300].chunks(100) {
                let mut buffer = TableBuffer::new(table).unwrap();
                for beacon in part {
                    buffer.push(beacon).unwrap();
                }
                let kept: Vec<u32> = (0..100).filter(|row| row % 3 != 1).collect();
                accepted.extend(kept.iter().map(|row| &part[*row as usize]));
                // One batch in two segments, as a flush in the middle of a block leaves it.
                let (before, after) = kept.split_at(kept.len() / 2);
                let batch = buffer.finish().unwrap();
                rows.add(batch.clone(), before.to_vec()).unwrap();
                rows.add(batch, after.to_vec()).unwrap();
            }
            for beacon in &beacons[300..350] {
                rows.push(beacon).unwrap();
                accepted.push(beacon);
            }
            let mut last = TableBuffer::new(table).unwrap();
            for beacon in &beacons[350..] {
                last.push(beacon).unwrap();
                accepted.push(beacon);
            }
            rows.add(last.finish().unwrap(), (0..50).collect()).unwrap();
            assert_eq!(rows.rows(), accepted.len());
            let batch = rows.finish_sorted().unwrap();
            let mut expected = accepted;
            match table {
                Table::Play => expected.sort_by_key(|b| (b.cdn.as_deref(), &b.room_id, &b.session_id, b.seq)),
                _ => expected.sort_by_key(|b| (&b.room_id, &b.session_id, b.seq)),
            }
            let times = column_as::<arrow::array::TimestampMillisecondArray>(&batch, "ts").unwrap();
            let got: Vec<u64> = times.values().iter().map(|ts| *ts as u64).collect();
            let want: Vec<u64> = expected.iter().map(|b| b.ts).collect();
            assert_eq!(got, want, "{table:?}");
        }
    }
}
