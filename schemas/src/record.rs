//! Records of `qoe.beacons.v1`: a beacon as the collector accepted it, plus the collector's enrichment.
//!
//! The jobs read records back ([`parse_record`]) with the same rules the collector applied to the beacon
//! (the field table, the cross-field rules), plus the shape of the four enrichment fields. A record
//! without enrichment (a plain SDK beacon, as `qoe simulate --target file:` writes) is accepted too:
//! its event time is then its `ts`.

use serde_json::Value;

use crate::beacon::Beacon;
use crate::fields::{ENRICHMENT_FIELDS, MAX_TS_MS, MIN_TS_MS};
use crate::validate::{json_type, validate, FieldError, RejectReason};

/// Longest accepted `client_subnet` and `key_id`, in characters.
const MAX_ENRICHMENT_CHARS: usize = 64;

/// Parses and validates one record of `qoe.beacons.v1` (or one SDK beacon).
///
/// ```
/// let record = r#"{"v":1,"type":"room_join","ts":1763800000000,"session_id":"s","seq":0,"room_id":"r","platform":"web","user_id":"u","received_at":1763800000250,"event_time":1763800000100,"client_subnet":"203.0.113.0/24","key_id":"k1"}"#;
/// let beacon = qoe_schemas::parse_record(record).unwrap();
/// assert_eq!(beacon.event_time_ms(), 1_763_800_000_100);
///
/// let bad = r#"{"v":1,"type":"room_join","ts":1763800000000,"session_id":"s","seq":0,"room_id":"r","platform":"web","user_id":"u","event_time":"soon"}"#;
/// assert_eq!(qoe_schemas::parse_record(bad).unwrap_err().to_string(), "event_time: must be an integer, got a string");
/// ```
pub fn parse_record(text: &str) -> Result<Beacon, FieldError> {
    if let Some(beacon) = parse_fast(text) {
        return Ok(beacon);
    }
    let mut value: Value = serde_json::from_str(text)
        .map_err(|error| FieldError::new("beacon", RejectReason::Malformed, format!("not JSON: {error}")))?;
    let enrichment = match &mut value {
        Value::Object(map) => ENRICHMENT_FIELDS
            .iter()
            .map(|name| (*name, map.remove(*name)))
            .collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let mut beacon = validate(value)?;
    for (name, value) in enrichment {
        let Some(value) = value else { continue };
        match name {
            "received_at" => beacon.received_at = Some(time_field(name, &value)?),
            "event_time" => beacon.event_time = Some(time_field(name, &value)?),
            "client_subnet" => beacon.client_subnet = Some(text_field(name, &value)?),
            _ => beacon.key_id = Some(text_field(name, &value)?),
        }
    }
    Ok(beacon)
}

/// [`parse_record`] of raw bytes, as Kafka and NDJSON files deliver them: bytes that are not UTF-8
/// are refused as malformed.
pub fn parse_record_bytes(payload: &[u8]) -> Result<Beacon, FieldError> {
    let text = std::str::from_utf8(payload)
        .map_err(|error| FieldError::new("beacon", RejectReason::Malformed, format!("not UTF-8: {error}")))?;
    parse_record(text)
}

/// The fingerprint of an NDJSON input: xxh3-64 of its first line (up to the first `\n` of `start`,
/// or all of it), as 16 hex digits. Checkpoints of a file input carry it, so that they are never
/// applied to another file.
pub fn first_line_fingerprint(start: &[u8]) -> String {
    let end = start.iter().position(|byte| *byte == b'\n').unwrap_or(start.len());
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(&start[..end]))
}

/// The typed path (as [`crate::parse_valid`] for SDK beacons): the record deserializes straight into a
/// [`Beacon`], the beacon part passes the fast validator and the enrichment is in range.
fn parse_fast(text: &str) -> Option<Beacon> {
    let mut beacon = crate::scan::typed(text)?;
    let received_at = beacon.received_at.take();
    let event_time = beacon.event_time.take();
    let client_subnet = beacon.client_subnet.take();
    let key_id = beacon.key_id.take();
    let times_ok = [received_at, event_time].iter().flatten().all(|ms| in_time_range(*ms));
    let texts_ok = [&client_subnet, &key_id]
        .iter()
        .copied()
        .flatten()
        .all(|text| text_ok(text));
    if !(times_ok && texts_ok) {
        return None;
    }
    if !crate::typed::is_valid(&beacon) {
        return None;
    }
    beacon.received_at = received_at;
    beacon.event_time = event_time;
    beacon.client_subnet = client_subnet;
    beacon.key_id = key_id;
    Some(beacon)
}

fn in_time_range(ms: u64) -> bool {
    (MIN_TS_MS..=MAX_TS_MS).contains(&ms)
}

fn text_ok(text: &str) -> bool {
    !text.is_empty() && (text.len() <= MAX_ENRICHMENT_CHARS || text.chars().count() <= MAX_ENRICHMENT_CHARS)
}

fn time_field(name: &str, value: &Value) -> Result<u64, FieldError> {
    let Some(ms) = value.as_u64() else {
        return Err(FieldError::new(
            name,
            RejectReason::WrongType,
            format!("must be an integer, got {}", json_type(value)),
        ));
    };
    if !in_time_range(ms) {
        return Err(FieldError::new(
            name,
            RejectReason::OutOfRange,
            format!("must be an epoch ms between {MIN_TS_MS} and {MAX_TS_MS}, got {ms}"),
        ));
    }
    Ok(ms)
}

fn text_field(name: &str, value: &Value) -> Result<String, FieldError> {
    let Some(text) = value.as_str() else {
        return Err(FieldError::new(
            name,
            RejectReason::WrongType,
            format!("must be a string, got {}", json_type(value)),
        ));
    };
    if !text_ok(text) {
        return Err(FieldError::new(
            name,
            RejectReason::OutOfRange,
            format!("must be 1 to {MAX_ENRICHMENT_CHARS} characters, got {text:?}"),
        ));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""v":1,"type":"play_heartbeat","ts":1763800000000,"session_id":"s","seq":4,"room_id":"r","platform":"ios","cdn":"cdn-a","interval_ms":10000,"watch_ms":9000,"stall_count":1,"stall_ms":500"#;

    #[test]
    fn enriched_and_plain_records_are_read() {
        let plain = parse_record(&format!("{{{BASE}}}")).unwrap();
        assert_eq!(plain.event_time, None);
        let enriched = parse_record(&format!(
            r#"{{{BASE},"received_at":1763800000900,"event_time":1763800000500,"client_subnet":"10.0.0.0/24","key_id":"k"}}"#
        ))
        .unwrap();
        assert_eq!(enriched.event_time, Some(1_763_800_000_500));
        assert_eq!(enriched.key_id.as_deref(), Some("k"));
        assert_eq!(enriched.seq, plain.seq);
    }

    #[test]
    fn the_slow_path_names_the_field() {
        let cases = [
            (
                format!(r#"{{{BASE},"event_time":5}}"#),
                "event_time: must be an epoch ms",
            ),
            (
                format!(r#"{{{BASE},"key_id":""}}"#),
                "key_id: must be 1 to 64 characters",
            ),
            (
                format!(r#"{{{BASE},"client_subnet":7}}"#),
                "client_subnet: must be a string, got a number",
            ),
            (
                BASE.replace(r#""watch_ms":9000"#, r#""watch_ms":9900"#),
                "beacon: not JSON",
            ),
            (
                format!(r#"{{{}}}"#, BASE.replace(r#""watch_ms":9000"#, r#""watch_ms":9900"#)),
                "watch_ms + stall_ms",
            ),
            (format!(r#"{{{BASE},"extra":1}}"#), r#"beacon: unknown field "extra""#),
        ];
        for (text, expected) in cases {
            let error = parse_record(&text).unwrap_err().to_string();
            assert!(
                error.starts_with(expected) || error.contains(expected),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn integral_floats_are_taken_as_the_collector_takes_them() {
        let text = format!(
            r#"{{{},"event_time":1763800000500}}"#,
            BASE.replace(r#""seq":4"#, r#""seq":4.0"#)
        );
        assert_eq!(parse_record(&text).unwrap().seq, 4);
    }
}
