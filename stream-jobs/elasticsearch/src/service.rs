//! The IO: [`EsSink`] sends the requests of [`crate::request`] through the official `elasticsearch`
//! client, retries what is worth retrying with back-off, and reports the rest.

use std::time::Instant;

use elasticsearch::auth::Credentials;
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::Url;
use elasticsearch::Elasticsearch;
use prometheus::{Histogram, IntCounterVec, Registry};
use qoe_runtime::metrics;
use serde_json::Value;

use crate::bulk::{batches, bulk_body, classify, retriable_status, BulkDoc, Rejection};
use crate::config::{EsConfig, Retention};
use crate::request::{self, EsBody, EsRequest, Method};
use crate::retry::Backoff;
use crate::EsError;

/// How much of an error response body an error message quotes.
const QUOTED_BODY: usize = 300;

/// The sink's metrics (`qoe_es_*`). Labels are bounded: outcome and result names only.
#[derive(Clone)]
pub struct EsMetrics {
    /// `qoe_es_documents_total{outcome}`: documents `written`, sent again after a `retried`
    /// item failure, or `rejected` for good.
    pub documents: IntCounterVec,
    /// `qoe_es_requests_total{result}`: requests by result (`ok`, `retriable` (429 and 502-504),
    /// `failed` (another status), `unreachable` (no response)).
    pub requests: IntCounterVec,
    /// `qoe_es_request_duration_seconds`: time of one request, response read.
    pub duration: Histogram,
}

impl EsMetrics {
    /// Creates the metrics and registers them in `registry`, once per registry: create one
    /// `EsMetrics` per process and clone it for each sink (they count together).
    pub fn new(registry: &Registry) -> Self {
        let documents = metrics::counter_vec(
            registry,
            "qoe_es_documents_total",
            "Documents sent to Elasticsearch, by outcome",
            &["outcome"],
        );
        let requests = metrics::counter_vec(
            registry,
            "qoe_es_requests_total",
            "Requests to Elasticsearch, by result",
            &["result"],
        );
        let duration = metrics::histogram(
            registry,
            "qoe_es_request_duration_seconds",
            "Time of one request to Elasticsearch",
            Some(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        );
        EsMetrics {
            documents,
            requests,
            duration,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteReport {
    /// Documents written.
    pub written: usize,
    /// Item failures sent again (one document may count several times).
    pub retried: usize,
    /// `_bulk` requests sent.
    pub requests: usize,
}

/// A cluster's answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

/// The Elasticsearch sink.
pub struct EsSink {
    client: Elasticsearch,
    config: EsConfig,
    metrics: EsMetrics,
}

impl EsSink {
    /// A client for `config.url` (no request is sent yet).
    pub fn new(config: EsConfig, metrics: EsMetrics) -> Result<Self, EsError> {
        config.validate()?;
        let url = Url::parse(&config.url).map_err(|error| EsError::Config {
            field: "url".to_string(),
            problem: format!("{:?}: {error}", config.url),
        })?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(config.request_timeout())
            .enable_meta_header(false);
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.auth(Credentials::Basic(username.clone(), password.clone()));
        }
        if let Some(key) = &config.api_key {
            builder = builder.auth(Credentials::EncodedApiKey(key.clone()));
        }
        let transport = builder.build().map_err(|error| EsError::Config {
            field: "url".to_string(),
            problem: error.to_string(),
        })?;
        Ok(EsSink {
            client: Elasticsearch::new(transport),
            config,
            metrics,
        })
    }

    /// The settings.
    pub fn config(&self) -> &EsConfig {
        &self.config
    }

    /// Installs the lifecycle policy (with [`Retention::Ilm`]) and the index template with
    /// `mappings`; retried like writes while the cluster is unreachable or busy.
    pub async fn install(&self, mappings: Value) -> Result<(), EsError> {
        if self.config.retention == Retention::Ilm {
            let answer = self.send_with_retry(&request::put_lifecycle(&self.config)).await?;
            if !(200..300).contains(&answer.status) {
                // Serverless answers that the ILM API is not available (410; 400 or 404 elsewhere).
                let no_ilm = matches!(answer.status, 400 | 404 | 410);
                return Err(EsError::Install {
                    what: format!("lifecycle policy {}", self.config.template_name()),
                    status: answer.status,
                    body: quote(&answer.body),
                    hint: if no_ilm {
                        " (a serverless project has no ILM: use --es-retention none)"
                    } else {
                        ""
                    },
                });
            }
        }
        let template = crate::template::index_template(&self.config, mappings);
        let answer = self
            .send_with_retry(&request::put_index_template(&self.config, template))
            .await?;
        if !(200..300).contains(&answer.status) {
            return Err(EsError::Install {
                what: format!("index template {}", self.config.template_name()),
                status: answer.status,
                body: quote(&answer.body),
                hint: "",
            });
        }
        tracing::info!(template = %self.config.template_name(), retention = ?self.config.retention, "elasticsearch template installed");
        Ok(())
    }

    /// Writes `docs` with `_bulk`, in batches, sending again only the items rejected for now (429,
    /// 502-504) and whole requests the cluster could not take, with back-off: each batch's item
    /// retries, and each request's retries, stop after `retry_for_secs`. `Ok` means every document is written; a document refused for good (a
    /// mapping error) fails the write after the rest of its batch is written.
    pub async fn write(&self, docs: &[BulkDoc]) -> Result<WriteReport, EsError> {
        let mut report = WriteReport::default();
        let mut rejected: Vec<Rejection> = Vec::new();
        for range in batches(docs, self.config.bulk_max_docs, self.config.bulk_max_bytes) {
            let mut pending: Vec<&BulkDoc> = docs[range].iter().collect();
            let mut backoff = Backoff::new(&self.config);
            while !pending.is_empty() {
                let answer = self
                    .send_with_retry(&request::bulk(bulk_body(pending.iter().copied())))
                    .await?;
                report.requests += 1;
                if !(200..300).contains(&answer.status) {
                    return Err(EsError::Http {
                        what: "_bulk".to_string(),
                        status: answer.status,
                        body: quote(&answer.body),
                    });
                }
                let outcome = classify(&answer.body, &pending)?;
                report.written += outcome.written;
                self.metrics
                    .documents
                    .with_label_values(&["written"])
                    .inc_by(outcome.written as u64);
                self.metrics
                    .documents
                    .with_label_values(&["rejected"])
                    .inc_by(outcome.rejected.len() as u64);
                rejected.extend(outcome.rejected);
                if outcome.retry.is_empty() {
                    break;
                }
                report.retried += outcome.retry.len();
                self.metrics
                    .documents
                    .with_label_values(&["retried"])
                    .inc_by(outcome.retry.len() as u64);
                pending = outcome.retry.iter().map(|&position| pending[position]).collect();
                let Some(delay) = backoff.next_delay() else {
                    return Err(EsError::GaveUp {
                        what: format!("{} documents rejected for now (429/5xx items)", pending.len()),
                        seconds: self.config.retry_for_secs,
                        source: None,
                    });
                };
                tracing::warn!(
                    items = pending.len(),
                    delay_ms = delay.as_millis() as u64,
                    "elasticsearch rejected bulk items for now: sending them again"
                );
                tokio::time::sleep(delay).await;
            }
        }
        if let Some(first) = rejected.first() {
            return Err(EsError::Rejected {
                count: rejected.len(),
                first: first.clone(),
            });
        }
        Ok(report)
    }

    /// Sends `request` (a search of [`crate::searches`], …) and returns the JSON answer; retried like
    /// writes while the cluster is unreachable or busy.
    pub async fn run(&self, request: &EsRequest) -> Result<Value, EsError> {
        let answer = self.send_with_retry(request).await?;
        if !(200..300).contains(&answer.status) {
            return Err(EsError::Http {
                what: format!("{} {}", request.method.as_str(), request.path),
                status: answer.status,
                body: quote(&answer.body),
            });
        }
        serde_json::from_slice(&answer.body).map_err(|source| EsError::NotJson {
            what: format!("{} {}", request.method.as_str(), request.path),
            source,
        })
    }

    /// Sends `request`, again after a back-off while the cluster is unreachable or answers 429 or
    /// 502-504, and returns the first other answer.
    async fn send_with_retry(&self, request: &EsRequest) -> Result<Answer, EsError> {
        let mut backoff = Backoff::new(&self.config);
        loop {
            let (problem, source) = match self.send(request).await {
                Ok(answer) if retriable_status(answer.status) => {
                    self.metrics.requests.with_label_values(&["retriable"]).inc();
                    (format!("status {}", answer.status), None)
                }
                Ok(answer) => {
                    let result = if (200..300).contains(&answer.status) {
                        "ok"
                    } else {
                        "failed"
                    };
                    self.metrics.requests.with_label_values(&[result]).inc();
                    return Ok(answer);
                }
                Err(SendError::Encode(source)) => {
                    return Err(EsError::EncodeRequest {
                        what: format!("{} {}", request.method.as_str(), request.path),
                        source,
                    })
                }
                Err(SendError::Transport(error)) => {
                    self.metrics.requests.with_label_values(&["unreachable"]).inc();
                    ("unreachable".to_string(), Some(error))
                }
            };
            let Some(delay) = backoff.next_delay() else {
                return Err(EsError::GaveUp {
                    what: format!("{} {}: {problem}", request.method.as_str(), request.path),
                    seconds: self.config.retry_for_secs,
                    source,
                });
            };
            tracing::warn!(path = %request.path, %problem, error = ?source, delay_ms = delay.as_millis() as u64, "elasticsearch request failed for now: retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends `request` once.
    async fn send(&self, request: &EsRequest) -> Result<Answer, SendError> {
        let method = match request.method {
            Method::Get => elasticsearch::http::Method::Get,
            Method::Put => elasticsearch::http::Method::Put,
            Method::Post => elasticsearch::http::Method::Post,
            Method::Delete => elasticsearch::http::Method::Delete,
        };
        let mut headers = HeaderMap::new();
        let body = match &request.body {
            Some(EsBody::Json(value)) => Some(serde_json::to_vec(value).map_err(SendError::Encode)?),
            Some(EsBody::Ndjson(bytes)) => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
                Some(bytes.clone())
            }
            None => None,
        };
        let query = (!request.query.is_empty()).then_some(request.query.as_slice());
        let started = Instant::now();
        let response = self
            .client
            .send(
                method,
                &request.path,
                headers,
                query,
                body,
                Some(self.config.request_timeout()),
            )
            .await
            .map_err(SendError::Transport)?;
        let status = response.status_code().as_u16();
        let body = response.bytes().await.map_err(SendError::Transport)?;
        self.metrics.duration.observe(started.elapsed().as_secs_f64());
        Ok(Answer {
            status,
            body: body.to_vec(),
        })
    }
}

/// Why one request got no answer.
enum SendError {
    /// Its JSON body could not be encoded.
    Encode(serde_json::Error),
    /// The cluster did not answer (connection, TLS, timeout, a torn body).
    Transport(elasticsearch::Error),
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut quoted: String = text.chars().take(QUOTED_BODY).collect();
    if text.chars().count() > QUOTED_BODY {
        quoted.push('…');
    }
    quoted
}
