//! Collector configuration: what `qoe collector` reads from flags, `QOE_*` variables and a TOML file.
//!
//! Every field has a default, so an empty file is a valid configuration (but a collector with no write
//! key refuses to start). Unknown keys in the file are an error, so a typo is never silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use qoe_runtime::kafka::{ClientSpec, KafkaClientError, KafkaOptions};
use serde::Deserialize;

use qoe_schemas::wire::Limits;

/// The whole collector configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Write keys, each `ID:SECRET` or a bare `SECRET` (its id is then derived from a hash of the secret).
    pub write_keys: Vec<String>,
    /// A file of write keys, one `ID:SECRET` (or bare `SECRET`) per line; `#` starts a comment.
    pub write_keys_file: Option<PathBuf>,
    /// Kafka producer settings.
    pub kafka: KafkaConfig,
    /// Request size limits.
    pub limits: Limits,
    /// Event-time acceptance window.
    pub event_time: EventTimeConfig,
    /// Per-write-key rate limit.
    pub rate_limit: RateLimitConfig,
    /// Take the client address from the last `X-Forwarded-For` entry (the one the nearest proxy
    /// appended). Enable only behind a proxy or load balancer that sets it; otherwise clients can
    /// claim any address.
    pub trust_forwarded_for: bool,
    /// Value of `Access-Control-Allow-Origin` on beacon responses (`*` by default; write keys are not
    /// cookies, so any origin may post).
    pub cors_allow_origin: String,
    /// How long graceful shutdown waits for in-flight requests and the producer flush, seconds.
    pub shutdown_timeout_secs: u64,
    /// Serve `/metrics` on this address instead of the public one (which then answers 404 there).
    pub metrics_listen: Option<SocketAddr>,
    /// Connection limits and timeouts: what a client that sends slowly or nothing at all gets.
    pub connections: ConnectionConfig,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            write_keys: Vec::new(),
            write_keys_file: None,
            kafka: KafkaConfig::default(),
            limits: Limits::default(),
            event_time: EventTimeConfig::default(),
            rate_limit: RateLimitConfig::default(),
            trust_forwarded_for: false,
            cors_allow_origin: "*".to_string(),
            shutdown_timeout_secs: 30,
            metrics_listen: None,
            connections: ConnectionConfig::default(),
        }
    }
}

/// Connection limits and timeouts (the "Hostile clients" section of `docs/collector.md`). The
/// defaults are of the order nginx and Envoy ship: seconds for headers, tens of seconds for a body,
/// a minute of keep-alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// Most connections open at once; 0 sizes it from the process's descriptor limit
    /// ([`ConnectionConfig::effective_max_connections`]). At the cap, a new connection closes the one
    /// idle longest.
    pub max_connections: usize,
    /// From accepting a connection to the end of its first request's headers, seconds.
    pub header_timeout_secs: u64,
    /// From the end of a request's headers to the end of its body, seconds (then 408).
    pub body_timeout_secs: u64,
    /// From a response to the end of the next request's headers on a kept-alive connection, seconds.
    pub idle_timeout_secs: u64,
    /// Most bytes of request bodies held at once across all requests, as received and decompressed;
    /// past it, requests get 503 `overloaded` with `Retry-After`.
    pub max_inflight_bytes: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_connections: 0,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            max_inflight_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Descriptors kept back from the connection cap for Kafka sockets, files and the metrics listener.
const RESERVED_DESCRIPTORS: u64 = 256;

impl ConnectionConfig {
    /// The connection cap: `max_connections`, or when 0, 90 % of the descriptors left after
    /// [`RESERVED_DESCRIPTORS`] under the soft `RLIMIT_NOFILE` (read from `/proc/self/limits`), at
    /// least 64; 4096 where the limit cannot be read.
    pub fn effective_max_connections(&self) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        match descriptor_limit() {
            Some(limit) => (limit.saturating_sub(RESERVED_DESCRIPTORS) * 9 / 10).max(64) as usize,
            None => 4096,
        }
    }
}

/// The soft limit on open files, from `/proc/self/limits` (Linux); `None` elsewhere or when unlimited.
fn descriptor_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Kafka producer settings. The durability settings are fixed: idempotence on, `acks=all`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Topic for accepted beacons.
    pub topic: String,
    /// Topic for rejected beacons, with the reason.
    pub dlq_topic: String,
    /// Batch compression: `lz4`, `zstd`, `gzip`, `snappy` or `none`.
    pub compression: String,
    /// How long the producer waits to fill a batch, ms. Adds at most this to request latency.
    pub linger_ms: u64,
    /// How long a request waits for Kafka to acknowledge its beacons before answering 503, ms.
    /// Also librdkafka's `message.timeout.ms`.
    pub produce_timeout_ms: u64,
    /// Most messages waiting in the producer queue; past it requests get 503 at once.
    pub queue_max_messages: u64,
    /// Other librdkafka producer properties, passed through unchanged. Properties that a typed
    /// setting above owns are refused, so the two can never disagree.
    pub options: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".to_string(),
            topic: qoe_schemas::BEACONS_TOPIC.to_string(),
            dlq_topic: qoe_schemas::DLQ_TOPIC.to_string(),
            compression: "lz4".to_string(),
            linger_ms: 5,
            produce_timeout_ms: 10_000,
            queue_max_messages: 500_000,
            options: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The brokers and the pass-through options.
    pub fn options(&self) -> KafkaOptions {
        KafkaOptions::new(&self.brokers).with_overrides(
            self.options
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        )
    }

    /// The producer's properties: the pipeline's producer (idempotent, `acks=all`, every
    /// acknowledgement awaited), the typed settings here, which a pass-through option may not
    /// touch, and `client.id=qoe-collector` unless an option sets it.
    pub fn client_spec(&self) -> ClientSpec {
        ClientSpec::producer("the collector's producer", &self.options())
            .require(
                "compression.type",
                &["compression.codec"],
                &self.compression,
                "kafka.compression",
            )
            .require(
                "linger.ms",
                &["queue.buffering.max.ms"],
                self.linger_ms,
                "kafka.linger_ms",
            )
            .require(
                "message.timeout.ms",
                &["delivery.timeout.ms"],
                self.produce_timeout_ms,
                "kafka.produce_timeout_ms",
            )
            .require(
                "queue.buffering.max.messages",
                &[],
                self.queue_max_messages,
                "kafka.queue_max_messages",
            )
            .default("client.id", "qoe-collector")
    }
}

/// Which event times are accepted, relative to the time the request was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventTimeConfig {
    /// Largest accepted distance into the future, seconds.
    pub max_future_secs: u64,
    /// Largest accepted age, seconds. SDKs that buffer beacons offline send them late; simulated
    /// backfills send hours-old beacons.
    pub max_age_secs: u64,
}

impl Default for EventTimeConfig {
    fn default() -> Self {
        EventTimeConfig {
            max_future_secs: 300,
            max_age_secs: 7 * 24 * 3600,
        }
    }
}

/// Token buckets per write key, one counted in beacons and one in decoded body bytes, and one per
/// client address counted in failed authentications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained beacons per second per write key; 0 turns the limit off.
    pub beacons_per_sec: u64,
    /// Bucket size: beacons a key may send at once after being idle.
    pub burst: u64,
    /// Sustained decoded body bytes per second per write key; 0 turns the limit off.
    pub bytes_per_sec: u64,
    /// Bucket size in decoded bytes.
    pub burst_bytes: u64,
    /// Sustained failed authentications (no key or an unknown one) per second per client address
    /// (IPv4, or the /64 of an IPv6 address); 0 turns the limit off.
    pub auth_failures_per_sec: u64,
    /// Failed authentications an address may make at once before it gets 429 `auth_rate_limited`.
    pub auth_failures_burst: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            beacons_per_sec: 200_000,
            burst: 400_000,
            bytes_per_sec: 128 * 1024 * 1024,
            burst_bytes: 256 * 1024 * 1024,
            auth_failures_per_sec: 1,
            auth_failures_burst: 20,
        }
    }
}

/// A configuration problem found before the collector starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A write key is malformed.
    #[error("write key {0:?}: {1}")]
    WriteKey(String, &'static str),
    /// The keys file could not be read.
    #[error("write keys file {path:?}")]
    KeysFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// No write key configured.
    #[error("no write key: give --write-key ID:SECRET or --write-keys-file FILE")]
    NoWriteKey,
    /// A pass-through Kafka property that a typed setting or the producer's durability owns.
    #[error(transparent)]
    OwnedKafkaOption(#[from] KafkaClientError),
    /// A value out of its range.
    #[error("{field}: {problem}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl CollectorConfig {
    /// Checks the settings that can be checked without IO.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.kafka.client_spec().check()?;
        let compressions = ["lz4", "zstd", "gzip", "snappy", "none"];
        if !compressions.contains(&self.kafka.compression.as_str()) {
            return Err(ConfigError::Invalid {
                field: "kafka.compression",
                problem: format!("{:?} is not one of {}", self.kafka.compression, compressions.join(", ")),
            });
        }
        if self.kafka.produce_timeout_ms <= self.kafka.linger_ms {
            return Err(ConfigError::Invalid {
                field: "kafka.produce_timeout_ms",
                problem: format!(
                    "{} must be larger than kafka.linger_ms ({})",
                    self.kafka.produce_timeout_ms, self.kafka.linger_ms
                ),
            });
        }
        if self.limits.max_decoded_bytes < self.limits.max_body_bytes {
            return Err(ConfigError::Invalid {
                field: "limits.max_decoded_bytes",
                problem: "must be at least limits.max_body_bytes".to_string(),
            });
        }
        if (self.limits.max_beacons as u64).saturating_mul(2) > self.kafka.queue_max_messages {
            return Err(ConfigError::Invalid {
                field: "kafka.queue_max_messages",
                problem: format!(
                    "{} is below twice limits.max_beacons ({}): one full request could never be queued",
                    self.kafka.queue_max_messages, self.limits.max_beacons
                ),
            });
        }
        let rate = self.rate_limit;
        if rate.beacons_per_sec > 0 && (rate.burst as usize) < self.limits.max_beacons {
            return Err(ConfigError::Invalid {
                field: "rate_limit.burst",
                problem: format!(
                    "{} is smaller than limits.max_beacons ({}), so one full request could never pass",
                    rate.burst, self.limits.max_beacons
                ),
            });
        }
        if rate.bytes_per_sec > 0 && (rate.burst_bytes as usize) < self.limits.max_decoded_bytes {
            return Err(ConfigError::Invalid {
                field: "rate_limit.burst_bytes",
                problem: format!(
                    "{} is smaller than limits.max_decoded_bytes ({}), so one full request could never pass",
                    rate.burst_bytes, self.limits.max_decoded_bytes
                ),
            });
        }
        if rate.auth_failures_per_sec > 0 && rate.auth_failures_burst == 0 {
            return Err(ConfigError::Invalid {
                field: "rate_limit.auth_failures_burst",
                problem: "must be at least 1 when rate_limit.auth_failures_per_sec is set".to_string(),
            });
        }
        let connections = self.connections;
        for (field, secs) in [
            ("connections.header_timeout_secs", connections.header_timeout_secs),
            ("connections.body_timeout_secs", connections.body_timeout_secs),
            ("connections.idle_timeout_secs", connections.idle_timeout_secs),
        ] {
            if secs == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    problem: "must be at least 1 second".to_string(),
                });
            }
        }
        if (connections.max_inflight_bytes as usize) < self.limits.max_body_bytes + self.limits.max_decoded_bytes {
            return Err(ConfigError::Invalid {
                field: "connections.max_inflight_bytes",
                problem: format!(
                    "{} is smaller than one full request (limits.max_body_bytes + limits.max_decoded_bytes = {})",
                    connections.max_inflight_bytes,
                    self.limits.max_body_bytes + self.limits.max_decoded_bytes
                ),
            });
        }
        if self.metrics_listen.is_some() && self.metrics_listen == Some(self.listen) {
            return Err(ConfigError::Invalid {
                field: "metrics_listen",
                problem: format!("{} is the public listen address", self.listen),
            });
        }
        let origin_is_header_safe = self.cors_allow_origin.bytes().all(|byte| (0x21..0x7f).contains(&byte));
        if self.cors_allow_origin.is_empty() || !origin_is_header_safe {
            return Err(ConfigError::Invalid {
                field: "cors_allow_origin",
                problem: format!("{:?} is not a valid header value", self.cors_allow_origin),
            });
        }
        if self.kafka.topic.is_empty() || self.kafka.dlq_topic.is_empty() {
            return Err(ConfigError::Invalid {
                field: "kafka.topic",
                problem: "topic names must not be empty".to_string(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_document_is_the_default_configuration() {
        // serde_json stands in for any self-describing format here; cli/src/collector.rs tests TOML.
        let config: CollectorConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, CollectorConfig::default());
        assert!(config.check().is_ok());
    }

    #[test]
    fn the_connection_cap_follows_the_descriptor_limit() {
        let config = ConnectionConfig::default();
        let cap = config.effective_max_connections();
        assert!(cap >= 64, "{cap}");
        if let Some(limit) = descriptor_limit() {
            assert!((cap as u64) < limit, "{cap} of {limit}");
        }
        let fixed = ConnectionConfig {
            max_connections: 300,
            ..config
        };
        assert_eq!(fixed.effective_max_connections(), 300);
    }

    #[test]
    fn a_burst_below_one_full_request_is_refused() {
        let mut config = CollectorConfig::default();
        config.rate_limit.burst = 10;
        let error = config.check().unwrap_err().to_string();
        assert!(
            error.starts_with("rate_limit.burst: 10 is smaller than limits.max_beacons"),
            "{error}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = serde_json::from_str::<CollectorConfig>(r#"{"listn": "0.0.0.0:1"}"#).unwrap_err();
        assert!(error.to_string().contains("unknown field `listn`"), "{error}");
    }

    #[test]
    fn pass_through_options_cannot_override_durability() {
        let mut config = CollectorConfig::default();
        config.kafka.options.insert("acks".into(), "1".into());
        let error = config.check().unwrap_err().to_string();
        assert_eq!(
            error,
            "kafka option \"acks=1\": set by the pipeline (acknowledged means written to every in-sync replica), remove it from the pass-through options"
        );
        config.kafka.options.clear();
        config
            .kafka
            .options
            .insert("socket.keepalive.enable".into(), "true".into());
        assert!(config.check().is_ok());
    }
}
