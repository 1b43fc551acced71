//! One request's beacons, from decoded items to Kafka records and per-item rejections.
//!
//! Pure: no IO and no clock of its own (the receive time comes in the [`RequestContext`]), so every
//! rule here is tested without a server.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use qoe_schemas::text::text_problem;
use qoe_schemas::wire::{Batch, Item};
use qoe_schemas::{Beacon, BeaconType, FieldError, RejectReason};

use crate::config::EventTimeConfig;

/// What the collector knows about a request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// When the request arrived, epoch ms.
    pub received_at: u64,
    /// The client clock when it sent the batch, epoch ms, if it said.
    pub sent_at: Option<u64>,
    /// The id of the write key.
    pub key_id: String,
    /// The client address, already truncated.
    pub client_subnet: Option<String>,
    /// The accepted event-time window.
    pub event_time: EventTimeConfig,
    /// The request body's size as received (compressed or not): it bounds what the request's dead
    /// letters may keep of the refused items ([`DeadLetterBudget`]).
    pub wire_bytes: usize,
}

/// An accepted beacon, ready for `qoe.beacons.v1`.
#[derive(Debug, Clone)]
pub struct AcceptedRecord {
    /// Record key: the room id, so every room keeps its order.
    pub key: String,
    /// Record value: the enriched beacon as JSON.
    pub value: Vec<u8>,
    /// The beacon type, for metrics.
    pub kind: BeaconType,
}

/// A rejected beacon: what the client is told.
#[derive(Debug, Clone)]
pub struct RejectedRecord {
    /// Position in the request.
    pub index: usize,
    /// What is wrong.
    pub error: FieldError,
}

/// A record for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetterRecord {
    /// Record key: the room id when the item has one.
    pub key: Option<String>,
    /// Record value (see [`DeadLetter`]).
    pub value: Vec<u8>,
}

/// What every dead letter starts with: what was refused, where, and from whom.
#[derive(Debug, Serialize)]
pub struct LetterHeader<'a> {
    /// The error as the client saw it (`<field>: <problem>`), or what a summary stands for.
    pub error: String,
    /// Bounded reason code (the metrics label), or `omitted` for a summary.
    pub reason: &'static str,
    /// Position in the request (of the first item not written, for a summary).
    pub index: usize,
    /// When the request arrived, epoch ms.
    pub received_at: u64,
    /// The write key id.
    pub key_id: &'a str,
    /// The truncated client address.
    pub client_subnet: Option<&'a str>,
}

impl<'a> LetterHeader<'a> {
    fn new(error: String, reason: &'static str, index: usize, context: &'a RequestContext) -> Self {
        LetterHeader {
            error,
            reason,
            index,
            received_at: context.received_at,
            key_id: &context.key_id,
            client_subnet: context.client_subnet.as_deref(),
        }
    }
}

/// The dead-letter record of one rejected beacon, as written to `qoe.beacons.dlq`.
#[derive(Debug, Serialize)]
pub struct DeadLetter<'a> {
    /// Error, reason, index, arrival, key and address.
    #[serde(flatten)]
    pub header: LetterHeader<'a>,
    /// The item's size in bytes as sent (after decompression).
    pub size: usize,
    /// The item as sent: a JSON value, or the line as a string when it was not JSON or was cut.
    pub beacon: &'a RawValue,
    /// Whether `beacon` holds only a prefix of the item (as a string), or nothing (`""`) when the
    /// request's budget left no room for any of it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// The last dead letter of a request that refused more items than its letters could hold (see
/// `DeadLetterBudget`): how many more were refused, by reason, without their text.
#[derive(Debug, Serialize)]
pub struct OmittedLetters<'a> {
    /// What happened, reason `omitted`, the first item not written.
    #[serde(flatten)]
    pub header: LetterHeader<'a>,
    /// Items not written, by reject reason.
    pub omitted: std::collections::BTreeMap<&'static str, usize>,
}

/// Most item bytes one dead letter keeps.
pub const MAX_DEAD_LETTER_ITEM_BYTES: usize = 4 * 1024;
/// Room ids longer than this (the contract's limit) are not used as a dead letter's key.
const MAX_ROOM_ID_CHARS: usize = 128;

/// Bytes a dead letter takes beyond its item (error, reason, index, times, key id, subnet, size),
/// kept free in the budget before a letter is written.
const LETTER_FIELDS_BYTES: usize = 512;

/// Most dead letters one request writes, the summary ([`OmittedLetters`]) not counted.
pub const MAX_DEAD_LETTERS: usize = 64;

/// What the dead letters of one request may still write: in all, twice the size of the request as
/// sent (at least 8 KiB, so a small request's first refusals are still kept) and at most
/// [`MAX_DEAD_LETTERS`] letters, each letter charged its whole serialized size. So a small
/// compressed body of junk writes at most a small multiple of its own size, plus one letter and the
/// summary.
#[derive(Debug)]
struct DeadLetterBudget {
    letter_bytes: usize,
    letters: usize,
    omitted: std::collections::BTreeMap<&'static str, usize>,
    first_omitted: Option<usize>,
}

impl DeadLetterBudget {
    fn new(wire_bytes: usize) -> DeadLetterBudget {
        DeadLetterBudget {
            letter_bytes: wire_bytes.saturating_mul(2).max(2 * MAX_DEAD_LETTER_ITEM_BYTES),
            letters: MAX_DEAD_LETTERS,
            omitted: Default::default(),
            first_omitted: None,
        }
    }
}

/// The outcome of one request's items.
#[derive(Debug, Default)]
pub struct Processed {
    /// Beacons to produce to `qoe.beacons.v1`.
    pub accepted: Vec<AcceptedRecord>,
    /// Beacons refused, in request order.
    pub rejected: Vec<RejectedRecord>,
    /// Records for `qoe.beacons.dlq`: one per refused item up to [`MAX_DEAD_LETTERS`], then one
    /// [`OmittedLetters`].
    pub dead_letters: Vec<DeadLetterRecord>,
}

/// Validates and enriches every item of a batch.
pub fn process(batch: Batch, context: &RequestContext) -> Processed {
    let mut processed = Processed {
        accepted: Vec::with_capacity(batch.items.len()),
        rejected: Vec::new(),
        dead_letters: Vec::new(),
    };
    let mut budget = DeadLetterBudget::new(context.wire_bytes);
    let sent_at = batch.sent_at.or(context.sent_at);
    for (index, item) in batch.items.into_iter().enumerate() {
        let text = match item {
            Item::Json(text) => text,
            Item::NotJson { line, error } => {
                let error = FieldError::new("beacon", RejectReason::Malformed, format!("not JSON: {error}"));
                reject(&mut processed, index, error, &line, context, &mut budget);
                continue;
            }
        };
        // The fast path proves the text valid as it stands: the record is that text plus the
        // enrichment. Only beacons the slow path had to accept (integral floats, duplicate keys) are
        // serialized anew.
        let (mut beacon, as_sent_is_canonical) = match qoe_schemas::parse_valid(&text) {
            Some(beacon) => (beacon, true),
            None => match qoe_schemas::parse_beacon(&text) {
                Ok(beacon) => (beacon, false),
                Err(error) => {
                    reject(&mut processed, index, error, &text, context, &mut budget);
                    continue;
                }
            },
        };
        if let Err(error) = enrich(&mut beacon, sent_at, context) {
            reject(&mut processed, index, error, &text, context, &mut budget);
            continue;
        }
        // Splice only texts of a beacon's usual size: padding with whitespace would otherwise pass
        // into Kafka (a 1 KB gzip body can inflate a record to megabytes).
        let record = if as_sent_is_canonical && text.len() <= MAX_SPLICED_BYTES {
            append_enrichment(&text, &beacon)
        } else {
            serde_json::to_vec(&beacon)
        };
        match record {
            Ok(record) => processed.accepted.push(AcceptedRecord {
                value: record,
                key: beacon.room_id,
                kind: beacon.kind,
            }),
            Err(error) => {
                let error = FieldError::new("beacon", RejectReason::Malformed, format!("cannot be encoded: {error}"));
                reject(&mut processed, index, error, &text, context, &mut budget);
            }
        }
    }
    if let Some(index) = budget.first_omitted {
        let count: usize = budget.omitted.values().sum();
        let kept = processed.dead_letters.len();
        let summary = OmittedLetters {
            header: LetterHeader::new(
                format!(
                    "{count} more refused items of this request are not kept as dead letters (the first {kept} are)"
                ),
                "omitted",
                index,
                context,
            ),
            omitted: budget.omitted,
        };
        processed.dead_letters.push(DeadLetterRecord {
            key: None,
            value: serde_json::to_vec(&summary).unwrap_or_default(),
        });
    }
    processed
}

/// Sets the enrichment fields, after checking the event time against the accepted window.
///
/// `event_time = ts + (received_at - sent_at)` when the client sent `sent_at`: the client clock's
/// offset is the same for `ts` and `sent_at`, so it cancels out (network delay is not corrected).
pub fn enrich(beacon: &mut Beacon, sent_at: Option<u64>, context: &RequestContext) -> Result<(), FieldError> {
    let received_at = context.received_at as i128;
    let skew = sent_at.map_or(0, |sent_at| received_at - sent_at as i128);
    let event_time = (beacon.ts as i128 + skew).max(0);
    let max_future_ms = context.event_time.max_future_secs as i128 * 1000;
    let max_age_ms = context.event_time.max_age_secs as i128 * 1000;
    if event_time > received_at + max_future_ms {
        return Err(FieldError::new(
            "ts",
            RejectReason::EventTime,
            format!(
                "event time is {:.1} s in the future (ts {} corrected by {} ms of clock skew), the limit is {} s",
                (event_time - received_at) as f64 / 1000.0,
                beacon.ts,
                skew,
                context.event_time.max_future_secs
            ),
        ));
    }
    if event_time < received_at - max_age_ms {
        return Err(FieldError::new(
            "ts",
            RejectReason::EventTime,
            format!(
                "event time is {:.1} s old (ts {} corrected by {} ms of clock skew), the limit is {} s",
                (received_at - event_time) as f64 / 1000.0,
                beacon.ts,
                skew,
                context.event_time.max_age_secs
            ),
        ));
    }
    beacon.received_at = Some(context.received_at);
    beacon.event_time = Some(event_time as u64);
    beacon.client_subnet = context.client_subnet.clone();
    beacon.key_id = Some(context.key_id.clone());
    Ok(())
}

/// Largest beacon text stored as sent; a longer one (valid, so it is padded) is re-serialized.
const MAX_SPLICED_BYTES: usize = 4096;

/// The Kafka record of a beacon whose text is valid as sent: the text with the enrichment fields
/// appended inside its closing brace.
fn append_enrichment(text: &str, beacon: &Beacon) -> Result<Vec<u8>, serde_json::Error> {
    #[derive(Serialize)]
    struct Enrichment<'a> {
        received_at: Option<u64>,
        event_time: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_subnet: Option<&'a str>,
        key_id: Option<&'a str>,
    }
    let body = text.trim_end();
    let body = body.strip_suffix('}').unwrap_or(body);
    let enrichment = serde_json::to_vec(&Enrichment {
        received_at: beacon.received_at,
        event_time: beacon.event_time,
        client_subnet: beacon.client_subnet.as_deref(),
        key_id: beacon.key_id.as_deref(),
    })?;
    let mut record = Vec::with_capacity(body.len() + enrichment.len() + 1);
    record.extend_from_slice(body.as_bytes());
    record.push(b',');
    record.extend_from_slice(&enrichment[1..]);
    Ok(record)
}

/// A rejection, and its dead letter while the request's budget lasts. The letter carries the item
/// exactly as sent (the JSON value when the item is JSON and whole, else a prefix of its text as a
/// string, cut at [`MAX_DEAD_LETTER_ITEM_BYTES`] or where the request's budget ends).
fn reject(
    processed: &mut Processed,
    index: usize,
    error: FieldError,
    item: &str,
    context: &RequestContext,
    budget: &mut DeadLetterBudget,
) {
    if budget.letters == 0 || budget.letter_bytes < LETTER_FIELDS_BYTES {
        *budget.omitted.entry(error.reason.as_str()).or_default() += 1;
        budget.first_omitted.get_or_insert(index);
        processed.rejected.push(RejectedRecord { index, error });
        return;
    }
    budget.letters -= 1;
    let keep = item
        .len()
        .min(MAX_DEAD_LETTER_ITEM_BYTES)
        .min(budget.letter_bytes - LETTER_FIELDS_BYTES);
    let truncated = keep < item.len();
    let kept = if truncated {
        let mut end = keep;
        while !item.is_char_boundary(end) {
            end -= 1;
        }
        &item[..end]
    } else {
        item
    };
    let as_json = (!truncated)
        .then(|| RawValue::from_string(kept.to_string()).ok())
        .flatten();
    let key = as_json.as_ref().and_then(|raw| {
        #[derive(Deserialize)]
        struct RoomOnly {
            room_id: Option<String>,
        }
        // The key picks the partition and shows in tools: only a room id the contract would take.
        serde_json::from_str::<RoomOnly>(raw.get())
            .ok()
            .and_then(|room| room.room_id)
            .filter(|room| (1..=MAX_ROOM_ID_CHARS).contains(&room.chars().count()) && text_problem(room).is_none())
    });
    let as_sent = match as_json {
        Some(raw) => raw,
        None => serde_json::value::to_raw_value(kept).unwrap_or_default(),
    };
    let letter = DeadLetter {
        header: LetterHeader::new(error.to_string(), error.reason.as_str(), index, context),
        size: item.len(),
        beacon: &as_sent,
        truncated,
    };
    let value = serde_json::to_vec(&letter).unwrap_or_default();
    budget.letter_bytes = budget.letter_bytes.saturating_sub(value.len());
    processed.dead_letters.push(DeadLetterRecord { key, value });
    processed.rejected.push(RejectedRecord { index, error });
}

/// Truncates a client address to its /24 (IPv4) or /48 (IPv6) network, in CIDR notation. The full
/// address is never stored. IPv4-mapped IPv6 addresses are treated as IPv4.
pub fn truncate_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return truncate_ip(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let network = std::net::Ipv6Addr::new(segments[0], segments[1], segments[2], 0, 0, 0, 0, 0);
            format!("{network}/48")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const NOW: u64 = 1_763_800_000_000;

    fn context() -> RequestContext {
        RequestContext {
            received_at: NOW,
            sent_at: None,
            key_id: "web".into(),
            client_subnet: Some("203.0.113.0/24".into()),
            event_time: EventTimeConfig {
                max_future_secs: 300,
                max_age_secs: 3600,
            },
            wire_bytes: 1_000_000,
        }
    }

    fn join(ts: u64, seq: u64) -> Value {
        json!({"v": 1, "type": "room_join", "ts": ts, "session_id": "s", "seq": seq, "room_id": "r7",
               "platform": "web", "user_id": "u"})
    }

    fn item(value: Value) -> Item {
        Item::Json(value.to_string().into())
    }

    #[test]
    fn bad_items_are_rejected_and_the_good_ones_beside_them_kept() {
        let batch = Batch {
            sent_at: None,
            items: vec![
                item(join(NOW, 0)),
                item(json!({"v": 1})),
                Item::NotJson {
                    line: "{oops".into(),
                    error: "key must be a string at line 1 column 2".into(),
                },
                item(join(NOW, 1)),
            ],
        };
        let processed = process(batch, &context());
        assert_eq!(processed.accepted.len(), 2);
        let rejected: Vec<_> = processed
            .rejected
            .iter()
            .map(|r| (r.index, r.error.to_string()))
            .collect();
        assert_eq!(
            rejected,
            [
                (1, "type: required".to_string()),
                (
                    2,
                    "beacon: not JSON: key must be a string at line 1 column 2".to_string()
                )
            ]
        );
        let record: Value = serde_json::from_slice(&processed.accepted[0].value).unwrap();
        assert_eq!(processed.accepted[0].key, "r7");
        assert_eq!(record["received_at"], NOW);
        assert_eq!(record["event_time"], NOW);
        assert_eq!(record["client_subnet"], "203.0.113.0/24");
        assert_eq!(record["key_id"], "web");
        let letter: Value = serde_json::from_slice(&processed.dead_letters[1].value).unwrap();
        assert_eq!(letter["beacon"], "{oops");
        assert_eq!(letter["reason"], "malformed");
    }

    #[test]
    fn a_record_is_the_beacon_as_sent_plus_the_enrichment_whichever_path_accepted_it() {
        let canonical = join(NOW, 0);
        let mut integral_float = join(NOW, 1);
        integral_float["seq"] = json!(1.0);
        let batch = Batch {
            sent_at: None,
            items: vec![item(canonical.clone()), item(integral_float)],
        };
        let processed = process(batch, &context());
        assert_eq!(processed.accepted.len(), 2);
        for (record, seq) in processed.accepted.iter().zip([0, 1]) {
            let stored: Value = serde_json::from_slice(&record.value).unwrap();
            let mut expected = canonical.clone();
            expected["seq"] = json!(seq);
            expected["received_at"] = json!(NOW);
            expected["event_time"] = json!(NOW);
            expected["client_subnet"] = json!("203.0.113.0/24");
            expected["key_id"] = json!("web");
            assert_eq!(stored, expected);
            let beacon: Beacon = serde_json::from_slice(&record.value).unwrap();
            assert_eq!(beacon.seq, seq);
        }
    }

    #[test]
    fn padded_beacons_are_stored_compact_and_huge_dead_letters_are_cut() {
        let mut padded = join(NOW, 0).to_string();
        padded.insert_str(1, &" ".repeat(10_000));
        let huge_bad = format!("{{\"v\": 1, \"pad\": \"{}\"}}", "x".repeat(100_000));
        let huge_size = huge_bad.len();
        let batch = Batch {
            sent_at: None,
            items: vec![Item::Json(padded.into()), Item::Json(huge_bad.into())],
        };
        let processed = process(batch, &context());
        assert!(
            processed.accepted[0].value.len() < 400,
            "{}",
            processed.accepted[0].value.len()
        );
        let letter: Value = serde_json::from_slice(&processed.dead_letters[0].value).unwrap();
        assert_eq!(letter["truncated"], true);
        assert_eq!(letter["beacon"].as_str().unwrap().len(), MAX_DEAD_LETTER_ITEM_BYTES);
        assert_eq!(letter["size"], huge_size);
    }

    /// 500 junk strings of 16 KB in a body of a few KB (gzip) must not become megabytes of dead
    /// letters: the letters written, fields and all, are bounded by twice the body's size (at least
    /// 8 KiB) plus one letter and the summary, and every refused item is still accounted for.
    #[test]
    fn dead_letters_stay_within_a_small_multiple_of_the_body() {
        let junk = format!("\"{}\"", "A".repeat(16 * 1024));
        for wire_bytes in [9 * 1024, 40] {
            let batch = Batch {
                sent_at: None,
                items: (0..500).map(|_| Item::Json(junk.clone().into())).collect(),
            };
            let processed = process(
                batch,
                &RequestContext {
                    wire_bytes,
                    ..context()
                },
            );
            assert_eq!(processed.rejected.len(), 500);
            let letters = &processed.dead_letters;
            assert!(letters.len() >= 2 && letters.len() <= MAX_DEAD_LETTERS + 1);
            let written: usize = letters.iter().map(|letter| letter.value.len()).sum();
            let budget = (2 * wire_bytes).max(2 * MAX_DEAD_LETTER_ITEM_BYTES);
            assert!(
                written < budget + MAX_DEAD_LETTER_ITEM_BYTES + 2 * LETTER_FIELDS_BYTES,
                "{written} bytes of dead letters for {wire_bytes} sent"
            );
            let first: Value = serde_json::from_slice(&letters[0].value).unwrap();
            assert_eq!(first["size"], 16 * 1024 + 2);
            assert_eq!(first["truncated"], true);
            assert_eq!(first["beacon"].as_str().unwrap().len(), MAX_DEAD_LETTER_ITEM_BYTES);
            let summary: Value = serde_json::from_slice(letters.last().unwrap().value.as_slice()).unwrap();
            let kept = letters.len() - 1;
            assert_eq!(summary["reason"], "omitted");
            assert_eq!(summary["index"], kept);
            assert_eq!(summary["omitted"], json!({"malformed": 500 - kept}));
        }
    }

    /// A dead letter is keyed by the item's room id only when the contract would take that id.
    #[test]
    fn dead_letters_are_keyed_only_by_valid_room_ids() {
        let mut good = join(NOW, 0);
        good["seq"] = json!(-1);
        let mut control = good.clone();
        control["room_id"] = json!("r\u{202e}7");
        let mut long = good.clone();
        long["room_id"] = json!("r".repeat(129));
        let batch = Batch {
            sent_at: None,
            items: vec![item(good), item(control), item(long)],
        };
        let processed = process(batch, &context());
        let keys: Vec<Option<&str>> = processed
            .dead_letters
            .iter()
            .map(|letter| letter.key.as_deref())
            .collect();
        assert_eq!(keys, [Some("r7"), None, None]);
    }

    #[test]
    fn clock_skew_is_corrected_with_sent_at() {
        // The client clock runs 2 minutes behind: ts and sent_at are both 120 s early.
        let client_now = NOW - 120_000;
        let batch = Batch {
            sent_at: Some(client_now),
            items: vec![item(join(client_now - 5_000, 0))],
        };
        let processed = process(batch, &context());
        let record: Value = serde_json::from_slice(&processed.accepted[0].value).unwrap();
        assert_eq!(record["event_time"], NOW - 5_000);
        assert_eq!(record["ts"], client_now - 5_000);
    }

    #[test]
    fn event_times_outside_the_window_are_refused() {
        let batch = Batch {
            sent_at: None,
            items: vec![
                item(join(NOW + 301_000, 0)),
                item(join(NOW + 299_000, 1)),
                item(join(NOW - 3_601_000, 2)),
                item(join(NOW - 3_599_000, 3)),
            ],
        };
        let processed = process(batch, &context());
        assert_eq!(processed.accepted.len(), 2);
        let errors: Vec<_> = processed.rejected.iter().map(|r| r.error.to_string()).collect();
        assert_eq!(
            errors[0],
            format!(
                "ts: event time is 301.0 s in the future (ts {} corrected by 0 ms of clock skew), the limit is 300 s",
                NOW + 301_000
            )
        );
        assert!(errors[1].starts_with("ts: event time is 3601.0 s old"), "{}", errors[1]);
        assert!(processed
            .rejected
            .iter()
            .all(|r| r.error.reason == RejectReason::EventTime));
    }

    #[test]
    fn the_window_limits_are_inclusive_and_a_fast_client_clock_is_corrected_too() {
        // The client clock runs 10 minutes ahead: without sent_at its beacons would be refused.
        let client_now = NOW + 600_000;
        let batch = Batch {
            sent_at: Some(client_now),
            items: vec![
                item(join(client_now + 300_000, 0)),
                item(join(client_now + 300_001, 1)),
                item(join(client_now - 3_600_000, 2)),
                item(join(client_now - 3_600_001, 3)),
            ],
        };
        let processed = process(batch, &context());
        let accepted: Vec<u64> = processed
            .accepted
            .iter()
            .map(|record| {
                serde_json::from_slice::<Value>(&record.value).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(accepted, [0, 2]);
        let rejected: Vec<usize> = processed.rejected.iter().map(|record| record.index).collect();
        assert_eq!(rejected, [1, 3]);
    }

    #[test]
    fn the_body_sent_at_wins_over_the_query_string() {
        let mut context = context();
        context.sent_at = Some(NOW - 999_000);
        let batch = Batch {
            sent_at: Some(NOW - 1_000),
            items: vec![item(join(NOW - 1_000, 0))],
        };
        let processed = process(batch, &context);
        let record: Value = serde_json::from_slice(&processed.accepted[0].value).unwrap();
        assert_eq!(record["event_time"], NOW);
    }

    #[test]
    fn a_dead_letter_keeps_the_item_as_sent() {
        let mut late = join(NOW - 7_200_000, 0);
        late["exp"] = json!({"b": "1", "a": "2"});
        let batch = Batch {
            sent_at: None,
            items: vec![item(late.clone())],
        };
        let processed = process(batch, &context());
        let letter: Value = serde_json::from_slice(&processed.dead_letters[0].value).unwrap();
        assert_eq!(letter["beacon"], late);
        assert_eq!(letter["reason"], "event_time");
        assert_eq!(processed.dead_letters[0].key.as_deref(), Some("r7"));
    }

    #[test]
    fn addresses_are_truncated() {
        assert_eq!(truncate_ip("198.51.100.77".parse().unwrap()), "198.51.100.0/24");
        assert_eq!(
            truncate_ip("2001:db8:abcd:12:1:2:3:4".parse().unwrap()),
            "2001:db8:abcd::/48"
        );
        assert_eq!(truncate_ip("::ffff:198.51.100.77".parse().unwrap()), "198.51.100.0/24");
    }
}
