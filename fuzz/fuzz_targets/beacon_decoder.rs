//! Fuzzes the collector's decoder: decompression under limits, batch parsing, and validation.
//!
//! The first byte picks the encoding and format; the rest is the body. Invariants checked:
//! nothing panics; decompressed output never exceeds its limit; a batch never has more items than
//! allowed; the scanner (`qoe_schemas::scan`) gives serde's value whenever it gives one; the typed
//! fast path (`parse_beacon`) and the slow path (`validate`) agree on every item; and every beacon
//! that validates serializes to JSON that validates again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qoe_schemas::wire::{self, BodyFormat, ContentEncoding, Item, Limits};

fuzz_target!(|data: &[u8]| {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let encoding = match selector % 3 {
        0 => ContentEncoding::Identity,
        1 => ContentEncoding::Gzip,
        _ => ContentEncoding::Zstd,
    };
    let format = if selector & 0x80 == 0 { BodyFormat::Json } else { BodyFormat::Ndjson };
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        max_decoded_bytes: 256 * 1024,
        max_beacons: 100,
    };
    let Ok(decoded) = wire::decompress(body, encoding, &limits) else {
        return;
    };
    assert!(decoded.len() <= limits.max_decoded_bytes);
    let Ok(batch) = wire::parse_batch(&decoded, format, &limits) else {
        return;
    };
    assert!(batch.items.len() <= limits.max_beacons);
    for item in batch.items {
        let Item::Json(text) = item else {
            continue;
        };
        // The hand-written reader gives serde's value whenever it gives one.
        if let Some(scanned) = qoe_schemas::scan::beacon(&text) {
            let derived = serde_json::from_str::<qoe_schemas::Beacon>(&text).ok();
            assert_eq!(derived.as_ref(), Some(&scanned), "the scanner and serde disagree on {text}");
        }
        // The fast path and the slow path agree on every item.
        let fast = qoe_schemas::parse_beacon(&text);
        match serde_json::from_str::<serde_json::Value>(&text) {
            Err(_) => assert!(fast.is_err(), "accepted text that is not JSON: {text}"),
            Ok(value) => {
                let slow = qoe_schemas::validate(value);
                assert_eq!(
                    fast.as_ref().map_err(ToString::to_string),
                    slow.as_ref().map_err(ToString::to_string),
                    "fast and slow paths disagree on {text}"
                );
            }
        }
        if let Ok(beacon) = fast {
            let again = serde_json::to_value(&beacon).expect("a beacon serializes");
            let reparsed = qoe_schemas::validate(again).expect("a valid beacon stays valid after a round trip");
            assert_eq!(reparsed, beacon);
        }
    }
});
