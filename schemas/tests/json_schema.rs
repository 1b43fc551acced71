//! The published JSON Schema and the Rust validator accept and reject the same beacons.
//!
//! The corpus is systematic: for every beacon type, a valid example of that type with every field it
//! allows; then each field (every contract field, the enrichment fields and an unknown one) set to each
//! of a list of probe values, and each present field removed. Both validators judge every example. The
//! only allowed disagreement is the documented one: a beacon that breaks a cross-field rule
//! (`CROSS_FIELD_RULES`), which JSON Schema cannot state, is accepted by the schema and refused by Rust
//! with reason `inconsistent`.

mod common;

use qoe_schemas::{fields::FIELDS, validate, BeaconType, RejectReason};
use serde_json::{json, Value};

fn schema_validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(qoe_schemas::BEACON_V1_JSON_SCHEMA).expect("schema is JSON");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .expect("schema compiles")
}

fn probe_values() -> Vec<Value> {
    let long = |n: usize| Value::String("x".repeat(n));
    let mut values = vec![
        Value::Null,
        json!(true),
        json!(false),
        json!(""),
        json!("x"),
        long(64),
        long(65),
        long(128),
        long(129),
        json!("é".repeat(64)),
        json!("é".repeat(65)),
        json!([]),
        json!({}),
        json!({"a": "b"}),
        json!({"a": 1}),
        json!({"": "b"}),
        json!({"a": ""}),
        json!({"1": "a", "2": "a", "3": "a", "4": "a", "5": "a", "6": "a", "7": "a", "8": "a"}),
        json!({"1": "a", "2": "a", "3": "a", "4": "a", "5": "a", "6": "a", "7": "a", "8": "a", "9": "a"}),
        json!("203.0.113.7"),
        json!("2001:db8::1"),
        json!("01.2.3.4"),
        json!("256.1.1.1"),
        json!("fe80::1%eth0"),
        json!("edge-1.cdn.example"),
        // The text rule: controls anywhere, whitespace at an end, blank values.
        json!("a b"),
        json!("a\u{a0}b"),
        json!(" x"),
        json!("x "),
        json!("   "),
        json!("\t"),
        json!("room\n1"),
        json!("a\u{0}b"),
        json!("a\u{7f}b"),
        json!("a\u{85}b"),
        json!("a\u{202e}b"),
        json!("a\u{2066}b"),
        json!("x\u{2028}"),
        json!("\u{feff}x"),
        json!("\u{3000}"),
        json!({"a\n": "b"}),
        json!({"a": " b"}),
        json!({"a": "b\u{200f}"}),
        json!(-1),
        json!(-0.5),
        json!(0),
        json!(0.0),
        json!(1),
        json!(1.5),
        json!(12.0),
        json!(1e20),
        json!(946_684_799_999u64),
        json!(946_684_800_000u64),
        json!(4_102_444_799_999u64),
        json!(4_102_444_800_000u64),
        json!(9_007_199_254_740_991u64),
        json!(9_007_199_254_740_992u64),
        json!(u64::MAX),
    ];
    for bound in [100u64, 240, 10_000, 16_384, 60_000, 600_000, 1_000_000, 1_048_576] {
        values.push(json!(bound));
        values.push(json!(bound + 1));
        values.push(json!(bound as f64 + 0.5));
    }
    for names in [
        BeaconType::NAMES,
        qoe_schemas::Platform::NAMES,
        qoe_schemas::Network::NAMES,
        qoe_schemas::Resolver::NAMES,
        qoe_schemas::ErrorCategory::NAMES,
        qoe_schemas::ErrorStage::NAMES,
        qoe_schemas::EndReason::NAMES,
    ] {
        values.extend(names.iter().map(|name| json!(name)));
    }
    values.push(json!("ANDROID"));
    // The externally tagged form serde's derived enums would take.
    values.extend([
        json!({"wifi": null}),
        json!({"room_join": null}),
        json!({"web": null}),
        json!({"httpdns": null}),
    ]);
    values
}

fn probe_fields() -> Vec<&'static str> {
    let mut names: Vec<&str> = FIELDS.iter().map(|field| field.name).collect();
    names.extend(qoe_schemas::fields::ENRICHMENT_FIELDS);
    names.push("not_a_field");
    names
}

struct Tally {
    examples: usize,
    accepted: usize,
    cross_field: usize,
}

fn judge(validator: &jsonschema::Validator, example: &Value, tally: &mut Tally, what: &str) {
    let schema_accepts = validator.is_valid(example);
    let rust = validate(example.clone());
    // The fast path (typed, from text) must give exactly what the slow path gives.
    let from_text = qoe_schemas::parse_beacon(&example.to_string());
    assert_eq!(
        from_text.as_ref().map_err(ToString::to_string),
        rust.as_ref().map_err(ToString::to_string),
        "{what}: parse_beacon and validate disagree on {example}"
    );
    // The jobs' reader of Kafka records takes SDK beacons exactly as the collector does.
    let has_enrichment = example.as_object().is_some_and(|map| {
        qoe_schemas::fields::ENRICHMENT_FIELDS
            .iter()
            .any(|name| map.contains_key(*name))
    });
    if !has_enrichment {
        let as_record = qoe_schemas::parse_record(&example.to_string());
        assert_eq!(
            as_record.as_ref().map_err(ToString::to_string),
            rust.as_ref().map_err(ToString::to_string),
            "{what}: parse_record and validate disagree on {example}"
        );
    }
    tally.examples += 1;
    match (&rust, schema_accepts) {
        (Ok(_), true) => tally.accepted += 1,
        (Err(_), false) => {}
        (Err(error), true) if error.reason == RejectReason::Inconsistent => tally.cross_field += 1,
        _ => panic!(
            "{what}: schema {} but Rust says {:?}\nexample: {example}",
            if schema_accepts { "accepts" } else { "rejects" },
            rust.map(|_| "ok").map_err(|error| error.to_string())
        ),
    }
}

#[test]
fn schema_and_rust_agree_on_a_systematic_corpus() {
    let validator = schema_validator();
    let mut tally = Tally {
        examples: 0,
        accepted: 0,
        cross_field: 0,
    };
    let values = probe_values();
    for kind in BeaconType::NAMES {
        let example = common::base(kind);
        judge(&validator, &example, &mut tally, &format!("{kind} base"));
        assert!(validate(example.clone()).is_ok(), "{kind} base example must be valid");
        for field in probe_fields() {
            for value in &values {
                let mut mutated = example.clone();
                mutated[field] = value.clone();
                judge(&validator, &mutated, &mut tally, &format!("{kind}.{field} = {value}"));
            }
        }
        for field in example.as_object().unwrap().keys() {
            let mut mutated = example.clone();
            mutated.as_object_mut().unwrap().remove(field);
            judge(&validator, &mutated, &mut tally, &format!("{kind} without {field}"));
        }
    }
    for not_an_object in [
        json!(null),
        json!(1),
        json!("play_start"),
        json!([]),
        json!([common::base("play_start")]),
    ] {
        judge(&validator, &not_an_object, &mut tally, "not an object");
    }
    // The corpus must exercise all three outcomes, or the test proves little.
    assert!(tally.examples > 20_000, "{} examples", tally.examples);
    assert!(tally.accepted > 1_000, "{} accepted", tally.accepted);
    assert!(tally.cross_field > 10, "{} cross-field", tally.cross_field);
    let rejected = tally.examples - tally.accepted - tally.cross_field;
    assert!(rejected > 10_000, "{rejected} rejected");
}

#[test]
fn cross_field_rules_accept_their_exact_limits() {
    let validator = schema_validator();
    let mut first_frame = common::base("first_frame");
    first_frame["dns_ms"] = json!(640); // 640 + 60 + 200 = 900 = first_frame_ms
    let mut heartbeat = common::base("play_heartbeat");
    heartbeat["stall_ms"] = json!(1_000); // 9000 + 1000 = interval_ms
    let mut push = common::base("push_heartbeat");
    push["stall_ms"] = json!(10_000);
    let mut end = common::base("play_end");
    end["watch_ms"] = json!(4_000);
    for example in [first_frame, heartbeat, push, end] {
        assert!(validator.is_valid(&example), "{example}");
        assert!(validate(example.clone()).is_ok(), "{example}");
    }
}

#[test]
fn every_cross_field_rule_is_refused_by_rust_and_accepted_by_the_schema() {
    let validator = schema_validator();
    let mut first_frame = common::base("first_frame");
    first_frame["dns_ms"] = json!(700);
    let mut heartbeat = common::base("play_heartbeat");
    heartbeat["stall_ms"] = json!(1_001);
    let mut push = common::base("push_heartbeat");
    push["stall_ms"] = json!(10_001);
    for example in [first_frame, heartbeat, push] {
        assert!(validator.is_valid(&example));
        let error = validate(example).unwrap_err();
        assert_eq!(error.reason, RejectReason::Inconsistent, "{error}");
    }
}

#[test]
fn the_contract_document_names_every_field() {
    // At run time, not `env!`: a test binary reused from a checkout at another path (one target
    // directory shared by several clones) would look in that checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR");
    let doc = std::fs::read_to_string(format!("{manifest_dir}/../docs/beacons.md")).unwrap();
    let mut names: Vec<&str> = FIELDS.iter().map(|field| field.name).collect();
    names.extend(qoe_schemas::fields::ENRICHMENT_FIELDS);
    names.extend(BeaconType::NAMES);
    for name in names {
        assert!(
            doc.contains(&format!("`{name}`")),
            "docs/beacons.md does not mention `{name}`"
        );
    }
}

#[test]
fn the_array_form_of_a_beacon_is_refused_by_both_paths() {
    let fields: Vec<Value> = vec![
        json!(1),
        json!("play_start"),
        json!(common::TS),
        json!("s"),
        json!(0),
        json!("r"),
        json!("ios"),
    ];
    let text = Value::Array(fields).to_string();
    assert!(qoe_schemas::parse_valid(&text).is_none());
    let error = qoe_schemas::parse_beacon(&text).unwrap_err();
    assert_eq!(error.to_string(), "beacon: must be a JSON object, got an array");
}

#[test]
fn a_repeated_exp_key_takes_the_slow_path_and_is_stored_once() {
    let text = r#"{"v":1,"type":"room_join","ts":1763800000000,"session_id":"s","seq":0,"room_id":"r","platform":"web","user_id":"u","exp":{"a":"1","a":"2"}}"#;
    assert!(qoe_schemas::parse_valid(text).is_none());
    let beacon = qoe_schemas::parse_beacon(text).unwrap();
    assert_eq!(beacon.exp.unwrap().len(), 1);
}

/// End beacons that cover no time: the session ended right at a heartbeat, which had already reported
/// the whole interval. Valid on both paths and in the schema; an interval of 0 is still refused on
/// heartbeats, and counters inside an interval of 0 are refused as inconsistent by Rust and by the
/// schema's `if`/`then`.
#[test]
fn end_beacons_that_cover_no_time_are_valid_and_heartbeats_are_not() {
    let validator = schema_validator();
    let zero_counters = |kind: &str| {
        let mut beacon = common::base(kind);
        for name in ["interval_ms", "watch_ms", "stall_ms", "stall_count", "dropped_frames"] {
            if beacon.get(name).is_some() {
                beacon[name] = json!(0);
            }
        }
        beacon
    };
    let mut before_video_start = zero_counters("play_end");
    before_video_start["first_frame_seen"] = json!(false);
    let mut only_interval = common::base("push_end");
    let map = only_interval.as_object_mut().unwrap();
    for name in ["stall_ms", "stall_count", "dropped_frames"] {
        map.remove(name);
    }
    only_interval["interval_ms"] = json!(0);
    let mut as_float = zero_counters("play_end");
    as_float["interval_ms"] = json!(0.0);
    for example in [
        zero_counters("play_end"),
        zero_counters("push_end"),
        before_video_start,
        only_interval,
        as_float,
    ] {
        assert!(validator.is_valid(&example), "schema refuses {example}");
        let beacon = validate(example.clone()).unwrap_or_else(|error| panic!("{error}: {example}"));
        assert_eq!(beacon.interval_ms, Some(0));
        assert_eq!(qoe_schemas::parse_beacon(&example.to_string()).unwrap(), beacon);
    }
    // The canonical text takes the fast path: it is stored exactly as sent.
    assert!(qoe_schemas::parse_valid(&zero_counters("play_end").to_string()).is_some());

    for kind in ["play_heartbeat", "push_heartbeat"] {
        let example = zero_counters(kind);
        assert!(!validator.is_valid(&example), "schema accepts {example}");
        let error = validate(example.clone()).unwrap_err();
        assert_eq!(error.reason, RejectReason::OutOfRange);
        assert_eq!(
            error.to_string(),
            format!("interval_ms: must be >= 1 on {kind} beacons, got 0")
        );
        assert_eq!(qoe_schemas::parse_beacon(&example.to_string()).unwrap_err(), error);
    }

    for (kind, name, message) in [
        (
            "play_end",
            "stall_count",
            "stall_count: must be 0 when interval_ms is 0, got 2",
        ),
        (
            "push_end",
            "dropped_frames",
            "dropped_frames: must be 0 when interval_ms is 0, got 2",
        ),
        (
            "play_end",
            "watch_ms",
            "interval_ms: watch_ms + stall_ms = 2 is larger than interval_ms = 0",
        ),
    ] {
        let mut example = zero_counters(kind);
        example[name] = json!(2);
        assert!(!validator.is_valid(&example), "schema accepts {example}");
        let error = validate(example.clone()).unwrap_err();
        assert_eq!(error.reason, RejectReason::Inconsistent);
        assert_eq!(error.to_string(), message);
        assert_eq!(qoe_schemas::parse_beacon(&example.to_string()).unwrap_err(), error);
    }
}

#[test]
fn the_schemas_text_pattern_is_the_text_rule() {
    let schema: Value = serde_json::from_str(qoe_schemas::BEACON_V1_JSON_SCHEMA).unwrap();
    assert_eq!(
        schema["$defs"]["text"]["pattern"],
        json!(qoe_schemas::text::json_schema_pattern())
    );
}
