//! Sends simulated beacons to a collector over HTTP as fast as it takes them, or at a fixed rate,
//! and writes the run's report (throughput, request latency percentiles) as JSON: the load side of
//! `scripts/bench-collector-ab.sh`, without building the whole CLI.
//!
//! ```text
//! cargo run --release -p qoe-simulator --example load -- URL WRITE_KEY BEACONS SEED [RATE] > report.json
//! ```
//! Beacons are pre-generated (the run measures the collector, not the generator), 100 per request,
//! 64 requests in flight, 200 rooms and 20,000 viewers over 15 simulated minutes that ended 5 minutes
//! ago, the shape of `scripts/bench-collector.sh`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qoe_simulator::{SimConfig, Target};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: load URL WRITE_KEY BEACONS SEED [RATE]");
        std::process::exit(2);
    }
    let number = |index: usize| -> u64 {
        args[index]
            .parse()
            .unwrap_or_else(|_| panic!("argument {index}: not a number: {:?}", args[index]))
    };
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let config = SimConfig {
        seed: number(3),
        start_ms: now_ms - 20 * 60_000,
        duration_ms: 15 * 60_000,
        rooms: 200,
        viewers: 20_000,
        max_beacons: Some(number(2)),
        target: Target::Http {
            url: args[0].clone(),
            write_key: args[1].clone(),
        },
        batch_size: 100,
        concurrency: 64,
        rate: (args.len() > 4).then(|| number(4)),
        pregenerate: true,
        request_timeout: Duration::from_secs(30),
        ..SimConfig::default()
    };
    match qoe_simulator::run(config, CancellationToken::new()).await {
        Ok(report) => println!("{}", serde_json::to_string(&report).unwrap()),
        Err(error) => {
            eprintln!("load: {error}");
            std::process::exit(1);
        }
    }
}
