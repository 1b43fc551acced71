//! The HTTP server: `POST /v1/beacons`, CORS, health, readiness and metrics.
//!
//! A request is answered 200 only after Kafka acknowledged every beacon the response counts as
//! accepted. Whole-request problems map to statuses in [`ApiError`]; per-beacon problems are listed in
//! the 200 body and written to the dead-letter topic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use qoe_schemas::wire::{self, BodyFormat, ContentEncoding, Limits, WireError};

use crate::auth::{Denied, KeyRing};
use crate::config::CollectorConfig;
use crate::ingest::{self, RequestContext};
use crate::kafka::{BeaconProducer, KafkaHealth, ProduceError};
use crate::metrics::Metrics;

/// Everything a request handler needs.
pub struct AppState {
    /// The accepted write keys and their rate limits.
    pub keys: KeyRing,
    /// The Kafka producer.
    pub producer: Arc<BeaconProducer>,
    /// The collector's metrics.
    pub metrics: Metrics,
    /// The configuration the collector runs with.
    pub config: CollectorConfig,
    /// Cancelled when the collector shuts down; `/readyz` then answers 503.
    pub shutdown: CancellationToken,
}

/// A whole-request problem, with its HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No write key in the request.
    #[error("authorization: missing write key, send Authorization: Bearer <key> or ?key=<key>")]
    MissingKey,
    /// A write key the collector does not know.
    #[error("authorization: unknown write key")]
    UnknownKey,
    /// The body, its encoding or its format is wrong.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The write key sent more beacons than its rate limit allows.
    #[error("rate limit: write key {key_id:?} is over {rate} beacons/s, retry after {retry_after_secs} s")]
    RateLimited {
        /// The key id.
        key_id: String,
        /// The configured rate.
        rate: u64,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// Kafka did not take the beacons.
    #[error("kafka unavailable: {cause}, send the whole batch again after {retry_after_secs} s")]
    KafkaUnavailable {
        /// What went wrong.
        cause: ProduceError,
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// The collector is shutting down.
    #[error("shutting down: retry after {0} s")]
    ShuttingDown(u64),
}

impl ApiError {
    /// Every `code` with its HTTP status, as documented in `collector/openapi.json` (a test checks
    /// the two agree, and that every variant's code is listed here).
    pub const CODES: &'static [(&'static str, u16)] = &[
        ("missing_key", 401),
        ("unknown_key", 401),
        ("unsupported_encoding", 415),
        ("unsupported_media_type", 415),
        ("body_too_large", 413),
        ("decoded_body_too_large", 413),
        ("too_many_beacons", 413),
        ("bad_compression", 400),
        ("malformed_body", 400),
        ("bad_sent_at", 400),
        ("rate_limited", 429),
        ("kafka_unavailable", 503),
        ("shutting_down", 503),
    ];

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingKey | ApiError::UnknownKey => StatusCode::UNAUTHORIZED,
            ApiError::Wire(WireError::UnsupportedEncoding(_) | WireError::UnsupportedMediaType(_)) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Wire(
                WireError::BodyTooLarge { .. } | WireError::DecodedTooLarge { .. } | WireError::TooManyBeacons { .. },
            ) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Wire(WireError::BadCompression { .. } | WireError::Malformed(_) | WireError::BadSentAt(_)) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::KafkaUnavailable { .. } | ApiError::ShuttingDown(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A stable machine-readable code for the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingKey => "missing_key",
            ApiError::UnknownKey => "unknown_key",
            ApiError::Wire(WireError::UnsupportedEncoding(_)) => "unsupported_encoding",
            ApiError::Wire(WireError::UnsupportedMediaType(_)) => "unsupported_media_type",
            ApiError::Wire(WireError::BodyTooLarge { .. }) => "body_too_large",
            ApiError::Wire(WireError::DecodedTooLarge { .. }) => "decoded_body_too_large",
            ApiError::Wire(WireError::TooManyBeacons { .. }) => "too_many_beacons",
            ApiError::Wire(WireError::BadCompression { .. }) => "bad_compression",
            ApiError::Wire(WireError::Malformed(_)) => "malformed_body",
            ApiError::Wire(WireError::BadSentAt(_)) => "bad_sent_at",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::KafkaUnavailable { .. } => "kafka_unavailable",
            ApiError::ShuttingDown(_) => "shutting_down",
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs, .. } | ApiError::KafkaUnavailable { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            ApiError::ShuttingDown(secs) => Some(*secs),
            _ => None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = json!({"error": self.to_string(), "code": self.code()});
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The collector's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/beacons", post(post_beacons).options(preflight))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn post_beacons(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let result = accept(&state, request).await;
    let mut response = match result {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(error) => {
            tracing::debug!(code = error.code(), error = %error, "beacon request refused");
            error.into_response()
        }
    };
    add_cors_headers(&state.config.cors_allow_origin, response.headers_mut());
    state
        .metrics
        .requests
        .with_label_values(&[response.status().as_str()])
        .inc();
    state.metrics.request_duration.observe(started.elapsed().as_secs_f64());
    response
}

async fn accept(state: &AppState, request: Request) -> Result<serde_json::Value, ApiError> {
    if state.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown(1));
    }
    let received_at = epoch_ms();
    let (parts, body) = request.into_parts();
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri).unwrap_or(Query(HashMap::new()));
    let key_index = state
        .keys
        .authenticate(bearer_token(&parts.headers).or(query.get("key").map(String::as_str)))
        .map_err(|denied| match denied {
            Denied::Missing => ApiError::MissingKey,
            Denied::Unknown => ApiError::UnknownKey,
        })?;
    let format = BodyFormat::parse(header_str(&parts.headers, header::CONTENT_TYPE))?;
    let encoding = ContentEncoding::parse(header_str(&parts.headers, header::CONTENT_ENCODING))?;
    let sent_at = query
        .get("sent_at")
        .map(|text| wire::parse_sent_at(&serde_json::Value::String(text.clone())))
        .transpose()?;
    let limits: Limits = state.config.limits;
    let raw = read_body(body, limits.max_body_bytes).await?;
    let client_ip = client_ip(&parts, state.config.trust_forwarded_for);
    let context = RequestContext {
        received_at,
        sent_at,
        key_id: state.keys.id(key_index).to_string(),
        client_subnet: client_ip.map(ingest::truncate_ip),
        event_time: state.config.event_time,
    };
    // Decompression, parsing and validation are CPU work of up to tens of milliseconds for a large
    // batch: off the async workers, so health checks and other requests are not held up.
    let processed = tokio::task::spawn_blocking(move || -> Result<ingest::Processed, WireError> {
        let decoded = wire::decompress(&raw, encoding, &limits)?;
        let batch = wire::parse_batch(&decoded, format, &limits)?;
        drop(decoded);
        Ok(ingest::process(batch, &context))
    })
    .await
    .map_err(|_| ApiError::Wire(WireError::Malformed("could not be processed".to_string())))??;

    let item_count = (processed.accepted.len() + processed.rejected.len()) as u64;
    if let Err(wait) = state.keys.take(key_index, item_count, Instant::now()) {
        return Err(ApiError::RateLimited {
            key_id: state.keys.id(key_index).to_string(),
            rate: state.config.rate_limit.beacons_per_sec,
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }
    state.metrics.count_rejected(&processed.rejected);

    let produce_started = Instant::now();
    state
        .producer
        .produce(&processed.accepted, &processed.rejected)
        .await
        .map_err(|cause| {
            let retry_after_secs = match cause {
                ProduceError::QueueFull => 1,
                _ => 5,
            };
            ApiError::KafkaUnavailable {
                cause,
                retry_after_secs,
            }
        })?;
    state
        .metrics
        .produce_latency
        .observe(produce_started.elapsed().as_secs_f64());
    state.metrics.count_accepted(&processed.accepted);
    let rejected: Vec<_> = processed
        .rejected
        .iter()
        .map(|record| json!({"index": record.index, "error": record.error.to_string()}))
        .collect();
    Ok(json!({"accepted": processed.accepted.len(), "rejected": rejected}))
}

async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, WireError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(WireError::BodyTooLarge {
            size: limit.saturating_add(1),
            limit,
        }),
        Err(error) => Err(WireError::Malformed(format!("could not be read: {error}"))),
    }
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = header_str(headers, header::AUTHORIZATION)?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The client address: the TCP peer, or, behind a trusted proxy, the last `X-Forwarded-For` entry
/// (the one the proxy itself appended; entries before it are whatever the client claimed).
fn client_ip(parts: &axum::http::request::Parts, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

async fn preflight(State(state): State<Arc<AppState>>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    add_cors_headers(&state.config.cors_allow_origin, headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type, content-encoding"),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

fn add_cors_headers(origin: &str, headers: &mut HeaderMap) {
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("retry-after"),
    );
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match state.producer.health() {
        KafkaHealth::Ready => (StatusCode::OK, "ready\n").into_response(),
        KafkaHealth::Unreachable => (StatusCode::SERVICE_UNAVAILABLE, "kafka unreachable\n").into_response(),
        KafkaHealth::TopicMissing => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("topic {} does not exist\n", state.config.kafka.topic),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.queue_depth.set(state.producer.queue_depth() as i64);
    let mut response = state.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// Probes Kafka every `interval` until shutdown, keeping the producer's health and the `kafka_up`
/// gauge current. Two unanswered probes in a row mark Kafka unreachable; one answer clears it.
pub async fn watch_kafka(state: Arc<AppState>, interval: Duration) {
    let mut failures = 0u32;
    let mut dlq_warned = false;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let probe = state.producer.probe(interval.max(Duration::from_millis(500))).await;
        failures = if probe.reachable { 0 } else { failures + 1 };
        let health = match (failures < 2, probe.reachable && !probe.topic_exists) {
            (false, _) => KafkaHealth::Unreachable,
            (true, true) => KafkaHealth::TopicMissing,
            // One missed probe is tolerated: keep the previous verdict.
            (true, false) if !probe.reachable => state.producer.health(),
            (true, false) => KafkaHealth::Ready,
        };
        record_health(&state, health);
        if probe.reachable && !probe.dlq_topic_exists && !dlq_warned {
            tracing::warn!(topic = %state.config.kafka.dlq_topic, "dead-letter topic does not exist, rejected beacons are not kept");
        }
        dlq_warned = probe.reachable && !probe.dlq_topic_exists;
    }
}

/// Stores a health verdict, logging changes and updating the gauge.
pub fn record_health(state: &AppState, health: KafkaHealth) {
    let previous = state.producer.health();
    if health != previous {
        let brokers = &state.config.kafka.brokers;
        let topic = &state.config.kafka.topic;
        match health {
            KafkaHealth::Ready => tracing::info!(%brokers, %topic, "kafka ready"),
            KafkaHealth::Unreachable => tracing::warn!(%brokers, "kafka unreachable, answering 503"),
            KafkaHealth::TopicMissing => {
                tracing::warn!(%brokers, %topic, "beacon topic does not exist, answering 503 (create it with qoe topics create)")
            }
        }
    }
    state.producer.set_health(health);
    state.metrics.kafka_up.set(i64::from(health == KafkaHealth::Ready));
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_is_listed_with_its_status() {
        let errors = [
            ApiError::MissingKey,
            ApiError::UnknownKey,
            ApiError::Wire(WireError::UnsupportedEncoding("br".into())),
            ApiError::Wire(WireError::UnsupportedMediaType("text/xml".into())),
            ApiError::Wire(WireError::BodyTooLarge { size: 2, limit: 1 }),
            ApiError::Wire(WireError::DecodedTooLarge { limit: 1 }),
            ApiError::Wire(WireError::TooManyBeacons { limit: 1 }),
            ApiError::Wire(WireError::BadCompression {
                encoding: "gzip",
                detail: "corrupt".into(),
            }),
            ApiError::Wire(WireError::Malformed("not JSON".into())),
            ApiError::Wire(WireError::BadSentAt("x".into())),
            ApiError::RateLimited {
                key_id: "web".into(),
                rate: 1,
                retry_after_secs: 1,
            },
            ApiError::KafkaUnavailable {
                cause: ProduceError::QueueFull,
                retry_after_secs: 1,
            },
            ApiError::ShuttingDown(1),
        ];
        let listed: Vec<(&str, u16)> = errors.iter().map(|e| (e.code(), e.status().as_u16())).collect();
        assert_eq!(listed, ApiError::CODES);
    }
}
