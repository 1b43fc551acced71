//! The two jobs over the rollup topic (`qoe.rollups.v1`) rather than over beacons:
//!
//! - `index.rs`: [`run_index`], `qoe index`, the documents into Elasticsearch;
//! - `alert.rs`: [`run_alerts`], `qoe alert`, the alert rules over the documents;
//! - `rollup_topic.rs`: the consumers both use (of a [`TopicInput`](qoe_runtime::kafka::TopicInput)) and the record format.

mod alert;
mod index;
mod rollup_topic;

pub use alert::{run_alerts, AlertRunReport};
pub use index::{run_index, IndexReport};
