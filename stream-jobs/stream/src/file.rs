//! `--input file:PATH`: an NDJSON file of beacon records through the engine (backfills, benchmarks,
//! tests). A record's offset is its line number from 0, on partition 0.
//!
//! Delivery: with a checkpoint file, the run resumes where the last one left off, and the checkpoint
//! is written (atomically, after a sync) only after every output wrote the windows it covers, so a run
//! killed at any moment and started again writes the same final documents. Without one, every run
//! starts at the first line; the outputs' documents are overwritten by id, so a rerun converges too.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use qoe_rollup::{Checkpoint, Emission, Engine, EngineConfig, Offer};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::output::Output;
use crate::StreamError;

/// Records offered between two polls of the engine.
const POLL_EVERY_RECORDS: u64 = 4096;

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
    /// The first rejections, as `line <n>: <field>: <problem>`.
    pub rejection_samples: Vec<String>,
    /// The file ended with a line without its newline (still being written?): it was not read.
    pub incomplete_last_line: bool,
}

/// How a file run is set up.
#[derive(Debug, Clone)]
pub struct FileRun {
    /// The engine's settings.
    pub engine: EngineConfig,
    /// Write early results of open windows this often (processing time); `None`: final ones only.
    pub early_every: Option<Duration>,
    /// Resume from, and keep, this checkpoint file.
    pub checkpoint: Option<PathBuf>,
}

/// A checkpoint file: the engine's checkpoint and the input it belongs to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    /// xxh3-64 of the input's first line, hex: a checkpoint is never applied to another file.
    input_fingerprint: String,
    checkpoint: Checkpoint,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// Runs the engine over the NDJSON file `path` into `outputs`. Stops early, after writing the
/// checkpoint of what every output has, when `shutdown` is cancelled.
pub fn run_file(
    path: &Path,
    setup: FileRun,
    outputs: &mut [Box<dyn Output>],
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> Result<StreamReport, StreamError> {
    let file = File::open(path).map_err(|error| StreamError::io(path, error))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let fingerprint = first_line_fingerprint(&mut reader).map_err(|error| StreamError::io(path, error))?;
    let restored = match &setup.checkpoint {
        Some(checkpoint_path) => load_checkpoint(checkpoint_path, path, &fingerprint)?,
        None => None,
    };
    let resume_at = restored
        .as_ref()
        .and_then(|checkpoint| checkpoint.partitions.get(&0))
        .map_or(0, |partition| partition.offset);
    let mut engine = Engine::new(setup.engine.clone(), restored.as_ref())?;
    let mut driver = Driver {
        engine: &mut engine,
        outputs,
        metrics,
        report: StreamReport::default(),
        checkpoint: setup.checkpoint.as_deref().map(|target| (target, fingerprint.as_str())),
    };
    let mut next_early = setup.early_every.map(|every| Instant::now() + every);
    let mut line = Vec::with_capacity(4096);
    let mut offset: i64 = 0;
    let mut since_poll = 0;
    let mut stopped = false;
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|error| StreamError::io(path, error))?;
        if read == 0 {
            break;
        }
        if !line.ends_with(b"\n") {
            driver.report.incomplete_last_line = true;
            break;
        }
        let this = offset;
        offset += 1;
        let text = line.trim_ascii();
        if this < resume_at || text.is_empty() {
            continue;
        }
        driver.offer(this, text);
        since_poll += 1;
        if since_poll >= POLL_EVERY_RECORDS {
            since_poll = 0;
            let emissions = driver.engine.poll(now_ms());
            driver.deliver(emissions)?;
            if let (Some(due), Some(every)) = (next_early, setup.early_every) {
                if Instant::now() >= due {
                    let early = driver.engine.early();
                    driver.deliver(early)?;
                    next_early = Some(Instant::now() + every);
                }
            }
            if shutdown.is_cancelled() {
                stopped = true;
                break;
            }
        }
    }
    if !stopped {
        let emissions = driver.engine.finish();
        driver.deliver(emissions)?;
    }
    driver.save_checkpoint()?;
    Ok(driver.report)
}

/// The state a run threads through its loop.
struct Driver<'a> {
    engine: &'a mut Engine,
    outputs: &'a mut [Box<dyn Output>],
    metrics: &'a Metrics,
    report: StreamReport,
    checkpoint: Option<(&'a Path, &'a str)>,
}

impl Driver<'_> {
    fn offer(&mut self, offset: i64, text: &[u8]) {
        self.report.records += 1;
        let now = now_ms();
        let outcome = match qoe_schemas::parse_record_bytes(text) {
            Ok(beacon) => match self.engine.offer(0, offset, &beacon, now) {
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
                self.engine.skip(0, offset, now);
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
    fn deliver(&mut self, emissions: Vec<Emission>) -> Result<(), StreamError> {
        let (windows, keys) = self.engine.open_windows();
        self.metrics.open_windows.set(windows as i64);
        self.metrics.open_keys.set(keys as i64);
        if emissions.is_empty() {
            return Ok(());
        }
        for output in self.outputs.iter_mut() {
            output.write(&emissions)?;
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

    fn save_checkpoint(&mut self) -> Result<(), StreamError> {
        let checkpoint = self.engine.checkpoint();
        if let Some(partition) = checkpoint.partitions.get(&0) {
            self.metrics.committed_offset.set(partition.offset);
        }
        let Some((target, fingerprint)) = self.checkpoint else {
            return Ok(());
        };
        let file = CheckpointFile {
            input_fingerprint: fingerprint.to_string(),
            checkpoint,
        };
        write_atomically(target, &serde_json::to_vec_pretty(&file).unwrap_or_default())
    }
}

/// Writes `bytes` to a temporary file beside `target`, syncs it and renames it over `target`.
fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), StreamError> {
    let temporary = target.with_extension("tmp");
    let mut file = File::create(&temporary).map_err(|error| StreamError::io(&temporary, error))?;
    file.write_all(bytes)
        .map_err(|error| StreamError::io(&temporary, error))?;
    file.sync_all().map_err(|error| StreamError::io(&temporary, error))?;
    std::fs::rename(&temporary, target).map_err(|error| StreamError::io(target, error))?;
    if let Some(dir) = target.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| StreamError::io(dir, error))?;
    }
    Ok(())
}

fn load_checkpoint(checkpoint_path: &Path, input: &Path, fingerprint: &str) -> Result<Option<Checkpoint>, StreamError> {
    let bytes = match std::fs::read(checkpoint_path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StreamError::io(checkpoint_path, error)),
    };
    let file: CheckpointFile = serde_json::from_slice(&bytes).map_err(|error| StreamError::Checkpoint {
        path: checkpoint_path.display().to_string(),
        problem: error.to_string(),
    })?;
    if file.input_fingerprint != fingerprint {
        return Err(StreamError::Checkpoint {
            path: checkpoint_path.display().to_string(),
            problem: format!(
                "it belongs to another input than {:?} (first lines differ); remove it to start over",
                input.display().to_string()
            ),
        });
    }
    Ok(Some(file.checkpoint))
}

/// A hash of the first line of a file (without consuming it), as hex.
fn first_line_fingerprint(reader: &mut BufReader<File>) -> std::io::Result<String> {
    let buffered = reader.fill_buf()?;
    let end = buffered
        .iter()
        .position(|byte| *byte == b'\n')
        .unwrap_or(buffered.len());
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&buffered[..end])))
}
