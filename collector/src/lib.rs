//! # qoe-collector: the front door of qoe-pipeline
//!
//! An HTTP server that takes beacons from player and broadcaster SDKs (`POST /v1/beacons`), validates
//! each one against beacon contract v1 ([`qoe_schemas`]), enriches it (receive time, skew-corrected
//! event time, client subnet, write key id) and produces it to Kafka (`qoe.beacons.v1`, keyed by room).
//!
//! ## Guarantees
//! - **A 200 means durable.** The response is sent only after Kafka acknowledged (`acks=all`,
//!   idempotent producer) every beacon it counts as accepted. If Kafka is unreachable or slow the
//!   answer is 503 with `Retry-After`, and the SDK sends the batch again; duplicates that this can
//!   create are removed downstream by `(session_id, seq)`.
//! - **One bad beacon never sinks its batch.** Each rejected beacon is listed in the 200 body with the
//!   field and the problem, counted by reason, and written to `qoe.beacons.dlq`.
//! - **Bounded work per request.** Body size, decompressed size and beacon count are limited, so a
//!   decompression bomb is refused with 413; each write key has a token-bucket rate limit (429).
//! - **Hostile clients are bounded** ([`listener`], [`body`]): a connection cap sized from the
//!   descriptor limit that sheds the longest-idle connection, header, body and keep-alive timeouts,
//!   a `Content-Length` over the limit refused before the body is read, one bound on the memory of
//!   all bodies in flight (503), a per-key byte rate beside the beacon rate, a per-address limit on
//!   failed authentication, and dead letters bounded by the size of the request that caused them.
//! - **No full client address is stored**, only its /24 (IPv4) or /48 (IPv6).
//! - **Graceful shutdown**: on cancellation the server stops accepting connections, finishes the
//!   requests in flight, and flushes the producer.
//!
//! [`run`] binds the configured address; [`serve`] takes a listener, so tests drive the collector on
//! `127.0.0.1:0`.

pub mod auth;
pub mod body;
pub mod config;
pub mod error;
pub mod ingest;
pub mod kafka;
pub mod listener;
pub mod metrics;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{CollectorConfig, ConfigError};

use auth::{AuthFailures, KeyRing, WriteKey};
use body::InflightBytes;
use kafka::{BeaconProducer, KafkaHealth};
use listener::ConnectionLimits;
use metrics::Metrics;
use server::AppState;

/// Why the collector could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Kafka producer could not be created (for example an unknown pass-through option).
    #[error("kafka producer")]
    Kafka(#[from] qoe_runtime::kafka::KafkaClientError),
    /// The listen address could not be bound, or the server failed.
    #[error("http server on {address}")]
    Io {
        /// The address.
        address: String,
        /// The error.
        source: std::io::Error,
    },
}

/// How often the Kafka health probe runs.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Binds `config.listen` and runs the collector until `shutdown` is cancelled.
pub async fn run(config: CollectorConfig, shutdown: CancellationToken) -> Result<(), CollectorError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| CollectorError::Io {
            address: config.listen.to_string(),
            source,
        })?;
    serve(listener, config, shutdown).await
}

/// Runs the collector on `listener` until `shutdown` is cancelled, then drains and flushes.
pub async fn serve(
    listener: TcpListener,
    config: CollectorConfig,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    config.check()?;
    let keys = KeyRing::new(load_write_keys(&config)?, config.rate_limit)?;
    let metrics = Metrics::new();
    let producer = Arc::new(BeaconProducer::new(&config.kafka, metrics.dead_letters_failed.clone())?);
    let address = listener
        .local_addr()
        .map(|address| address.to_string())
        .unwrap_or_default();
    let shutdown_timeout = Duration::from_secs(config.shutdown_timeout_secs);
    let limits = ConnectionLimits {
        max_connections: config.connections.effective_max_connections(),
        header_timeout: Duration::from_secs(config.connections.header_timeout_secs),
        idle_timeout: Duration::from_secs(config.connections.idle_timeout_secs),
    };
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(TcpListener::bind(address).await.map_err(|source| CollectorError::Io {
            address: address.to_string(),
            source,
        })?),
        None => None,
    };
    let state = Arc::new(AppState {
        auth_failures: AuthFailures::new(
            config.rate_limit.auth_failures_per_sec,
            config.rate_limit.auth_failures_burst,
        ),
        inflight: InflightBytes::new(config.connections.max_inflight_bytes, metrics.inflight_bytes.clone()),
        keys,
        producer: Arc::clone(&producer),
        metrics,
        config,
        shutdown: shutdown.clone(),
    });
    let probe = producer.probe(Duration::from_secs(2)).await;
    let initial_health = match (probe.reachable, probe.topic_exists) {
        (false, _) => KafkaHealth::Unreachable,
        (true, false) => KafkaHealth::TopicMissing,
        (true, true) => KafkaHealth::Ready,
    };
    producer.set_health(KafkaHealth::Ready);
    server::record_health(&state, initial_health);
    let watcher = tokio::spawn(server::watch_kafka(Arc::clone(&state), PROBE_INTERVAL));
    tracing::info!(
        %address,
        topic = %state.config.kafka.topic,
        max_connections = limits.max_connections,
        "collector listening"
    );
    let metrics_server = metrics_listener.map(|metrics_listener| {
        let address = metrics_listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::info!(%address, "metrics listening");
        let app = server::metrics_router(Arc::clone(&state));
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(metrics_listener, app).with_graceful_shutdown(stop.cancelled_owned());
            if let Err(error) = served.await {
                tracing::error!(%address, %error, "metrics server failed");
            }
        })
    });

    let app = server::router(Arc::clone(&state));
    let serving = listener::serve(
        listener,
        app,
        limits,
        state.metrics.connections.clone(),
        shutdown.clone(),
    );
    let drain_deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(shutdown_timeout).await;
    };
    tokio::select! {
        () = serving => {}
        _ = drain_deadline => tracing::warn!(timeout_secs = shutdown_timeout.as_secs(), "requests still in flight at the shutdown deadline"),
    }
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    watcher.abort();
    let queued = producer.queue_depth();
    match producer.flush(shutdown_timeout).await {
        Ok(()) => tracing::info!(flushed = queued, "collector stopped, producer flushed"),
        Err(error) => tracing::error!(%error, queued, "collector stopped, producer flush incomplete"),
    }
    Ok(())
}

fn load_write_keys(config: &CollectorConfig) -> Result<Vec<WriteKey>, ConfigError> {
    let mut keys: Vec<WriteKey> = config
        .write_keys
        .iter()
        .map(|text| WriteKey::parse(text))
        .collect::<Result<_, _>>()?;
    if let Some(path) = &config.write_keys_file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::KeysFile {
            path: path.clone(),
            source,
        })?;
        keys.extend(WriteKey::parse_file(&text)?);
    }
    Ok(keys)
}
