//! What every input shares: offering records to the engine, counting outcomes, and delivering
//! emissions to every output before acknowledging them and saving the checkpoint.

use std::collections::BTreeMap;

use qoe_rollup::{Checkpoint, Emission, Engine, Offer};
use serde::Serialize;

use crate::error::StreamError;
use crate::metrics::{FreshnessResult, Metrics};
use crate::output::Output;

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
    /// The most grain keys open at once (sampled at each poll of the engine).
    pub peak_open_keys: u64,
    /// The most windows open at once (sampled at each poll of the engine).
    pub peak_open_windows: u64,
    /// Early freshness, median over counted beacons, seconds: from a beacon's event time to the
    /// first document including it (early or final) written by every output.
    pub freshness_early_p50_s: Option<f64>,
    /// Early freshness, 99th percentile, seconds.
    pub freshness_early_p99_s: Option<f64>,
    /// Final freshness, median over counted beacons, seconds: from a beacon's event time to its
    /// window's final documents written by every output.
    pub freshness_final_p50_s: Option<f64>,
    /// Final freshness, 99th percentile, seconds.
    pub freshness_final_p99_s: Option<f64>,
}

/// Event-time slots per window for the freshness measurement (100 ms for one-minute windows).
const FRESHNESS_SLOTS: i64 = 600;

/// Resolution of the run report's freshness percentiles: 100 ms up to 10 minutes, then one minute
/// (a backfill of old data has freshnesses of days; the steps stay a few thousand).
fn freshness_step(freshness_ms: i64) -> i64 {
    if freshness_ms < 600_000 {
        freshness_ms / 100
    } else {
        6_000 + (freshness_ms - 600_000) / 60_000
    }
}

/// The upper end of a step of [`freshness_step`], ms.
fn freshness_step_end(step: i64) -> i64 {
    if step < 6_000 {
        (step + 1) * 100
    } else {
        600_000 + (step - 6_000 + 1) * 60_000
    }
}

/// Counted beacons of one open window, per event-time slot.
struct SlotCounts {
    /// Not yet in any written document.
    unwritten: Vec<u32>,
    /// Every counted beacon of the window.
    counted: Vec<u32>,
}

/// Beacon freshness: counts of counted beacons per open window and event-time slot (one increment
/// per beacon), turned into freshness observations when documents are written.
#[derive(Default)]
struct Freshness {
    windows: BTreeMap<i64, SlotCounts>,
    /// Beacons per freshness step ([`freshness_step`]), early and final.
    early: BTreeMap<i64, u64>,
    final_: BTreeMap<i64, u64>,
}

impl Freshness {
    fn count(&mut self, event_ms: i64, window_ms: i64) {
        let start = event_ms.div_euclid(window_ms) * window_ms;
        let slot = ((event_ms - start) * FRESHNESS_SLOTS / window_ms) as usize;
        let counts = self.windows.entry(start).or_insert_with(|| SlotCounts {
            unwritten: vec![0; FRESHNESS_SLOTS as usize],
            counted: vec![0; FRESHNESS_SLOTS as usize],
        });
        counts.unwritten[slot] += 1;
        counts.counted[slot] += 1;
    }

    /// Observes the freshness of the beacons `emission` writes for the first time (and of all its
    /// window's beacons if it is final), written at `written_at`.
    fn written(&mut self, emission: &Emission, written_at: i64, window_ms: i64, metrics: &Metrics) {
        let start = emission.window_start_ms;
        let counts = if emission.is_final {
            self.windows.remove(&start)
        } else {
            self.windows.get_mut(&start).map(|counts| SlotCounts {
                unwritten: std::mem::replace(&mut counts.unwritten, vec![0; FRESHNESS_SLOTS as usize]),
                counted: Vec::new(),
            })
        };
        let Some(counts) = counts else {
            return;
        };
        let slot_ms = window_ms as f64 / FRESHNESS_SLOTS as f64;
        let observe = |slots: &[u32], result: FreshnessResult, steps: &mut BTreeMap<i64, u64>| {
            for (slot, beacons) in slots.iter().enumerate().filter(|(_, beacons)| **beacons > 0) {
                // From the middle of the slot: at most half a slot (50 ms) off.
                let event_ms = start as f64 + (slot as f64 + 0.5) * slot_ms;
                let freshness_ms = (written_at as f64 - event_ms).max(0.0);
                metrics
                    .beacon_freshness
                    .observe_many(result, freshness_ms / 1000.0, u64::from(*beacons));
                *steps.entry(freshness_step(freshness_ms as i64)).or_default() += u64::from(*beacons);
            }
        };
        observe(&counts.unwritten, FreshnessResult::Early, &mut self.early);
        observe(&counts.counted, FreshnessResult::Final, &mut self.final_);
    }
}

/// The `quantile` (0 to 1) of a freshness histogram, seconds (the upper end of its step).
fn step_quantile(steps: &BTreeMap<i64, u64>, quantile: f64) -> Option<f64> {
    let total: u64 = steps.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (step, beacons) in steps {
        seen += beacons;
        if seen >= rank {
            return Some(freshness_step_end(*step) as f64 / 1000.0);
        }
    }
    None
}

/// The state a run threads through its loop.
pub(crate) struct Driver<'a> {
    pub(crate) engine: &'a mut Engine,
    outputs: &'a mut [Box<dyn Output>],
    metrics: &'a Metrics,
    pub(crate) report: StreamReport,
    /// Persists a checkpoint (a file, or the consumer group's offsets and metadata).
    save: &'a mut dyn FnMut(Checkpoint) -> Result<(), StreamError>,
    freshness: Freshness,
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
            freshness: Freshness::default(),
        }
    }

    /// Offers the record at `offset` of `partition`.
    pub(crate) fn offer(&mut self, partition: i32, offset: i64, text: &[u8]) {
        self.report.records += 1;
        let now = qoe_runtime::clock::epoch_ms_i64();
        let outcome = match qoe_schemas::parse_record_bytes(text) {
            Ok(beacon) => match self.engine.offer(partition, offset, &beacon, now) {
                Offer::Counted => {
                    self.report.counted += 1;
                    let window_ms = self.engine.config().window_ms;
                    self.freshness.count(beacon.event_time_ms() as i64, window_ms);
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
        self.report.peak_open_windows = self.report.peak_open_windows.max(windows as u64);
        self.report.peak_open_keys = self.report.peak_open_keys.max(keys as u64);
        if emissions.is_empty() {
            return Ok(());
        }
        for output in self.outputs.iter_mut() {
            if let Err(error) = output.write(&emissions) {
                tracing::error!(output = %output.name(), %error, "output failed: stopping before acknowledging its windows");
                return Err(error);
            }
        }
        let written_at = qoe_runtime::clock::epoch_ms_i64();
        let window_ms = self.engine.config().window_ms;
        for emission in &emissions {
            self.freshness.written(emission, written_at, window_ms, self.metrics);
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
        let freshness = &self.freshness;
        self.report.freshness_early_p50_s = step_quantile(&freshness.early, 0.5);
        self.report.freshness_early_p99_s = step_quantile(&freshness.early, 0.99);
        self.report.freshness_final_p50_s = step_quantile(&freshness.final_, 0.5);
        self.report.freshness_final_p99_s = step_quantile(&freshness.final_, 0.99);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn emission(window_start_ms: i64, is_final: bool) -> Emission {
        Emission {
            window_start_ms,
            is_final,
            docs: Vec::new(),
        }
    }

    #[test]
    fn freshness_counts_a_beacon_early_at_its_first_document_and_final_at_its_window_s() {
        let metrics = Metrics::new();
        let mut freshness = Freshness::default();
        // Window [60 s, 120 s): two beacons at 61 s, one at 100 s; window [120 s, 180 s): one at 125 s.
        for event_ms in [61_000, 61_000, 100_000, 125_000] {
            freshness.count(event_ms, 60_000);
        }
        // An early result at 110 s includes the three beacons of the first window.
        freshness.written(&emission(60_000, false), 110_000, 60_000, &metrics);
        // One more beacon at 115 s, then the final result at 140 s.
        freshness.count(115_000, 60_000);
        freshness.written(&emission(60_000, true), 140_000, 60_000, &metrics);
        // The second window's only beacon is first written in its final document, at 200 s.
        freshness.written(&emission(120_000, true), 200_000, 60_000, &metrics);
        // A window without counted beacons is ignored.
        freshness.written(&emission(180_000, false), 200_000, 60_000, &metrics);

        let steps = |map: &BTreeMap<i64, u64>| -> Vec<(i64, u64)> { map.iter().map(|(k, v)| (*k, *v)).collect() };
        // Early: 110 - 61.05 = 48.95 s (twice), 110 - 100.05 = 9.95 s, 140 - 115.05 = 24.95 s,
        // 200 - 125.05 = 74.95 s; in 100 ms steps.
        assert_eq!(steps(&freshness.early), vec![(99, 1), (249, 1), (489, 2), (749, 1)]);
        // Final: 140 s minus 61.05 (twice), 100.05 and 115.05; 200 - 125.05.
        assert_eq!(steps(&freshness.final_), vec![(249, 1), (399, 1), (749, 1), (789, 2)]);
        assert!(freshness.windows.is_empty(), "final windows are forgotten");
        assert_eq!(metrics.beacon_freshness.count(FreshnessResult::Early), 5);
        assert_eq!(metrics.beacon_freshness.count(FreshnessResult::Final), 5);
        assert_eq!(step_quantile(&freshness.final_, 0.5), Some(75.0));
        assert_eq!(step_quantile(&freshness.final_, 0.99), Some(79.0));
        assert_eq!(step_quantile(&BTreeMap::new(), 0.99), None);
        let text = metrics.render();
        assert!(
            text.contains(r#"qoe_stream_beacon_freshness_seconds_bucket{result="final",le="75"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"qoe_stream_beacon_freshness_seconds_count{result="early"} 5"#),
            "{text}"
        );
    }

    #[test]
    fn freshness_steps_are_100_ms_then_one_minute() {
        assert_eq!(freshness_step_end(freshness_step(0)), 100);
        assert_eq!(freshness_step_end(freshness_step(69_950)), 70_000);
        assert_eq!(freshness_step_end(freshness_step(599_999)), 600_000);
        assert_eq!(freshness_step_end(freshness_step(600_000)), 660_000);
        assert_eq!(freshness_step_end(freshness_step(86_400_000)), 86_460_000);
    }
}
