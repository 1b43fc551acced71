//! `qoe batch`: beacons from Kafka or an NDJSON file into the Parquet warehouse.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use qoe_batch::{Input, JobConfig, KafkaOptions, Metrics, TopicInput};
use tokio_util::sync::CancellationToken;

/// Write beacons into the Hive-partitioned Parquet warehouse (exactly-once files, play_sessions).
#[derive(Debug, clap::Args)]
pub(crate) struct BatchArgs {
    /// `kafka` (the job's own consumer group on the beacon topic) or `file:PATH` (NDJSON of beacon
    /// records, validated as the collector does).
    #[arg(long, default_value = "kafka")]
    input: String,
    /// The warehouse directory (created if missing).
    #[arg(long, env = "QOE_WAREHOUSE")]
    warehouse: PathBuf,
    /// Kafka bootstrap brokers, comma-separated host:port (for `--input kafka`).
    #[arg(long, env = "QOE_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The beacon topic.
    #[arg(long, default_value = qoe_schemas::BEACONS_TOPIC)]
    topic: String,
    /// The consumer group of the batch job.
    #[arg(long, default_value = "qoe-batch")]
    group_id: String,
    /// A librdkafka client property KEY=VALUE (TLS, SASL, ...); repeat for several.
    #[arg(long = "kafka-option")]
    kafka_options: Vec<String>,
    /// Flush when this many records are buffered.
    #[arg(long, default_value_t = 500_000)]
    flush_records: usize,
    /// Flush a partition whose oldest buffered record waited this many seconds.
    #[arg(long, default_value_t = 300)]
    flush_interval_secs: u64,
    /// Find `(session_id, seq)` repeats this many hours back in event time.
    #[arg(long, default_value_t = 2)]
    dedup_horizon_hours: u64,
    /// Keep a play session's row open for this many hours after its start.
    #[arg(long, default_value_t = 48)]
    session_horizon_hours: u64,
    /// With `--input kafka`: stop after a final flush when nothing arrived for this many seconds.
    #[arg(long)]
    exit_when_idle_secs: Option<u64>,
    /// Write the run report (counts, first rejections) as JSON to this file.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

pub(crate) async fn run(args: BatchArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.flush_records == 0 {
        bail!("--flush-records: must be at least 1");
    }
    if args.flush_interval_secs == 0 {
        bail!("--flush-interval-secs: must be at least 1");
    }
    let hours = |flag: &str, value: u64| -> anyhow::Result<Duration> {
        if !(1..=24 * 365).contains(&value) {
            bail!("{flag}: {value} is not between 1 and 8760 hours");
        }
        Ok(Duration::from_secs(value * 3600))
    };
    let dedup_horizon = hours("--dedup-horizon-hours", args.dedup_horizon_hours)?;
    let session_horizon = hours("--session-horizon-hours", args.session_horizon_hours)?;
    let input = if args.input == "kafka" {
        let overrides = qoe_runtime::kafka::parse_overrides(&args.kafka_options)?;
        Input::Kafka(TopicInput {
            kafka: KafkaOptions::new(args.brokers.clone()).with_overrides(overrides),
            topic: args.topic.clone(),
            group_id: args.group_id.clone(),
            exit_when_idle: args.exit_when_idle_secs.map(Duration::from_secs),
        })
    } else if let Some(path) = args.input.strip_prefix("file:") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("--input {:?}: no such file", args.input);
        }
        Input::File(path)
    } else {
        bail!("--input {:?}: expected kafka or file:PATH", args.input);
    };
    let config = JobConfig {
        flush_records: args.flush_records,
        flush_interval: Duration::from_secs(args.flush_interval_secs),
        dedup_horizon,
        session_horizon,
        ..JobConfig::new(&args.warehouse)
    };
    let started = std::time::Instant::now();
    let report = qoe_batch::run(input, config, Metrics::new(), shutdown)
        .await
        .context("batch job failed")?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "batch: {} beacons stored ({} rows) in {} flushes, {} duplicates dropped, {} rejected, {} already stored, {:.1} s ({:.0} records/s)",
        report.accepted,
        report.rows,
        report.flushes,
        report.duplicates,
        report.rejected,
        report.already_stored,
        seconds,
        (report.accepted + report.duplicates + report.rejected) as f64 / seconds.max(1e-9),
    );
    for sample in &report.rejection_samples {
        println!("  rejected {sample}");
    }
    if report.incomplete_last_line {
        println!("  the input's last line has no newline yet (still being written?): left for the next run");
    }
    println!("warehouse: {}", args.warehouse.display());
    if let Some(path) = &args.report_json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text).with_context(|| format!("--report-json {}", path.display()))?;
    }
    Ok(())
}
