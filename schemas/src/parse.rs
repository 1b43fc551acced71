//! The two entry points from text: [`parse_valid`], the typed fast path alone, and [`parse_beacon`],
//! the fast path with the JSON-tree validator ([`crate::validate`]) behind it for the exact error.
//! Both give the same beacon whenever both accept a text (the fuzz target `beacon_decoder` checks it).

use serde_json::Value;

use crate::beacon::Beacon;
use crate::validate::{validate, FieldError, RejectReason};

/// `validate(serde_json::from_str(text)?)`, with `beacon: not JSON: ...` when the text is not JSON.
///
/// ```
/// let text = r#"{"v":1,"type":"room_leave","ts":1763800000000,"session_id":"s","seq":3,"room_id":"r","platform":"tv","user_id":"u"}"#;
/// assert_eq!(qoe_schemas::parse_beacon(text).unwrap().seq, 3);
/// let error = qoe_schemas::parse_beacon(r#"{"v":1,"type":"room_leave","platform":"tv"}"#).unwrap_err();
/// assert_eq!(error.to_string(), "ts: required on room_leave beacons");
/// ```
pub fn parse_beacon(text: &str) -> Result<Beacon, FieldError> {
    if let Some(beacon) = parse_valid(text) {
        return Ok(beacon);
    }
    let value: Value = serde_json::from_str(text)
        .map_err(|error| FieldError::new("beacon", RejectReason::Malformed, format!("not JSON: {error}")))?;
    validate(value)
}

/// The fast path alone: `Some` when `text` is a valid beacon in canonical form (no duplicate keys, no
/// integral floats in integer fields), `None` otherwise, without saying why. When it returns `Some`,
/// `text` itself is a valid beacon exactly as it stands, so it may be stored as it is.
pub fn parse_valid(text: &str) -> Option<Beacon> {
    let beacon = crate::scan::typed(text)?;
    crate::typed::is_valid(&beacon).then_some(beacon)
}
