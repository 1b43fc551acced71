//! Where the stream job's beacon records come from. Each input drives the engine through the
//! [`Driver`](crate::driver) and saves its position only from the engine's checkpoint:
//!
//! - `file.rs`: [`run_file`], `--input file:PATH`, an NDJSON file, resumable from a checkpoint file;
//! - `kafka.rs`: [`run_kafka`], `--input kafka`, every partition of `qoe.beacons.v1`, resumable
//!   from the checkpoint topic (`checkpoint_topic.rs`).

mod checkpoint_topic;
mod file;
mod kafka;

pub use checkpoint_topic::CHECKPOINT_TOPIC;
pub use file::{run_file, FileRun};
pub use kafka::{run_kafka, KafkaInput};
