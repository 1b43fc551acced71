//! # qoe-batch: beacons into a Parquet warehouse, exactly once
//!
//! `qoe batch` reads `qoe.beacons.v1` (its own consumer group) or an NDJSON file of beacon records,
//! validates every record as the collector does ([`qoe_schemas::parse_record`]), drops repeats of
//! `(session_id, seq)`, and writes Hive-partitioned, zstd-compressed, sorted Parquet with statistics:
//! one table per beacon family (`play`, `push`, `room`, schemas in [`qoe_schemas::tables`]) partitioned
//! by event date and hour, and the `play_sessions` table, one row per play session, updated as its
//! beacons arrive and kept in the partition of the session's start.
//!
//! Guarantees:
//! - **exactly-once files from at-least-once delivery**: a flush of a source (a Kafka partition or an
//!   input file) is committed by one atomic rename of its manifest; a crash at any step leaves either the
//!   whole flush or nothing, and the next run resumes right after the last committed offset
//!   ([`warehouse`] describes the protocol);
//! - **deterministic**: the same records give the same beacon rows whatever the crashes and restarts,
//!   and the same sessions ([`job`] explains the rules that make de-duplication and session rows
//!   independent of flush timing; `docs/warehouse.md` lists the few `play_sessions` values that can
//!   depend on it when a session's beacons arrive out of event-time order);
//! - late beacons land in their own event-time partition; invalid records are counted by reason and
//!   never stop the job.
//!
//! ```no_run
//! use qoe_batch::{run_file, JobConfig, Metrics};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let report = run_file("beacons.ndjson".as_ref(), JobConfig::new("warehouse"), Metrics::new(), &shutdown)?;
//! println!("{} beacons stored, {} duplicates dropped", report.accepted, report.duplicates);
//! # Ok::<(), qoe_batch::BatchError>(())
//! ```

mod columns;
mod encode;
pub mod job;
mod keys;
pub mod metrics;
mod parse;
mod run;
pub mod sessions;
pub mod warehouse;

use std::path::PathBuf;

pub use job::{Job, JobConfig, Offer};
pub use metrics::Metrics;
pub use qoe_runtime::kafka::{KafkaOptions, TopicInput};
pub use run::{file_source_id, run, run_file, run_kafka, Input, RunReport};

/// What can stop the batch job. Messages are lowercase and name what was being done; a variant with
/// a cause holds it as its [`std::error::Error::source`] and does not repeat it in its message (the
/// binary prints the whole chain).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A file-system operation failed.
    #[error("{operation} {path:?}")]
    Io {
        /// What was being done ("writing", "renaming into place", …).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// Parquet encoding or decoding failed.
    #[error("{context}")]
    Parquet {
        /// What was being encoded or read.
        context: String,
        /// Parquet's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building or reading an Arrow batch failed.
    #[error("{context}")]
    Arrow {
        /// Which batch, or which file it was read from.
        context: String,
        /// Arrow's error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// A manifest could not be decoded or encoded as JSON.
    #[error("{operation} manifest {path:?}")]
    ManifestJson {
        /// `reading` or `encoding`.
        operation: &'static str,
        /// The manifest file.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A committed manifest does not match the files on disk.
    #[error("manifest {path:?}: {problem}")]
    Manifest {
        /// The manifest file, relative to the warehouse root.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// A record was offered for a source that is not open.
    #[error("source {0:?} is not open")]
    SourceNotOpen(String),
    /// The Kafka consumer could not be built: a `--kafka-option` the pipeline refuses, or a
    /// configuration librdkafka refuses.
    #[error("{context}")]
    KafkaClient {
        /// Which consumer, of which topic.
        context: String,
        /// Why it could not be built.
        #[source]
        source: qoe_runtime::kafka::KafkaClientError,
    },
    /// The Kafka consumer failed.
    #[error("{context}")]
    Kafka {
        /// What the consumer was doing, on which topic.
        context: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A thread of the job stopped before its work was done.
    #[error("batch job thread: {0}")]
    Join(String),
    /// The blocking task running the job panicked or was cancelled.
    #[error("the batch job's task failed")]
    Task(#[source] tokio::task::JoinError),
    /// A broken invariant of the job (a bug, never the input's fault).
    #[error("internal error: {0}")]
    Internal(String),
    /// Another writer committed this flush of the source first: this job no longer owns it.
    #[error(
        "source {source_id:?}: flush {seq} was committed by another writer (the partition moved to another consumer?)"
    )]
    LostOwnership {
        /// The source.
        source_id: String,
        /// The flush number.
        seq: u64,
    },
    /// An input file is not the one whose lines a source's commits hold.
    #[error("--input {path:?}: its first line differs from the file committed as source {source_id:?}; give the file another name, or use another warehouse")]
    InputMismatch {
        /// The input file.
        path: String,
        /// The source id its name maps to.
        source_id: String,
    },
    /// The test hook stopped the job at this step.
    #[error("injected crash at step {0}")]
    InjectedCrash(u64),
}

impl BatchError {
    /// A [`BatchError::Io`]: `operation` on `path` failed with `source`.
    pub(crate) fn io(operation: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        BatchError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    }
}
