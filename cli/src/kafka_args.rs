//! `--kafka-option KEY=VALUE`, the librdkafka pass-through flag every Kafka command takes: one parser,
//! one rule. Key and value are trimmed; an empty key, or a flag without `=`, is an error naming the
//! flag. Which keys a command refuses (the ones its typed settings own) is the command's to check.

use anyhow::bail;

/// The `--kafka-option` flags as `(key, value)` pairs, in the order given.
pub(crate) fn kafka_options(flags: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    flags
        .iter()
        .map(|option| match option.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_string(), value.trim().to_string())),
            _ => bail!("--kafka-option {option:?}: expected KEY=VALUE"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_trimmed_and_malformed_ones_named() {
        let flags = ["client.id = qoe ".to_string(), "debug=broker,topic".to_string()];
        assert_eq!(
            kafka_options(&flags).unwrap(),
            [
                ("client.id".to_string(), "qoe".to_string()),
                ("debug".to_string(), "broker,topic".to_string())
            ]
        );
        for bad in ["no-equals", "=value", " =value"] {
            let error = kafka_options(&[bad.to_string()]).unwrap_err().to_string();
            assert_eq!(error, format!("--kafka-option {bad:?}: expected KEY=VALUE"));
        }
    }
}
