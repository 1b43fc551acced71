//! Validation of one SDK beacon: from a parsed JSON value to a [`Beacon`], or a [`FieldError`] that
//! names the field and what is wrong with it.
//!
//! The rules come from the field table in [`crate::fields`], plus the cross-field rules that JSON Schema
//! cannot state (see [`CROSS_FIELD_RULES`]). Validation stops at the first problem it finds; fields are
//! checked in this order: the value is an object, `type`, then every present field in key order, then the
//! required fields in contract order, then the cross-field rules.

use std::fmt;
use std::net::IpAddr;

use serde_json::{Map, Number, Value};

use crate::beacon::{Beacon, BeaconType, EndReason};
use crate::fields::{self, Field, Kind, ENRICHMENT_FIELDS, FIELDS, POSITIVE_INTERVAL};
use crate::text::text_problem;

/// What is wrong with one beacon: the field and the problem.
///
/// Displays as `<field>: <problem>`, the form the collector returns in `rejected[].error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// The field at fault (`beacon` when the whole item is wrong).
    pub field: String,
    /// What is wrong, quoting the bad value where it helps.
    pub problem: String,
    /// A stable, bounded reason code for metrics labels.
    pub reason: RejectReason,
}

/// Bounded reason codes for rejected beacons, used as a metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The item is not a JSON object, or not JSON at all.
    Malformed,
    /// A field that is not part of the contract, or not of this type.
    UnknownField,
    /// A required field is missing.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A field's value is out of range, too long, or not one of the accepted values.
    OutOfRange,
    /// Fields contradict each other.
    Inconsistent,
    /// A text holds a control character or has whitespace at an end ([`crate::text`]).
    InvalidText,
    /// The event time is too far in the future or too old (set by the collector).
    EventTime,
}

impl RejectReason {
    /// Every reason, for pre-registering metrics.
    pub const ALL: &'static [RejectReason] = &[
        RejectReason::Malformed,
        RejectReason::UnknownField,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::OutOfRange,
        RejectReason::Inconsistent,
        RejectReason::InvalidText,
        RejectReason::EventTime,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::Inconsistent => "inconsistent",
            RejectReason::InvalidText => "invalid_text",
            RejectReason::EventTime => "event_time",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FieldError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, reason: RejectReason, problem: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            problem: problem.into(),
            reason,
        }
    }
}

/// The rules beyond the field table, which JSON Schema cannot express. Each is checked by
/// [`validate`] and listed in `docs/beacons.md` and in the schema's `$comment`.
pub const CROSS_FIELD_RULES: &[&str] = &[
    "first_frame: dns_ms + connect_ms + first_packet_ms <= first_frame_ms",
    "play_heartbeat, play_end: watch_ms + stall_ms <= interval_ms",
    "push_heartbeat, push_end: stall_ms <= interval_ms",
    "play_end, push_end: interval_ms = 0 carries stall_count = 0 and dropped_frames = 0",
];

/// Validates one beacon. On success the beacon carries no enrichment fields yet.
///
/// ```
/// let beacon = serde_json::json!({
///     "v": 1, "type": "play_start", "ts": 1_763_800_000_000u64, "session_id": "s1", "seq": 0,
///     "room_id": "r1", "platform": "ios", "cdn": "cdn-a"
/// });
/// assert!(qoe_schemas::validate(beacon).is_ok());
///
/// let bad = serde_json::json!({
///     "v": 1, "type": "play_start", "ts": 1_763_800_000_000u64, "session_id": "s1", "seq": -1,
///     "room_id": "r1", "platform": "ios", "cdn": "cdn-a"
/// });
/// assert_eq!(qoe_schemas::validate(bad).unwrap_err().to_string(), "seq: must be >= 0, got -1");
/// ```
pub fn validate(mut value: Value) -> Result<Beacon, FieldError> {
    check(&mut value)?;
    serde_json::from_value(value).map_err(|error| {
        // Unreachable for input that passed the table; kept as an error rather than a panic.
        FieldError::new(
            "beacon",
            RejectReason::Malformed,
            format!("does not fit the contract: {error}"),
        )
    })
}

/// Parses and validates one beacon from its JSON text: the fast typed path first, the precise slow
/// path ([`check`]) only for beacons the fast path refuses. Returns the same as
/// Checks one beacon in place and returns its type; integral floats in integer fields are rewritten as
/// integers. On error the value is left as sent (but for such rewrites), so it can be kept for the
/// dead-letter queue. [`validate`] is `check` followed by the conversion to [`Beacon`].
pub fn check(value: &mut Value) -> Result<BeaconType, FieldError> {
    let map = match value {
        Value::Object(map) => map,
        other => {
            return Err(FieldError::new(
                "beacon",
                RejectReason::Malformed,
                format!("must be a JSON object, got {}", json_type(other)),
            ))
        }
    };
    let kind = beacon_type(map)?;
    for (name, value) in map.iter_mut() {
        check_present_field(kind, name, value)?;
    }
    for field in FIELDS {
        if field.required.contains(kind) && !map.contains_key(field.name) {
            return Err(FieldError::new(
                field.name,
                RejectReason::MissingField,
                format!("required on {kind} beacons"),
            ));
        }
    }
    check_cross_field_rules(kind, map)?;
    Ok(kind)
}

fn beacon_type(map: &Map<String, Value>) -> Result<BeaconType, FieldError> {
    let Some(value) = map.get("type") else {
        return Err(FieldError::new("type", RejectReason::MissingField, "required"));
    };
    let Value::String(text) = value else {
        return Err(wrong_type("type", "a string", value));
    };
    BeaconType::parse(text).ok_or_else(|| {
        FieldError::new(
            "type",
            RejectReason::OutOfRange,
            format!(
                "unknown beacon type {}, expected one of {}",
                quote(text),
                BeaconType::NAMES.join(", ")
            ),
        )
    })
}

fn check_present_field(kind: BeaconType, name: &str, value: &mut Value) -> Result<(), FieldError> {
    let Some(field) = fields::lookup(name) else {
        if ENRICHMENT_FIELDS.contains(&name) {
            return Err(FieldError::new(
                name,
                RejectReason::UnknownField,
                "set by the collector, SDKs may not send it",
            ));
        }
        return Err(FieldError::new(
            "beacon",
            RejectReason::UnknownField,
            format!("unknown field {}", quote(name)),
        ));
    };
    if !field.allowed.contains(kind) {
        return Err(FieldError::new(
            name,
            RejectReason::UnknownField,
            format!("not a field of {kind} beacons"),
        ));
    }
    check_kind(field, value)?;
    if name == "interval_ms" && POSITIVE_INTERVAL.contains(kind) && value.as_u64() == Some(0) {
        return Err(out_of_range(
            name,
            format!("must be >= 1 on {kind} beacons, got {value}"),
        ));
    }
    let is_end_reason = name == "reason" && matches!(kind, BeaconType::PlayEnd | BeaconType::PushEnd);
    if is_end_reason {
        let text = value.as_str().unwrap_or_default();
        if EndReason::parse(text).is_none() {
            return Err(not_one_of(name, text, EndReason::NAMES));
        }
    }
    Ok(())
}

fn check_kind(field: &Field, value: &mut Value) -> Result<(), FieldError> {
    let name = field.name;
    match field.kind {
        Kind::Str { max_chars } => {
            let Value::String(text) = value else {
                return Err(wrong_type(name, "a string", value));
            };
            check_text(name, text, max_chars)
        }
        Kind::Int { min, max } => {
            let Value::Number(number) = value else {
                return Err(wrong_type(name, "an integer", value));
            };
            let integer = integer_value(name, number)?;
            if integer < min as i128 {
                return Err(out_of_range(name, format!("must be >= {min}, got {number}")));
            }
            if integer > max as i128 {
                return Err(out_of_range(name, format!("must be <= {max}, got {number}")));
            }
            // Integral floats such as 12.0 are stored as integers.
            if number.is_f64() {
                *value = Value::Number(Number::from(integer as u64));
            }
            Ok(())
        }
        Kind::Float { min, max } => {
            let Some(number) = value.as_f64() else {
                return Err(wrong_type(name, "a number", value));
            };
            if number < min {
                return Err(out_of_range(name, format!("must be >= {min}, got {number}")));
            }
            if number > max {
                return Err(out_of_range(name, format!("must be <= {max}, got {number}")));
            }
            Ok(())
        }
        Kind::Bool => match value {
            Value::Bool(_) => Ok(()),
            other => Err(wrong_type(name, "true or false", other)),
        },
        Kind::Enum(names) => {
            let Value::String(text) = value else {
                return Err(wrong_type(name, "a string", value));
            };
            if names.contains(&text.as_str()) {
                Ok(())
            } else {
                Err(not_one_of(name, text, names))
            }
        }
        Kind::Ip => {
            let Value::String(text) = value else {
                return Err(wrong_type(name, "a string", value));
            };
            match text.parse::<IpAddr>() {
                Ok(_) => Ok(()),
                Err(_) => Err(out_of_range(
                    name,
                    format!("must be an IPv4 or IPv6 address, got {}", quote(text)),
                )),
            }
        }
        Kind::Map { max_entries, max_chars } => {
            let Value::Object(entries) = value else {
                return Err(wrong_type(name, "an object of strings", value));
            };
            if entries.len() > max_entries {
                return Err(out_of_range(
                    name,
                    format!("at most {max_entries} entries, got {}", entries.len()),
                ));
            }
            let length_problem = |what: String, text: &str| -> Option<FieldError> {
                let chars = text.chars().count();
                let fits = !text.is_empty() && chars <= max_chars;
                (!fits).then(|| {
                    out_of_range(
                        name,
                        format!("{what} must have 1 to {max_chars} characters, it has {chars}"),
                    )
                })
            };
            for (key, entry) in entries.iter() {
                if let Some(error) = length_problem(format!("key {}", quote(key)), key) {
                    return Err(error);
                }
                text_rule(name, "a key ", key)?;
                let Value::String(arm) = entry else {
                    return Err(out_of_range(
                        name,
                        format!("the value of {} must be a string, got {}", quote(key), json_type(entry)),
                    ));
                };
                if let Some(error) = length_problem(format!("the value of {}", quote(key)), arm) {
                    return Err(error);
                }
                text_rule(name, &format!("the value of {} ", quote(key)), arm)?;
            }
            Ok(())
        }
    }
}

/// The value of an integer-kind number: integers as they are, floats only when integral.
fn integer_value(name: &str, number: &Number) -> Result<i128, FieldError> {
    if let Some(unsigned) = number.as_u64() {
        return Ok(unsigned as i128);
    }
    if let Some(signed) = number.as_i64() {
        return Ok(signed as i128);
    }
    let float = number.as_f64().unwrap_or(f64::NAN);
    if float.fract() == 0.0 {
        // Integral but beyond i64 (1e20, or an integer literal over u64::MAX): saturating cast, so the
        // range check reports it as too large rather than as not an integer.
        return Ok(float as i128);
    }
    Err(FieldError::new(
        name,
        RejectReason::WrongType,
        format!("must be an integer, got {number}"),
    ))
}

fn check_text(name: &str, text: &str, max_chars: usize) -> Result<(), FieldError> {
    if text.is_empty() {
        return Err(out_of_range(name, "must not be empty".to_string()));
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(out_of_range(
            name,
            format!("at most {max_chars} characters, got {chars}"),
        ));
    }
    text_rule(name, "", text)
}

/// The text rule ([`crate::text`]) on a value of field `name`; `what` says which part of the field
/// (an `exp` key or value) with a trailing space, or is empty.
fn text_rule(name: &str, what: &str, text: &str) -> Result<(), FieldError> {
    match text_problem(text) {
        None => Ok(()),
        Some(problem) => Err(FieldError::new(
            name,
            RejectReason::InvalidText,
            format!("{what}{}, got {}", problem.describe(text), quote(text)),
        )),
    }
}

fn check_cross_field_rules(kind: BeaconType, map: &Map<String, Value>) -> Result<(), FieldError> {
    match cross_field_error(kind, |name| map.get(name).and_then(Value::as_u64)) {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The cross-field rules ([`CROSS_FIELD_RULES`]) over any source of field values; shared by the slow
/// path (JSON maps) and the fast path (typed beacons).
pub(crate) fn cross_field_error(kind: BeaconType, get: impl Fn(&str) -> Option<u64>) -> Option<FieldError> {
    match kind {
        BeaconType::FirstFrame => {
            let whole = get("first_frame_ms").unwrap_or(0);
            let sum: u64 = ["dns_ms", "connect_ms", "first_packet_ms"]
                .iter()
                .filter_map(|part| get(part))
                .sum();
            (sum > whole).then(|| {
                FieldError::new(
                    "first_frame_ms",
                    RejectReason::Inconsistent,
                    format!("dns_ms + connect_ms + first_packet_ms = {sum} is larger than first_frame_ms = {whole}"),
                )
            })
        }
        BeaconType::PlayHeartbeat | BeaconType::PlayEnd | BeaconType::PushHeartbeat | BeaconType::PushEnd => {
            let watch = get("watch_ms").unwrap_or(0);
            let stall = get("stall_ms").unwrap_or(0);
            let given = ["watch_ms", "stall_ms"].into_iter().find(|name| get(name).is_some());
            if let (None, Some(given)) = (get("interval_ms"), given) {
                return Some(FieldError::new(
                    "interval_ms",
                    RejectReason::MissingField,
                    format!("required when {given} is given"),
                ));
            }
            let interval = get("interval_ms")?;
            if watch + stall > interval {
                return Some(FieldError::new(
                    "interval_ms",
                    RejectReason::Inconsistent,
                    format!(
                        "watch_ms + stall_ms = {} is larger than interval_ms = {interval}",
                        watch + stall
                    ),
                ));
            }
            // An interval that covers no time has nothing in it (heartbeats never get here with 0).
            let counted_in_nothing = ["stall_count", "dropped_frames"].into_iter().find_map(|name| {
                get(name)
                    .filter(|count| interval == 0 && *count > 0)
                    .map(|count| (name, count))
            });
            counted_in_nothing.map(|(name, count)| {
                FieldError::new(
                    name,
                    RejectReason::Inconsistent,
                    format!("must be 0 when interval_ms is 0, got {count}"),
                )
            })
        }
        _ => None,
    }
}

/// What kind of JSON value `value` is, with its article, for error messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(name: &str, expected: &str, value: &Value) -> FieldError {
    FieldError::new(
        name,
        RejectReason::WrongType,
        format!("must be {expected}, got {}", json_type(value)),
    )
}

fn out_of_range(name: &str, problem: String) -> FieldError {
    FieldError::new(name, RejectReason::OutOfRange, problem)
}

fn not_one_of(name: &str, text: &str, names: &[&str]) -> FieldError {
    out_of_range(name, format!("{} is not one of {}", quote(text), names.join(", ")))
}

/// Quotes user input for an error message, cut to 64 characters.
fn quote(text: &str) -> String {
    const MAX_QUOTED_CHARS: usize = 64;
    let mut quoted: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if text.chars().count() > MAX_QUOTED_CHARS {
        quoted.push('…');
    }
    format!("{quoted:?}")
}
