//! The `--es-*` flags shared by `qoe stream`, `qoe index` and `qoe alert`.

use anyhow::bail;
use qoe_es::{EsConfig, Retention};

/// How to reach Elasticsearch and what to install there.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EsArgs {
    /// Basic-auth user name for Elasticsearch.
    #[arg(long, env = "QOE_ES_USERNAME")]
    es_username: Option<String>,
    /// Basic-auth password for Elasticsearch.
    #[arg(long, env = "QOE_ES_PASSWORD", hide_env_values = true)]
    es_password: Option<String>,
    /// Elasticsearch API key (base64 `id:key`, as Kibana shows it), instead of a user name.
    #[arg(long, env = "QOE_ES_API_KEY", hide_env_values = true)]
    es_api_key: Option<String>,
    /// Index names start with this: daily indices `<prefix>-v1-YYYY.MM.DD-1`, alias `<prefix>`.
    #[arg(long, default_value = "qoe-rollups")]
    es_index_prefix: String,
    /// How old documents are removed: `ilm` (a lifecycle policy deletes daily indices after
    /// --es-retention-weeks; stateful clusters) or `none` (serverless, or managed elsewhere).
    #[arg(long, default_value = "ilm")]
    es_retention: String,
    /// Weeks a daily index is kept (with `--es-retention ilm`).
    #[arg(long, default_value_t = 8)]
    es_retention_weeks: u32,
    /// Primary shards per daily index (stateful clusters; default: the cluster's).
    #[arg(long)]
    es_shards: Option<u32>,
    /// Replicas per shard (stateful clusters; default: the cluster's).
    #[arg(long)]
    es_replicas: Option<u32>,
    /// How long a write keeps retrying a busy or unreachable cluster before the job stops, seconds.
    #[arg(long, default_value_t = 600)]
    es_retry_for_secs: u64,
}

impl EsArgs {
    /// The sink settings for `url`.
    pub(crate) fn config(&self, url: &str) -> anyhow::Result<EsConfig> {
        let retention = match self.es_retention.as_str() {
            "ilm" => Retention::Ilm,
            "none" => Retention::None,
            other => bail!("--es-retention {other:?}: expected ilm or none"),
        };
        let config = EsConfig {
            url: url.to_string(),
            username: self.es_username.clone(),
            password: self.es_password.clone(),
            api_key: self.es_api_key.clone(),
            index_prefix: self.es_index_prefix.clone(),
            retention_weeks: self.es_retention_weeks,
            retention,
            shards: self.es_shards,
            replicas: self.es_replicas,
            retry_for_secs: self.es_retry_for_secs,
            ..EsConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}
