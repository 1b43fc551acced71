//! The benchmark ceiling: produce beacons straight to Kafka with a bare rdkafka producer, no HTTP and
//! no validation, with the collector's producer settings (idempotent, acks=all, lz4, linger 5 ms).
//!
//! Reads an NDJSON file of beacons (as `qoe simulate --target file:` writes it), adds the same
//! enrichment fields the collector adds so the records have the same size, keys each by `room_id`,
//! and prints one JSON line: records, seconds, records per second.
//!
//! ```sh
//! cargo run --release -p qoe-collector --example bare_producer -- BROKERS TOPIC FILE
//! ```

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, file] = args.as_slice() else {
        return Err("usage: bare_producer BROKERS TOPIC FILE".into());
    };
    let text = std::fs::read_to_string(file)?;
    let records: Vec<(String, String)> = text
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| (room_id(line).to_string(), enrich(line)))
        .collect();
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .create()?;
    let started = Instant::now();
    for (key, value) in &records {
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((error, _)) => return Err(error.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"records\": {}, \"seconds\": {:.3}, \"records_per_sec\": {:.0}}}",
        records.len(),
        seconds,
        records.len() as f64 / seconds
    );
    Ok(())
}

fn room_id(line: &str) -> &str {
    let marker = "\"room_id\":\"";
    let Some(start) = line.find(marker).map(|at| at + marker.len()) else {
        return "";
    };
    let end = line[start..].find('"').map_or(line.len(), |len| start + len);
    &line[start..end]
}

fn enrich(line: &str) -> String {
    let body = line.trim_end().trim_end_matches('}');
    format!(
        "{body},\"received_at\":1763800000123,\"event_time\":1763800000000,\"client_subnet\":\"127.0.0.0/24\",\"key_id\":\"bench\"}}"
    )
}
