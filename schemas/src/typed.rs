//! The fast path of validation: a beacon deserialized straight into [`Beacon`] and checked against
//! the same field table as [`crate::validate::check`], without building a JSON tree.
//!
//! It only says yes or no. A beacon it refuses goes through the slow path, which finds the precise
//! error (or accepts it: the slow path also takes integral floats such as `12.0` for integer
//! fields, which the typed deserializer does not). The rule that keeps the two paths consistent:
//! whatever [`is_valid`] accepts, `check` accepts too, with the same [`Beacon`]; tests and the fuzz
//! target hold both to it.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::beacon::{Beacon, BeaconType, EndReason};
use crate::fields::{Kind, FIELDS, POSITIVE_INTERVAL};
use crate::text::text_problem;
use crate::validate::cross_field_error;

/// One field's value, borrowed from a [`Beacon`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Typed<'a> {
    Int(u64),
    Float(f64),
    Str(&'a str),
    Bool(bool),
    Map(&'a BTreeMap<String, String>),
}

/// Every field of [`FIELDS`], in the same order, as present in `beacon`.
pub(crate) fn typed_fields(beacon: &Beacon) -> [Option<Typed<'_>>; FIELDS.len()] {
    use Typed::{Bool, Float, Int, Map, Str};
    fn text(value: &Option<String>) -> Option<Typed<'_>> {
        value.as_deref().map(Typed::Str)
    }
    let int = |value: Option<u64>| value.map(Int);
    let float = |value: Option<f64>| value.map(Float);
    [
        Some(Int(beacon.v)),
        Some(Str(beacon.kind.as_str())),
        Some(Int(beacon.ts)),
        Some(Str(&beacon.session_id)),
        Some(Int(beacon.seq)),
        Some(Str(&beacon.room_id)),
        Some(Str(beacon.platform.as_str())),
        text(&beacon.user_id),
        text(&beacon.device_id),
        text(&beacon.app_version),
        text(&beacon.os),
        text(&beacon.device_model),
        beacon.network.map(|network| Str(network.as_str())),
        text(&beacon.isp),
        text(&beacon.region),
        text(&beacon.cdn),
        text(&beacon.edge_ip),
        beacon.exp.as_ref().map(Map),
        int(beacon.first_frame_ms),
        int(beacon.dns_ms),
        int(beacon.connect_ms),
        int(beacon.first_packet_ms),
        beacon.resolver.map(|resolver| Str(resolver.as_str())),
        int(beacon.rtt_ms),
        int(beacon.interval_ms),
        int(beacon.watch_ms),
        int(beacon.stall_count),
        int(beacon.stall_ms),
        int(beacon.dropped_frames),
        int(beacon.bitrate_kbps),
        int(beacon.buffer_ms),
        int(beacon.latency_ms),
        float(beacon.fps),
        int(beacon.startup_skip_ms),
        int(beacon.startup_speedup_ms),
        text(&beacon.code),
        beacon.fatal.map(Bool),
        beacon.category.map(|category| Str(category.as_str())),
        beacon.stage.map(|stage| Str(stage.as_str())),
        text(&beacon.reason),
        beacon.first_frame_seen.map(Bool),
        int(beacon.capture_width),
        int(beacon.capture_height),
        float(beacon.capture_fps),
        text(&beacon.encoder),
        float(beacon.cpu_pct),
        float(beacon.mem_mb),
        float(beacon.encode_fps),
        int(beacon.target_kbps),
        int(beacon.output_kbps),
    ]
}

/// Whether `beacon`, as an SDK sent it, satisfies every rule of the contract.
pub(crate) fn is_valid(beacon: &Beacon) -> bool {
    let has_enrichment = beacon.received_at.is_some()
        || beacon.event_time.is_some()
        || beacon.client_subnet.is_some()
        || beacon.key_id.is_some();
    if has_enrichment {
        return false;
    }
    let kind = beacon.kind;
    for (field, value) in FIELDS.iter().zip(typed_fields(beacon)) {
        let fits = match value {
            None => !field.required.contains(kind),
            Some(value) => field.allowed.contains(kind) && fits_kind(field.kind, value),
        };
        if !fits {
            return false;
        }
    }
    if matches!(kind, BeaconType::PlayEnd | BeaconType::PushEnd) {
        let reason = beacon.reason.as_deref().unwrap_or_default();
        if EndReason::parse(reason).is_none() {
            return false;
        }
    }
    if POSITIVE_INTERVAL.contains(kind) && beacon.interval_ms == Some(0) {
        return false;
    }
    let get = |name: &str| match name {
        "first_frame_ms" => beacon.first_frame_ms,
        "dns_ms" => beacon.dns_ms,
        "connect_ms" => beacon.connect_ms,
        "first_packet_ms" => beacon.first_packet_ms,
        "interval_ms" => beacon.interval_ms,
        "watch_ms" => beacon.watch_ms,
        "stall_ms" => beacon.stall_ms,
        "stall_count" => beacon.stall_count,
        "dropped_frames" => beacon.dropped_frames,
        _ => None,
    };
    cross_field_error(kind, get).is_none()
}

fn fits_kind(kind: Kind, value: Typed<'_>) -> bool {
    // A text has at most as many characters as bytes: count characters only for long texts.
    let text_fits = |text: &str, max_chars: usize| {
        !text.is_empty()
            && (text.len() <= max_chars || text.chars().count() <= max_chars)
            && text_problem(text).is_none()
    };
    match (kind, value) {
        (Kind::Str { max_chars }, Typed::Str(text)) => text_fits(text, max_chars),
        (Kind::Int { min, max }, Typed::Int(integer)) => (min..=max).contains(&integer),
        (Kind::Float { min, max }, Typed::Float(float)) => (min..=max).contains(&float),
        (Kind::Float { min, max }, Typed::Int(integer)) => (min..=max).contains(&(integer as f64)),
        (Kind::Bool, Typed::Bool(_)) => true,
        (Kind::Enum(names), Typed::Str(text)) => names.contains(&text),
        (Kind::Ip, Typed::Str(text)) => text.parse::<IpAddr>().is_ok(),
        (Kind::Map { max_entries, max_chars }, Typed::Map(entries)) => {
            entries.len() <= max_entries
                && entries
                    .iter()
                    .all(|(key, value)| text_fits(key, max_chars) && text_fits(value, max_chars))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_follow_the_order_of_the_field_table() {
        // Every field set to a value of its own, then each typed value compared with the JSON key.
        let text = r#"{
            "v": 1, "type": "play_heartbeat", "ts": 1763800000000, "session_id": "sid", "seq": 4,
            "room_id": "rid", "platform": "ios", "user_id": "uid", "device_id": "did", "app_version": "av",
            "os": "os", "device_model": "dm", "network": "5g", "isp": "isp", "region": "reg", "cdn": "cdn",
            "edge_ip": "192.0.2.1", "exp": {"k": "v"}, "first_frame_ms": 101, "dns_ms": 102,
            "connect_ms": 103, "first_packet_ms": 104, "resolver": "cached", "rtt_ms": 105,
            "interval_ms": 106, "watch_ms": 107, "stall_count": 108, "stall_ms": 109,
            "dropped_frames": 110, "bitrate_kbps": 111, "buffer_ms": 112, "latency_ms": 113, "fps": 11.4,
            "startup_skip_ms": 115, "startup_speedup_ms": 116, "code": "c", "fatal": true,
            "category": "business", "stage": "decode", "reason": "r", "first_frame_seen": false,
            "capture_width": 117, "capture_height": 118, "capture_fps": 11.9, "encoder": "enc",
            "cpu_pct": 12.5, "mem_mb": 12.1, "encode_fps": 12.2, "target_kbps": 123, "output_kbps": 124
        }"#;
        let beacon: Beacon = serde_json::from_str(text).unwrap();
        let json = serde_json::to_value(&beacon).unwrap();
        for (field, value) in FIELDS.iter().zip(typed_fields(&beacon)) {
            let expected = &json[field.name];
            let actual = match value.unwrap_or_else(|| panic!("{} missing", field.name)) {
                Typed::Int(integer) => serde_json::json!(integer),
                Typed::Float(float) => serde_json::json!(float),
                Typed::Str(text) => serde_json::json!(text),
                Typed::Bool(flag) => serde_json::json!(flag),
                Typed::Map(entries) => serde_json::json!(entries),
            };
            assert_eq!(&actual, expected, "{}", field.name);
        }
    }
}
