//! `qoe collector`: flags and `QOE_*` variables over an optional TOML file over the defaults.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use qoe_collector::CollectorConfig;

/// Runs the beacon collector: HTTP intake into Kafka.
///
/// Precedence: command-line flags, then `QOE_*` environment variables, then the TOML file given by
/// `--config`, then the built-in defaults. A list (write keys, Kafka options) set at a higher level
/// replaces the whole list of a lower one.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct CollectorArgs {
    /// TOML configuration file (see docs/collector.md for every key).
    #[arg(long, env = "QOE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "QOE_LISTEN")]
    pub(crate) listen: Option<SocketAddr>,
    /// Kafka bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "QOE_BROKERS")]
    pub(crate) brokers: Option<String>,
    /// A write key, ID:SECRET or a bare SECRET; repeat for several (QOE_WRITE_KEYS: comma-separated).
    #[arg(long = "write-key", env = "QOE_WRITE_KEYS", value_delimiter = ',')]
    pub(crate) write_keys: Vec<String>,
    /// File of write keys, one ID:SECRET per line.
    #[arg(long, env = "QOE_WRITE_KEYS_FILE")]
    pub(crate) write_keys_file: Option<PathBuf>,
    /// Topic for accepted beacons.
    #[arg(long, env = "QOE_TOPIC")]
    pub(crate) topic: Option<String>,
    /// Topic for rejected beacons.
    #[arg(long, env = "QOE_DLQ_TOPIC")]
    pub(crate) dlq_topic: Option<String>,
    /// Producer compression: lz4, zstd, gzip, snappy or none.
    #[arg(long, env = "QOE_KAFKA_COMPRESSION")]
    pub(crate) compression: Option<String>,
    /// Producer linger, ms.
    #[arg(long, env = "QOE_KAFKA_LINGER_MS")]
    pub(crate) linger_ms: Option<u64>,
    /// How long a request waits for Kafka's acknowledgement before 503, ms.
    #[arg(long, env = "QOE_PRODUCE_TIMEOUT_MS")]
    pub(crate) produce_timeout_ms: Option<u64>,
    /// A librdkafka producer property KEY=VALUE, passed through; repeat for several
    /// (QOE_KAFKA_OPTIONS: separated by `;`, since values such as `debug=broker,topic` hold commas).
    #[arg(long = "kafka-option", env = "QOE_KAFKA_OPTIONS", value_delimiter = ';')]
    pub(crate) kafka_options: Vec<String>,
    /// Largest request body as sent, bytes.
    #[arg(long, env = "QOE_MAX_BODY_BYTES")]
    pub(crate) max_body_bytes: Option<usize>,
    /// Largest request body after decompression, bytes.
    #[arg(long, env = "QOE_MAX_DECODED_BYTES")]
    pub(crate) max_decoded_bytes: Option<usize>,
    /// Most beacons in one request.
    #[arg(long, env = "QOE_MAX_BEACONS")]
    pub(crate) max_beacons: Option<usize>,
    /// Largest accepted event time in the future, seconds.
    #[arg(long, env = "QOE_MAX_FUTURE_SECS")]
    pub(crate) max_future_secs: Option<u64>,
    /// Largest accepted event-time age, seconds.
    #[arg(long, env = "QOE_MAX_AGE_SECS")]
    pub(crate) max_age_secs: Option<u64>,
    /// Per write key beacons/s (0: no limit).
    #[arg(long, env = "QOE_RATE_LIMIT")]
    pub(crate) rate_limit: Option<u64>,
    /// Per write key burst, beacons.
    #[arg(long, env = "QOE_RATE_BURST")]
    pub(crate) rate_burst: Option<u64>,
    /// Take the client address from the last X-Forwarded-For entry (only behind a proxy that sets it).
    #[arg(long, env = "QOE_TRUST_FORWARDED_FOR", num_args = 0..=1, default_missing_value = "true")]
    pub(crate) trust_forwarded_for: Option<bool>,
    /// Most records waiting in the producer before requests get 503 at once.
    #[arg(long, env = "QOE_KAFKA_QUEUE_MAX_MESSAGES")]
    pub(crate) queue_max_messages: Option<u64>,
    /// Access-Control-Allow-Origin value.
    #[arg(long, env = "QOE_CORS_ALLOW_ORIGIN")]
    pub(crate) cors_allow_origin: Option<String>,
    /// Graceful shutdown timeout, seconds.
    #[arg(long, env = "QOE_SHUTDOWN_TIMEOUT_SECS")]
    pub(crate) shutdown_timeout_secs: Option<u64>,
    /// Per write key decoded body bytes/s (0: no limit).
    #[arg(long, env = "QOE_RATE_LIMIT_BYTES")]
    pub(crate) rate_limit_bytes: Option<u64>,
    /// Per write key burst, decoded bytes.
    #[arg(long, env = "QOE_RATE_BURST_BYTES")]
    pub(crate) rate_burst_bytes: Option<u64>,
    /// Failed authentications per second per client address (0: no limit).
    #[arg(long, env = "QOE_AUTH_FAILURES_PER_SEC")]
    pub(crate) auth_failures_per_sec: Option<u64>,
    /// Failed authentications a client address may make at once.
    #[arg(long, env = "QOE_AUTH_FAILURES_BURST")]
    pub(crate) auth_failures_burst: Option<u64>,
    /// Most connections open at once (0: 90 % of the descriptor limit less 256, at least 64).
    #[arg(long, env = "QOE_MAX_CONNECTIONS")]
    pub(crate) max_connections: Option<usize>,
    /// Seconds from accepting a connection to the end of its first request's headers (then closed).
    #[arg(long, env = "QOE_HEADER_TIMEOUT_SECS")]
    pub(crate) header_timeout_secs: Option<u64>,
    /// Seconds from a request's headers to the end of its body (then 408).
    #[arg(long, env = "QOE_BODY_TIMEOUT_SECS")]
    pub(crate) body_timeout_secs: Option<u64>,
    /// Seconds a kept-alive connection may wait for its next request (then closed).
    #[arg(long, env = "QOE_IDLE_TIMEOUT_SECS")]
    pub(crate) idle_timeout_secs: Option<u64>,
    /// Most bytes of request bodies held at once, received and decompressed (then 503).
    #[arg(long, env = "QOE_MAX_INFLIGHT_BYTES")]
    pub(crate) max_inflight_bytes: Option<u64>,
    /// Serve /metrics on this address instead of the public one.
    #[arg(long, env = "QOE_METRICS_LISTEN")]
    pub(crate) metrics_listen: Option<SocketAddr>,
}

impl CollectorArgs {
    /// The configuration: defaults, then the file, then these flags and variables.
    pub(crate) fn resolve(&self) -> anyhow::Result<CollectorConfig> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("config file {:?} could not be read", path.display()))?;
                toml::from_str::<CollectorConfig>(&text)
                    .with_context(|| format!("config file {:?} is not a valid collector config", path.display()))?
            }
            None => CollectorConfig::default(),
        };
        set(&mut config.listen, self.listen);
        set(&mut config.kafka.brokers, self.brokers.clone());
        if !self.write_keys.is_empty() {
            config.write_keys = self.write_keys.clone();
        }
        if self.write_keys_file.is_some() {
            config.write_keys_file = self.write_keys_file.clone();
        }
        set(&mut config.kafka.topic, self.topic.clone());
        set(&mut config.kafka.dlq_topic, self.dlq_topic.clone());
        set(&mut config.kafka.compression, self.compression.clone());
        set(&mut config.kafka.linger_ms, self.linger_ms);
        set(&mut config.kafka.produce_timeout_ms, self.produce_timeout_ms);
        set(&mut config.kafka.queue_max_messages, self.queue_max_messages);
        if !self.kafka_options.is_empty() {
            config.kafka.options = parse_options(&self.kafka_options)?;
        }
        set(&mut config.limits.max_body_bytes, self.max_body_bytes);
        set(&mut config.limits.max_decoded_bytes, self.max_decoded_bytes);
        set(&mut config.limits.max_beacons, self.max_beacons);
        set(&mut config.event_time.max_future_secs, self.max_future_secs);
        set(&mut config.event_time.max_age_secs, self.max_age_secs);
        set(&mut config.rate_limit.beacons_per_sec, self.rate_limit);
        set(&mut config.rate_limit.burst, self.rate_burst);
        set(&mut config.trust_forwarded_for, self.trust_forwarded_for);
        set(&mut config.cors_allow_origin, self.cors_allow_origin.clone());
        set(&mut config.shutdown_timeout_secs, self.shutdown_timeout_secs);
        set(&mut config.rate_limit.bytes_per_sec, self.rate_limit_bytes);
        set(&mut config.rate_limit.burst_bytes, self.rate_burst_bytes);
        set(&mut config.rate_limit.auth_failures_per_sec, self.auth_failures_per_sec);
        set(&mut config.rate_limit.auth_failures_burst, self.auth_failures_burst);
        let connections = &mut config.connections;
        set(&mut connections.max_connections, self.max_connections);
        set(&mut connections.header_timeout_secs, self.header_timeout_secs);
        set(&mut connections.body_timeout_secs, self.body_timeout_secs);
        set(&mut connections.idle_timeout_secs, self.idle_timeout_secs);
        set(&mut connections.max_inflight_bytes, self.max_inflight_bytes);
        if self.metrics_listen.is_some() {
            config.metrics_listen = self.metrics_listen;
        }
        config.check()?;
        Ok(config)
    }
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

fn parse_options(options: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(qoe_runtime::kafka::parse_overrides(options)?.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: CollectorArgs,
    }

    /// The full file in docs/collector.md is a valid configuration and its values are the defaults.
    #[test]
    fn the_documented_file_holds_the_defaults() {
        let doc = include_str!("../../docs/collector.md");
        let start = doc.find("```toml\n").expect("a toml block in docs/collector.md") + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let documented: CollectorConfig = toml::from_str(&doc[start..end]).unwrap();
        assert_eq!(documented, CollectorConfig::default());
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("qoe-cli-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("collector.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nwrite_keys = [\"file:from-the-file\"]\n[kafka]\nbrokers = \"file-broker:9092\"\nlinger_ms = 7\n",
        )
        .unwrap();
        let wrapper = Wrapper::parse_from([
            "qoe",
            "--config",
            file.to_str().unwrap(),
            "--brokers",
            "flag-broker:9092",
            "--kafka-option",
            "socket.keepalive.enable=true",
        ]);
        let config = wrapper.args.resolve().unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.kafka.brokers, "flag-broker:9092");
        assert_eq!(config.kafka.linger_ms, 7);
        assert_eq!(config.write_keys, ["file:from-the-file"]);
        assert_eq!(config.kafka.options["socket.keepalive.enable"], "true");
        assert_eq!(config.kafka.topic, "qoe.beacons.v1");
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_that_names_the_key() {
        let dir = std::env::temp_dir().join(format!("qoe-cli-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("collector.toml");
        std::fs::write(&file, "[kafka]\nbroker = \"x:1\"\n").unwrap();
        let wrapper = Wrapper::parse_from(["qoe", "--config", file.to_str().unwrap()]);
        let error = format!("{:#}", wrapper.args.resolve().unwrap_err());
        assert!(error.contains("unknown field `broker`"), "{error}");
    }
}
