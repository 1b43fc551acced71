//! [`StreamError`]: what stops a job of this crate.

use std::path::Path;

/// What can stop the stream job.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A file-system operation failed.
    #[error("{path}: {error}")]
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
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The alert rules could not evaluate a window.
    #[error("alerts: {0}")]
    Alert(String),
    /// The alert webhook did not take the events.
    #[error("alert webhook {0}")]
    Webhook(String),
    /// The Elasticsearch output failed.
    #[error(transparent)]
    Elasticsearch(#[from] qoe_es::EsError),
    /// A line of an NDJSON output is not a rollup document.
    #[error("{path} line {line}: not a rollup document v1: {error}")]
    Document {
        /// The file.
        path: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        error: String,
    },
}

impl StreamError {
    pub(crate) fn io(path: &Path, error: std::io::Error) -> Self {
        StreamError::Io {
            path: path.display().to_string(),
            error,
        }
    }
}
