//! The collector's own metrics, served at `/metrics` in the Prometheus text format.
//!
//! Every name is `qoe_collector_<name>_<unit>`; labels are bounded (status codes, error codes,
//! beacon types, reject reasons, connection close reasons), never a key, session, room or address.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};
use qoe_runtime::metrics;

use qoe_schemas::{BeaconType, RejectReason};

use crate::error::ApiError;
use crate::listener::{CloseReason, ConnectionMetrics};

/// The collector's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Requests to `/v1/beacons` by HTTP status.
    pub requests: IntCounterVec,
    /// Beacons acknowledged by Kafka, by beacon type.
    pub beacons_accepted: IntCounterVec,
    /// Beacons refused, by reason.
    pub beacons_rejected: IntCounterVec,
    /// Dead-letter records that could not be written.
    pub dead_letters_failed: IntCounter,
    /// Time from receiving a request to answering it.
    pub request_duration: Histogram,
    /// Time from enqueuing a request's records to their acknowledgement by Kafka.
    pub produce_latency: Histogram,
    /// Records in the producer waiting for an acknowledgement (set at scrape time).
    pub queue_depth: IntGauge,
    /// 1 while the probe reaches a broker.
    pub kafka_up: IntGauge,
    /// Refused requests to `/v1/beacons` by error code.
    pub request_errors: IntCounterVec,
    /// Bytes of request bodies held now, as received and decompressed.
    pub inflight_bytes: IntGauge,
    /// The listener's connection metrics.
    pub connections: ConnectionMetrics,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    /// Creates and registers every metric, with every bounded label value pre-set to zero.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let requests = metrics::counter_vec(
            r,
            "qoe_collector_requests_total",
            "Requests to /v1/beacons by HTTP status.",
            &["status"],
        );
        let beacons_accepted = metrics::counter_vec(
            r,
            "qoe_collector_beacons_accepted_total",
            "Beacons acknowledged by Kafka, by beacon type.",
            &["type"],
        );
        let beacons_rejected = metrics::counter_vec(
            r,
            "qoe_collector_beacons_rejected_total",
            "Beacons refused, by reason.",
            &["reason"],
        );
        let dead_letters_failed = metrics::counter(
            r,
            "qoe_collector_dead_letters_failed_total",
            "Rejected beacons that could not be written to the dead-letter topic.",
        );
        let request_duration = metrics::histogram(
            r,
            "qoe_collector_request_duration_seconds",
            "Time from receiving a beacon request to answering it.",
            Some(LATENCY_BUCKETS.to_vec()),
        );
        let produce_latency = metrics::histogram(
            r,
            "qoe_collector_produce_latency_seconds",
            "Time from enqueuing a request's beacons to Kafka's acknowledgement of all of them.",
            Some(LATENCY_BUCKETS.to_vec()),
        );
        let queue_depth = metrics::gauge(
            r,
            "qoe_collector_kafka_queue_depth_messages",
            "Records in the producer waiting for a Kafka acknowledgement.",
        );
        let kafka_up = metrics::gauge(
            r,
            "qoe_collector_kafka_up_bool",
            "1 while the health probe reaches a broker.",
        );
        let request_errors = metrics::counter_vec(
            r,
            "qoe_collector_request_errors_total",
            "Refused requests to /v1/beacons by error code.",
            &["code"],
        );
        let inflight_bytes = metrics::gauge(
            r,
            "qoe_collector_inflight_body_bytes",
            "Bytes of request bodies held now, as received and decompressed.",
        );
        let connections = ConnectionMetrics {
            open: metrics::gauge(r, "qoe_collector_open_connections", "HTTP connections open now."),
            closed: metrics::counter_vec(
                r,
                "qoe_collector_connections_closed_total",
                "Connections the collector closed, by reason (timeouts, shed at the cap, refused at the cap).",
                &["reason"],
            ),
            requests: requests.clone(),
        };
        for (code, _) in ApiError::CODES {
            request_errors.with_label_values(&[code]);
        }
        for reason in CloseReason::ALL {
            connections.closed.with_label_values(&[reason.as_str()]);
        }
        for kind in BeaconType::ALL {
            beacons_accepted.with_label_values(&[kind.as_str()]);
        }
        for reason in RejectReason::ALL {
            beacons_rejected.with_label_values(&[reason.as_str()]);
        }
        Metrics {
            registry,
            requests,
            beacons_accepted,
            beacons_rejected,
            dead_letters_failed,
            request_duration,
            produce_latency,
            queue_depth,
            kafka_up,
            request_errors,
            inflight_bytes,
            connections,
        }
    }

    /// Counts a request's accepted beacons by type (one counter update per type present).
    pub fn count_accepted(&self, accepted: &[crate::ingest::AcceptedRecord]) {
        let mut by_type = [0u64; BeaconType::ALL.len()];
        for record in accepted {
            by_type[record.kind as usize] += 1;
        }
        for (kind, count) in BeaconType::ALL.iter().zip(by_type) {
            if count > 0 {
                self.beacons_accepted.with_label_values(&[kind.as_str()]).inc_by(count);
            }
        }
    }

    /// Counts a request's rejected beacons by reason.
    pub fn count_rejected(&self, rejected: &[crate::ingest::RejectedRecord]) {
        for record in rejected {
            self.beacons_rejected
                .with_label_values(&[record.error.reason.as_str()])
                .inc();
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
