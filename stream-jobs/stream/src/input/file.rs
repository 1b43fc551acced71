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
use std::time::{Duration, Instant};

use qoe_rollup::{Checkpoint, Engine, EngineConfig};
use serde::{Deserialize, Serialize};

use tokio_util::sync::CancellationToken;

use crate::driver::{Driver, StreamReport};
use crate::error::StreamError;
use crate::metrics::Metrics;
use crate::output::Output;

/// Records offered between two polls of the engine.
const POLL_EVERY_RECORDS: u64 = 4096;

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
    let checkpoint_target = setup.checkpoint.clone();
    let mut save = |checkpoint: Checkpoint| -> Result<(), StreamError> {
        let Some(target) = &checkpoint_target else {
            return Ok(());
        };
        let file = CheckpointFile {
            input_fingerprint: fingerprint.clone(),
            checkpoint,
        };
        write_atomically(target, &serde_json::to_vec_pretty(&file).unwrap_or_default())
    };
    let mut driver = Driver::new(&mut engine, outputs, metrics, &mut save);
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
        driver.offer(0, this, text);
        since_poll += 1;
        if since_poll >= POLL_EVERY_RECORDS {
            since_poll = 0;
            let emissions = driver.engine.poll(qoe_runtime::clock::epoch_ms_i64());
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
    let file: CheckpointFile = serde_json::from_slice(&bytes).map_err(|source| StreamError::CheckpointFormat {
        path: checkpoint_path.display().to_string(),
        what: "a stream job checkpoint file",
        source,
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

/// [`qoe_schemas::first_line_fingerprint`] of a file, without consuming the line.
fn first_line_fingerprint(reader: &mut BufReader<File>) -> std::io::Result<String> {
    Ok(qoe_schemas::first_line_fingerprint(reader.fill_buf()?))
}
