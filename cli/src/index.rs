//! `qoe index`: rollup documents from Kafka (`qoe.rollups.v1`) into Elasticsearch, for rollups
//! produced elsewhere (`qoe stream --output kafka:`, the Arroyo pipeline).

use std::time::Duration;

use anyhow::Context;
use qoe_runtime::kafka::{parse_overrides, KafkaOptions, TopicInput};
use qoe_stream::EsOutput;
use tokio_util::sync::CancellationToken;

use crate::es_args::EsArgs;

/// Where a reader of the rollup topic (`qoe index`, `qoe alert`) reads, and how it stops.
#[derive(Debug, clap::Args)]
pub(crate) struct RollupReaderArgs {
    /// Kafka bootstrap brokers, comma-separated host:port.
    #[arg(long, env = "QOE_BROKERS", default_value = "127.0.0.1:9092")]
    pub(crate) brokers: String,
    /// The rollup topic.
    #[arg(long, default_value = qoe_rollup::ROLLUPS_TOPIC)]
    topic: String,
    /// The consumer group (several readers in one group share the partitions); default: the
    /// command's name (`qoe-index`, `qoe-alert`).
    #[arg(long)]
    group_id: Option<String>,
    /// A librdkafka client property KEY=VALUE; repeat for several.
    #[arg(long = "kafka-option")]
    kafka_options: Vec<String>,
    /// Stop when nothing arrived for this many seconds (backfills, tests).
    #[arg(long)]
    exit_when_idle_secs: Option<u64>,
    /// Serve the job's metrics at http://ADDR/metrics.
    #[arg(long)]
    pub(crate) metrics_addr: Option<std::net::SocketAddr>,
}

impl RollupReaderArgs {
    /// The Kafka input, with `default_group` unless --group-id is given.
    pub(crate) fn input(&self, default_group: &str) -> anyhow::Result<TopicInput> {
        Ok(TopicInput {
            kafka: KafkaOptions::new(&self.brokers).with_overrides(parse_overrides(&self.kafka_options)?),
            topic: self.topic.clone(),
            group_id: self.group_id.clone().unwrap_or_else(|| default_group.to_string()),
            exit_when_idle: self.exit_when_idle_secs.map(Duration::from_secs),
        })
    }
}

/// Index rollup documents from Kafka into Elasticsearch.
#[derive(Debug, clap::Args)]
pub(crate) struct IndexArgs {
    /// The Elasticsearch URL (`http://127.0.0.1:9200`).
    #[arg(long, env = "QOE_ES_URL")]
    es_url: String,
    #[command(flatten)]
    es: EsArgs,
    #[command(flatten)]
    reader: RollupReaderArgs,
}

pub(crate) async fn run(args: IndexArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    if let Some(addr) = args.reader.metrics_addr {
        crate::metrics_server::spawn(addr, registry.clone(), shutdown.clone()).await?;
    }
    let config = args.es.config(&args.es_url).context("--es-url")?;
    let output = EsOutput::connect(config, qoe_es::EsMetrics::new(&registry))
        .await
        .context("--es-url")?;
    let input = args.reader.input("qoe-index")?;
    let report = tokio::task::spawn_blocking(move || qoe_stream::run_index(&input, &output, &registry, &shutdown))
        .await
        .context("indexer thread")?
        .context("indexer failed")?;
    println!(
        "index: {} records: {} documents indexed, {} not rollup documents",
        report.records, report.indexed, report.invalid
    );
    for sample in &report.rejection_samples {
        println!("  skipped {sample}");
    }
    Ok(())
}
