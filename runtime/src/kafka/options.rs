//! What the user says about Kafka: the brokers, the `--kafka-option KEY=VALUE` pass-through
//! properties (one parser, one rule), and the topic a consumer group reads.

use std::time::Duration;

/// The brokers and the user's librdkafka properties, shared by every client of a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaOptions {
    /// Bootstrap servers, comma-separated `host:port`.
    pub brokers: String,
    /// The user's librdkafka properties, in the order given (a later one wins over an earlier
    /// one of the same key).
    pub overrides: Vec<(String, String)>,
}

impl KafkaOptions {
    /// Options for `brokers`, without overrides.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaOptions {
            brokers: brokers.into(),
            overrides: Vec::new(),
        }
    }

    /// The same options with `overrides`.
    pub fn with_overrides(mut self, overrides: Vec<(String, String)>) -> Self {
        self.overrides = overrides;
        self
    }
}

/// A topic read by a consumer group: what every Kafka input of the pipeline is given.
#[derive(Debug, Clone)]
pub struct TopicInput {
    /// The brokers and the user's properties.
    pub kafka: KafkaOptions,
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub group_id: String,
    /// Stop when nothing arrived for this long (after the first record; before it, for this long
    /// or 60 s, whichever is longer), for tests and backfills; `None` runs until shutdown.
    pub exit_when_idle: Option<Duration>,
}

/// A `--kafka-option` that is not `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--kafka-option {flag:?}: expected KEY=VALUE")]
pub struct OptionError {
    /// The flag as given.
    pub flag: String,
}

/// One `--kafka-option`: key and value trimmed; an empty key, or no `=`, is an error naming the
/// flag. The value may be empty and may contain `=` and `,` (`debug=broker,topic`).
///
/// ```
/// use qoe_runtime::kafka::parse_override;
///
/// assert_eq!(parse_override(" client.id = qoe ").unwrap(), ("client.id".into(), "qoe".into()));
/// assert_eq!(parse_override("=1").unwrap_err().to_string(), "--kafka-option \"=1\": expected KEY=VALUE");
/// ```
pub fn parse_override(flag: &str) -> Result<(String, String), OptionError> {
    match flag.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.trim().to_string())),
        _ => Err(OptionError { flag: flag.to_string() }),
    }
}

/// Every `--kafka-option`, in the order given; the first malformed one is the error.
pub fn parse_overrides(flags: &[String]) -> Result<Vec<(String, String)>, OptionError> {
    flags.iter().map(|flag| parse_override(flag)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_trimmed_and_malformed_ones_named() {
        let flags = ["client.id = qoe ".to_string(), "debug=broker,topic".to_string()];
        assert_eq!(
            parse_overrides(&flags).unwrap(),
            [
                ("client.id".to_string(), "qoe".to_string()),
                ("debug".to_string(), "broker,topic".to_string())
            ]
        );
        for bad in ["no-equals", "=value", " =value"] {
            let error = parse_overrides(&[bad.to_string()]).unwrap_err().to_string();
            assert_eq!(error, format!("--kafka-option {bad:?}: expected KEY=VALUE"));
        }
    }
}
