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

use qoe_runtime::kafka::{parse_overrides, ClientSpec, KafkaOptions};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

/// Prints librdkafka's log lines to stderr (set `debug=...` among the extra options to see more).
struct StderrLog;

impl ClientContext for StderrLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        eprintln!("librdkafka {level:?} {fac}: {log_message}");
    }
}

impl ProducerContext for StderrLog {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if std::env::var_os("BARE_TRACE").is_some() {
            eprintln!(
                "delivered {:?}",
                result.as_ref().map(|_| ()).map_err(|(error, _)| error.to_string())
            );
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [brokers, topic, file, extra @ ..] = args.as_slice() else {
        return Err("usage: bare_producer BROKERS TOPIC FILE [LIBRDKAFKA_KEY=VALUE ...]".into());
    };
    let text = std::fs::read_to_string(file)?;
    let records: Vec<(String, String)> = text
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| (room_id(line).to_string(), enrich(line)))
        .collect();
    // The collector's producer properties (its defaults), built as every client is.
    let options = KafkaOptions::new(brokers).with_overrides(parse_overrides(extra)?);
    let producer: ThreadedProducer<StderrLog> = ClientSpec::producer("the bare producer", &options)
        .default("compression.type", "lz4")
        .default("linger.ms", 5)
        .default("queue.buffering.max.messages", 500_000)
        .create_with_context(StderrLog)?;
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
    if std::env::var_os("BARE_TRACE").is_some() {
        eprintln!("all sent");
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
