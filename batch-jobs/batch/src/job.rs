//! The batch job's core: offers records of sources, de-duplicates them, buffers them, and flushes each
//! source as one committed unit (see [`crate::warehouse`] for the commit protocol).
//!
//! Determinism is what makes restarts exact. Every decision depends only on the records of the source
//! in offset order and on the committed warehouse, never on wall-clock time or on where flushes fell:
//! - the watermark `w` of a source is the largest event time among its accepted beacons so far (a
//!   duplicate or an invalid record does not move it; saved with each commit);
//! - a beacon is a duplicate when an accepted beacon of the same source with the same
//!   `(session_id, seq)` has an event time at or after `w - dedup_horizon` (`w` before this beacon);
//!   after a restart that set is rebuilt from the source's files of the partitions within the horizon;
//! - a play beacon joins its session's existing `play_sessions` row when that row starts at or after
//!   `w - session_horizon`, else it starts a new row (sessions longer than the horizon are cut).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use arrow::array::{Int64Array, TimestampMillisecondArray};
use qoe_schemas::tables::Table;
use qoe_schemas::{Beacon, Family, FieldError};

use arrow::record_batch::RecordBatch;

use crate::columns::PartitionRows;
use crate::encode::encode_partitions;
use crate::keys::{event_time_of, partition_of, Keys};
use crate::metrics::Metrics;
use crate::parse::Placed;
use crate::sessions::{rows_from_batch, sessions_batch, SessionRow, ATTRIBUTES};
use crate::warehouse::{self, Manifest, Move, Warehouse};
use crate::BatchError;

pub use crate::keys::parse_payload;

mod files;

/// Settings of the batch job.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The warehouse root directory.
    pub warehouse: PathBuf,
    /// Flush a source when this many records are buffered across sources.
    pub flush_records: usize,
    /// Flush a source when its oldest buffered record waited this long (wall clock).
    pub flush_interval: Duration,
    /// How far back in event time `(session_id, seq)` duplicates are found.
    pub dedup_horizon: Duration,
    /// How long a session's row stays open for more beacons, from its start in event time.
    pub session_horizon: Duration,
    /// Test hook: fail with [`BatchError::InjectedCrash`] at the given file-system step.
    #[doc(hidden)]
    pub crash_at_step: Option<u64>,
}

impl JobConfig {
    /// Defaults for a warehouse: 500k records or 5 minutes per flush, 2 h de-duplication, 48 h sessions.
    pub fn new(warehouse: impl Into<PathBuf>) -> Self {
        JobConfig {
            warehouse: warehouse.into(),
            flush_records: 500_000,
            flush_interval: Duration::from_secs(300),
            dedup_horizon: Duration::from_secs(2 * 3600),
            session_horizon: Duration::from_secs(48 * 3600),
            crash_at_step: None,
        }
    }
}

/// What became of an offered record.
#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    /// Buffered for the next flush.
    Accepted,
    /// Already in the warehouse (an offset before the source's resume point): ignored.
    AlreadyStored,
    /// A repeat of an accepted beacon's `(session_id, seq)`: dropped, counted.
    Duplicate,
    /// Not a valid beacon record: dropped, counted, with the reason.
    Rejected(FieldError),
}

/// Where a `play_sessions` row is: its start with the buffered beacons, and as committed.
#[derive(Debug, Clone, Copy)]
struct RowPlace {
    /// Which row of the session this is (counts cuts since the source was opened).
    generation: u32,
    /// Start of the row including buffered beacons.
    start_ms: i64,
    /// Start of the row as committed, `None` for a row not committed yet.
    committed_start_ms: Option<i64>,
}

/// A session's current `play_sessions` row, and the row it was cut from in the unflushed buffer.
#[derive(Debug, Clone, Copy)]
struct SessionSlot {
    current: RowPlace,
    prior: Option<RowPlace>,
}

/// The hasher of the job's per-beacon maps (keys are session ids and hashes, not secrets; the seed is
/// random per process).
type Hasher = foldhash::fast::RandomState;

/// Accepted play beacons folded into one partial row per (session key, row generation).
type Partials = HashMap<u128, Vec<(u32, SessionRow)>, Hasher>;

/// The row tag of a buffered beacon that is not folded into `play_sessions`.
const NOT_FOLDED: u32 = u32::MAX;

/// The state of one source.
#[derive(Debug)]
struct SourceState {
    next_offset: i64,
    committed_seq: u64,
    watermark_ms: i64,
    dedup: HashMap<u128, i64, Hasher>,
    /// By session key.
    sessions: HashMap<u128, SessionSlot, Hasher>,
    /// Accepted beacons, as rows of their (table, event hour) partition.
    tables: BTreeMap<(Table, i64), PartitionRows>,
    /// The parsed block being offered: its batches, and the rows of each accepted since the last flush.
    block: Option<OpenBlock>,
    /// Accepted play beacons folded into one partial row per (session, row generation).
    partials: Partials,
    /// Accepted beacons not flushed yet.
    buffered: usize,
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    oldest: Option<Instant>,
    fingerprint: Option<String>,
}

impl SourceState {
    /// Whether `offset` is before the resume point or not after the last offset offered.
    fn already_seen(&self, offset: i64) -> bool {
        offset < self.next_offset || self.last_offset.is_some_and(|last| offset <= last)
    }
}

/// A parsed block's batches, and the rows of each accepted and not yet handed to the partitions.
#[derive(Debug)]
struct OpenBlock {
    batches: Vec<((Table, i64), RecordBatch)>,
    accepted: Vec<Vec<u32>>,
}

impl OpenBlock {
    /// Hands the rows accepted so far to their partitions (before a flush, and at the block's end).
    fn settle(&mut self, tables: &mut BTreeMap<(Table, i64), PartitionRows>) -> Result<(), BatchError> {
        for ((key, batch), rows) in self.batches.iter().zip(&mut self.accepted) {
            if rows.is_empty() {
                continue;
            }
            let partition = tables.entry(*key).or_insert_with(|| PartitionRows::new(key.0));
            partition
                .add(batch.clone(), std::mem::take(rows))
                .map_err(|source| BatchError::Arrow {
                    context: format!("buffering the {} rows of hour {}", key.0.name(), key.1),
                    source,
                })?;
        }
        Ok(())
    }
}

/// Counts of what a flush committed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlushStats {
    /// The source's offsets now stored: everything before this offset.
    pub next_offset: i64,
    /// Beacon rows written.
    pub rows: u64,
    /// Files written or replaced.
    pub files: u64,
}

/// The batch job over any number of sources.
pub struct Job {
    config: JobConfig,
    warehouse: Warehouse,
    sources: BTreeMap<String, SourceState>,
    buffered: usize,
    steps: u64,
    metrics: Metrics,
    /// This writer's directory name under `_tmp/<source>/`: two writers never share temporary files.
    writer: String,
}

/// Index of `cdn` in [`SessionRow::attributes`], the first sort column of `play_sessions`.
const CDN_ATTRIBUTE: usize = 8;
const _: () = assert!(matches!(ATTRIBUTES[CDN_ATTRIBUTE].as_bytes(), b"cdn"));

fn writer_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("w{}-{nanos}", std::process::id())
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Folds an accepted play beacon into its (session, generation) partial row.
fn fold(partials: &mut Partials, session: u128, beacon: &Beacon, generation: u32) {
    let rows = partials.entry(session).or_default();
    match rows
        .iter_mut()
        .find(|(row_generation, _)| *row_generation == generation)
    {
        Some((_, row)) => row.fold(beacon),
        None => rows.push((generation, SessionRow::from_beacon(beacon))),
    }
}

/// What the job made of a valid record.
enum Admission {
    /// Not buffered (already stored, or a duplicate).
    Refused(Offer),
    /// Accepted: buffer its row.
    Accepted,
}

impl Job {
    /// Opens the warehouse.
    pub fn new(config: JobConfig, metrics: Metrics) -> Result<Self, BatchError> {
        let warehouse = Warehouse::open(&config.warehouse)?;
        Ok(Job {
            config,
            warehouse,
            sources: BTreeMap::new(),
            buffered: 0,
            steps: 0,
            metrics,
            writer: writer_id(),
        })
    }

    /// The job's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// One file-system step of a flush; fails where the test hook says so.
    fn step(&mut self) -> Result<(), BatchError> {
        self.steps += 1;
        match self.config.crash_at_step {
            Some(step) if step == self.steps => Err(BatchError::InjectedCrash(step)),
            _ => Ok(()),
        }
    }

    /// Recovers a source and loads its state; returns the offset to read from. Idempotent.
    pub fn open_source(&mut self, source: &str) -> Result<i64, BatchError> {
        if let Some(state) = self.sources.get(source) {
            return Ok(state.next_offset);
        }
        let manifest = self.warehouse.recover(source)?;
        let (next_offset, committed_seq, watermark_ms) = match &manifest {
            Some(manifest) => (manifest.last_offset + 1, manifest.seq, manifest.watermark_ms),
            None => (0, 0, i64::MIN),
        };
        let mut state = SourceState {
            next_offset,
            committed_seq,
            watermark_ms,
            dedup: HashMap::default(),
            sessions: HashMap::default(),
            tables: BTreeMap::new(),
            block: None,
            partials: HashMap::default(),
            buffered: 0,
            first_offset: None,
            last_offset: None,
            oldest: None,
            fingerprint: manifest.as_ref().and_then(|manifest| manifest.fingerprint.clone()),
        };
        // A source whose commits so far held no valid record has nothing to rebuild.
        if manifest.is_some() && watermark_ms != i64::MIN {
            self.rebuild(source, &mut state)?;
        }
        tracing::info!(source, next_offset, watermark_ms, "source opened");
        self.sources.insert(source.to_string(), state);
        Ok(next_offset)
    }

    /// The fingerprint of an open source: as committed, or as set for its next commit.
    pub fn fingerprint(&self, source: &str) -> Option<&str> {
        self.sources.get(source).and_then(|state| state.fingerprint.as_deref())
    }

    /// Sets the fingerprint an open source's commits carry from now on.
    pub fn set_fingerprint(&mut self, source: &str, fingerprint: String) {
        if let Some(state) = self.sources.get_mut(source) {
            state.fingerprint = Some(fingerprint);
        }
    }

    /// Drops a source's state and its unflushed records (its partition was revoked); nothing committed
    /// is affected, and the next owner reads the dropped records again.
    pub fn close_source(&mut self, source: &str) {
        if let Some(state) = self.sources.remove(source) {
            self.buffered -= state.buffered;
        }
        let _ = self.metrics.committed_offset.remove_label_values(&[source]);
    }

    /// Offers one record of an opened source at `offset` (offsets must grow).
    pub fn offer(&mut self, source: &str, offset: i64, payload: &[u8]) -> Result<Offer, BatchError> {
        let Some(state) = self.sources.get(source) else {
            return Err(BatchError::SourceNotOpen(source.to_string()));
        };
        if state.already_seen(offset) {
            self.metrics.already_stored.inc();
            return Ok(Offer::AlreadyStored);
        }
        self.offer_parsed(source, offset, parse_payload(payload).map(Box::new))
    }

    /// [`Job::offer`] for a record parsed already (with [`parse_payload`]), for readers that parse on
    /// another thread.
    pub fn offer_parsed(
        &mut self,
        source: &str,
        offset: i64,
        parsed: Result<Box<Beacon>, FieldError>,
    ) -> Result<Offer, BatchError> {
        if let Some(refused) = self.admit_offset(source, offset)? {
            return Ok(refused);
        }
        let beacon = match parsed {
            Ok(beacon) => beacon,
            Err(error) => return Ok(self.reject(source, offset, error)),
        };
        if let Admission::Refused(offer) = self.accept(source, &beacon, Keys::of(&beacon))? {
            return Ok(offer);
        }
        let state = self.state(source)?;
        let key = partition_of(&beacon);
        let partition = state.tables.entry(key).or_insert_with(|| PartitionRows::new(key.0));
        partition.push(&beacon).map_err(|error| BatchError::Arrow {
            context: format!("buffering the record at offset {offset} of source {source:?}"),
            source: error,
        })?;
        Ok(Offer::Accepted)
    }

    /// Starts offering the records of a block parsed on a worker thread ([`crate::parse`]): its
    /// batches hold the rows of its valid beacons; [`Job::offer_placed`] keeps those accepted.
    pub(crate) fn begin_block(
        &mut self,
        source: &str,
        batches: Vec<((Table, i64), RecordBatch)>,
    ) -> Result<(), BatchError> {
        let state = self.state(source)?;
        let accepted = vec![Vec::new(); batches.len()];
        state.block = Some(OpenBlock { batches, accepted });
        Ok(())
    }

    /// Offers one record of the block begun with [`Job::begin_block`], as [`Job::offer_parsed`] does.
    pub(crate) fn offer_placed(
        &mut self,
        source: &str,
        offset: i64,
        parsed: Result<&Placed, &FieldError>,
    ) -> Result<Offer, BatchError> {
        if let Some(refused) = self.admit_offset(source, offset)? {
            return Ok(refused);
        }
        let placed = match parsed {
            Ok(placed) => placed,
            Err(error) => return Ok(self.reject(source, offset, error.clone())),
        };
        if let Admission::Refused(offer) = self.accept(source, &placed.beacon, placed.keys)? {
            return Ok(offer);
        }
        let state = self.state(source)?;
        let Some(rows) = state
            .block
            .as_mut()
            .and_then(|block| block.accepted.get_mut(placed.slot))
        else {
            return Err(BatchError::Internal(format!(
                "record at offset {offset} placed outside its block"
            )));
        };
        rows.push(placed.row);
        Ok(Offer::Accepted)
    }

    /// Ends the block begun with [`Job::begin_block`]: its accepted rows join their partitions.
    pub(crate) fn end_block(&mut self, source: &str) -> Result<(), BatchError> {
        let state = self.state(source)?;
        if let Some(mut block) = state.block.take() {
            block.settle(&mut state.tables)?;
        }
        Ok(())
    }

    fn state(&mut self, source: &str) -> Result<&mut SourceState, BatchError> {
        self.sources
            .get_mut(source)
            .ok_or_else(|| BatchError::SourceNotOpen(source.to_string()))
    }

    /// The offset part of an offer: `Some` (already stored) for an offset before the source's resume
    /// point or not after the last one offered; otherwise the offset joins the next flush.
    fn admit_offset(&mut self, source: &str, offset: i64) -> Result<Option<Offer>, BatchError> {
        let state = self.state(source)?;
        if state.already_seen(offset) {
            self.metrics.already_stored.inc();
            return Ok(Some(Offer::AlreadyStored));
        }
        state.first_offset.get_or_insert(offset);
        state.last_offset = Some(offset);
        state.oldest.get_or_insert_with(Instant::now);
        Ok(None)
    }

    fn reject(&self, source: &str, offset: i64, error: FieldError) -> Offer {
        self.metrics.rejected_records.inc();
        self.metrics.rejected.with_label_values(&[error.reason.as_str()]).inc();
        tracing::debug!(source, offset, %error, "record rejected");
        Offer::Rejected(error)
    }

    /// The decision on a valid beacon: a repeat of `(session_id, seq)` is refused; otherwise the beacon
    /// is accepted, folded into its `play_sessions` row, and counted (the caller buffers its row).
    fn accept(&mut self, source: &str, beacon: &Beacon, keys: Keys) -> Result<Admission, BatchError> {
        let dedup_horizon = millis(self.config.dedup_horizon);
        let session_horizon = millis(self.config.session_horizon);
        let Some(state) = self.sources.get_mut(source) else {
            return Err(BatchError::SourceNotOpen(source.to_string()));
        };
        let event_time = event_time_of(beacon);
        let watermark = state.watermark_ms;
        let dedup_from = watermark.saturating_sub(dedup_horizon);
        let key = keys.dedup;
        if state.dedup.get(&key).is_some_and(|seen| *seen >= dedup_from) {
            self.metrics.duplicates.inc();
            return Ok(Admission::Refused(Offer::Duplicate));
        }
        if event_time >= dedup_from {
            state.dedup.insert(key, event_time);
        }
        let mut generation = NOT_FOLDED;
        let sessions_from = watermark.saturating_sub(session_horizon);
        if beacon.kind.family() == Family::Play && event_time < sessions_from {
            // Older than the session horizon: kept in `play`, not folded into `play_sessions`.
            self.metrics.session_late.inc();
        } else if beacon.kind.family() == Family::Play {
            let new_row = |generation: u32| RowPlace {
                generation,
                start_ms: event_time,
                committed_start_ms: None,
            };
            match state.sessions.get_mut(&keys.session) {
                Some(slot) if slot.current.start_ms >= sessions_from => {
                    slot.current.start_ms = slot.current.start_ms.min(event_time);
                    generation = slot.current.generation;
                }
                Some(slot) => {
                    // The row started more than the horizon ago: cut the session, start a new row.
                    generation = slot.current.generation.wrapping_add(1) % NOT_FOLDED;
                    *slot = SessionSlot {
                        current: new_row(generation),
                        prior: Some(slot.current),
                    };
                }
                None => {
                    generation = 0;
                    let slot = SessionSlot {
                        current: new_row(generation),
                        prior: None,
                    };
                    state.sessions.insert(keys.session, slot);
                }
            }
        }
        state.watermark_ms = watermark.max(event_time);
        if generation != NOT_FOLDED {
            fold(&mut state.partials, keys.session, beacon, generation);
        }
        state.buffered += 1;
        self.buffered += 1;
        self.metrics.accepted.inc();
        Ok(Admission::Accepted)
    }

    /// Sources with offsets not yet committed, and whether the flush policy says to flush now.
    pub fn due(&self) -> Vec<String> {
        let full = self.buffered >= self.config.flush_records;
        self.sources
            .iter()
            .filter(|(_, state)| state.last_offset.is_some())
            .filter(|(_, state)| {
                full || state
                    .oldest
                    .is_some_and(|oldest| oldest.elapsed() >= self.config.flush_interval)
            })
            .map(|(source, _)| source.clone())
            .collect()
    }

    /// Every source with offsets not yet committed.
    pub fn pending(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter(|(_, state)| state.last_offset.is_some())
            .map(|(source, _)| source.clone())
            .collect()
    }

    /// Commits everything buffered for a source. Returns `None` when nothing was pending.
    pub fn flush(&mut self, source: &str) -> Result<Option<FlushStats>, BatchError> {
        let started = Instant::now();
        let Some(state) = self.sources.get_mut(source) else {
            return Err(BatchError::SourceNotOpen(source.to_string()));
        };
        let (Some(first_offset), Some(last_offset)) = (state.first_offset, state.last_offset) else {
            return Ok(None);
        };
        if let Some(block) = &mut state.block {
            // The block's rows accepted so far belong to this flush; the rest to the next.
            block.settle(&mut state.tables)?;
        }
        let tables = std::mem::take(&mut state.tables);
        let partials = std::mem::take(&mut state.partials);
        let buffered = std::mem::replace(&mut state.buffered, 0);
        let seq = state.committed_seq + 1;
        let watermark_ms = state.watermark_ms;
        let manifest = Manifest {
            source: source.to_string(),
            seq,
            first_offset,
            last_offset,
            watermark_ms,
            moves: Vec::new(),
            fingerprint: state.fingerprint.clone(),
        };
        let result = self.write_flush(manifest, tables, partials);
        self.buffered -= buffered;
        let (moves, rows) = match result {
            Ok(done) => done,
            Err(error) => {
                // The flush did not commit (or committed without being applied): the caller must reopen
                // the source, which recovers and re-reads from the last commit.
                self.sources.remove(source);
                return Err(error);
            }
        };
        let Some(state) = self.sources.get_mut(source) else {
            return Err(BatchError::SourceNotOpen(source.to_string()));
        };
        for slot in state.sessions.values_mut() {
            slot.current.committed_start_ms = Some(slot.current.start_ms);
            slot.prior = None;
        }
        state.next_offset = last_offset + 1;
        state.committed_seq = seq;
        state.first_offset = None;
        state.last_offset = None;
        state.oldest = None;
        let dedup_from = watermark_ms.saturating_sub(millis(self.config.dedup_horizon));
        state.dedup.retain(|_, time| *time >= dedup_from);
        let sessions_from = watermark_ms.saturating_sub(millis(self.config.session_horizon));
        state.sessions.retain(|_, slot| slot.current.start_ms >= sessions_from);
        let stats = FlushStats {
            next_offset: last_offset + 1,
            rows,
            files: moves as u64,
        };
        self.metrics.flushes.inc();
        self.metrics.flush_seconds.observe(started.elapsed().as_secs_f64());
        tracing::debug!(source, seq, first_offset, last_offset, rows, "flush committed");
        Ok(Some(stats))
    }

    /// Writes a flush's files, commits its manifest and applies it. Returns (files, beacon rows).
    fn write_flush(
        &mut self,
        mut manifest: Manifest,
        tables: BTreeMap<(Table, i64), PartitionRows>,
        partials: Partials,
    ) -> Result<(usize, u64), BatchError> {
        let source_id = manifest.source.clone();
        let source = source_id.as_str();
        let (seq, first_offset, last_offset) = (manifest.seq, manifest.first_offset, manifest.last_offset);
        let tmp_dir = self.warehouse.tmp_dir(source).join(&self.writer);
        let tmp_prefix = format!("_tmp/{source}/{}", self.writer);
        let data_name = Warehouse::data_file_name(source, first_offset, last_offset);
        let mut moves = Vec::new();
        let mut rows = 0;

        for ((table, hour), count, bytes) in encode_partitions(tables)? {
            // Unique per flush: recovery takes an existing temporary file for one of the last commit.
            let tmp_name = format!("{seq}.{}.{data_name}", moves.len());
            self.step()?;
            warehouse::write_synced(&tmp_dir.join(&tmp_name), &bytes)?;
            rows += count;
            self.metrics.rows.with_label_values(&[table.name()]).inc_by(count);
            moves.push(Move {
                tmp: Some(format!("{tmp_prefix}/{tmp_name}")),
                path: format!("{}/{data_name}", Warehouse::partition(table, hour)),
                rows: count,
            });
        }
        self.stage_sessions(source, seq, partials, &mut moves)?;

        manifest.moves = moves;
        self.warehouse.prepare(&manifest, &tmp_dir)?;
        self.step()?;
        self.warehouse.commit(&manifest, &tmp_dir)?;
        for file_move in &manifest.moves {
            self.step()?;
            self.warehouse.apply_one(&manifest, file_move)?;
        }
        self.step()?;
        self.warehouse.prune_manifests(source, seq)?;
        Ok((manifest.moves.len(), rows))
    }
}
