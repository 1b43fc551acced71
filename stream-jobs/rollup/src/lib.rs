//! # qoe-rollup: minute rollups of beacons, without IO
//!
//! The core of `qoe stream`, in the manner of a sans-IO crate: validated [`qoe_schemas::Beacon`]s go
//! in with their partition, offset and the processing time, and rollup documents v1 ([`RollupDoc`])
//! and [`Checkpoint`]s come out. Reading Kafka or files, writing Elasticsearch, Kafka or NDJSON, and
//! the clock belong to the driver (`qoe-stream`).
//!
//! - [`doc`]: the rollup document v1 (the Elasticsearch and file contract), the four [`Grain`]s and
//!   the deterministic document id;
//! - [`engine`]: event-time tumbling windows, per-partition watermarks and allowed lateness,
//!   `(session_id, seq)` de-duplication, early results, and the checkpoint that makes a restart
//!   converge to the same documents.
//!
//! Guarantees: every count and sum is exact; percentiles come from [`qoe_sketch::Sketch`] and are
//! within its relative accuracy (0.5 % by default) of the order statistic `x_⌊q(n−1)⌋`; documents of a
//! window are a function of the beacons it counted, whatever their order; a window's final documents
//! are handed out once per run, and a run resumed from a [`Checkpoint`] hands out the same final
//! documents for every window not acknowledged before it (see [`engine`]). `docs/metrics.md`
//! defines every field.
//!
//! ```
//! use qoe_rollup::{Engine, EngineConfig, Grain, Offer};
//! let beacon = qoe_schemas::parse_record(
//!     r#"{"v":1,"type":"play_start","ts":1763800000000,"session_id":"s1","seq":0,"room_id":"r1","platform":"ios","cdn":"cdn-a"}"#,
//! ).unwrap();
//! let mut engine = Engine::new(EngineConfig::default(), None).unwrap();
//! assert_eq!(engine.offer(0, 0, &beacon, 0), Offer::Counted);
//! assert_eq!(engine.offer(0, 1, &beacon, 0), Offer::Duplicate);
//! let emissions = engine.finish();
//! let cdn_doc = &emissions[0].docs[0];
//! assert_eq!((cdn_doc.grain, cdn_doc.cdn.as_deref(), cdn_doc.play_starts), (Grain::Cdn, Some("cdn-a"), 1));
//! assert_eq!(cdn_doc.timestamp, "2025-11-22T08:26:00Z");
//! assert_eq!(cdn_doc.region.as_deref(), Some("unknown"));
//! ```

mod accumulator;
pub mod doc;
pub mod engine;

pub use doc::{
    doc_id, CountField, Grain, Hist, RollupDoc, Stats, COUNT_FIELDS, ROLLUPS_TOPIC, ROLLUP_VERSION, UNKNOWN,
};
pub use engine::{Checkpoint, Emission, Engine, EngineConfig, EngineStats, Offer, PartitionCheckpoint};

/// What the rollup core refuses.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RollupError {
    /// A setting is out of range.
    #[error("{setting}: {problem}")]
    Config {
        /// The setting.
        setting: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}
