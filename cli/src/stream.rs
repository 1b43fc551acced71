//! `qoe stream`: beacons (Kafka or an NDJSON file) into minute rollups, written to NDJSON files,
//! Elasticsearch and a Kafka topic.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use qoe_rollup::EngineConfig;
use qoe_runtime::kafka::{parse_overrides, KafkaOptions, TopicInput};
use qoe_stream::{EsOutput, FileRun, KafkaInput, KafkaOutput, Metrics, NdjsonOutput, Output};

use crate::es_args::EsArgs;
use tokio_util::sync::CancellationToken;

/// Roll beacons up into one-minute documents per CDN, edge node, room and publisher.
#[derive(Debug, clap::Args)]
pub(crate) struct StreamArgs {
    /// `kafka` (every partition of the beacon topic; the checkpoint kept on --checkpoint-topic) or
    /// `file:PATH` (NDJSON of beacon records, validated as the collector does).
    #[arg(long, default_value = "kafka")]
    input: String,
    /// Kafka bootstrap brokers, comma-separated host:port (for `--input kafka`).
    #[arg(long, env = "QOE_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The beacon topic.
    #[arg(long, default_value = qoe_schemas::BEACONS_TOPIC)]
    topic: String,
    /// The consumer group: the key of the job's checkpoint on --checkpoint-topic, and the group whose
    /// committed offsets show the job's lag. Two jobs must not share one.
    #[arg(long, default_value = "qoe-stream")]
    group_id: String,
    /// With `--input kafka`: the compacted topic that keeps the job's checkpoint, keyed by group id
    /// (created with one partition and cleanup.policy=compact if missing).
    #[arg(long, default_value = qoe_stream::CHECKPOINT_TOPIC)]
    checkpoint_topic: String,
    /// A librdkafka client property KEY=VALUE (TLS, SASL, ...); repeat for several.
    #[arg(long = "kafka-option")]
    kafka_options: Vec<String>,
    /// With `--input kafka`: close every window and stop when nothing arrived for this many seconds.
    #[arg(long)]
    exit_when_idle_secs: Option<u64>,
    /// Where documents go (repeatable): `ndjson:DIR`, `es:URL` (Elasticsearch; see the --es-*
    /// flags) or `kafka:TOPIC` (e.g. `kafka:qoe.rollups.v1`, on --brokers).
    #[arg(long = "output", required = true)]
    outputs: Vec<String>,
    #[command(flatten)]
    es: EsArgs,
    #[command(flatten)]
    alerts: crate::alert::AlertArgs,
    /// Serve the job's metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long)]
    metrics_addr: Option<std::net::SocketAddr>,
    /// How far behind a partition's newest event time a beacon may be and still count, seconds.
    #[arg(long, default_value_t = default_lateness_secs())]
    allowed_lateness_secs: u64,
    /// Write early results of the open minute this often, seconds (the final result overwrites them).
    #[arg(long)]
    early_every_secs: Option<u64>,
    /// Write grain `room` documents only for rooms with at least this many distinct play sessions in
    /// the minute.
    #[arg(long, default_value_t = 20)]
    room_min_viewers: u64,
    /// Remember `(session_id, seq)` for this long after its window closed, seconds.
    #[arg(long, default_value_t = 600)]
    dedup_horizon_secs: u64,
    /// With `--input file:`: resume from and keep this checkpoint file, so that a killed run started
    /// again continues where the outputs left off.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Write the run report (counts, first rejections) as JSON to this file.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

/// The engine's default allowed lateness in whole seconds, so the flag and the engine agree.
fn default_lateness_secs() -> u64 {
    u64::try_from(EngineConfig::default().allowed_lateness_ms / 1_000).unwrap_or(0)
}

pub(crate) async fn run(args: StreamArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let engine = EngineConfig {
        allowed_lateness_ms: seconds_ms("--allowed-lateness-secs", args.allowed_lateness_secs)?,
        dedup_horizon_ms: seconds_ms("--dedup-horizon-secs", args.dedup_horizon_secs)?,
        room_min_viewers: args.room_min_viewers,
        ..EngineConfig::default()
    };
    let early_every = match args.early_every_secs {
        Some(0) => bail!("--early-every-secs: must be at least 1"),
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => None,
    };
    let kafka = KafkaOptions::new(&args.brokers).with_overrides(parse_overrides(&args.kafka_options)?);
    let metrics = Metrics::new();
    if let Some(addr) = args.metrics_addr {
        crate::metrics_server::spawn(addr, metrics.registry.clone(), shutdown.clone()).await?;
    }
    let es_metrics = qoe_es::EsMetrics::new(&metrics.registry);
    let mut outputs: Vec<Box<dyn Output>> = Vec::new();
    for spec in &args.outputs {
        if let Some(dir) = spec.strip_prefix("ndjson:") {
            if dir.is_empty() {
                bail!("--output {spec:?}: ndjson: needs a directory");
            }
            outputs.push(Box::new(NdjsonOutput::new(dir.as_ref())?));
        } else if let Some(url) = spec.strip_prefix("es:") {
            let config = args.es.config(url).with_context(|| format!("--output {spec:?}"))?;
            let output = EsOutput::connect(config, es_metrics.clone())
                .await
                .with_context(|| format!("--output {spec:?}"))?;
            outputs.push(Box::new(output));
        } else if let Some(topic) = spec.strip_prefix("kafka:") {
            let output = KafkaOutput::new(&kafka, topic).with_context(|| format!("--output {spec:?}"))?;
            outputs.push(Box::new(output));
        } else {
            bail!("--output {spec:?}: expected ndjson:DIR, es:URL or kafka:TOPIC");
        }
    }
    if let Some(alerts) = args.alerts.output(&args.es, &kafka, &es_metrics).await? {
        // Last: alerts are evaluated once the window's documents are in every other output.
        outputs.push(Box::new(alerts));
    }
    let started = std::time::Instant::now();
    let report = if args.input == "kafka" {
        if args.checkpoint.is_some() {
            bail!("--checkpoint: only for --input file:PATH (with kafka the checkpoint is kept on --checkpoint-topic)");
        }
        let input = KafkaInput {
            source: TopicInput {
                kafka,
                topic: args.topic.clone(),
                group_id: args.group_id.clone(),
                exit_when_idle: args.exit_when_idle_secs.map(Duration::from_secs),
            },
            checkpoint_topic: args.checkpoint_topic.clone(),
            early_every,
        };
        tokio::task::spawn_blocking(move || qoe_stream::run_kafka(&input, engine, &mut outputs, &metrics, &shutdown))
            .await
            .context("stream job thread")?
            .context("stream job failed")?
    } else if let Some(path) = args.input.strip_prefix("file:") {
        if args.exit_when_idle_secs.is_some() {
            bail!("--exit-when-idle-secs: only for --input kafka (a file run stops at the end of the file)");
        }
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("--input {:?}: no such file", args.input);
        }
        let setup = FileRun {
            engine,
            early_every,
            checkpoint: args.checkpoint.clone(),
        };
        tokio::task::spawn_blocking(move || qoe_stream::run_file(&path, setup, &mut outputs, &metrics, &shutdown))
            .await
            .context("stream job thread")?
            .context("stream job failed")?
    } else {
        bail!("--input {:?}: expected kafka or file:PATH", args.input);
    };
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "stream: {} records in {:.1} s ({:.0} records/s): {} counted, {} duplicates, {} late, {} already final, {} rejected; {} windows, {} final and {} early documents",
        report.records,
        seconds,
        report.records as f64 / seconds.max(1e-9),
        report.counted,
        report.duplicates,
        report.late,
        report.already_final,
        report.rejected,
        report.windows,
        report.final_documents,
        report.early_documents,
    );
    for sample in &report.rejection_samples {
        println!("  rejected {sample}");
    }
    if report.incomplete_last_line {
        println!("  the input's last line has no newline yet (still being written?): not read");
    }
    if let Some(path) = &args.report_json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("--report-json {}", path.display()))?;
    }
    Ok(())
}

fn seconds_ms(flag: &str, seconds: u64) -> anyhow::Result<i64> {
    if seconds > 7 * 24 * 3600 {
        bail!("{flag}: {seconds} is more than a week");
    }
    Ok(seconds as i64 * 1000)
}
