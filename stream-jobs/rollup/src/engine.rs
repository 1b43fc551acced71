//! The windowing engine: beacons in (with their partition and offset), rollup documents and
//! checkpoints out. No IO and no clock: the driver passes processing time in.
//!
//! ## Windows and lateness
//! Event-time tumbling windows of [`EngineConfig::window_ms`]. Each partition has a watermark, its
//! largest event time so far minus [`EngineConfig::allowed_lateness_ms`]; a beacon whose window ends
//! at or before its partition's watermark is **late**: counted in [`EngineStats::late`] and dropped.
//! Judging lateness per partition makes the decision a function of the partition's own record
//! sequence, so a replay from a checkpoint decides it the same way. A window closes when it ends at or
//! before the smallest watermark of the partitions that are not idle (no record for
//! [`EngineConfig::idle_timeout_ms`] of processing time); when every partition is idle, event time
//! moves on with processing time from the newest record (so live data closes its last windows, and a
//! paused backfill of old data moves on only by the length of the pause). A beacon that arrives for a window already
//! closed (possible only from a partition that was idle) is late too.
//!
//! ## De-duplication
//! `(session_id, seq)` is remembered for [`EngineConfig::dedup_horizon_ms`] of event time after the
//! window of its beacon closed; a repeat within that horizon is counted in
//! [`EngineStats::duplicates`] and dropped.
//!
//! ## Delivery
//! A closed window's final documents are handed out once by [`Engine::poll`]; the driver writes them
//! to every output and then calls [`Engine::acknowledge`]. [`Engine::checkpoint`] says where a
//! restarted engine must resume so that nothing is lost or counted twice: `closed_through_ms`, before
//! which every window's final documents were acknowledged (their beacons are skipped on replay as
//! [`Offer::AlreadyFinal`]), and per partition the offset of the first record of a window not yet
//! acknowledged, with the partition's largest event time before it (so the replay judges lateness as
//! the first run did). Every record of a window at or after `closed_through_ms` lies at or after its
//! partition's offset, so the restarted engine rebuilds those windows whole and writes the same
//! documents, with the same ids, over any it had written before.

use std::collections::{BTreeMap, HashMap};

use qoe_schemas::{Beacon, Family};
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::{xxh3_128, xxh3_128_with_seed, xxh3_64};

use crate::accumulator::{Accumulator, SessionSet};
use crate::doc::{Grain, RollupDoc, UNKNOWN};
use crate::RollupError;

/// How the engine windows, judges lateness and filters.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Window length, ms (a whole number of seconds, 1 s to 1 h).
    pub window_ms: i64,
    /// How far behind a partition's largest event time a beacon may be and still count, ms.
    pub allowed_lateness_ms: i64,
    /// A partition without a record for this long (processing time) no longer holds windows open, ms.
    pub idle_timeout_ms: i64,
    /// How long `(session_id, seq)` is remembered after its window closed (event time), ms.
    pub dedup_horizon_ms: i64,
    /// Grain `room` documents are written only for rooms with at least this many distinct play
    /// sessions in the window (over all their CDNs).
    pub room_min_viewers: u64,
    /// Relative accuracy of the percentile sketches.
    pub relative_accuracy: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            window_ms: 60_000,
            allowed_lateness_ms: 5_000,
            idle_timeout_ms: 30_000,
            dedup_horizon_ms: 600_000,
            room_min_viewers: 20,
            relative_accuracy: qoe_sketch::DEFAULT_RELATIVE_ACCURACY,
        }
    }
}

impl EngineConfig {
    /// Checks every setting, naming the first bad one.
    pub fn check(&self) -> Result<(), RollupError> {
        let bad = |setting: &'static str, problem: String| Err(RollupError::Config { setting, problem });
        if !(1_000..=3_600_000).contains(&self.window_ms) || self.window_ms % 1_000 != 0 {
            return bad(
                "window_ms",
                format!("must be whole seconds from 1 s to 1 h, got {}", self.window_ms),
            );
        }
        for (setting, value) in [
            ("allowed_lateness_ms", self.allowed_lateness_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
            ("dedup_horizon_ms", self.dedup_horizon_ms),
        ] {
            if value < 0 {
                return bad(setting, format!("must not be negative, got {value}"));
            }
        }
        if qoe_sketch::Sketch::new(self.relative_accuracy).is_err() || self.relative_accuracy > 0.01 {
            return bad(
                "relative_accuracy",
                format!("must be above 0 and at most 0.01, got {}", self.relative_accuracy),
            );
        }
        Ok(())
    }
}

/// What became of an offered beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Added to its window.
    Counted,
    /// A repeat of `(session_id, seq)`: dropped.
    Duplicate,
    /// Its window had closed: dropped.
    Late,
    /// Its window's final documents were acknowledged before the checkpoint this engine resumed
    /// from: a replayed record, dropped.
    AlreadyFinal,
}

/// Counters since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Beacons added to a window.
    pub counted: u64,
    /// Repeats dropped.
    pub duplicates: u64,
    /// Late beacons dropped.
    pub late: u64,
    /// Replayed beacons of windows already final.
    pub already_final: u64,
    /// Final windows handed out.
    pub windows_closed: u64,
    /// Documents handed out, early and final.
    pub documents: u64,
}

/// Where a restarted engine resumes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Windows starting before this time (epoch ms) are final and acknowledged.
    pub closed_through_ms: i64,
    /// Per partition, where to resume.
    pub partitions: BTreeMap<i32, PartitionCheckpoint>,
}

/// Where one partition resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionCheckpoint {
    /// The next offset to read.
    pub offset: i64,
    /// The largest event time of the records before `offset`, if any.
    pub max_event_ms: Option<i64>,
}

/// Documents of one window, handed out by [`Engine::poll`], [`Engine::early`] or [`Engine::finish`].
#[derive(Debug, Clone, PartialEq)]
pub struct Emission {
    /// Window start, epoch ms.
    pub window_start_ms: i64,
    /// Whether these are the window's final documents (to acknowledge with [`Engine::acknowledge`]).
    pub is_final: bool,
    /// The documents, in grain and dimension order.
    pub docs: Vec<RollupDoc>,
}

/// `last_seen_ms` of a partition restored from a checkpoint: it counts as active until the first
/// [`Engine::poll`] starts its idle timeout, so that it holds the windows it may still fill.
const NOT_SEEN_SINCE_START: i64 = i64::MAX;

/// `next_offset` of a partition declared by [`Engine::expect_partitions`] and not read yet: it has
/// nothing to resume from, so it stays out of the checkpoint (a restored partition at offset 0 does
/// not).
const UNREAD: i64 = -1;

#[derive(Debug, Clone, Copy)]
struct PartitionState {
    /// The next offset to read.
    next_offset: i64,
    /// The largest event time so far.
    max_event_ms: Option<i64>,
    /// Processing time of the last record.
    last_seen_ms: i64,
}

/// One key's accumulator.
#[derive(Debug)]
struct Entry {
    grain: Grain,
    dims: Vec<String>,
    accumulator: Accumulator,
}

/// An open window.
#[derive(Debug, Default)]
struct Window {
    index: HashMap<u128, usize, foldhash::fast::RandomState>,
    entries: Vec<Entry>,
    /// Per partition, the offset of its first record here and the partition's largest event time
    /// before that record.
    first_records: BTreeMap<i32, PartitionCheckpoint>,
}

/// The windowing engine (see the module documentation).
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    windows: BTreeMap<i64, Window>,
    /// Closed windows whose final documents are not acknowledged yet, with their first records.
    pending: BTreeMap<i64, BTreeMap<i32, PartitionCheckpoint>>,
    partitions: BTreeMap<i32, PartitionState>,
    /// Every window starting before this is closed.
    closed_through_ms: i64,
    /// Windows starting before this were final before the checkpoint the engine resumed from.
    resumed_through_ms: i64,
    /// `(session_id, seq)` hashes and the window of their beacon.
    seen: HashMap<u128, i64, foldhash::fast::RandomState>,
    /// The oldest window start in `seen` (it is scanned only when that window expires).
    oldest_seen: i64,
    stats: EngineStats,
    key_buffer: Vec<u8>,
}

impl Engine {
    /// An engine resuming from `checkpoint` (`None`: from the beginning).
    pub fn new(config: EngineConfig, checkpoint: Option<&Checkpoint>) -> Result<Self, RollupError> {
        config.check()?;
        let mut engine = Engine {
            config,
            windows: BTreeMap::new(),
            pending: BTreeMap::new(),
            partitions: BTreeMap::new(),
            closed_through_ms: i64::MIN,
            resumed_through_ms: i64::MIN,
            seen: HashMap::default(),
            oldest_seen: i64::MAX,
            stats: EngineStats::default(),
            key_buffer: Vec::with_capacity(256),
        };
        if let Some(checkpoint) = checkpoint {
            engine.closed_through_ms = checkpoint.closed_through_ms;
            engine.resumed_through_ms = checkpoint.closed_through_ms;
            for (partition, resume) in &checkpoint.partitions {
                engine.partitions.insert(
                    *partition,
                    PartitionState {
                        next_offset: resume.offset,
                        max_event_ms: resume.max_event_ms,
                        last_seen_ms: NOT_SEEN_SINCE_START,
                    },
                );
            }
        }
        Ok(engine)
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Counters since the start.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Open windows and their keys.
    pub fn open_windows(&self) -> (usize, usize) {
        let keys = self.windows.values().map(|window| window.entries.len()).sum();
        (self.windows.len(), keys)
    }

    fn window_start(&self, event_ms: i64) -> i64 {
        event_ms.div_euclid(self.config.window_ms) * self.config.window_ms
    }

    /// Declares the partitions the input reads, before their first record: each one holds the
    /// watermark until it delivers a beacon or goes idle ([`EngineConfig::idle_timeout_ms`] from
    /// now). Without it, a partition whose records come later (a backlog fetched partition by
    /// partition) would find its windows closed by the partitions read first.
    pub fn expect_partitions(&mut self, partitions: &[i32], now_ms: i64) {
        for partition in partitions {
            self.partitions.entry(*partition).or_insert(PartitionState {
                next_offset: UNREAD,
                max_event_ms: None,
                last_seen_ms: now_ms,
            });
        }
    }

    /// Records that the record at `offset` of `partition` was read but holds no beacon (it was
    /// rejected), so a checkpoint may move past it.
    pub fn skip(&mut self, partition: i32, offset: i64, now_ms: i64) {
        let state = self.partition(partition, now_ms);
        state.next_offset = state.next_offset.max(offset + 1);
    }

    fn partition(&mut self, partition: i32, now_ms: i64) -> &mut PartitionState {
        let state = self.partitions.entry(partition).or_insert(PartitionState {
            next_offset: 0,
            max_event_ms: None,
            last_seen_ms: now_ms,
        });
        state.last_seen_ms = now_ms;
        state
    }

    /// Offers the beacon read at `offset` of `partition` at processing time `now_ms`.
    pub fn offer(&mut self, partition: i32, offset: i64, beacon: &Beacon, now_ms: i64) -> Offer {
        let event_ms = beacon.event_time_ms() as i64;
        let window_start = self.window_start(event_ms);
        let window_end = window_start + self.config.window_ms;
        let lateness = self.config.allowed_lateness_ms;
        let state = self.partition(partition, now_ms);
        // The partition's largest event time before this record: what lateness is judged against.
        let max_event_before = state.max_event_ms;
        state.next_offset = state.next_offset.max(offset + 1);
        state.max_event_ms = Some(max_event_before.map_or(event_ms, |max| max.max(event_ms)));
        if window_start < self.resumed_through_ms {
            self.stats.already_final += 1;
            return Offer::AlreadyFinal;
        }
        let partition_watermark = max_event_before.map(|max| max - lateness);
        let behind_partition = partition_watermark.is_some_and(|watermark| window_end <= watermark);
        if behind_partition || window_start < self.closed_through_ms {
            self.stats.late += 1;
            return Offer::Late;
        }
        let identity = xxh3_128_with_seed(beacon.session_id.as_bytes(), beacon.seq);
        self.oldest_seen = self.oldest_seen.min(window_start);
        if self.seen.insert(identity, window_start).is_some() {
            self.stats.duplicates += 1;
            return Offer::Duplicate;
        }
        self.stats.counted += 1;
        let session = xxh3_64(beacon.session_id.as_bytes());
        let alpha = self.config.relative_accuracy;
        let mut key_buffer = std::mem::take(&mut self.key_buffer);
        let window = self.windows.entry(window_start).or_default();
        window.first_records.entry(partition).or_insert(PartitionCheckpoint {
            offset,
            max_event_ms: max_event_before,
        });
        for_each_key(beacon, |grain, dims| {
            key_buffer.clear();
            key_buffer.push(grain as u8);
            for dim in dims {
                key_buffer.extend_from_slice(&(dim.len() as u32).to_le_bytes());
                key_buffer.extend_from_slice(dim.as_bytes());
            }
            let hash = xxh3_128(&key_buffer);
            let at = *window.index.entry(hash).or_insert_with(|| {
                window.entries.push(Entry {
                    grain,
                    dims: dims.iter().map(|dim| dim.to_string()).collect(),
                    accumulator: Accumulator::default(),
                });
                window.entries.len() - 1
            });
            window.entries[at].accumulator.add(beacon, session, alpha);
        });
        self.key_buffer = key_buffer;
        Offer::Counted
    }

    /// The event time before which windows close now.
    fn watermark(&self, now_ms: i64) -> Option<i64> {
        let lateness = self.config.allowed_lateness_ms;
        let idle_after = self.config.idle_timeout_ms;
        let mut active: Option<i64> = None;
        let mut any_active = false;
        for state in self
            .partitions
            .values()
            .filter(|state| now_ms.saturating_sub(state.last_seen_ms) < idle_after)
        {
            any_active = true;
            // An active partition that has not delivered a beacon yet (declared by
            // `expect_partitions`, or only rejected records so far) holds every window.
            let max = state.max_event_ms?;
            active = Some(active.map_or(max - lateness, |seen| seen.min(max - lateness)));
        }
        if any_active {
            return active;
        }
        // Every partition is idle: event time moves on with processing time from the newest record
        // (live data closes its last windows; a paused backfill only by the pause).
        let newest = self
            .partitions
            .values()
            .filter_map(|state| state.max_event_ms.map(|max| (max, state.last_seen_ms)))
            .max_by_key(|(max, _)| *max)?;
        let (max_event_ms, seen_ms) = newest;
        let idle_for = now_ms.saturating_sub(seen_ms).max(0);
        Some(max_event_ms.saturating_add(idle_for) - lateness)
    }

    /// Closes the windows the watermark has passed and hands out their final documents.
    pub fn poll(&mut self, now_ms: i64) -> Vec<Emission> {
        for state in self.partitions.values_mut() {
            if state.last_seen_ms == NOT_SEEN_SINCE_START {
                state.last_seen_ms = now_ms;
            }
        }
        let Some(watermark) = self.watermark(now_ms) else {
            return Vec::new();
        };
        let window_ms = self.config.window_ms;
        let closing: Vec<i64> = self
            .windows
            .keys()
            .copied()
            .take_while(|start| start + window_ms <= watermark)
            .collect();
        let closed_through = watermark.div_euclid(window_ms) * window_ms;
        self.close(closing, closed_through)
    }

    /// Closes every open window (the input ended) and hands out their final documents.
    pub fn finish(&mut self) -> Vec<Emission> {
        let closing: Vec<i64> = self.windows.keys().copied().collect();
        let closed_through = closing.last().map_or(i64::MIN, |last| last + self.config.window_ms);
        self.close(closing, closed_through)
    }

    fn close(&mut self, closing: Vec<i64>, closed_through: i64) -> Vec<Emission> {
        self.closed_through_ms = self.closed_through_ms.max(closed_through);
        let mut emissions = Vec::with_capacity(closing.len());
        for start in closing {
            let Some(window) = self.windows.remove(&start) else {
                continue;
            };
            let docs = self.documents(start, &window, true);
            self.stats.windows_closed += 1;
            self.stats.documents += docs.len() as u64;
            self.pending.insert(start, window.first_records);
            emissions.push(Emission {
                window_start_ms: start,
                is_final: true,
                docs,
            });
        }
        let forget_before = self.closed_through_ms.saturating_sub(self.config.dedup_horizon_ms);
        if self.oldest_seen < forget_before {
            self.seen.retain(|_, start| *start >= forget_before);
            self.oldest_seen = self.seen.values().copied().min().unwrap_or(i64::MAX);
        }
        emissions
    }

    /// Early (not final) documents of every open window.
    pub fn early(&mut self) -> Vec<Emission> {
        let emissions: Vec<Emission> = self
            .windows
            .iter()
            .map(|(start, window)| Emission {
                window_start_ms: *start,
                is_final: false,
                docs: self.documents(*start, window, false),
            })
            .collect();
        self.stats.documents += emissions.iter().map(|emission| emission.docs.len() as u64).sum::<u64>();
        emissions
    }

    /// Says that every output has the final documents of the window starting at `window_start_ms`.
    pub fn acknowledge(&mut self, window_start_ms: i64) {
        self.pending.remove(&window_start_ms);
    }

    /// Where a restarted engine must resume (see the module documentation).
    pub fn checkpoint(&self) -> Checkpoint {
        let unfinished = self.pending.iter().chain(
            self.windows
                .iter()
                .map(|(start, window)| (start, &window.first_records)),
        );
        let mut closed_through_ms = self.closed_through_ms;
        let mut partitions: BTreeMap<i32, PartitionCheckpoint> = self
            .partitions
            .iter()
            .filter(|(_, state)| state.next_offset != UNREAD)
            .map(|(partition, state)| {
                let resume = PartitionCheckpoint {
                    offset: state.next_offset,
                    max_event_ms: state.max_event_ms,
                };
                (*partition, resume)
            })
            .collect();
        for (start, first_records) in unfinished {
            closed_through_ms = closed_through_ms.min(*start);
            for (partition, first) in first_records {
                let resume = partitions.entry(*partition).or_insert(*first);
                if first.offset < resume.offset {
                    *resume = *first;
                }
            }
        }
        Checkpoint {
            closed_through_ms,
            partitions,
        }
    }

    fn documents(&self, start: i64, window: &Window, is_final: bool) -> Vec<RollupDoc> {
        let timestamp = qoe_schemas::time::rfc3339_utc(start);
        let window_s = (self.config.window_ms / 1_000) as u32;
        let room_viewers = room_viewers(window);
        let mut order: Vec<&Entry> = window
            .entries
            .iter()
            .filter(|entry| {
                entry.grain != Grain::Room
                    || room_viewers.get(entry.dims[0].as_str()).copied().unwrap_or(0) >= self.config.room_min_viewers
            })
            .collect();
        order.sort_by(|left, right| (left.grain, &left.dims).cmp(&(right.grain, &right.dims)));
        order
            .into_iter()
            .map(|entry| {
                let mut doc = RollupDoc {
                    timestamp: timestamp.clone(),
                    window_s,
                    grain: entry.grain,
                    is_final,
                    ..RollupDoc::default()
                };
                doc.set_dims(&entry.dims);
                entry.accumulator.fill(&mut doc);
                doc
            })
            .collect()
    }
}

/// Distinct play sessions per room over all its CDNs.
fn room_viewers(window: &Window) -> HashMap<&str, u64> {
    let mut sessions: HashMap<&str, SessionSet> = HashMap::new();
    for entry in window.entries.iter().filter(|entry| entry.grain == Grain::Room) {
        sessions
            .entry(entry.dims[0].as_str())
            .or_default()
            .extend(entry.accumulator.active.iter().copied());
    }
    sessions
        .into_iter()
        .map(|(room, set)| (room, set.len() as u64))
        .collect()
}

/// Calls `each` with every grain key the beacon belongs to.
fn for_each_key(beacon: &Beacon, mut each: impl FnMut(Grain, &[&str])) {
    fn or_unknown(value: &Option<String>) -> &str {
        value.as_deref().unwrap_or(UNKNOWN)
    }
    let cdn = or_unknown(&beacon.cdn);
    let region = or_unknown(&beacon.region);
    let isp = or_unknown(&beacon.isp);
    match beacon.kind.family() {
        Family::Push => each(Grain::Push, &[&beacon.room_id, cdn, region, isp]),
        Family::Play | Family::Room => {
            each(Grain::Cdn, &[cdn, region, isp, beacon.platform.as_str()]);
            if let Some(edge_ip) = beacon.edge_ip.as_deref() {
                each(Grain::Edge, &[cdn, edge_ip]);
            }
            each(Grain::Room, &[&beacon.room_id, cdn]);
        }
    }
}
