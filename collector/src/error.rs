//! Whole-request errors of `POST /v1/beacons`: each maps to one HTTP status and one stable `code`
//! (documented in `collector/openapi.json` and `docs/beacons.md`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use qoe_schemas::wire::WireError;

use crate::kafka::ProduceError;

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
    /// The client address failed to authenticate too often.
    #[error("authorization: too many failed attempts from this address, retry after {retry_after_secs} s")]
    AuthRateLimited {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// The write key sent more beacons or bytes than its rate limit allows.
    #[error("rate limit: write key {key_id:?} is over {rate} {unit}/s, retry after {retry_after_secs} s")]
    RateLimited {
        /// The key id.
        key_id: String,
        /// The configured rate.
        rate: u64,
        /// What the rate counts: `beacons` or `bytes` (decoded).
        unit: &'static str,
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
    /// The body did not arrive within the body timeout.
    #[error("body: not received within {secs} s")]
    BodyTimeout {
        /// The timeout.
        secs: u64,
    },
    /// The bodies in flight hold the configured memory bound.
    #[error("overloaded: request bodies in flight hold {limit} bytes, retry after 1 s")]
    Overloaded {
        /// `connections.max_inflight_bytes`.
        limit: u64,
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
        ("auth_rate_limited", 429),
        ("rate_limited", 429),
        ("kafka_unavailable", 503),
        ("body_timeout", 408),
        ("overloaded", 503),
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
            ApiError::AuthRateLimited { .. } | ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::KafkaUnavailable { .. } | ApiError::Overloaded { .. } | ApiError::ShuttingDown(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
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
            ApiError::AuthRateLimited { .. } => "auth_rate_limited",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::KafkaUnavailable { .. } => "kafka_unavailable",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::ShuttingDown(_) => "shutting_down",
        }
    }

    /// Whether the connection is closed after the answer: the body was not (fully) read, or the
    /// client is one to get rid of.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            ApiError::AuthRateLimited { .. }
                | ApiError::BodyTimeout { .. }
                | ApiError::Overloaded { .. }
                | ApiError::Wire(WireError::BodyTooLarge { .. })
        )
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ApiError::AuthRateLimited { retry_after_secs }
            | ApiError::RateLimited { retry_after_secs, .. }
            | ApiError::KafkaUnavailable { retry_after_secs, .. } => Some(*retry_after_secs),
            ApiError::Overloaded { .. } => Some(1),
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
        if self.closes_connection() {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
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
            ApiError::AuthRateLimited { retry_after_secs: 1 },
            ApiError::RateLimited {
                key_id: "web".into(),
                rate: 1,
                unit: "beacons",
                retry_after_secs: 1,
            },
            ApiError::KafkaUnavailable {
                cause: ProduceError::QueueFull,
                retry_after_secs: 1,
            },
            ApiError::BodyTimeout { secs: 1 },
            ApiError::Overloaded { limit: 1 },
            ApiError::ShuttingDown(1),
        ];
        let listed: Vec<(&str, u16)> = errors.iter().map(|e| (e.code(), e.status().as_u16())).collect();
        assert_eq!(listed, ApiError::CODES);
    }
}
