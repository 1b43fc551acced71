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

mod driver;
mod error;
mod input;
mod jobs;
pub mod metrics;
pub mod output;

pub use driver::StreamReport;
pub use error::StreamError;
pub use input::{run_file, run_kafka, FileRun, KafkaInput, CHECKPOINT_TOPIC};
pub use jobs::{run_alerts, run_index, AlertRunReport, IndexReport};
pub use metrics::Metrics;
pub use output::{read_ndjson_dir, AlertOutput, AlertSink, EsOutput, KafkaOutput, NdjsonOutput, Output};
pub use qoe_runtime::kafka::{KafkaOptions, TopicInput};
