//! # qoe-es: the Elasticsearch sink
//!
//! Writes rollup documents (and alert events) to Elasticsearch with the official `elasticsearch`
//! client:
//! - at start, [`EsSink::install`] puts the **index template** (strict mappings: an unknown field
//!   is refused, never guessed; daily indices `<prefix>-v1-YYYY.MM.DD-1` named by the window's
//!   date; the alias `<prefix>` over them) and, on stateful clusters, an **ILM policy** that deletes
//!   a daily index `retention_weeks` after its date ([`Retention`]);
//! - [`EsSink::write`] sends `_bulk` `index` actions with the caller's **deterministic `_id`**, so a
//!   replay or a final result overwrites the earlier version instead of adding one;
//! - only what may succeed later is sent again: items with status 429 or 502-504, and whole
//!   requests that got no answer or one of those statuses, with exponential back-off and jitter
//!   ([`retry`]), each batch and each request for at most `retry_for_secs`.
//!
//! Guarantee: `write` returns `Ok` only when the cluster acknowledged **every** document. A
//! document refused for good (a mapping error: the cluster's template is not this version's) and
//! retries that ran out both return an error, after which the caller must not acknowledge its
//! input: the stream job stops without committing offsets, and a restart sends the same documents
//! with the same ids again.
//!
//! Every request is a value ([`request::EsRequest`]) built without IO, and the tests check each
//! one against Elastic's OpenAPI document of the REST API (vendored in `spec/`); no Elasticsearch
//! server can run on the development machines, and nothing here pretends to be one. A live suite
//! runs against a real cluster when `ES_URL` is set (`tests/live.rs`).
//!
//! ```
//! use qoe_es::{bulk::{bulk_body, BulkDoc}, EsConfig};
//! let config = EsConfig::default();
//! let index = config.index_for(1_795_737_540_000); // a window of 2026-11-26
//! assert_eq!(index, "qoe-rollups-v1-2026.11.26-1");
//! let doc = BulkDoc::new(index, "5f0c…".into(), &serde_json::json!({"grain": "cdn"}))?;
//! let body = String::from_utf8(bulk_body([&doc])).unwrap();
//! assert!(body.ends_with("{\"grain\":\"cdn\"}\n"));
//! # Ok::<(), qoe_es::EsError>(())
//! ```

pub mod bulk;
mod config;
pub mod request;
pub mod retry;
pub mod searches;
mod service;
pub mod template;

pub use bulk::{BulkDoc, Rejection};
pub use config::{EsConfig, Retention};
pub use service::{EsMetrics, EsSink, WriteReport};

/// What the sink can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    /// A setting is wrong.
    #[error("elasticsearch setting {field}: {problem}")]
    Config {
        /// The setting.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A document could not be serialized.
    #[error("document {id}: cannot encode")]
    Encode {
        /// The document id.
        id: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A request's JSON body could not be serialized.
    #[error("elasticsearch {what}: cannot encode the request body")]
    EncodeRequest {
        /// The request.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The cluster refused the template or the lifecycle policy.
    #[error("installing the {what}: status {status}: {body}{hint}")]
    Install {
        /// What was installed.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
        /// A hint for a known cause.
        hint: &'static str,
    },
    /// A request failed with a status that is not worth retrying.
    #[error("elasticsearch {what}: status {status}: {body}")]
    Http {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The cluster stayed unreachable or busy for the whole retry time.
    #[error("elasticsearch gave up after {seconds} s of retries: {what}")]
    GaveUp {
        /// What kept failing, and its last answer (`status 503`, `unreachable`).
        what: String,
        /// The retry time.
        seconds: u64,
        /// The client's last error, when the cluster did not answer.
        #[source]
        source: Option<elasticsearch::Error>,
    },
    /// Documents were refused for good.
    #[error("elasticsearch refused {count} documents for good; first: index {:?} id {:?}: status {}: {}: {}", first.index, first.id, first.status, first.kind, first.reason)]
    Rejected {
        /// How many.
        count: usize,
        /// The first of them.
        first: Rejection,
    },
    /// A response is not JSON.
    #[error("elasticsearch {what}: the answer is not JSON")]
    NotJson {
        /// The request.
        what: String,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// A response is not the documented shape.
    #[error("elasticsearch response: {problem}")]
    Response {
        /// What is wrong with it.
        problem: String,
    },
}
