//! The job's side of the warehouse files: rebuilding a source's de-duplication set and session index
//! from what it committed, and staging the `play_sessions` files of a flush.

use super::*;
use crate::columns::column_as;
use crate::encode::encode_batch;
use crate::keys::{dedup_key, hour_of, session_key};
use arrow::array::StringArray;

/// An Arrow error reading a committed file, with the file's path.
fn file_error(path: &std::path::Path, error: arrow::error::ArrowError) -> BatchError {
    BatchError::Arrow {
        context: format!("reading {path:?}"),
        source: error,
    }
}

impl Job {
    /// Rebuilds the de-duplication set and the session index of a source from its committed files.
    pub(super) fn rebuild(&self, source: &str, state: &mut SourceState) -> Result<(), BatchError> {
        let dedup_from = state.watermark_ms.saturating_sub(millis(self.config.dedup_horizon));
        let data_prefix = format!("{source}.");
        for table in [Table::Play, Table::Push, Table::Room] {
            for path in self
                .warehouse
                .files_since(table, dedup_from, |name| name.starts_with(&data_prefix))?
            {
                for batch in warehouse::read_parquet(&path, &["session_id", "seq", "event_time"])? {
                    let in_file = |error| file_error(&path, error);
                    let sessions = column_as::<StringArray>(&batch, "session_id").map_err(in_file)?;
                    let seqs = column_as::<Int64Array>(&batch, "seq").map_err(in_file)?;
                    let times = column_as::<TimestampMillisecondArray>(&batch, "event_time").map_err(in_file)?;
                    for row in 0..batch.num_rows() {
                        let time = times.value(row);
                        if time < dedup_from {
                            continue;
                        }
                        let seq = u64::try_from(seqs.value(row)).unwrap_or_default();
                        state.dedup.insert(dedup_key(sessions.value(row), seq), time);
                    }
                }
            }
        }
        let sessions_from = state.watermark_ms.saturating_sub(millis(self.config.session_horizon));
        let sessions_name = Warehouse::sessions_file_name(source);
        for path in self
            .warehouse
            .files_since(Table::PlaySessions, sessions_from, |name| name == sessions_name)?
        {
            for batch in warehouse::read_parquet(&path, &["session_id", "start_time"])? {
                let in_file = |error| file_error(&path, error);
                let sessions = column_as::<StringArray>(&batch, "session_id").map_err(in_file)?;
                let starts = column_as::<TimestampMillisecondArray>(&batch, "start_time").map_err(in_file)?;
                for row in 0..batch.num_rows() {
                    let start_ms = starts.value(row);
                    if start_ms < sessions_from {
                        continue;
                    }
                    let slot = SessionSlot {
                        current: RowPlace {
                            generation: 0,
                            start_ms,
                            committed_start_ms: Some(start_ms),
                        },
                        prior: None,
                    };
                    // A session cut in two has two rows: the later one is current.
                    let entry = state.sessions.entry(session_key(sessions.value(row))).or_insert(slot);
                    if entry.current.start_ms < start_ms {
                        *entry = slot;
                    }
                }
            }
        }
        Ok(())
    }

    /// Folds the flush's play beacons into the source's `play_sessions` files and stages the new files.
    pub(super) fn stage_sessions(
        &mut self,
        source: &str,
        seq: u64,
        partials: Partials,
        moves: &mut Vec<Move>,
    ) -> Result<(), BatchError> {
        // One partial row per (session key, row generation), in that order.
        let mut partials: Vec<((u128, u32), SessionRow)> = partials
            .into_iter()
            .flat_map(|(key, rows)| rows.into_iter().map(move |(generation, row)| ((key, generation), row)))
            .collect();
        if partials.is_empty() {
            return Ok(());
        }
        partials.sort_unstable_by_key(|(order, _)| *order);
        let Some(state) = self.sources.get(source) else {
            return Err(BatchError::SourceNotOpen(source.to_string()));
        };
        // Where each partial's row was committed (if it was) and where it goes.
        let mut placements = Vec::with_capacity(partials.len());
        let mut hours = BTreeSet::new();
        for ((key, generation), partial) in partials {
            let slot = state.sessions.get(&key);
            let place = slot.and_then(|slot| {
                [Some(slot.current), slot.prior]
                    .into_iter()
                    .flatten()
                    .find(|place| place.generation == generation)
            });
            let (committed_start, start) = place.map_or((None, partial.start_time), |place| {
                (place.committed_start_ms, place.start_ms)
            });
            hours.insert(hour_of(start));
            hours.extend(committed_start.map(hour_of));
            placements.push((key, committed_start, start, partial));
        }
        let file_name = Warehouse::sessions_file_name(source);
        // Each touched hour's stored rows, by (session key, start): a session cut in two has two rows.
        let mut files: BTreeMap<i64, HashMap<(u128, i64), SessionRow, Hasher>> = BTreeMap::new();
        for hour in &hours {
            let path = self
                .warehouse
                .root()
                .join(Warehouse::partition(Table::PlaySessions, *hour))
                .join(&file_name);
            let mut rows = HashMap::default();
            if path.exists() {
                for batch in warehouse::read_parquet(&path, &[])? {
                    rows.reserve(batch.num_rows());
                    for row in rows_from_batch(&batch).map_err(|error| file_error(&path, error))? {
                        rows.insert((session_key(&row.session_id), row.start_time), row);
                    }
                }
            }
            files.insert(*hour, rows);
        }
        for (key, committed_start, start, mut row) in placements {
            if let Some(committed_start) = committed_start {
                let stored_rows = files.get_mut(&hour_of(committed_start));
                if let Some(stored) = stored_rows.and_then(|rows| rows.remove(&(key, committed_start))) {
                    row.merge(stored);
                }
            }
            if let Some(rows) = files.get_mut(&hour_of(start)) {
                match rows.get_mut(&(key, row.start_time)) {
                    Some(existing) => existing.merge(row),
                    None => {
                        rows.insert((key, row.start_time), row);
                    }
                }
            }
        }
        let tmp_dir = self.warehouse.tmp_dir(source).join(&self.writer);
        for (hour, rows) in files {
            let rows: Vec<SessionRow> = rows.into_values().collect();
            let path = format!("{}/{file_name}", Warehouse::partition(Table::PlaySessions, hour));
            if rows.is_empty() {
                moves.push(Move {
                    tmp: None,
                    path,
                    rows: 0,
                });
                continue;
            }
            // Sorted as references: a row is a few hundred bytes.
            let mut ordered: Vec<&SessionRow> = rows.iter().collect();
            ordered.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
            let batch = sessions_batch(&ordered).map_err(|error| BatchError::Arrow {
                context: format!("building the rows of {path:?}"),
                source: error,
            })?;
            let bytes = encode_batch(Table::PlaySessions, &batch)?;
            let tmp_name = format!("{seq}.{}.sessions.parquet", moves.len());
            self.step()?;
            warehouse::write_synced(&tmp_dir.join(&tmp_name), &bytes)?;
            self.metrics
                .rows
                .with_label_values(&[Table::PlaySessions.name()])
                .inc_by(ordered.len() as u64);
            moves.push(Move {
                tmp: Some(format!("_tmp/{source}/{}/{tmp_name}", self.writer)),
                path,
                rows: ordered.len() as u64,
            });
        }
        Ok(())
    }
}

/// The sort key of `play_sessions`: `cdn` (nulls first), `room_id`, `session_id`, `start_time`.
fn sort_key(row: &SessionRow) -> (Option<&str>, &str, &str, i64) {
    let cdn = row.attributes[CDN_ATTRIBUTE].as_deref();
    (cdn, row.room_id.as_str(), row.session_id.as_str(), row.start_time)
}
