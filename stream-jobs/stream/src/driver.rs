//! What every input shares: offering records to the engine, counting outcomes, and delivering
//! emissions to every output before acknowledging them and saving the checkpoint.

use std::time::{SystemTime, UNIX_EPOCH};

use qoe_rollup::{Checkpoint, Emission, Engine, Offer};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::output::Output;
use crate::StreamError;

/// Processing time, epoch ms.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// How many rejection messages a run report keeps.
const REJECTION_SAMPLES: usize = 10;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StreamReport {
    /// Records read (non-blank lines at or after the resume point).
    pub records: u64,
    /// Beacons counted in a window.
    pub counted: u64,
    /// Repeats of `(session_id, seq)` dropped.
    pub duplicates: u64,
    /// Beacons dropped because their window had closed.
    pub late: u64,
    /// Replayed beacons of windows final before the checkpoint resumed from.
    pub already_final: u64,
    /// Invalid records dropped.
    pub rejected: u64,
    /// Final documents written.
    pub final_documents: u64,
    /// Early documents written.
    pub early_documents: u64,
    /// Windows closed.
    pub windows: u64,
    /// The first rejections, as `<partition>@<offset>: <field>: <problem>` (a file is partition 0, its
    /// offsets are line numbers from 0).
    pub rejection_samples: Vec<String>,
    /// The file ended with a line without its newline (still being written?): it was not read.
    pub incomplete_last_line: bool,
}

/// The state a run threads through its loop.
pub(crate) struct Driver<'a> {
    pub(crate) engine: &'a mut Engine,
    outputs: &'a mut [Box<dyn Output>],
    metrics: &'a Metrics,
    pub(crate) report: StreamReport,
    /// Persists a checkpoint (a file, or the consumer group's offsets and metadata).
    save: &'a mut dyn FnMut(Checkpoint) -> Result<(), StreamError>,
}

impl<'a> Driver<'a> {
    pub(crate) fn new(
        engine: &'a mut Engine,
        outputs: &'a mut [Box<dyn Output>],
        metrics: &'a Metrics,
        save: &'a mut dyn FnMut(Checkpoint) -> Result<(), StreamError>,
    ) -> Self {
        Driver {
            engine,
            outputs,
            metrics,
            report: StreamReport::default(),
            save,
        }
    }

    /// Offers the record at `offset` of `partition`.
    pub(crate) fn offer(&mut self, partition: i32, offset: i64, text: &[u8]) {
        self.report.records += 1;
        let now = now_ms();
        let outcome = match qoe_schemas::parse_record_bytes(text) {
            Ok(beacon) => match self.engine.offer(partition, offset, &beacon, now) {
                Offer::Counted => {
                    self.report.counted += 1;
                    "counted"
                }
                Offer::Duplicate => {
                    self.report.duplicates += 1;
                    "duplicate"
                }
                Offer::Late => {
                    self.report.late += 1;
                    "late"
                }
                Offer::AlreadyFinal => {
                    self.report.already_final += 1;
                    "already_final"
                }
            },
            Err(error) => {
                self.engine.skip(partition, offset, now);
                self.report.rejected += 1;
                self.metrics.rejected.with_label_values(&[error.reason.as_str()]).inc();
                if self.report.rejection_samples.len() < REJECTION_SAMPLES {
                    self.report
                        .rejection_samples
                        .push(format!("line {}: {error}", offset + 1));
                }
                "rejected"
            }
        };
        self.metrics.outcome(outcome).inc();
    }

    /// Writes emissions to every output, then acknowledges the final ones and saves the checkpoint.
    pub(crate) fn deliver(&mut self, emissions: Vec<Emission>) -> Result<(), StreamError> {
        let (windows, keys) = self.engine.open_windows();
        self.metrics.open_windows.set(windows as i64);
        self.metrics.open_keys.set(keys as i64);
        if emissions.is_empty() {
            return Ok(());
        }
        for output in self.outputs.iter_mut() {
            if let Err(error) = output.write(&emissions) {
                tracing::error!(output = %output.name(), %error, "output failed: stopping before acknowledging its windows");
                return Err(error);
            }
        }
        let written_at = now_ms();
        let window_ms = self.engine.config().window_ms;
        for emission in &emissions {
            let documents = emission.docs.len() as u64;
            if emission.is_final {
                self.engine.acknowledge(emission.window_start_ms);
                self.report.windows += 1;
                self.report.final_documents += documents;
                self.metrics.documents.with_label_values(&["final"]).inc_by(documents);
                let window_end = emission.window_start_ms + window_ms;
                self.metrics
                    .freshness
                    .observe((written_at - window_end).max(0) as f64 / 1000.0);
            } else {
                self.report.early_documents += documents;
                self.metrics.documents.with_label_values(&["early"]).inc_by(documents);
            }
        }
        if emissions.iter().any(|emission| emission.is_final) {
            self.save_checkpoint()?;
        }
        Ok(())
    }

    /// Persists the engine's checkpoint.
    pub(crate) fn save_checkpoint(&mut self) -> Result<(), StreamError> {
        let checkpoint = self.engine.checkpoint();
        let largest = checkpoint.partitions.values().map(|partition| partition.offset).max();
        self.metrics.committed_offset.set(largest.unwrap_or(0));
        (self.save)(checkpoint)
    }
}
