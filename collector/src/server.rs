//! The HTTP server: `POST /v1/beacons`, CORS, health, readiness and metrics.
//!
//! A request is answered 200 only after Kafka acknowledged every beacon the response counts as
//! accepted. Whole-request problems map to statuses in [`ApiError`]; per-beacon problems are listed in
//! the 200 body and written to the dead-letter topic (bounded: `crate::ingest`).
//!
//! Before any work, a client address that failed to authenticate too often gets 429
//! `auth_rate_limited`; the body is then read under its size, time and memory bounds
//! ([`crate::body`]), and the key pays for the beacons and the decoded bytes it sent.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use qoe_schemas::wire::{self, BodyFormat, ContentEncoding, Limits, WireError};

use crate::auth::{AuthFailures, Cost, Denied, KeyRing};
use crate::body::{self, InflightBytes};
use crate::config::CollectorConfig;
use crate::error::ApiError;
use crate::ingest::{self, RequestContext};
use crate::kafka::{BeaconProducer, KafkaHealth, ProduceError};
use crate::metrics::Metrics;

/// Everything a request handler needs.
pub struct AppState {
    /// The accepted write keys and their rate limits.
    pub keys: KeyRing,
    /// Failed authentications per client address.
    pub auth_failures: AuthFailures,
    /// The bound on bytes of bodies in flight.
    pub inflight: InflightBytes,
    /// The Kafka producer.
    pub producer: Arc<BeaconProducer>,
    /// The collector's metrics.
    pub metrics: Metrics,
    /// The configuration the collector runs with.
    pub config: CollectorConfig,
    /// Cancelled when the collector shuts down; `/readyz` then answers 503.
    pub shutdown: CancellationToken,
}

/// The collector's public routes; `/metrics` among them unless it is served on its own address
/// ([`metrics_router`]).
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/v1/beacons", post(post_beacons).options(preflight))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    let routes = match state.config.metrics_listen {
        None => routes.route("/metrics", get(metrics)),
        Some(_) => routes,
    };
    routes.with_state(state)
}

/// The routes of the separate metrics address (`metrics_listen`): `/metrics` and the probes.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn post_beacons(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let result = accept(&state, request).await;
    let mut response = match result {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(error) => {
            tracing::debug!(code = error.code(), error = %error, "beacon request refused");
            state.metrics.request_errors.with_label_values(&[error.code()]).inc();
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
    let received_at = qoe_runtime::clock::epoch_ms();
    let (parts, body) = request.into_parts();
    let client_ip = client_ip(&parts, state.config.trust_forwarded_for);
    let now = Instant::now();
    if let Some(wait) = client_ip.and_then(|ip| state.auth_failures.blocked(ip, now)) {
        return Err(ApiError::AuthRateLimited {
            retry_after_secs: wait_secs(wait),
        });
    }
    let Query(query) = Query::<HashMap<String, String>>::try_from_uri(&parts.uri).unwrap_or(Query(HashMap::new()));
    let key_index = state
        .keys
        .authenticate(bearer_token(&parts.headers).or(query.get("key").map(String::as_str)))
        .map_err(|denied| {
            if let Some(ip) = client_ip {
                state.auth_failures.fail(ip, now);
            }
            match denied {
                Denied::Missing => ApiError::MissingKey,
                Denied::Unknown => ApiError::UnknownKey,
            }
        })?;
    let format = BodyFormat::parse(header_str(&parts.headers, header::CONTENT_TYPE))?;
    let encoding = ContentEncoding::parse(header_str(&parts.headers, header::CONTENT_ENCODING))?;
    let sent_at = query
        .get("sent_at")
        .map(|text| wire::parse_sent_at(&serde_json::Value::String(text.clone())))
        .transpose()?;
    let limits: Limits = state.config.limits;
    let content_length = header_str(&parts.headers, header::CONTENT_LENGTH).and_then(|text| text.parse().ok());
    let mut held = state.inflight.hold_nothing();
    let raw = body::read(
        body,
        content_length,
        limits.max_body_bytes,
        Duration::from_secs(state.config.connections.body_timeout_secs),
        &state.inflight,
        &mut held,
    )
    .await?;
    let context = RequestContext {
        received_at,
        sent_at,
        key_id: state.keys.id(key_index).to_string(),
        client_subnet: client_ip.map(ingest::truncate_ip),
        event_time: state.config.event_time,
        wire_bytes: raw.len(),
    };
    // Decompression, parsing and validation are CPU work of up to tens of milliseconds for a large
    // batch: off the async workers, so health checks and other requests are not held up.
    let bound = state.inflight.clone();
    let (processed, decoded_bytes, held) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        // The decoded copy, and the records made from it, are held beside the body: a compressed
        // body reserves the whole decoded limit before it is inflated (its size is unknown until
        // then) and gives back what it did not use; an identity body holds its copy.
        let body_held = raw.len();
        let reserve = match encoding {
            ContentEncoding::Identity => raw.len(),
            _ => limits.max_decoded_bytes,
        };
        bound.hold(&mut held, reserve)?;
        let decoded = wire::decompress(&raw, encoding, &limits)?;
        let decoded_bytes = decoded.len();
        bound.release_beyond(&mut held, body_held + decoded_bytes);
        let batch = wire::parse_batch(&decoded, format, &limits)?;
        drop(decoded);
        Ok((ingest::process(batch, &context), decoded_bytes, held))
    })
    .await
    .map_err(|_| ApiError::Wire(WireError::Malformed("could not be processed".to_string())))??;

    let cost = Cost {
        beacons: (processed.accepted.len() + processed.rejected.len()) as u64,
        bytes: decoded_bytes as u64,
    };
    if let Err(over) = state.keys.take(key_index, cost, Instant::now()) {
        return Err(ApiError::RateLimited {
            key_id: state.keys.id(key_index).to_string(),
            rate: over.rate,
            unit: over.unit,
            retry_after_secs: wait_secs(over.wait),
        });
    }
    state.metrics.count_rejected(&processed.rejected);

    let produce_started = Instant::now();
    state
        .producer
        .produce(&processed.accepted, &processed.dead_letters)
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
    drop(held);
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

/// Whole seconds to tell a client to wait, at least 1.
fn wait_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
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
