//! Where rollup documents go. An output has the documents when [`Output::write`] returns `Ok`:
//! the driver acknowledges a window, and lets the input's offsets move past it, only then.
//!
//! - `ndjson.rs`: [`NdjsonOutput`], `ndjson:DIR`, NDJSON files, one per UTC day;
//! - `elasticsearch.rs`: [`EsOutput`], `es:URL`, the rollup indices;
//! - `kafka.rs`: [`KafkaOutput`], `kafka:TOPIC`, a topic that `qoe index` and `qoe alert` read;
//! - `alerts.rs`: [`AlertOutput`], the alert rules over each final window, their events to an
//!   [`AlertSink`] (a webhook, Elasticsearch, a topic or a directory).

mod alerts;
mod elasticsearch;
mod kafka;
mod ndjson;

use qoe_rollup::Emission;

pub use alerts::{AlertOutput, AlertSink};
pub use elasticsearch::EsOutput;
pub use kafka::KafkaOutput;
pub use ndjson::{read_ndjson_dir, NdjsonOutput};

use crate::error::StreamError;

/// A destination of rollup documents.
pub trait Output: Send {
    /// A short name for logs and errors (`ndjson:DIR`, ...).
    fn name(&self) -> String;

    /// Writes every document of `emissions` durably; `Ok` means they survive a crash of this process.
    fn write(&mut self, emissions: &[Emission]) -> Result<(), StreamError>;
}
