//! Serves a collector from a JSON configuration, for benchmarks that compare two revisions of the
//! collector alone (`scripts/bench-collector-ab.sh` builds this file at both): the same harness,
//! none of the CLI, so the two builds differ only in the collector crate. It uses the `qoe` binary's
//! allocator (jemalloc), so that allocation costs are the product's.
//!
//! ```text
//! cargo run --release -p qoe-collector --example serve -- ADDR CONFIG.json
//! ```
//! `CONFIG.json` holds the keys of the TOML file of docs/collector.md, in JSON; keys one revision does
//! not know are the caller's to leave out. Creates the beacon and dead-letter topics (4 partitions,
//! replication 1) when missing. Stops on SIGINT or SIGTERM.

use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: serve ADDR CONFIG.json");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    let config: qoe_collector::CollectorConfig =
        serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    let topics = [config.kafka.topic.as_str(), config.kafka.dlq_topic.as_str()];
    qoe_runtime::kafka::create_topics(&config.kafka.options(), &topics, 4, 1, &[])
        .await
        .unwrap_or_else(|error| panic!("creating the topics: {error}"));
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .unwrap_or_else(|error| panic!("{address:?}: {error}"));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        stop.cancel();
    });
    if let Err(error) = qoe_collector::serve(listener, config, shutdown).await {
        eprintln!("collector: {error}");
        std::process::exit(1);
    }
}
