//! `kafka:TOPIC`: rollup documents onto a Kafka topic (`qoe.rollups.v1`), keyed by the document id,
//! as JSON, for `qoe index` and `qoe alert` elsewhere; also the producer of alert events.
//!
//! The producer is idempotent with `acks=all`; [`Output::write`] returns only when the broker
//! acknowledged every document, so the job commits its input only after that. The same id always
//! goes to the same partition, so an early result and its final one stay in order for a reader.

use std::time::Duration;

use qoe_rollup::Emission;
use qoe_runtime::kafka::{ClientSpec, KafkaOptions};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::runtime::Handle;

use crate::error::StreamError;
use crate::output::Output;

/// How long one document may wait for the broker's acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// The Kafka output.
pub struct KafkaOutput {
    producer: FutureProducer,
    topic: String,
    runtime: Handle,
}

impl KafkaOutput {
    /// The pipeline's producer (idempotent, `acks=all`) on `kafka`, to `topic`; uses the current
    /// Tokio runtime to wait for acknowledgements.
    pub fn new(kafka: &KafkaOptions, topic: &str) -> Result<Self, StreamError> {
        if topic.is_empty() {
            return Err(StreamError::KafkaSetup(
                "--output kafka: needs a topic name".to_string(),
            ));
        }
        let producer: FutureProducer = ClientSpec::producer("the rollup producer", kafka)
            .default("linger.ms", 20)
            .default("message.timeout.ms", DELIVERY_TIMEOUT.as_millis())
            .default("client.id", "qoe-stream-rollups")
            .create()?;
        Ok(KafkaOutput {
            producer,
            topic: topic.to_string(),
            runtime: Handle::current(),
        })
    }
}

impl KafkaOutput {
    /// Sends `(key, payload)` records and waits until the broker acknowledged every one.
    pub fn send_all(&self, records: Vec<(String, Vec<u8>)>) -> Result<(), StreamError> {
        let mut deliveries = Vec::new();
        for (key, payload) in &records {
            let mut record = FutureRecord::to(&self.topic).key(key).payload(payload);
            let delivery = loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => break delivery,
                    // The local queue is full: let deliveries drain, then queue again.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((source, _)) => {
                        return Err(StreamError::Kafka {
                            context: format!("queueing {key} for {}", self.topic),
                            source,
                        });
                    }
                }
            };
            deliveries.push((key, delivery));
        }
        self.runtime.block_on(async {
            for (key, delivery) in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((source, _))) => {
                        return Err(StreamError::Kafka {
                            context: format!("writing {key} to {}", self.topic),
                            source,
                        })
                    }
                    Err(_) => {
                        return Err(StreamError::Kafka {
                            context: format!("writing {key} to {}", self.topic),
                            source: KafkaError::Canceled,
                        })
                    }
                }
            }
            Ok(())
        })
    }
}

impl Output for KafkaOutput {
    fn name(&self) -> String {
        format!("kafka:{}", self.topic)
    }

    fn write(&mut self, emissions: &[Emission]) -> Result<(), StreamError> {
        let mut records = Vec::new();
        for doc in emissions.iter().flat_map(|emission| &emission.docs) {
            let id = doc.id();
            let payload = serde_json::to_vec(doc).map_err(|source| StreamError::Encode {
                what: format!("document {id}"),
                source,
            })?;
            records.push((id, payload));
        }
        self.send_all(records)
    }
}

impl Drop for KafkaOutput {
    fn drop(&mut self) {
        // Everything written was acknowledged already; this only waits for nothing in flight.
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}
