//! `qoe`: the one binary of qoe-pipeline.
//!
//! `main` only parses configuration and hands it to the service crates, each of which exposes
//! `run(config, shutdown)`. Ctrl-C or SIGTERM cancels the shutdown token; every service then drains
//! and flushes before the process exits.

mod alert;
mod batch;
mod collector;
mod demo;
mod es_args;
mod index;
mod metrics_server;
mod quickstart;
mod report;
mod simulate;
mod stream;
mod topics;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of the system allocator. The collector allocates and frees a few dozen small
/// strings per beacon, and glibc's malloc was about a sixth of its CPU profile; the batch job and the
/// reports free and reallocate large column buffers, and jemalloc keeps freed pages for seconds
/// (`dirty_decay_ms`) where mimalloc returned them to the kernel after 10 ms, so the kernel zeroed them
/// again on the next allocation (a fifth of the report's CPU). BENCHMARKS.md has the numbers.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// qoe-pipeline: live-video quality beacons to minute-level alerts and long-horizon CDN reports.
#[derive(Debug, Parser)]
#[command(name = "qoe", version, about)]
struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info,qoe_collector=debug`).
    #[arg(long, env = "QOE_LOG", default_value = "info", global = true)]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "QOE_LOG_JSON", global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on an embedded broker over simulated hours with two incidents, and
    /// print the alerts, the warehouse and the reports it produced.
    Demo(Box<demo::DemoArgs>),
    /// Run the beacon collector: HTTP intake, validation, enrichment, produce to Kafka.
    Collector(Box<collector::CollectorArgs>),
    /// Generate simulated beacon traffic into a collector or an NDJSON file.
    Simulate(simulate::SimulateArgs),
    /// Run an in-process broker, the collector and the simulator together (nothing is kept).
    Quickstart(quickstart::QuickstartArgs),
    /// Manage the pipeline's Kafka topics.
    Topics(topics::TopicsArgs),
    /// Write beacons into the Parquet warehouse (exactly-once files, play_sessions).
    Batch(batch::BatchArgs),
    /// Roll beacons up into one-minute documents per CDN, edge node, room and publisher.
    Stream(stream::StreamArgs),
    /// Evaluate alert rules over rollup documents from Kafka (`qoe.rollups.v1`).
    Alert(alert::AlertCommandArgs),
    /// Index rollup documents from Kafka (`qoe.rollups.v1`) into Elasticsearch.
    Index(index::IndexArgs),
    /// Reports over the warehouse: per CDN, per room, A/B, forecast (Parquet tables and HTML).
    Report(report::ReportArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_json)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    match cli.command {
        Command::Collector(args) => {
            let config = args.resolve()?;
            qoe_collector::run(config, shutdown).await?;
        }
        Command::Simulate(args) => simulate::run(args, shutdown).await?,
        Command::Demo(args) => demo::run(*args, shutdown).await?,
        Command::Quickstart(args) => quickstart::run(args, shutdown).await?,
        Command::Topics(args) => topics::run(args).await?,
        Command::Batch(args) => batch::run(args, shutdown).await?,
        Command::Report(args) => report::run(args).await?,
        Command::Stream(args) => stream::run(args, shutdown).await?,
        Command::Index(args) => index::run(args, shutdown).await?,
        Command::Alert(args) => alert::run(args, shutdown).await?,
    }
    Ok(())
}

fn init_tracing(filter: &str, json: bool) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(filter).with_context(|| format!("--log {filter:?} is not a valid filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                shutdown.cancel();
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    shutdown.cancel();
}
