//! The Kafka side of the collector: an idempotent, `acks=all` producer and the broker health probe.
//!
//! Delivery guarantee: [`BeaconProducer::produce`] returns `Ok` only once Kafka has acknowledged every
//! accepted record of the request (`acks=all`, idempotent producer, so retries inside librdkafka never
//! duplicate or reorder). Anything else is an error, the client gets 503 and sends the batch again;
//! records of that batch that did reach Kafka are then written twice, which downstream jobs remove by
//! `(session_id, seq)`. A 200 therefore always means durable; a 503 may mean "partly durable".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::KafkaConfig;
use crate::ingest::{AcceptedRecord, RejectedRecord};

/// Why a request's beacons are not durable.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The health probe says no broker is reachable; nothing was sent.
    #[error("kafka is unreachable")]
    Unavailable,
    /// The producer queue is full: Kafka is slower than the intake.
    #[error("kafka producer queue is full")]
    QueueFull,
    /// Kafka did not acknowledge a record in time, or refused it.
    #[error("kafka did not acknowledge a record: {0}")]
    Delivery(KafkaError),
}

/// What happened to the dead-letter records of a request (they never fail the request).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterOutcome {
    /// Dead-letter records acknowledged.
    pub written: usize,
    /// Dead-letter records that could not be written.
    pub failed: usize,
}

/// The collector's producer.
pub struct BeaconProducer {
    producer: FutureProducer,
    topic: String,
    dlq_topic: String,
    produce_timeout: Duration,
    reachable: Arc<AtomicBool>,
}

impl BeaconProducer {
    /// Creates the producer. librdkafka checks the pass-through options here and refuses unknown ones.
    pub fn new(config: &KafkaConfig) -> Result<BeaconProducer, KafkaError> {
        let mut client = ClientConfig::new();
        for (key, value) in &config.options {
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &config.compression)
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.produce_timeout_ms.to_string())
            .set("queue.buffering.max.messages", config.queue_max_messages.to_string());
        if !config.options.contains_key("client.id") {
            client.set("client.id", "qoe-collector");
        }
        let producer: FutureProducer = client.create()?;
        Ok(BeaconProducer {
            producer,
            topic: config.topic.clone(),
            dlq_topic: config.dlq_topic.clone(),
            produce_timeout: Duration::from_millis(config.produce_timeout_ms),
            reachable: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Produces a request's records and waits for Kafka to acknowledge the accepted ones.
    pub async fn produce(
        &self,
        accepted: &[AcceptedRecord],
        rejected: &[RejectedRecord],
    ) -> Result<DeadLetterOutcome, ProduceError> {
        if !self.is_reachable() {
            return Err(ProduceError::Unavailable);
        }
        let mut deliveries = Vec::with_capacity(accepted.len());
        for record in accepted {
            let future_record = FutureRecord::to(&self.topic).key(&record.key).payload(&record.value);
            deliveries.push(self.enqueue(future_record)?);
        }
        let mut dead_letters = Vec::with_capacity(rejected.len());
        for record in rejected {
            let mut future_record = FutureRecord::<String, Vec<u8>>::to(&self.dlq_topic).payload(&record.dlq_value);
            if let Some(key) = &record.dlq_key {
                future_record = future_record.key(key);
            }
            // A full queue drops the dead letter, not the request: the client already has the error.
            if let Ok(delivery) = self.enqueue(future_record) {
                dead_letters.push(delivery);
            }
        }
        let dead_letter_count = rejected.len();
        // librdkafka fails each record after message.timeout.ms; the outer timeout only guards
        // against a delivery report that never comes.
        let grace = self.produce_timeout + Duration::from_secs(5);
        let all = async { (join_all(deliveries).await, join_all(dead_letters).await) };
        let (accepted_results, dead_letter_results) = tokio::time::timeout(grace, all)
            .await
            .map_err(|_| ProduceError::Delivery(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)))?;
        for result in accepted_results {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(ProduceError::Delivery(error)),
                Err(_canceled) => return Err(ProduceError::Delivery(KafkaError::Canceled)),
            }
        }
        let written = dead_letter_results
            .iter()
            .filter(|result| matches!(result, Ok(Ok(_))))
            .count();
        Ok(DeadLetterOutcome {
            written,
            failed: dead_letter_count - written,
        })
    }

    fn enqueue<K, P>(&self, record: FutureRecord<'_, K, P>) -> Result<DeliveryFuture, ProduceError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        self.producer.send_result(record).map_err(|(error, _)| match error {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
            other => ProduceError::Delivery(other),
        })
    }

    /// Records waiting in the producer for an acknowledgement.
    pub fn queue_depth(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Whether the last probes reached a broker.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Asks a broker for the topic's metadata; `true` when one answers within `timeout`.
    pub async fn probe(self: &Arc<Self>, timeout: Duration) -> bool {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            this.producer
                .client()
                .fetch_metadata(Some(&this.topic), timeout)
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Marks Kafka reachable or not; while unreachable, [`produce`](Self::produce) fails at once.
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    /// Waits up to `timeout` for every queued record to be acknowledged.
    pub async fn flush(self: &Arc<Self>, timeout: Duration) -> Result<(), KafkaError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.producer.flush(timeout))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }
}
