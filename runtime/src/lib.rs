//! What every process of qoe-pipeline shares at run time, so that each concern has one home:
//!
//! - [`kafka`] (feature `kafka`): every Kafka consumer, producer and admin client of the pipeline
//!   is built here, from one typed [`kafka::KafkaOptions`], with one precedence rule (the pipeline's
//!   defaults, then the user's `--kafka-option KEY=VALUE`s, then the pipeline's requirements, which
//!   a user option may not touch); the one `KEY=VALUE` parser; topic administration.
//! - [`metrics`] (feature `metrics`): registering Prometheus metrics in a registry, and rendering it.
//! - [`clock`]: the wall clock, in Unix milliseconds.
//!
//! Guarantees: a client built here always carries the pipeline's safety settings (an idempotent
//! producer with `acks=all`; consumers that read committed records only and never commit on their
//! own); a user option that would change one of them is refused with an error naming the key and
//! the setting that owns it, before any client is created.

pub mod clock;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "metrics")]
pub mod metrics;
