//! Measures how fast the generator runs on one core, and prints what it generated.
//!
//! ```text
//! cargo run --release -p qoe-simulator --example throughput -- [viewers] [minutes]
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use qoe_simulator::{generate, SimConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let viewers: usize = args.next().and_then(|text| text.parse().ok()).unwrap_or(2_000);
    let minutes: u64 = args.next().and_then(|text| text.parse().ok()).unwrap_or(60);
    let config = SimConfig {
        viewers,
        duration_ms: minutes * 60_000,
        ..SimConfig::default()
    };
    let started = Instant::now();
    let mut by_type: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut total = 0u64;
    for beacon in generate(&config) {
        *by_type.entry(beacon.kind.as_str()).or_default() += 1;
        total += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{total} beacons ({viewers} viewers, {minutes} min) in {elapsed:.2} s: {:.0} beacons/s",
        total as f64 / elapsed
    );
    for (kind, count) in by_type {
        println!("  {kind:>15} {count}");
    }

    let started = Instant::now();
    let mut bytes = 0usize;
    let mut buffer = Vec::with_capacity(1 << 16);
    for beacon in generate(&config) {
        buffer.clear();
        serde_json::to_writer(&mut buffer, &beacon).expect("a beacon serializes");
        bytes += buffer.len();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "generate + serialize: {elapsed:.2} s, {:.0} beacons/s, {:.0} bytes/beacon",
        total as f64 / elapsed,
        bytes as f64 / total as f64
    );
}
