//! [`StreamError`]: what stops a job of this crate. Every cause is kept as a typed
//! [`source`](std::error::Error::source) and printed once, by whoever prints the chain.

use std::path::Path;

use qoe_runtime::kafka::KafkaClientError;
use rdkafka::error::KafkaError;

/// What can stop the stream job.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A file-system operation failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: String,
        /// What failed.
        #[source]
        error: std::io::Error,
    },
    /// The engine's settings are wrong.
    #[error(transparent)]
    Config(#[from] qoe_rollup::RollupError),
    /// A checkpoint file cannot be used.
    #[error("checkpoint {path}: {problem}")]
    Checkpoint {
        /// The checkpoint file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A checkpoint (or alert state) cannot be parsed.
    #[error("checkpoint {path}: not {what}")]
    CheckpointFormat {
        /// Where it was read.
        path: String,
        /// What it should be ("a stream job checkpoint v1").
        what: &'static str,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The alert evaluator cannot continue from its saved state.
    #[error("checkpoint {path}: the alert state cannot be restored")]
    AlertState {
        /// The state file.
        path: String,
        /// Why.
        #[source]
        source: qoe_alert::AlertError,
    },
    /// A Kafka client could not be built, or a request through one failed.
    #[error(transparent)]
    KafkaClient(Box<KafkaClientError>),
    /// A Kafka client request failed, with what it was for.
    #[error("kafka: {context}")]
    KafkaRequest {
        /// What was being done, and what to do about it.
        context: String,
        /// The client's error.
        #[source]
        source: Box<KafkaClientError>,
    },
    /// A Kafka operation failed.
    #[error("kafka: {context}")]
    Kafka {
        /// What was being done ("assigning partitions", "saving the checkpoint to …").
        context: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// A Kafka input or output cannot be used as set up (a topic missing, a topic name empty).
    #[error("kafka: {0}")]
    KafkaSetup(String),
    /// A record could not be encoded as JSON.
    #[error("encoding {what}")]
    Encode {
        /// What was being encoded ("alert a1b2", "document …").
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The alert rules could not evaluate a window.
    #[error("alerts: evaluating the window at {window_start_ms}")]
    Alert {
        /// The window's start, epoch ms.
        window_start_ms: i64,
        /// Why.
        #[source]
        source: qoe_alert::AlertError,
    },
    /// An alert event cannot be written (its own fields are wrong).
    #[error("alerts: event {id}: {problem}")]
    AlertEvent {
        /// The event id.
        id: String,
        /// What is wrong, quoting the value.
        problem: String,
    },
    /// The alert webhook answered with an error, or did not answer after every attempt.
    #[error("alert webhook {url}: {problem}")]
    Webhook {
        /// The webhook URL.
        url: String,
        /// The last answer (`status 500 after 5 attempts`).
        problem: String,
        /// The HTTP client's last error, if there was no answer.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The Elasticsearch output failed.
    #[error(transparent)]
    Elasticsearch(#[from] qoe_es::EsError),
    /// A line of an NDJSON output is not a rollup document.
    #[error("{path} line {line}: not a rollup document v1")]
    Document {
        /// The file.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        #[source]
        error: serde_json::Error,
    },
}

impl From<KafkaClientError> for StreamError {
    fn from(error: KafkaClientError) -> Self {
        StreamError::KafkaClient(Box::new(error))
    }
}

impl StreamError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        StreamError::Io {
            path: path.display().to_string(),
            error,
        }
    }

    /// A Kafka operation's failure, with what was being done.
    pub(crate) fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> StreamError {
        let context = context.into();
        move |source| StreamError::Kafka { context, source }
    }
}
