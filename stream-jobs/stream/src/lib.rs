//! # qoe-stream: `qoe stream`, the minute-rollup job
//!
//! Drives the [`qoe_rollup::Engine`] from an input (an NDJSON file of beacon records; Kafka's
//! `qoe.beacons.v1`) into outputs (`ndjson:DIR`, [`EsOutput`] `es:URL`, [`KafkaOutput`]
//! `kafka:TOPIC`); [`run_index`] is `qoe index`, rollups from Kafka into Elasticsearch. Records
//! are validated exactly as the collector
//! validates them ([`qoe_schemas::parse_record`]); invalid ones are counted by reason and skipped,
//! never stopping the job.
//!
//! Guarantee: a window's final documents are written to **every** output before the window is
//! acknowledged, and input positions are saved only from the engine's checkpoint, which never moves
//! past a record of an unacknowledged window. A job killed at any moment and restarted from its last
//! checkpoint writes the same final documents (same ids, same content): no window lost, none counted
//! twice. Outputs must therefore tolerate a document written again (Elasticsearch and the NDJSON
//! reader keep the last version of an id).
//!
//! ```no_run
//! use qoe_stream::{run_file, FileRun, Metrics, NdjsonOutput, Output};
//! let mut outputs: Vec<Box<dyn Output>> = vec![Box::new(NdjsonOutput::new("rollups".as_ref())?)];
//! let setup = FileRun { engine: Default::default(), early_every: None, checkpoint: None };
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let report = run_file("beacons.ndjson".as_ref(), setup, &mut outputs, &Metrics::new(), &shutdown)?;
//! println!("{} beacons counted, {} late", report.counted, report.late);
//! # Ok::<(), qoe_stream::StreamError>(())
//! ```

mod alert_job;
mod alerts;
mod checkpoint_topic;
mod driver;
mod es;
mod file;
mod index;
mod kafka;
mod kafka_output;
pub mod metrics;
pub mod output;

use std::path::Path;

pub use alert_job::{run_alerts, AlertRunReport};
pub use alerts::{AlertOutput, AlertSink};
pub use driver::StreamReport;
pub use es::EsOutput;
pub use file::{run_file, FileRun};
pub use index::{run_index, IndexInput, IndexReport};
pub use kafka::{run_kafka, KafkaInput, CHECKPOINT_TOPIC};
pub use kafka_output::KafkaOutput;
pub use metrics::Metrics;
pub use output::{read_ndjson_dir, NdjsonOutput, Output};

/// What can stop the stream job.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A file-system operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: String,
        /// What failed.
        #[source]
        error: std::io::Error,
    },
    /// The engine's settings are wrong.
    #[error(transparent)]
    Config(#[from] qoe_rollup::RollupError),
    /// A checkpoint file cannot be used.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The checkpoint file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The alert rules could not evaluate a window.
    #[error("alerts: {0}")]
    Alert(String),
    /// The alert webhook did not take the events.
    #[error("alert webhook {0}")]
    Webhook(String),
    /// The Elasticsearch output failed.
    #[error(transparent)]
    Elasticsearch(#[from] qoe_es::EsError),
    /// A line of an NDJSON output is not a rollup document.
    #[error("{path} line {line}: not a rollup document v1: {error}")]
    Document {
        /// The file.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        error: String,
    },
}

impl StreamError {
    fn io(path: &Path, error: std::io::Error) -> Self {
        StreamError::Io {
            path: path.display().to_string(),
            error,
        }
    }
}
