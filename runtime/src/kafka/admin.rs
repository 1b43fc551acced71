//! Topic administration for every topic of the pipeline: creating topics, waiting for them,
//! listing partitions, counting records.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;

use super::client::{ClientSpec, KafkaClientError};
use super::options::KafkaOptions;

/// How long a metadata, watermark or admin request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`create_topics`] did with one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// The topic was created.
    Created,
    /// The topic was there already and was left as it is.
    Existed,
}

fn admin(options: &KafkaOptions) -> Result<AdminClient<DefaultClientContext>, KafkaClientError> {
    ClientSpec::admin("the admin client", options).create()
}

/// Creates topics that do not exist yet, with `partitions` partitions, `replication` replicas and
/// the topic `config` given, through the Kafka admin API. Existing topics are left as they are.
pub async fn create_topics(
    options: &KafkaOptions,
    topics: &[&str],
    partitions: i32,
    replication: i32,
    config: &[(&str, &str)],
) -> Result<Vec<(String, TopicOutcome)>, KafkaClientError> {
    let admin = admin(options)?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            config.iter().fold(
                NewTopic::new(topic, partitions, TopicReplication::Fixed(replication)),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let admin_options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let started = Instant::now();
    let results = admin
        .create_topics(&new_topics, &admin_options)
        .await
        .map_err(|source| KafkaClientError::Request {
            operation: format!("creating topics {topics:?}"),
            source: Box::new(source),
        })?;
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        match result {
            Ok(topic) => outcomes.push((topic, TopicOutcome::Created)),
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => outcomes.push((topic, TopicOutcome::Existed)),
            Err((topic, source)) => return Err(KafkaClientError::CreateTopic { topic, source }),
        }
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        count = outcomes.len(),
        "topics checked"
    );
    Ok(outcomes)
}

/// A topic that [`ensure_topic`] creates when it is missing.
#[derive(Debug, Clone)]
pub struct NewTopicSpec<'a> {
    /// The topic.
    pub name: &'a str,
    /// Its partitions.
    pub partitions: i32,
    /// Its topic configuration (`cleanup.policy=compact`, …).
    pub config: &'a [(&'a str, &'a str)],
}

/// The partitions of `topic.name`, after creating it if it is missing, with as many replicas as
/// Kafka's own offsets topic (three, or as many as there are brokers), and waiting up to 30 s for
/// it to appear in the metadata. Blocks; runs inside a Tokio runtime context (`spawn_blocking`).
pub fn ensure_topic<C: Consumer>(
    options: &KafkaOptions,
    consumer: &C,
    topic: &NewTopicSpec<'_>,
) -> Result<Vec<i32>, KafkaClientError> {
    if let Some(partitions) = topic_partitions(consumer, topic.name)? {
        return Ok(partitions);
    }
    let brokers = consumer
        .fetch_metadata(None, REQUEST_TIMEOUT)
        .map_err(|source| KafkaClientError::Request {
            operation: "metadata of the cluster".to_string(),
            source: Box::new(source),
        })?
        .brokers()
        .len();
    let replicas = i32::try_from(brokers.clamp(1, 3)).unwrap_or(1);
    let outcomes = tokio::runtime::Handle::current().block_on(create_topics(
        options,
        &[topic.name],
        topic.partitions,
        replicas,
        topic.config,
    ))?;
    if outcomes.iter().any(|(_, outcome)| *outcome == TopicOutcome::Created) {
        tracing::info!(topic = topic.name, replicas, "topic created");
    }
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        if let Some(partitions) = topic_partitions(consumer, topic.name)? {
            return Ok(partitions);
        }
        if Instant::now() > deadline {
            return Err(KafkaClientError::TopicNotVisible {
                topic: topic.name.to_string(),
                waited_secs: REQUEST_TIMEOUT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The partition ids of `topic`, or `None` when it does not exist or has none. Blocks.
pub fn topic_partitions<C: Consumer>(consumer: &C, topic: &str) -> Result<Option<Vec<i32>>, KafkaClientError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|source| KafkaClientError::Request {
            operation: format!("metadata of {topic:?}"),
            source: Box::new(source),
        })?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|found| found.name() == topic && found.error().is_none())
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect();
    Ok((!partitions.is_empty()).then_some(partitions))
}

/// A topic's watermarks summed over its partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermarks {
    /// The sum of the low watermarks: records the broker no longer holds (retention, size limits).
    pub low: u64,
    /// The sum of the high watermarks: records the topic ever received.
    pub high: u64,
}

impl Watermarks {
    /// Records the topic holds now.
    pub fn records(&self) -> u64 {
        self.high.saturating_sub(self.low)
    }
}

/// `topic`'s watermarks now (zero when it does not exist). Blocks.
pub fn watermarks<C: Consumer>(consumer: &C, topic: &str) -> Result<Watermarks, KafkaClientError> {
    let mut total = Watermarks::default();
    for partition in topic_partitions(consumer, topic)?.unwrap_or_default() {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map_err(|source| KafkaClientError::Request {
                operation: format!("watermarks of {topic:?} partition {partition}"),
                source: Box::new(source),
            })?;
        total.low += u64::try_from(low).unwrap_or(0);
        total.high += u64::try_from(high).unwrap_or(0);
    }
    Ok(total)
}
