//! The local targets: `discard` (generate and count) and NDJSON files. Both run entirely on a blocking
//! thread, so neither generation nor file IO holds up the async runtime.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::report::{SimReport, TypeTally};
use crate::{generate, SimConfig, SimError};

/// How often (in beacons) the blocking loops look at the shutdown token.
pub(crate) const SHUTDOWN_CHECK_EVERY: u64 = 4_096;
/// Write buffer of the NDJSON file.
const FILE_BUFFER_BYTES: usize = 1 << 20;

/// What a blocking generation loop did.
#[derive(Debug, Default)]
struct LoopOutcome {
    tally: TypeTally,
    interrupted: bool,
}

/// Generates and counts only.
pub(crate) async fn run_discard(config: &SimConfig, shutdown: CancellationToken) -> Result<SimReport, SimError> {
    let mut report = SimReport::new(config);
    let started = Instant::now();
    let config = config.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut outcome = LoopOutcome::default();
        for beacon in generate(&config) {
            if outcome.tally.total() % SHUTDOWN_CHECK_EVERY == 0 && shutdown.is_cancelled() {
                outcome.interrupted = true;
                break;
            }
            outcome.tally.count(&beacon);
        }
        outcome
    })
    .await
    .map_err(|error| SimError::Task(error.to_string()))?;
    report.generated = outcome.tally.total();
    report.by_type = outcome.tally.by_name();
    report.interrupted = outcome.interrupted;
    report.finish(report.generated, started.elapsed().as_secs_f64());
    Ok(report)
}

/// Writes NDJSON to `<path>.tmp`, then renames it to `path` (also after an interruption: what was
/// written is complete lines).
pub(crate) async fn run_file(
    config: &SimConfig,
    path: PathBuf,
    shutdown: CancellationToken,
) -> Result<SimReport, SimError> {
    let mut report = SimReport::new(config);
    let started = Instant::now();
    let config = config.clone();
    let outcome = tokio::task::spawn_blocking(move || write_ndjson(&config, &path, &shutdown))
        .await
        .map_err(|error| SimError::Task(error.to_string()))??;
    report.generated = outcome.tally.total();
    report.sent = report.generated;
    report.by_type = outcome.tally.by_name();
    report.interrupted = outcome.interrupted;
    report.finish(report.sent, started.elapsed().as_secs_f64());
    Ok(report)
}

fn write_ndjson(config: &SimConfig, path: &Path, shutdown: &CancellationToken) -> Result<LoopOutcome, SimError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let file_error = |path: &Path| {
        let path = path.to_path_buf();
        move |cause: std::io::Error| SimError::File { path, cause }
    };
    let file = File::create(&temporary).map_err(file_error(&temporary))?;
    let mut writer = BufWriter::with_capacity(FILE_BUFFER_BYTES, file);
    let mut outcome = LoopOutcome::default();
    for beacon in generate(config) {
        if outcome.tally.total() % SHUTDOWN_CHECK_EVERY == 0 && shutdown.is_cancelled() {
            outcome.interrupted = true;
            break;
        }
        serde_json::to_writer(&mut writer, &beacon)
            .map_err(std::io::Error::from)
            .and_then(|()| writer.write_all(b"\n"))
            .map_err(file_error(&temporary))?;
        outcome.tally.count(&beacon);
    }
    writer.flush().map_err(file_error(&temporary))?;
    writer.get_ref().sync_data().map_err(file_error(&temporary))?;
    drop(writer);
    std::fs::rename(&temporary, path).map_err(file_error(path))?;
    tracing::debug!(path = %path.display(), beacons = outcome.tally.total(), "ndjson file written");
    Ok(outcome)
}
