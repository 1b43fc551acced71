//! The `play_sessions` table: one row per play session, folded from its play beacons.
//!
//! A [`SessionRow`] is a mergeable summary: [`SessionRow::from_beacon`] summarises one beacon and
//! [`SessionRow::merge`] combines two summaries of the same session, whatever the order they arrive in
//! (sums add, firsts keep the earliest by `(event_time, seq)`, lasts keep the latest). The batch job folds
//! the beacons of each flush into the rows already stored, so a session that spans hours or days stays one
//! row, kept in the partition of its `start_time`. Column definitions: `docs/warehouse.md`.

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, MapArray, StringArray, TimestampMillisecondArray,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use qoe_schemas::tables::{self, Table};
use qoe_schemas::{Beacon, BeaconType, ErrorCategory};
use std::collections::BTreeMap;

use crate::columns::{column_as, Cell, ColumnBuilder};

/// What a session's first frame looked like.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub struct FirstFrame {
    /// Event time of the `first_frame` beacon.
    pub time: i64,
    /// Its `seq` (breaks ties in time).
    pub seq: i64,
    /// `first_frame_ms`.
    pub first_frame_ms: Option<i64>,
    /// `dns_ms`.
    pub dns_ms: Option<i64>,
    /// `connect_ms`.
    pub connect_ms: Option<i64>,
    /// `first_packet_ms`.
    pub first_packet_ms: Option<i64>,
    /// `resolver`.
    pub resolver: Option<String>,
}

/// One row of `play_sessions`, or the summary of part of a session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// The play session.
    pub session_id: String,
    /// Its room.
    pub room_id: String,
    /// Earliest event time of the session's beacons, epoch ms.
    pub start_time: i64,
    /// `seq` of that beacon.
    pub first_seq: i64,
    /// Latest event time, epoch ms.
    pub last_time: i64,
    /// Platform of the earliest beacon.
    pub platform: String,
    /// `user_id`, `device_id`, `app_version`, `os`, `device_model`, `network`, `isp`, `region`, `cdn`,
    /// `edge_ip`: each from the earliest beacon that carries it.
    pub attributes: [Option<String>; ATTRIBUTES.len()],
    /// A/B arms, from the earliest beacon that carries them.
    pub exp: Option<BTreeMap<String, String>>,
    /// Beacons folded in.
    pub beacons: i64,
    /// Whether a `play_start` was seen.
    pub has_play_start: bool,
    /// The earliest `first_frame`.
    pub first_frame: Option<FirstFrame>,
    /// `(time, seq, startup_skip_ms, startup_speedup_ms)` of the earliest heartbeat that carried them.
    pub startup: Option<(i64, i64, Option<i64>, Option<i64>)>,
    /// `play_heartbeat` beacons.
    pub heartbeats: i64,
    /// Sum of `watch_ms` over heartbeats and the end.
    pub watch_ms: i64,
    /// Sum of `stall_ms`.
    pub stall_ms: i64,
    /// Sum of `stall_count`.
    pub stall_count: i64,
    /// Sum of `dropped_frames`.
    pub dropped_frames: i64,
    /// Largest heartbeat `latency_ms`.
    pub max_latency_ms: Option<i64>,
    /// `play_error` beacons.
    pub errors: i64,
    /// `(time, seq, code, stage)` of the earliest fatal technical error.
    pub fatal_error: Option<(i64, i64, String, Option<String>)>,
    /// Whether a business error was seen.
    pub business_error: bool,
    /// `(time, seq, reason, first_frame_seen)` of the latest `play_end`.
    pub end: Option<(i64, i64, String, bool)>,
}

/// The string attributes, in column order.
pub const ATTRIBUTES: [&str; 10] = [
    "user_id",
    "device_id",
    "app_version",
    "os",
    "device_model",
    "network",
    "isp",
    "region",
    "cdn",
    "edge_ip",
];

fn int(value: Option<u64>) -> Option<i64> {
    value.map(|value| i64::try_from(value).unwrap_or(i64::MAX))
}

fn earliest<T: PartialOrd>(mine: &mut Option<T>, theirs: Option<T>) {
    if let Some(theirs) = theirs {
        if mine.as_ref().is_none_or(|mine| theirs < *mine) {
            *mine = Some(theirs);
        }
    }
}

impl SessionRow {
    /// The summary of one play beacon.
    pub fn from_beacon(beacon: &Beacon) -> SessionRow {
        let time = int(Some(beacon.event_time_ms())).unwrap_or_default();
        let seq = int(Some(beacon.seq)).unwrap_or_default();
        let is = |kind: BeaconType| beacon.kind == kind;
        let counts = is(BeaconType::PlayHeartbeat) || is(BeaconType::PlayEnd);
        let sum = |value: Option<u64>| if counts { int(value).unwrap_or(0) } else { 0 };
        let first_frame = is(BeaconType::FirstFrame).then(|| FirstFrame {
            time,
            seq,
            first_frame_ms: int(beacon.first_frame_ms),
            dns_ms: int(beacon.dns_ms),
            connect_ms: int(beacon.connect_ms),
            first_packet_ms: int(beacon.first_packet_ms),
            resolver: beacon.resolver.map(|resolver| resolver.as_str().to_string()),
        });
        let carries_startup = beacon.startup_skip_ms.is_some() || beacon.startup_speedup_ms.is_some();
        let is_error = is(BeaconType::PlayError);
        let fatal = is_error && beacon.fatal == Some(true) && beacon.category == Some(ErrorCategory::Technical);
        SessionRow {
            session_id: beacon.session_id.clone(),
            room_id: beacon.room_id.clone(),
            start_time: time,
            first_seq: seq,
            last_time: time,
            platform: beacon.platform.as_str().to_string(),
            attributes: [
                beacon.user_id.clone(),
                beacon.device_id.clone(),
                beacon.app_version.clone(),
                beacon.os.clone(),
                beacon.device_model.clone(),
                beacon.network.map(|network| network.as_str().to_string()),
                beacon.isp.clone(),
                beacon.region.clone(),
                beacon.cdn.clone(),
                beacon.edge_ip.clone(),
            ],
            exp: beacon.exp.clone(),
            beacons: 1,
            has_play_start: is(BeaconType::PlayStart),
            first_frame,
            startup: carries_startup.then(|| (time, seq, int(beacon.startup_skip_ms), int(beacon.startup_speedup_ms))),
            heartbeats: i64::from(is(BeaconType::PlayHeartbeat)),
            watch_ms: sum(beacon.watch_ms),
            stall_ms: sum(beacon.stall_ms),
            stall_count: sum(beacon.stall_count),
            dropped_frames: sum(beacon.dropped_frames),
            max_latency_ms: int(beacon.latency_ms),
            errors: i64::from(is_error),
            fatal_error: fatal.then(|| {
                (
                    time,
                    seq,
                    beacon.code.clone().unwrap_or_default(),
                    beacon.stage.map(|stage| stage.as_str().to_string()),
                )
            }),
            business_error: is_error && beacon.category == Some(ErrorCategory::Business),
            end: is(BeaconType::PlayEnd).then(|| {
                (
                    time,
                    seq,
                    beacon.reason.clone().unwrap_or_default(),
                    beacon.first_frame_seen.unwrap_or(false),
                )
            }),
        }
    }

    /// Folds `other`, a summary of other beacons of the same session, into this one.
    pub fn merge(&mut self, other: SessionRow) {
        let other_is_earlier = (other.start_time, other.first_seq) < (self.start_time, self.first_seq);
        for (mine, theirs) in self.attributes.iter_mut().zip(other.attributes) {
            if theirs.is_some() && (mine.is_none() || other_is_earlier) {
                *mine = theirs;
            }
        }
        if other.exp.is_some() && (self.exp.is_none() || other_is_earlier) {
            self.exp = other.exp;
        }
        if other_is_earlier {
            self.start_time = other.start_time;
            self.first_seq = other.first_seq;
            self.platform = other.platform;
            self.room_id = other.room_id;
        }
        self.last_time = self.last_time.max(other.last_time);
        self.beacons += other.beacons;
        self.has_play_start |= other.has_play_start;
        earliest(&mut self.first_frame, other.first_frame);
        earliest(&mut self.startup, other.startup);
        self.heartbeats += other.heartbeats;
        self.watch_ms += other.watch_ms;
        self.stall_ms += other.stall_ms;
        self.stall_count += other.stall_count;
        self.dropped_frames += other.dropped_frames;
        self.max_latency_ms = self.max_latency_ms.max(other.max_latency_ms);
        self.errors += other.errors;
        earliest(&mut self.fatal_error, other.fatal_error);
        self.business_error |= other.business_error;
        if let Some(theirs) = other.end {
            if self.end.as_ref().is_none_or(|mine| theirs > *mine) {
                self.end = Some(theirs);
            }
        }
    }

    /// Folds one more beacon of the session in: the same as `self.merge(SessionRow::from_beacon(beacon))`,
    /// without building the beacon's summary (strings are copied only where they are kept).
    pub fn fold(&mut self, beacon: &Beacon) {
        let time = int(Some(beacon.event_time_ms())).unwrap_or_default();
        let seq = int(Some(beacon.seq)).unwrap_or_default();
        let is = |kind: BeaconType| beacon.kind == kind;
        let is_earlier = (time, seq) < (self.start_time, self.first_seq);
        let attributes = [
            beacon.user_id.as_deref(),
            beacon.device_id.as_deref(),
            beacon.app_version.as_deref(),
            beacon.os.as_deref(),
            beacon.device_model.as_deref(),
            beacon.network.map(|network| network.as_str()),
            beacon.isp.as_deref(),
            beacon.region.as_deref(),
            beacon.cdn.as_deref(),
            beacon.edge_ip.as_deref(),
        ];
        for (mine, theirs) in self.attributes.iter_mut().zip(attributes) {
            if let Some(theirs) = theirs {
                if mine.is_none() || is_earlier {
                    *mine = Some(theirs.to_string());
                }
            }
        }
        if beacon.exp.is_some() && (self.exp.is_none() || is_earlier) {
            self.exp.clone_from(&beacon.exp);
        }
        if is_earlier {
            self.start_time = time;
            self.first_seq = seq;
            self.platform = beacon.platform.as_str().to_string();
            self.room_id.clone_from(&beacon.room_id);
        }
        self.last_time = self.last_time.max(time);
        self.beacons += 1;
        self.has_play_start |= is(BeaconType::PlayStart);
        let rare = is(BeaconType::FirstFrame)
            || is(BeaconType::PlayError)
            || is(BeaconType::PlayEnd)
            || beacon.startup_skip_ms.is_some()
            || beacon.startup_speedup_ms.is_some();
        if rare {
            // Firsts and lasts: few beacons of a session carry them, so the summary's own merge does it.
            let summary = SessionRow::from_beacon(beacon);
            earliest(&mut self.first_frame, summary.first_frame);
            earliest(&mut self.startup, summary.startup);
            earliest(&mut self.fatal_error, summary.fatal_error);
            self.errors += summary.errors;
            self.business_error |= summary.business_error;
            if let Some(theirs) = summary.end {
                if self.end.as_ref().is_none_or(|mine| theirs > *mine) {
                    self.end = Some(theirs);
                }
            }
        }
        if is(BeaconType::PlayHeartbeat) || is(BeaconType::PlayEnd) {
            self.heartbeats += i64::from(is(BeaconType::PlayHeartbeat));
            self.watch_ms += int(beacon.watch_ms).unwrap_or(0);
            self.stall_ms += int(beacon.stall_ms).unwrap_or(0);
            self.stall_count += int(beacon.stall_count).unwrap_or(0);
            self.dropped_frames += int(beacon.dropped_frames).unwrap_or(0);
        }
        self.max_latency_ms = self.max_latency_ms.max(int(beacon.latency_ms));
    }

    /// Exit before video start: the session ended, never showed a frame, and not because of an error.
    pub fn ebvs(&self) -> bool {
        matches!(&self.end, Some((_, _, reason, first_frame_seen)) if !first_frame_seen && reason != "error")
    }
}

/// Builds a `play_sessions` record batch, rows in the given order.
pub fn sessions_batch(rows: &[&SessionRow]) -> Result<RecordBatch, ArrowError> {
    let schema = tables::schema(Table::PlaySessions);
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (name, column_type, _) in tables::columns(Table::PlaySessions) {
        let mut builder = ColumnBuilder::new(column_type, rows.len());
        for row in rows {
            builder.append(session_cell(row, name))?;
        }
        arrays.push(builder.finish());
    }
    RecordBatch::try_new(schema, arrays)
}

fn session_cell<'a>(row: &'a SessionRow, name: &str) -> Cell<'a> {
    use Cell::{Bool, Int, Map, Str};
    let time = |ms: i64| Int(Some(u64::try_from(ms).unwrap_or_default()));
    let count = |value: i64| Int(Some(u64::try_from(value).unwrap_or_default()));
    let opt = |value: Option<i64>| Int(value.and_then(|value| u64::try_from(value).ok()));
    let first_frame = row.first_frame.as_ref();
    if let Some(index) = ATTRIBUTES.iter().position(|attribute| *attribute == name) {
        return Str(row.attributes[index].as_deref());
    }
    match name {
        "session_id" => Str(Some(&row.session_id)),
        "room_id" => Str(Some(&row.room_id)),
        "start_time" => time(row.start_time),
        "first_seq" => count(row.first_seq),
        "last_time" => time(row.last_time),
        "platform" => Str(Some(&row.platform)),
        "exp" => Map(row.exp.as_ref()),
        "beacons" => count(row.beacons),
        "has_play_start" => Bool(Some(row.has_play_start)),
        "first_frame_time" => opt(first_frame.map(|frame| frame.time)),
        "first_frame_ms" => opt(first_frame.and_then(|frame| frame.first_frame_ms)),
        "dns_ms" => opt(first_frame.and_then(|frame| frame.dns_ms)),
        "connect_ms" => opt(first_frame.and_then(|frame| frame.connect_ms)),
        "first_packet_ms" => opt(first_frame.and_then(|frame| frame.first_packet_ms)),
        "resolver" => Str(first_frame.and_then(|frame| frame.resolver.as_deref())),
        "startup_skip_ms" => opt(row.startup.and_then(|startup| startup.2)),
        "startup_speedup_ms" => opt(row.startup.and_then(|startup| startup.3)),
        "heartbeats" => count(row.heartbeats),
        "watch_ms" => count(row.watch_ms),
        "stall_ms" => count(row.stall_ms),
        "stall_count" => count(row.stall_count),
        "dropped_frames" => count(row.dropped_frames),
        "max_latency_ms" => opt(row.max_latency_ms),
        "errors" => count(row.errors),
        "fatal_error" => Bool(Some(row.fatal_error.is_some())),
        "fatal_error_code" => Str(row.fatal_error.as_ref().map(|error| error.2.as_str())),
        "fatal_error_stage" => Str(row.fatal_error.as_ref().and_then(|error| error.3.as_deref())),
        "business_error" => Bool(Some(row.business_error)),
        "end_time" => opt(row.end.as_ref().map(|end| end.0)),
        "end_reason" => Str(row.end.as_ref().map(|end| end.2.as_str())),
        "first_frame_seen" => Bool(row.end.as_ref().map(|end| end.3)),
        "ebvs" => Bool(Some(row.ebvs())),
        // Every column is listed above; an unknown name is a bug the round-trip test catches.
        _ => Str(None),
    }
}

/// Reads `play_sessions` rows back from a record batch of the published schema.
pub fn rows_from_batch(batch: &RecordBatch) -> Result<Vec<SessionRow>, ArrowError> {
    let text = |name| column_as::<StringArray>(batch, name);
    let ints = |name| column_as::<Int64Array>(batch, name);
    let times = |name| column_as::<TimestampMillisecondArray>(batch, name);
    let bools = |name| column_as::<BooleanArray>(batch, name);
    let get_text = |array: &StringArray, row: usize| array.is_valid(row).then(|| array.value(row).to_string());
    let get_int = |array: &Int64Array, row: usize| array.is_valid(row).then(|| array.value(row));
    let get_time = |array: &TimestampMillisecondArray, row: usize| array.is_valid(row).then(|| array.value(row));
    let get_bool = |array: &BooleanArray, row: usize| array.is_valid(row).then(|| array.value(row));

    let mut attribute_arrays = Vec::with_capacity(ATTRIBUTES.len());
    for name in ATTRIBUTES {
        attribute_arrays.push(text(name)?);
    }
    let exp = column_as::<MapArray>(batch, "exp")?;
    let (session_id, room_id, platform) = (text("session_id")?, text("room_id")?, text("platform")?);
    let (start_time, last_time, first_frame_time, end_time) = (
        times("start_time")?,
        times("last_time")?,
        times("first_frame_time")?,
        times("end_time")?,
    );
    let (resolver, code, stage, end_reason) = (
        text("resolver")?,
        text("fatal_error_code")?,
        text("fatal_error_stage")?,
        text("end_reason")?,
    );
    let int_names = [
        "first_seq",
        "beacons",
        "first_frame_ms",
        "dns_ms",
        "connect_ms",
        "first_packet_ms",
        "startup_skip_ms",
        "startup_speedup_ms",
        "heartbeats",
        "watch_ms",
        "stall_ms",
        "stall_count",
        "dropped_frames",
        "max_latency_ms",
        "errors",
    ];
    let mut int_arrays = Vec::with_capacity(int_names.len());
    for name in int_names {
        int_arrays.push(ints(name)?);
    }
    let i = |name: &str, row: usize| {
        let index = int_names
            .iter()
            .position(|candidate| *candidate == name)
            .unwrap_or_default();
        get_int(int_arrays[index], row)
    };
    let (has_play_start, fatal, business, first_frame_seen) = (
        bools("has_play_start")?,
        bools("fatal_error")?,
        bools("business_error")?,
        bools("first_frame_seen")?,
    );

    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut attributes: [Option<String>; ATTRIBUTES.len()] = Default::default();
        for (slot, array) in attributes.iter_mut().zip(&attribute_arrays) {
            *slot = get_text(array, row);
        }
        let exp_row = exp.is_valid(row).then(|| {
            let entries = exp.value(row);
            let keys = entries.column(0).as_string::<i32>();
            let values = entries.column(1).as_string::<i32>();
            (0..entries.len())
                .map(|entry| (keys.value(entry).to_string(), values.value(entry).to_string()))
                .collect::<BTreeMap<_, _>>()
        });
        let first_frame = get_time(first_frame_time, row).map(|time| FirstFrame {
            time,
            seq: i64::MIN,
            first_frame_ms: i("first_frame_ms", row),
            dns_ms: i("dns_ms", row),
            connect_ms: i("connect_ms", row),
            first_packet_ms: i("first_packet_ms", row),
            resolver: get_text(resolver, row),
        });
        let skip = i("startup_skip_ms", row);
        let speedup = i("startup_speedup_ms", row);
        let end = get_time(end_time, row).map(|time| {
            (
                time,
                i64::MAX,
                get_text(end_reason, row).unwrap_or_default(),
                get_bool(first_frame_seen, row).unwrap_or(false),
            )
        });
        let start = start_time.value(row);
        rows.push(SessionRow {
            session_id: session_id.value(row).to_string(),
            room_id: room_id.value(row).to_string(),
            start_time: start,
            first_seq: i("first_seq", row).unwrap_or_default(),
            last_time: last_time.value(row),
            platform: platform.value(row).to_string(),
            attributes,
            exp: exp_row,
            beacons: i("beacons", row).unwrap_or_default(),
            has_play_start: has_play_start.value(row),
            first_frame,
            // A stored row keeps the startup values, not the time of the heartbeat that carried them: it
            // counts as at the session start, so a later flush never replaces them.
            startup: (skip.is_some() || speedup.is_some()).then_some((start, i64::MIN, skip, speedup)),
            heartbeats: i("heartbeats", row).unwrap_or_default(),
            watch_ms: i("watch_ms", row).unwrap_or_default(),
            stall_ms: i("stall_ms", row).unwrap_or_default(),
            stall_count: i("stall_count", row).unwrap_or_default(),
            dropped_frames: i("dropped_frames", row).unwrap_or_default(),
            max_latency_ms: i("max_latency_ms", row),
            errors: i("errors", row).unwrap_or_default(),
            fatal_error: fatal.value(row).then(|| {
                (
                    start,
                    i64::MIN,
                    get_text(code, row).unwrap_or_default(),
                    get_text(stage, row),
                )
            }),
            business_error: business.value(row),
            end,
        });
    }
    Ok(rows)
}
