//! Alerting: the `--alert-*` flags of `qoe stream`, and `qoe alert` over `qoe.rollups.v1`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use qoe_alert::RuleSet;
use qoe_runtime::kafka::KafkaOptions;
use qoe_stream::{AlertOutput, AlertSink, KafkaOutput};
use tokio_util::sync::CancellationToken;

use crate::es_args::EsArgs;

/// Which rules, where their events go, and where their state is kept.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct AlertArgs {
    /// The alert rule file (TOML, `stream-jobs/alert/README.md`), or `default` for the built-in
    /// rules (CDN stall ratio, viewer re-entry incidents, slow startup).
    #[arg(long)]
    alert_rules: Option<String>,
    /// Where alert events go (repeatable): `ndjson:DIR`, `es:URL` (the `qoe-alerts` indices, with
    /// the --es-* flags), `kafka:TOPIC` (e.g. `kafka:qoe.alerts`) or `webhook:URL` (Alertmanager
    /// webhook JSON).
    #[arg(long = "alert-output")]
    alert_outputs: Vec<String>,
    /// Keep the rules' state (durations, baselines, firing alerts) in this file across restarts.
    #[arg(long)]
    alert_state: Option<PathBuf>,
}

impl AlertArgs {
    /// The alerting output, if rules were given.
    pub(crate) async fn output(
        &self,
        es: &EsArgs,
        kafka: &KafkaOptions,
        es_metrics: &qoe_es::EsMetrics,
    ) -> anyhow::Result<Option<AlertOutput>> {
        let Some(rules) = &self.alert_rules else {
            if !self.alert_outputs.is_empty() || self.alert_state.is_some() {
                bail!("--alert-output and --alert-state need --alert-rules");
            }
            return Ok(None);
        };
        let rules = if rules == "default" {
            RuleSet::default_rules()
        } else {
            let text = std::fs::read_to_string(rules).with_context(|| format!("--alert-rules {rules}"))?;
            RuleSet::from_toml(&text).with_context(|| format!("--alert-rules {rules}"))?
        };
        if self.alert_outputs.is_empty() {
            bail!("--alert-rules needs at least one --alert-output (ndjson:DIR, es:URL, kafka:TOPIC, webhook:URL)");
        }
        let mut sinks = Vec::new();
        for spec in &self.alert_outputs {
            let sink = if let Some(dir) = spec.strip_prefix("ndjson:").filter(|dir| !dir.is_empty()) {
                AlertSink::Ndjson(PathBuf::from(dir))
            } else if let Some(url) = spec.strip_prefix("es:") {
                let mut config = es.config(url).with_context(|| format!("--alert-output {spec:?}"))?;
                config.index_prefix = qoe_alert::ALERTS_INDEX.to_string();
                AlertSink::elasticsearch(config, es_metrics.clone())
                    .await
                    .with_context(|| format!("--alert-output {spec:?}"))?
            } else if let Some(topic) = spec.strip_prefix("kafka:") {
                AlertSink::Kafka(KafkaOutput::new(kafka, topic).with_context(|| format!("--alert-output {spec:?}"))?)
            } else if let Some(url) = spec.strip_prefix("webhook:").filter(|url| url.starts_with("http")) {
                AlertSink::Webhook(url.to_string())
            } else {
                bail!("--alert-output {spec:?}: expected ndjson:DIR, es:URL, kafka:TOPIC or webhook:http(s)://...");
            };
            sinks.push(sink);
        }
        Ok(Some(AlertOutput::new(rules, sinks, self.alert_state.clone())?))
    }
}

/// Evaluate alert rules over rollup documents from Kafka.
#[derive(Debug, clap::Args)]
pub(crate) struct AlertCommandArgs {
    #[command(flatten)]
    alerts: AlertArgs,
    #[command(flatten)]
    es: EsArgs,
    #[command(flatten)]
    reader: crate::index::RollupReaderArgs,
}

pub(crate) async fn run(args: AlertCommandArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    if let Some(addr) = args.reader.metrics_addr {
        crate::metrics_server::spawn(addr, registry.clone(), shutdown.clone()).await?;
    }
    let input = args.reader.input("qoe-alert")?;
    if args.alerts.alert_rules.is_none() {
        bail!("qoe alert needs --alert-rules FILE (or default)");
    }
    let Some(mut output) = args
        .alerts
        .output(&args.es, &input.kafka, &qoe_es::EsMetrics::new(&registry))
        .await?
    else {
        bail!("qoe alert needs --alert-rules FILE (or default)");
    };
    let report = tokio::task::spawn_blocking(move || qoe_stream::run_alerts(&input, &mut output, &shutdown))
        .await
        .context("alert thread")?
        .context("alert job failed")?;
    println!(
        "alert: {} records: {} final documents in {} windows, {} early skipped, {} invalid; {} alert events",
        report.records, report.documents, report.windows, report.early, report.invalid, report.events
    );
    Ok(())
}
