//! The Kafka side of the collector: an idempotent, `acks=all` producer and the broker health probe.
//!
//! Delivery guarantee: [`BeaconProducer::produce`] returns `Ok` only once Kafka has acknowledged every
//! accepted record of the request (`acks=all`, idempotent producer, so retries inside librdkafka never
//! duplicate or reorder). Anything else is an error, the client gets 503 and sends the batch again;
//! records of that batch that did reach Kafka are then written twice, which downstream jobs remove by
//! `(session_id, seq)`. A 200 therefore always means durable; a 503 may mean "partly durable".
//!
//! The collector does not create topics (production clusters usually forbid auto-creation, and some
//! brokers never auto-create): [`qoe_runtime::kafka::create_topics`] does it on request (`qoe topics create`), and the
//! probe keeps the collector unready while the beacon topic is missing.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntCounter;
use qoe_runtime::kafka::KafkaClientError;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::Notify;

use crate::config::KafkaConfig;
use crate::ingest::{AcceptedRecord, DeadLetterRecord};

/// Why a request's beacons are not durable.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The health probe says no broker is reachable; nothing was sent.
    #[error("kafka is unreachable")]
    Unavailable,
    /// The beacon topic does not exist (the collector does not create topics: `qoe topics create`).
    #[error("topic {0:?} does not exist")]
    TopicMissing(String),
    /// The producer queue is full: Kafka is slower than the intake.
    #[error("kafka producer queue is full")]
    QueueFull,
    /// Kafka did not acknowledge a record in time, or refused it.
    #[error("kafka did not acknowledge a record: {0}")]
    Delivery(KafkaError),
}

/// What the last probes said about Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaHealth {
    /// A broker answers and the beacon topic exists.
    Ready,
    /// No broker answered the last probes.
    Unreachable,
    /// A broker answers but the beacon topic does not exist.
    TopicMissing,
}

impl KafkaHealth {
    fn from_u8(value: u8) -> KafkaHealth {
        match value {
            0 => KafkaHealth::Ready,
            1 => KafkaHealth::Unreachable,
            _ => KafkaHealth::TopicMissing,
        }
    }
}

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Whether a broker answered.
    pub reachable: bool,
    /// Whether the beacon topic exists with at least one partition.
    pub topic_exists: bool,
    /// Whether the dead-letter topic exists with at least one partition.
    pub dlq_topic_exists: bool,
}

/// The acknowledgements still awaited for one group of records (a request's accepted beacons, or
/// its dead letters). librdkafka's delivery callback counts them down; the last one wakes the waiter.
#[derive(Debug, Default)]
pub struct Pending {
    remaining: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<KafkaError>>,
    done: Notify,
}

impl Pending {
    fn new(count: usize) -> Arc<Pending> {
        Arc::new(Pending {
            remaining: AtomicUsize::new(count),
            ..Pending::default()
        })
    }

    fn complete(&self, error: Option<&KafkaError>) {
        if let Some(error) = error {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            first.get_or_insert_with(|| error.clone());
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    /// Waits until every record of the group has its delivery report.
    async fn wait(&self) {
        if self.remaining.load(Ordering::Acquire) == 0 {
            return;
        }
        self.done.notified().await;
    }

    fn first_error(&self) -> Option<KafkaError> {
        self.first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The producer's context: delivery reports count [`Pending`] groups down, and librdkafka's log
/// lines go to `tracing`.
pub struct AckContext;

impl ClientContext for AckContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
                tracing::error!(facility = fac, message = log_message, "librdkafka")
            }
            RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, message = log_message, "librdkafka"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility = fac, message = log_message, "librdkafka")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, message = log_message, "librdkafka"),
        }
    }
}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Arc<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, pending: Arc<Pending>) {
        pending.complete(result.as_ref().err().map(|(error, _)| error));
    }
}

/// The collector's producer.
pub struct BeaconProducer {
    producer: ThreadedProducer<AckContext>,
    topic: String,
    dlq_topic: String,
    produce_timeout: Duration,
    queue_max_messages: usize,
    health: AtomicU8,
    dead_letters_failed: IntCounter,
}

impl BeaconProducer {
    /// Creates the producer from [`KafkaConfig::client_spec`]. librdkafka checks the pass-through
    /// options here and refuses unknown ones. `dead_letters_failed` counts dead-letter records that
    /// could not be written.
    pub fn new(config: &KafkaConfig, dead_letters_failed: IntCounter) -> Result<BeaconProducer, KafkaClientError> {
        let producer: ThreadedProducer<AckContext> = config.client_spec().create_with_context(AckContext)?;
        Ok(BeaconProducer {
            producer,
            topic: config.topic.clone(),
            dlq_topic: config.dlq_topic.clone(),
            produce_timeout: Duration::from_millis(config.produce_timeout_ms),
            queue_max_messages: config.queue_max_messages as usize,
            health: AtomicU8::new(KafkaHealth::Ready as u8),
            dead_letters_failed,
        })
    }

    /// Produces a request's records and waits for Kafka to acknowledge the accepted ones.
    ///
    /// Dead-letter records are enqueued first and not waited for: the client's answer does not depend
    /// on them; those that fail are counted in `qoe_collector_dead_letters_failed_total`.
    pub async fn produce(
        &self,
        accepted: &[AcceptedRecord],
        dead_letters: &[DeadLetterRecord],
    ) -> Result<(), ProduceError> {
        match self.health() {
            KafkaHealth::Ready => {}
            KafkaHealth::Unreachable => return Err(ProduceError::Unavailable),
            KafkaHealth::TopicMissing => return Err(ProduceError::TopicMissing(self.topic.clone())),
        }
        // Refuse before enqueuing anything when the queue is clearly too full. Concurrent requests can
        // still pass this check together and meet a full queue midway: that request gets a 503 after
        // part of it was queued (a 503 may be partly durable, see the module doc).
        let queued = usize::try_from(self.producer.in_flight_count()).unwrap_or(0);
        if queued + accepted.len() + dead_letters.len() > self.queue_max_messages {
            return Err(ProduceError::QueueFull);
        }
        // Dead letters first: the answer does not depend on them, and they are then written whatever
        // happens to the accepted records. Their outcome is counted in the background.
        if !dead_letters.is_empty() {
            let pending = Pending::new(dead_letters.len());
            for record in dead_letters {
                let mut base_record =
                    BaseRecord::<String, Vec<u8>, _>::with_opaque_to(&self.dlq_topic, Arc::clone(&pending))
                        .payload(&record.value);
                if let Some(key) = &record.key {
                    base_record = base_record.key(key);
                }
                if let Err((error, _)) = self.producer.send(base_record) {
                    pending.complete(Some(&error));
                }
            }
            self.count_dead_letter_failures(pending);
        }
        let accepted_pending = Pending::new(accepted.len());
        for record in accepted {
            let base_record = BaseRecord::with_opaque_to(&self.topic, Arc::clone(&accepted_pending))
                .key(&record.key)
                .payload(&record.value);
            self.enqueue(base_record)?;
        }
        // librdkafka fails each record after message.timeout.ms; the outer timeout only guards
        // against a delivery report that never comes.
        tokio::time::timeout(self.delivery_deadline(), accepted_pending.wait())
            .await
            .map_err(|_| ProduceError::Delivery(KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut)))?;
        if let Some(error) = accepted_pending.first_error() {
            return Err(ProduceError::Delivery(error));
        }
        Ok(())
    }

    fn delivery_deadline(&self) -> Duration {
        self.produce_timeout + Duration::from_secs(5)
    }

    /// Waits (in a task of its own) for a request's dead letters and counts those not written.
    fn count_dead_letter_failures(&self, pending: Arc<Pending>) {
        let counter = self.dead_letters_failed.clone();
        let deadline = self.delivery_deadline();
        tokio::spawn(async move {
            let finished = tokio::time::timeout(deadline, pending.wait()).await.is_ok();
            let unreported = if finished {
                0
            } else {
                pending.remaining.load(Ordering::Acquire)
            };
            let failures = pending.failed.load(Ordering::Relaxed) + unreported;
            if failures > 0 {
                counter.inc_by(failures as u64);
                let error = pending.first_error().map(|error| error.to_string()).unwrap_or_default();
                tracing::warn!(failures, %error, "dead-letter records not written");
            }
        });
    }

    fn enqueue<K, P>(&self, record: BaseRecord<'_, K, P, Arc<Pending>>) -> Result<(), ProduceError>
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        self.producer.send(record).map_err(|(error, _)| match error {
            KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull) => ProduceError::QueueFull,
            other => ProduceError::Delivery(other),
        })
    }

    /// Records waiting in the producer for an acknowledgement.
    pub fn queue_depth(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// What the last probes said.
    pub fn health(&self) -> KafkaHealth {
        KafkaHealth::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Records what the probes say; while not [`KafkaHealth::Ready`], [`produce`](Self::produce)
    /// fails at once.
    pub fn set_health(&self, health: KafkaHealth) {
        self.health.store(health as u8, Ordering::Relaxed);
    }

    /// Asks a broker for the metadata of the beacon and dead-letter topics.
    pub async fn probe(self: &Arc<Self>, timeout: Duration) -> Probe {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let client = this.producer.client();
            let exists = |topic: &str| -> Result<bool, KafkaError> {
                let metadata = client.fetch_metadata(Some(topic), timeout)?;
                Ok(metadata
                    .topics()
                    .iter()
                    .any(|found| found.name() == topic && found.error().is_none() && !found.partitions().is_empty()))
            };
            match (exists(&this.topic), exists(&this.dlq_topic)) {
                (Ok(topic_exists), Ok(dlq_topic_exists)) => Probe {
                    reachable: true,
                    topic_exists,
                    dlq_topic_exists,
                },
                _ => Probe {
                    reachable: false,
                    topic_exists: false,
                    dlq_topic_exists: false,
                },
            }
        })
        .await
        .unwrap_or(Probe {
            reachable: false,
            topic_exists: false,
            dlq_topic_exists: false,
        })
    }

    /// Waits up to `timeout` for every queued record to be acknowledged.
    pub async fn flush(self: &Arc<Self>, timeout: Duration) -> Result<(), KafkaError> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || this.producer.flush(timeout))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
    }
}
