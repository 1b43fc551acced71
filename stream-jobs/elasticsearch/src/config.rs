//! How the sink reaches a cluster and what it installs there.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::EsError;

/// How old documents are removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// An index lifecycle (ILM) policy that deletes each daily index once its window date is
    /// older than the retention; installed with the template. Stateful clusters only (Elastic
    /// Cloud Serverless has no ILM).
    Ilm,
    /// Nothing is installed or deleted: retention is the operator's (a curator job, a serverless
    /// project's settings). The template still names no policy.
    None,
}

/// The Elasticsearch sink's settings (`--output es:URL` and the `--es-*` flags of `qoe stream`,
/// `qoe index` and `qoe alert`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EsConfig {
    /// The cluster's URL (`http://127.0.0.1:9200`, `https://...:443`).
    pub url: String,
    /// Basic-auth user name (with `password`).
    pub username: Option<String>,
    /// Basic-auth password.
    pub password: Option<String>,
    /// An API key, base64-encoded `id:key` as Kibana shows it (instead of a user name).
    pub api_key: Option<String>,
    /// Index names start with this: daily indices `<prefix>-v1-YYYY.MM.DD-1`, the template
    /// `<prefix>-v1`, the alias `<prefix>`.
    pub index_prefix: String,
    /// How long documents are kept, in weeks, by the index lifecycle (`retention = "ilm"`).
    pub retention_weeks: u32,
    /// How old documents are removed.
    pub retention: Retention,
    /// Primary shards per daily index (stateful clusters; unset: the cluster's default, 1).
    pub shards: Option<u32>,
    /// Replicas per primary shard (stateful clusters; unset: the cluster's default, 1).
    pub replicas: Option<u32>,
    /// Documents per `_bulk` request, at most.
    pub bulk_max_docs: usize,
    /// Bytes per `_bulk` request body, at most (Elasticsearch refuses bodies over
    /// `http.max_content_length`, 100 MB by default).
    pub bulk_max_bytes: usize,
    /// How long a batch keeps retrying rejected items (429), and a request an unreachable or busy
    /// cluster, before the write fails, seconds. The job then stops without committing its input, and a restart resumes.
    pub retry_for_secs: u64,
    /// The first back-off after a rejection, milliseconds; it doubles up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// The longest back-off, milliseconds.
    pub max_backoff_ms: u64,
    /// The timeout of one HTTP request, seconds.
    pub request_timeout_secs: u64,
}

impl Default for EsConfig {
    fn default() -> Self {
        EsConfig {
            url: "http://127.0.0.1:9200".to_string(),
            username: None,
            password: None,
            api_key: None,
            index_prefix: "qoe-rollups".to_string(),
            retention_weeks: 8,
            retention: Retention::Ilm,
            shards: None,
            replicas: None,
            bulk_max_docs: 5_000,
            bulk_max_bytes: 10 << 20,
            retry_for_secs: 600,
            initial_backoff_ms: 200,
            max_backoff_ms: 30_000,
            request_timeout_secs: 60,
        }
    }
}

impl EsConfig {
    /// Checks the settings, naming the first wrong one.
    pub fn validate(&self) -> Result<(), EsError> {
        let bad = |field: &str, problem: String| {
            Err(EsError::Config {
                field: field.to_string(),
                problem,
            })
        };
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return bad("url", format!("{:?} is not an http:// or https:// URL", self.url));
        }
        if self.password.is_some() != self.username.is_some() {
            return bad("username", "a user name and a password go together".to_string());
        }
        if self.api_key.is_some() && self.username.is_some() {
            return bad("api_key", "use either an API key or a user name, not both".to_string());
        }
        let prefix_ok = !self.index_prefix.is_empty()
            && self
                .index_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && !self.index_prefix.starts_with(['-', '_']);
        if !prefix_ok {
            return bad(
                "index_prefix",
                format!(
                    "{:?} is not a valid index name start (lowercase letters, digits, - and _, not first)",
                    self.index_prefix
                ),
            );
        }
        if self.retention_weeks == 0 {
            return bad("retention_weeks", "must be at least 1".to_string());
        }
        if self.shards == Some(0) {
            return bad("shards", "must be at least 1".to_string());
        }
        if self.bulk_max_docs == 0 {
            return bad("bulk_max_docs", "must be at least 1".to_string());
        }
        if self.bulk_max_bytes < 1 << 16 {
            return bad("bulk_max_bytes", format!("{} is less than 64 KiB", self.bulk_max_bytes));
        }
        if self.initial_backoff_ms == 0 || self.initial_backoff_ms > self.max_backoff_ms {
            return bad(
                "initial_backoff_ms",
                format!(
                    "{} must be at least 1 and at most max_backoff_ms ({})",
                    self.initial_backoff_ms, self.max_backoff_ms
                ),
            );
        }
        if self.request_timeout_secs == 0 {
            return bad("request_timeout_secs", "must be at least 1".to_string());
        }
        Ok(())
    }

    /// The template's name (and the lifecycle policy's).
    pub fn template_name(&self) -> String {
        format!("{}-v1", self.index_prefix)
    }

    /// The alias every daily index joins: what dashboards query.
    pub fn alias(&self) -> String {
        self.index_prefix.clone()
    }

    /// The daily index of the window starting at `window_start_ms`, named by the window's UTC date
    /// so that the lifecycle ages a backfilled day by its data, not by when it was written
    /// (`index.lifecycle.parse_origination_date` reads `-yyyy.MM.dd-<n>` from the name).
    pub fn index_for(&self, window_start_ms: i64) -> String {
        let (year, month, day) =
            qoe_schemas::time::civil_from_days(window_start_ms.div_euclid(qoe_schemas::time::DAY_MS));
        format!("{}-v1-{year:04}.{month:02}.{day:02}-1", self.index_prefix)
    }

    /// How long one request may take.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_index_is_named_by_the_window_date() {
        let config = EsConfig::default();
        // 2026-11-26T23:59:00Z and the next minute.
        assert_eq!(config.index_for(1_795_737_540_000), "qoe-rollups-v1-2026.11.26-1");
        assert_eq!(config.index_for(1_795_737_600_000), "qoe-rollups-v1-2026.11.27-1");
        assert_eq!(config.index_for(0), "qoe-rollups-v1-1970.01.01-1");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut config = EsConfig {
            index_prefix: "QoE".to_string(),
            ..EsConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("elasticsearch setting index_prefix: \"QoE\""),
            "{error}"
        );
        config.index_prefix = "qoe".to_string();
        config.url = "127.0.0.1:9200".to_string();
        assert!(config.validate().unwrap_err().to_string().contains("url"));
        config.url = "https://es.example:443".to_string();
        config.username = Some("elastic".to_string());
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("password go together"));
        config.password = Some("secret".to_string());
        assert!(config.validate().is_ok());
    }
}
