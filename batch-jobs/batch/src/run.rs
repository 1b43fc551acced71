//! Driving the job from its inputs: an NDJSON file (backfills, benchmarks, tests) or `qoe.beacons.v1`.
//!
//! Delivery guarantee: at-least-once reading, exactly-once files. The warehouse's manifests, not the
//! consumer group, say what is stored: a source resumes right after its last committed offset, and
//! records before it are skipped when they are delivered again. Group offsets are committed after each
//! flush for lag monitoring only.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qoe_runtime::kafka::{ClientSpec, TopicInput};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::job::{Job, JobConfig, Offer};
use crate::metrics::Metrics;
use crate::parse::{parse_blocks, read_blocks, BlockLine, InSequence, ParsedBlock, RawBlock};
use crate::BatchError;

/// With `exit_when_idle`, how long to wait for the first record at least.
const FIRST_RECORD_WAIT: Duration = Duration::from_secs(60);

/// How many rejection messages a run report keeps.
const REJECTION_SAMPLES: usize = 10;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunReport {
    /// Records buffered and committed.
    pub accepted: u64,
    /// Repeats of `(session_id, seq)` dropped.
    pub duplicates: u64,
    /// Invalid records dropped.
    pub rejected: u64,
    /// Records before the resume point, skipped.
    pub already_stored: u64,
    /// Flushes committed.
    pub flushes: u64,
    /// Beacon rows written.
    pub rows: u64,
    /// The first rejections, as `<source>@<offset>: <field>: <problem>`.
    pub rejection_samples: Vec<String>,
    /// The input file ended with a line without its newline (still being written?): it was not read,
    /// and the next run over the file reads it.
    pub incomplete_last_line: bool,
}

impl RunReport {
    fn count(&mut self, source: &str, offset: i64, offer: Offer) {
        match offer {
            Offer::Accepted => self.accepted += 1,
            Offer::AlreadyStored => self.already_stored += 1,
            Offer::Duplicate => self.duplicates += 1,
            Offer::Rejected(error) => {
                self.rejected += 1;
                if self.rejection_samples.len() < REJECTION_SAMPLES {
                    self.rejection_samples.push(format!("{source}@{offset}: {error}"));
                }
            }
        }
    }
}

fn flush(job: &mut Job, report: &mut RunReport, sources: Vec<String>) -> Result<Vec<(String, i64)>, BatchError> {
    let mut committed = Vec::new();
    for source in sources {
        if let Some(stats) = job.flush(&source)? {
            report.flushes += 1;
            report.rows += stats.rows;
            job.metrics()
                .committed_offset
                .with_label_values(&[source.as_str()])
                .set(stats.next_offset);
            committed.push((source, stats.next_offset));
        }
    }
    Ok(committed)
}

/// [`qoe_schemas::first_line_fingerprint`] of a file, without consuming the line.
fn first_line_fingerprint(reader: &mut BufReader<File>) -> std::io::Result<String> {
    Ok(qoe_schemas::first_line_fingerprint(reader.fill_buf()?))
}

/// The source id of an input file: `f-` and its file name, with characters other than letters,
/// digits, `_` and `-` replaced by `_`.
pub fn file_source_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("f-{clean}")
}

/// Blocks the reader may read ahead of the workers, and the workers parse ahead of the job: enough to
/// keep them busy while the job writes a flush. (Blocks finished out of order wait beside these: at
/// most about one per other worker while one block takes long; a worker that fails sends its error.)
const READ_AHEAD_BLOCKS: usize = 16;

/// Offers the records of a parsed block in offset order, flushing whenever the policy says so.
fn offer_block(
    job: &mut Job,
    report: &mut RunReport,
    source: &str,
    block: ParsedBlock,
    spent: &Sender<Vec<BlockLine>>,
) -> Result<(), BatchError> {
    job.begin_block(source, block.batches)?;
    for line in &block.lines {
        match line {
            BlockLine::Stored => {
                report.already_stored += 1;
                job.metrics().already_stored.inc();
            }
            BlockLine::Incomplete => report.incomplete_last_line = true,
            BlockLine::Record(offset, parsed) => {
                let offer = job.offer_placed(source, *offset, parsed.as_ref())?;
                report.count(source, *offset, offer);
                let due = job.due();
                if !due.is_empty() {
                    flush(job, report, due)?;
                }
            }
        }
    }
    // The workers free the beacons (a send fails only when they are gone: then they are freed here).
    let _ = spent.send(block.lines);
    job.end_block(source)
}

/// Reads an NDJSON file of beacon records (one per line; the line number, from 0, is the offset) into
/// the warehouse, resuming after the last line committed by an earlier run over the same file name.
/// A reader thread cuts the file into blocks of lines, one worker per core parses them into columns
/// (`src/parse.rs`), and the job decides on each record in offset order. Stops early, after
/// committing what it read, when `shutdown` is cancelled.
pub fn run_file(
    path: &Path,
    config: JobConfig,
    metrics: Metrics,
    shutdown: &CancellationToken,
) -> Result<RunReport, BatchError> {
    let io_error = |operation| move |error| BatchError::io(operation, path, error);
    let source = file_source_id(path);
    let mut job = Job::new(config, metrics)?;
    let mut report = RunReport::default();
    let next = job.open_source(&source)?;
    let file = File::open(path).map_err(io_error("opening"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let fingerprint = first_line_fingerprint(&mut reader).map_err(io_error("reading"))?;
    match job.fingerprint(&source) {
        Some(committed) if committed != fingerprint => {
            return Err(BatchError::InputMismatch {
                path: path.display().to_string(),
                source_id: source,
            })
        }
        Some(_) => {}
        None => job.set_fingerprint(&source, fingerprint),
    }
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let (raw_sender, raw_receiver) = std::sync::mpsc::sync_channel::<RawBlock>(READ_AHEAD_BLOCKS);
    let (parsed_sender, parsed_receiver) = std::sync::mpsc::sync_channel(READ_AHEAD_BLOCKS);
    // Shared by the workers; the reader's sends fail once the last worker is gone.
    let raw_receiver = Arc::new(Mutex::new(raw_receiver));
    let (spent_sender, spent_receiver) = std::sync::mpsc::channel();
    let spent_receiver = Arc::new(Mutex::new(spent_receiver));
    std::thread::scope(|scope| -> Result<(), BatchError> {
        let reading = scope.spawn(move || read_blocks(reader, next, &raw_sender));
        let parsing: Vec<_> = (0..workers)
            .map(|_| {
                let input = Arc::clone(&raw_receiver);
                let spent = Arc::clone(&spent_receiver);
                let output = parsed_sender.clone();
                scope.spawn(move || parse_blocks(input, spent, &output))
            })
            .collect();
        drop((raw_receiver, spent_receiver, parsed_sender));
        let mut in_sequence = InSequence::default();
        'blocks: for parsed in parsed_receiver.iter() {
            for block in in_sequence.push(parsed?) {
                offer_block(&mut job, &mut report, &source, block, &spent_sender)?;
                if shutdown.is_cancelled() {
                    break 'blocks;
                }
            }
        }
        let stopped = shutdown.is_cancelled();
        // Dropping the receiver (on shutdown) makes the workers, then the reader, stop at their next send.
        drop(parsed_receiver);
        for worker in parsing {
            if worker.join().is_err() {
                return Err(BatchError::Join("a parsing thread panicked".to_string()));
            }
        }
        match reading.join() {
            Ok(result) => result.map_err(io_error("reading"))?,
            Err(_) => return Err(BatchError::Join("the file reader thread panicked".to_string())),
        }
        if !stopped && in_sequence.stranded() > 0 {
            return Err(BatchError::Join(
                "the parsing threads stopped before the end of the file".to_string(),
            ));
        }
        Ok(())
    })?;
    let pending = job.pending();
    flush(&mut job, &mut report, pending)?;
    Ok(report)
}

/// Partitions revoked by a rebalance, handed from the consumer's callback to the loop; when the last
/// rebalance ended (no records come while the group rebalances, which is not idleness); and the
/// assignment's size as a gauge.
struct RebalanceContext {
    revoked: Mutex<Vec<i32>>,
    rebalanced_at: Mutex<Option<Instant>>,
    assigned: prometheus::IntGauge,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            revoked.extend(partitions.elements().iter().map(|element| element.partition()));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        // The whole assignment, whatever the protocol: an incremental (cooperative) rebalance names
        // only the partitions that changed.
        let assigned = consumer.assignment().map_or(0, |assignment| assignment.count());
        self.assigned.set(i64::try_from(assigned).unwrap_or(i64::MAX));
        *self
            .rebalanced_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
    }
}

/// Errors that retrying does not cure: a missing topic, refused credentials or permissions.
fn is_fatal(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::UnknownTopicOrPartition
                | Code::UnknownTopic
                | Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::SaslAuthenticationFailed
                | Code::Fatal
        )
    )
}

fn partition_source(partition: i32) -> String {
    format!("p{partition}")
}

/// Commits the offsets of flushed partitions to the consumer group, for lag monitoring only: a failure
/// is logged, because the warehouse's manifests hold the offsets that count.
fn commit_group(consumer: &BaseConsumer<RebalanceContext>, topic: &str, committed: &[(String, i64)], mode: CommitMode) {
    let mut offsets = TopicPartitionList::new();
    for (source, next) in committed {
        if let Some(partition) = source.strip_prefix('p').and_then(|number| number.parse::<i32>().ok()) {
            let _ = offsets.add_partition_offset(topic, partition, Offset::Offset(*next));
        }
    }
    if offsets.count() == 0 {
        return;
    }
    if let Err(error) = consumer.commit(&offsets, mode) {
        tracing::warn!(%error, "consumer group commit failed (the warehouse's manifests still hold the offsets)");
    }
}

/// Reports a source whose first record is past the offset its manifest resumes from: the records
/// between were never stored (tansu 0.6.0 answers a fetch at an offset inside a record batch from
/// the next batch; retention may have deleted them). A source never stored (resume 0) is not
/// checked: a new warehouse on a topic with retention starts where the topic starts.
fn check_resume(source: &str, resume: i64, first: i64, metrics: &Metrics) {
    if resume == 0 || first <= resume {
        return;
    }
    let skipped = (first - resume) as u64;
    metrics.resume_skipped.inc_by(skipped);
    tracing::error!(
        source,
        resume_offset = resume,
        first_offset = first,
        skipped,
        "the broker returned records after the resume offset: the records between were never stored"
    );
}

/// Reads `qoe.beacons.v1` with a consumer group into the warehouse until `shutdown` (or idleness, if
/// asked), committing a flush per partition as the policy says and a last one at the end.
pub fn run_kafka(
    input: &TopicInput,
    config: JobConfig,
    metrics: Metrics,
    shutdown: &CancellationToken,
) -> Result<RunReport, BatchError> {
    let context = RebalanceContext {
        revoked: Mutex::default(),
        rebalanced_at: Mutex::default(),
        assigned: metrics.assigned_partitions.clone(),
    };
    let consumer: BaseConsumer<RebalanceContext> =
        ClientSpec::consumer("the batch job's consumer", &input.kafka, &input.group_id)
            .require(
                "enable.auto.offset.store",
                &[],
                "false",
                "the pipeline (offsets are stored after a flush is committed)",
            )
            .require(
                "enable.partition.eof",
                &[],
                "false",
                "the pipeline (the job does not read end-of-partition events)",
            )
            .create_with_context(context)
            .map_err(|source| BatchError::KafkaClient {
                context: format!("building the consumer of {:?}", input.topic),
                source,
            })?;
    consumer
        .subscribe(&[input.topic.as_str()])
        .map_err(|source| BatchError::Kafka {
            context: format!("subscribing to {:?}", input.topic),
            source,
        })?;
    let mut job = Job::new(config, metrics.clone())?;
    let mut report = RunReport::default();
    let mut last_record = Instant::now();
    let mut seen_record = false;
    let mut last_warning: Option<Instant> = None;
    let mut opened: Vec<String> = Vec::new();
    while !shutdown.is_cancelled() {
        let message = consumer.poll(Duration::from_millis(100));
        let revoked: Vec<i32> = std::mem::take(
            &mut *consumer
                .context()
                .revoked
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        for partition in revoked {
            let source = partition_source(partition);
            job.close_source(&source);
            opened.retain(|known| *known != source);
        }
        // Idle only when the poll itself found nothing (after a long flush the records that came
        // meanwhile are waiting in the consumer's queue), counted from the last record or the end
        // of the last rebalance, whichever is later.
        if let (None, Some(idle)) = (&message, input.exit_when_idle) {
            // Before the first record, allow for joining the group (tansu takes about 23 s).
            let limit = if seen_record { idle } else { idle.max(FIRST_RECORD_WAIT) };
            let rebalanced_at = *consumer
                .context()
                .rebalanced_at
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let quiet_since = rebalanced_at.map_or(last_record, |at| at.max(last_record));
            if quiet_since.elapsed() >= limit {
                break;
            }
        }
        match message {
            None => {}
            Some(Err(error)) => {
                if is_fatal(&error) {
                    return Err(BatchError::Kafka {
                        context: format!("reading {:?}", input.topic),
                        source: error,
                    });
                }
                if last_warning.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(%error, "kafka consumer error (retrying; logged at most every 10 s)");
                    last_warning = Some(Instant::now());
                }
            }
            Some(Ok(message)) => {
                last_record = Instant::now();
                seen_record = true;
                let source = partition_source(message.partition());
                if !opened.contains(&source) {
                    let resume = job.open_source(&source)?;
                    opened.push(source.clone());
                    check_resume(&source, resume, message.offset(), &metrics);
                }
                let payload = message.payload().unwrap_or_default();
                let offer = job.offer(&source, message.offset(), payload)?;
                report.count(&source, message.offset(), offer);
            }
        }
        let due = job.due();
        if !due.is_empty() {
            let committed = flush(&mut job, &mut report, due)?;
            commit_group(&consumer, &input.topic, &committed, CommitMode::Async);
        }
    }
    let pending = job.pending();
    let committed = flush(&mut job, &mut report, pending)?;
    commit_group(&consumer, &input.topic, &committed, CommitMode::Sync);
    Ok(report)
}

/// The input of a run.
#[derive(Debug, Clone)]
pub enum Input {
    /// An NDJSON file.
    File(PathBuf),
    /// The beacon topic, read by the job's consumer group.
    Kafka(TopicInput),
}

/// Runs the job on a blocking thread (it does file IO and Parquet encoding throughout).
pub async fn run(
    input: Input,
    config: JobConfig,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<RunReport, BatchError> {
    let task = tokio::task::spawn_blocking(move || match input {
        Input::File(path) => run_file(&path, config, metrics, &shutdown),
        Input::Kafka(kafka) => run_kafka(&kafka, config, metrics, &shutdown),
    });
    task.await.map_err(BatchError::Task)?
}
