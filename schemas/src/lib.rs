//! # qoe-schemas: the contract of qoe-pipeline
//!
//! Everything the collector, the stream jobs and the batch jobs agree on, and nothing that does IO:
//!
//! - [`Beacon`], the beacon v1 record (what SDKs send, plus the collector's enrichment), and its enums;
//! - [`fields`], the table of every field with its kind, range, and the beacon types that allow or
//!   require it;
//! - [`validate()`], which turns one parsed JSON value into a [`Beacon`] or a [`FieldError`] naming the
//!   field and the problem;
//! - [`wire`], the `POST /v1/beacons` request contract: encodings, formats, limits;
//! - [`tables`], the Arrow schemas of the Parquet warehouse tables;
//! - [`scan`], the fast reader of beacons in their common form (in front of serde's derived one);
//! - [`text`], the rule every free string follows (no control characters, no whitespace at either
//!   end);
//! - [`time`], UTC dates and RFC 3339 times of epoch milliseconds;
//! - the published JSON Schema (`schemas/beacon-v1.schema.json`, also as [`BEACON_V1_JSON_SCHEMA`]).
//!
//! Guarantees: validation is deterministic and total (every input gets `Ok` or one `FieldError`, no
//! panic: the fuzz target in `fuzz/` checks this), and every `Beacon` it returns serializes to JSON
//! that validates again to the same `Beacon`.
//!
//! ```
//! use qoe_schemas::wire::{parse_batch, BodyFormat, Item, Limits};
//! let body = br#"{"beacons": [
//!   {"v":1,"type":"room_join","ts":1763800000000,"session_id":"s","seq":0,"room_id":"r","platform":"web","user_id":"u"},
//!   {"v":1,"type":"room_join","ts":1763800000000,"session_id":"s","seq":1,"room_id":"r","platform":"web"}
//! ]}"#;
//! let batch = parse_batch(body, BodyFormat::Json, &Limits::default()).unwrap();
//! let results: Vec<_> = batch
//!     .items
//!     .into_iter()
//!     .map(|item| match item {
//!         Item::Json(text) => qoe_schemas::parse_beacon(&text).map_err(|error| error.to_string()),
//!         Item::NotJson { error, .. } => Err(error),
//!     })
//!     .collect();
//! assert!(results[0].is_ok());
//! assert_eq!(results[1].as_ref().unwrap_err(), "user_id: required on room_join beacons");
//! ```

pub mod beacon;
pub mod fields;
mod parse;
mod record;
pub mod scan;
pub mod tables;
pub mod text;
pub mod time;
mod typed;
pub mod validate;
pub mod wire;

pub use beacon::{
    Beacon, BeaconType, EndReason, ErrorCategory, ErrorStage, Family, Network, Platform, Resolver, BEACONS_TOPIC,
    BEACON_VERSION, DLQ_TOPIC,
};
pub use parse::{parse_beacon, parse_valid};
pub use record::{first_line_fingerprint, parse_record, parse_record_bytes};
pub use validate::{check, validate, FieldError, RejectReason, CROSS_FIELD_RULES};

/// The published JSON Schema of one beacon v1, as SDK authors and other validators use it.
pub const BEACON_V1_JSON_SCHEMA: &str = include_str!("../beacon-v1.schema.json");
