//! The pipeline's Kafka clients: every consumer, producer and admin client is built by a
//! [`ClientSpec`], from the user's [`KafkaOptions`], with one precedence rule.
//!
//! # Precedence
//!
//! A client's librdkafka properties are, from lowest to highest:
//!
//! 1. the pipeline's **defaults** for that client (`client.id`, `auto.offset.reset=earliest`,
//!    `linger.ms`, …), which a user option replaces;
//! 2. the user's **options** (`--kafka-option KEY=VALUE`, `[kafka.options]`): TLS, SASL, timeouts,
//!    socket settings, anything librdkafka knows;
//! 3. the pipeline's **requirements**, which its guarantees rest on: `bootstrap.servers` (from
//!    `--brokers`), `group.id` (from `--group-id`), `enable.idempotence=true` and `acks=all` for
//!    producers, `isolation.level=read_committed`, `enable.auto.commit=false` for consumers, and
//!    what the code reads (`enable.partition.eof`). A user option that names a required key, or one
//!    of its aliases (`metadata.broker.list`, `request.required.acks`, …), is refused with
//!    [`KafkaClientError::Refused`], naming the key and the setting that owns it, before any client
//!    is created. A user option cannot weaken a guarantee, and never silently loses to one.
//!
//! librdkafka itself refuses unknown properties when the client is created, naming them.
//!
//! ```
//! use qoe_runtime::kafka::{ClientSpec, KafkaOptions};
//!
//! let options = KafkaOptions::new("127.0.0.1:9092").with_overrides(vec![("acks".into(), "1".into())]);
//! let error = ClientSpec::producer("the rollup producer", &options).check().unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "kafka option \"acks=1\": set by the pipeline (acknowledged means written to every in-sync replica), remove it from the pass-through options"
//! );
//! ```

mod admin;
mod client;
mod options;

pub use admin::{create_topics, ensure_topic, topic_partitions, watermarks, NewTopicSpec, TopicOutcome, Watermarks};
pub use client::{ClientSpec, KafkaClientError};
pub use options::{parse_override, parse_overrides, KafkaOptions, OptionError, TopicInput};
