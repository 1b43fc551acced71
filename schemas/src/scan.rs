//! A hand-written reader of beacons in their common form, in front of serde's derived deserializer.
//!
//! Almost every beacon an SDK or the collector writes is one flat JSON object: known keys, plain
//! strings without escapes, integers without sign, fraction or exponent for the integer fields, and
//! one small `exp` object. [`beacon`] reads exactly that form in one pass, several times faster than
//! the derived `Deserialize` of [`Beacon`], and gives up (`None`) on anything else: escapes, `null`,
//! unknown or repeated keys, numbers it does not read itself, any syntax it does not expect. The
//! callers then ask serde, so what is accepted never depends on this reader.
//!
//! The contract, held by the tests below and by the fuzz target: whenever [`beacon`] returns
//! `Some(b)`, `serde_json::from_str::<Beacon>(text)` returns `Ok(b)` with the same value.
//!
//! ```
//! let text = r#"{"v":1,"type":"room_join","ts":1763800000000,"session_id":"s","seq":0,"room_id":"r","platform":"web","user_id":"u"}"#;
//! let fast = qoe_schemas::scan::beacon(text).unwrap();
//! assert_eq!(fast, serde_json::from_str(text).unwrap());
//! // An escape is left to serde.
//! assert!(qoe_schemas::scan::beacon(&text.replace(r#""u""#, r#""\u0075""#)).is_none());
//! ```

use std::collections::BTreeMap;

use crate::beacon::{Beacon, BeaconType, ErrorCategory, ErrorStage, Network, Platform, Resolver};

/// Reads `text` as a [`Beacon`] when it is in the common form; `None` leaves it to serde.
pub fn beacon(text: &str) -> Option<Beacon> {
    let mut scanner = Scanner { text, at: 0 };
    let mut beacon = Beacon::default();
    let mut seen: u64 = 0;
    scanner.skip_whitespace();
    scanner.expect(b'{')?;
    scanner.skip_whitespace();
    loop {
        let key = scanner.string()?;
        scanner.skip_whitespace();
        scanner.expect(b':')?;
        scanner.skip_whitespace();
        let index = field_index(key)?;
        let bit = 1u64 << index;
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        set_field(&mut scanner, &mut beacon, index)?;
        scanner.skip_whitespace();
        match scanner.next()? {
            b',' => scanner.skip_whitespace(),
            b'}' => break,
            _ => return None,
        }
    }
    scanner.skip_whitespace();
    let complete = scanner.at == text.len() && seen & REQUIRED == REQUIRED;
    complete.then_some(beacon)
}

/// The typed deserialization of both fast paths ([`crate::parse_valid`], [`crate::parse_record`]):
/// [`beacon`], else serde's derived deserializer on an object (serde's derived struct visitor also
/// takes the sequence form `[1, "play_start", ...]`, which the contract does not).
pub(crate) fn typed(text: &str) -> Option<Beacon> {
    if let Some(beacon) = beacon(text) {
        return Some(beacon);
    }
    if !text.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<Beacon>(text).ok()
}

/// Bits of the fields serde requires (those without a default): `v` to `platform`.
const REQUIRED: u64 = 0b111_1111;

/// The index of `key` among the keys a beacon may have, in contract order ([`crate::fields::FIELDS`],
/// then the enrichment fields); the index is the key's bit in the set of keys seen. A `match`: the
/// compiler turns it into a search by length and bytes, faster here than a walk over a table.
fn field_index(key: &str) -> Option<usize> {
    let index = match key {
        "v" => 0,
        "type" => 1,
        "ts" => 2,
        "session_id" => 3,
        "seq" => 4,
        "room_id" => 5,
        "platform" => 6,
        "user_id" => 7,
        "device_id" => 8,
        "app_version" => 9,
        "os" => 10,
        "device_model" => 11,
        "network" => 12,
        "isp" => 13,
        "region" => 14,
        "cdn" => 15,
        "edge_ip" => 16,
        "exp" => 17,
        "first_frame_ms" => 18,
        "dns_ms" => 19,
        "connect_ms" => 20,
        "first_packet_ms" => 21,
        "resolver" => 22,
        "rtt_ms" => 23,
        "interval_ms" => 24,
        "watch_ms" => 25,
        "stall_count" => 26,
        "stall_ms" => 27,
        "dropped_frames" => 28,
        "bitrate_kbps" => 29,
        "buffer_ms" => 30,
        "latency_ms" => 31,
        "fps" => 32,
        "startup_skip_ms" => 33,
        "startup_speedup_ms" => 34,
        "code" => 35,
        "fatal" => 36,
        "category" => 37,
        "stage" => 38,
        "reason" => 39,
        "first_frame_seen" => 40,
        "capture_width" => 41,
        "capture_height" => 42,
        "capture_fps" => 43,
        "encoder" => 44,
        "cpu_pct" => 45,
        "mem_mb" => 46,
        "encode_fps" => 47,
        "target_kbps" => 48,
        "output_kbps" => 49,
        "received_at" => 50,
        "event_time" => 51,
        "client_subnet" => 52,
        "key_id" => 53,
        _ => return None,
    };
    Some(index)
}

/// Sets the field of [`field_index`] `index` from the value at the scanner; `None` for a value not in the common
/// form.
fn set_field(scanner: &mut Scanner<'_>, beacon: &mut Beacon, index: usize) -> Option<()> {
    match index {
        0 => beacon.v = scanner.integer()?,
        1 => beacon.kind = BeaconType::parse(scanner.string()?)?,
        2 => beacon.ts = scanner.integer()?,
        3 => beacon.session_id = scanner.string()?.to_string(),
        4 => beacon.seq = scanner.integer()?,
        5 => beacon.room_id = scanner.string()?.to_string(),
        6 => beacon.platform = Platform::parse(scanner.string()?)?,
        7 => text(scanner, &mut beacon.user_id)?,
        8 => text(scanner, &mut beacon.device_id)?,
        9 => text(scanner, &mut beacon.app_version)?,
        10 => text(scanner, &mut beacon.os)?,
        11 => text(scanner, &mut beacon.device_model)?,
        12 => beacon.network = Some(Network::parse(scanner.string()?)?),
        13 => text(scanner, &mut beacon.isp)?,
        14 => text(scanner, &mut beacon.region)?,
        15 => text(scanner, &mut beacon.cdn)?,
        16 => text(scanner, &mut beacon.edge_ip)?,
        17 => beacon.exp = Some(scanner.string_map()?),
        18 => integer(scanner, &mut beacon.first_frame_ms)?,
        19 => integer(scanner, &mut beacon.dns_ms)?,
        20 => integer(scanner, &mut beacon.connect_ms)?,
        21 => integer(scanner, &mut beacon.first_packet_ms)?,
        22 => beacon.resolver = Some(Resolver::parse(scanner.string()?)?),
        23 => integer(scanner, &mut beacon.rtt_ms)?,
        24 => integer(scanner, &mut beacon.interval_ms)?,
        25 => integer(scanner, &mut beacon.watch_ms)?,
        26 => integer(scanner, &mut beacon.stall_count)?,
        27 => integer(scanner, &mut beacon.stall_ms)?,
        28 => integer(scanner, &mut beacon.dropped_frames)?,
        29 => integer(scanner, &mut beacon.bitrate_kbps)?,
        30 => integer(scanner, &mut beacon.buffer_ms)?,
        31 => integer(scanner, &mut beacon.latency_ms)?,
        32 => float(scanner, &mut beacon.fps)?,
        33 => integer(scanner, &mut beacon.startup_skip_ms)?,
        34 => integer(scanner, &mut beacon.startup_speedup_ms)?,
        35 => text(scanner, &mut beacon.code)?,
        36 => beacon.fatal = Some(scanner.boolean()?),
        37 => beacon.category = Some(ErrorCategory::parse(scanner.string()?)?),
        38 => beacon.stage = Some(ErrorStage::parse(scanner.string()?)?),
        39 => text(scanner, &mut beacon.reason)?,
        40 => beacon.first_frame_seen = Some(scanner.boolean()?),
        41 => integer(scanner, &mut beacon.capture_width)?,
        42 => integer(scanner, &mut beacon.capture_height)?,
        43 => float(scanner, &mut beacon.capture_fps)?,
        44 => text(scanner, &mut beacon.encoder)?,
        45 => float(scanner, &mut beacon.cpu_pct)?,
        46 => float(scanner, &mut beacon.mem_mb)?,
        47 => float(scanner, &mut beacon.encode_fps)?,
        48 => integer(scanner, &mut beacon.target_kbps)?,
        49 => integer(scanner, &mut beacon.output_kbps)?,
        50 => integer(scanner, &mut beacon.received_at)?,
        51 => integer(scanner, &mut beacon.event_time)?,
        52 => text(scanner, &mut beacon.client_subnet)?,
        53 => text(scanner, &mut beacon.key_id)?,
        _ => return None,
    }
    Some(())
}

fn text(scanner: &mut Scanner<'_>, field: &mut Option<String>) -> Option<()> {
    *field = Some(scanner.string()?.to_string());
    Some(())
}

fn integer(scanner: &mut Scanner<'_>, field: &mut Option<u64>) -> Option<()> {
    *field = Some(scanner.integer()?);
    Some(())
}

fn float(scanner: &mut Scanner<'_>, field: &mut Option<f64>) -> Option<()> {
    *field = Some(scanner.float()?);
    Some(())
}

/// A position in the text being read.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scanner<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// JSON's whitespace, as serde_json skips it.
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters, borrowed from the text.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let rest = &self.bytes()[self.at..];
        let length = rest.iter().position(|byte| matches!(byte, b'"' | b'\\' | 0..=0x1f))?;
        if rest[length] != b'"' {
            return None;
        }
        // Both ends are ASCII quotes, so both are character boundaries of the text.
        let value = self.text.get(self.at..self.at + length)?;
        self.at += length + 1;
        Some(value)
    }

    /// An unsigned integer as JSON writes it (`0` or no leading zero), not followed by a fraction or an
    /// exponent, and within `u64`.
    fn integer(&mut self) -> Option<u64> {
        let start = self.at;
        let mut value: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        let leading_zero = digits > 1 && self.bytes()[start] == b'0';
        if digits == 0 || leading_zero || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(value)
    }

    /// A JSON number read by serde_json's own number parser, so that the value is bit for bit the one
    /// serde would give.
    fn float(&mut self) -> Option<f64> {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
            self.at += 1;
        }
        serde_json::from_str::<f64>(&self.text[start..self.at]).ok()
    }

    fn boolean(&mut self) -> Option<bool> {
        let rest = &self.bytes()[self.at..];
        let (value, length) = if rest.starts_with(b"true") {
            (true, 4)
        } else if rest.starts_with(b"false") {
            (false, 5)
        } else {
            return None;
        };
        self.at += length;
        Some(value)
    }

    /// An object of strings with distinct keys.
    fn string_map(&mut self) -> Option<BTreeMap<String, String>> {
        self.expect(b'{')?;
        let mut map = BTreeMap::new();
        self.skip_whitespace();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(map);
        }
        loop {
            let key = self.string()?;
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            let value = self.string()?;
            if map.insert(key.to_string(), value.to_string()).is_some() {
                return None;
            }
            self.skip_whitespace();
            match self.next()? {
                b',' => self.skip_whitespace(),
                b'}' => return Some(map),
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::{ENRICHMENT_FIELDS, FIELDS};

    const HEARTBEAT: &str = r#"{"v":1,"type":"play_heartbeat","ts":1795394491943,"session_id":"v-7-c72","seq":47,"room_id":"room-0081","platform":"tv","user_id":"u-0289038","device_id":"d-004690e","app_version":"7.12.0","os":"tvOS 18","device_model":"Bravia X90","network":"wifi","isp":"cable","region":"south","cdn":"cdn-a","edge_ip":"192.0.2.12","exp":{"abr_v2":"control","z":"é"},"rtt_ms":20,"interval_ms":10000,"watch_ms":10000,"stall_count":0,"stall_ms":0,"dropped_frames":0,"bitrate_kbps":2500,"buffer_ms":3010,"latency_ms":3939,"fps":29.3,"startup_skip_ms":2572,"startup_speedup_ms":76,"received_at":1795394492000,"event_time":1795394491950,"client_subnet":"10.0.0.0/24","key_id":"k1"}"#;

    /// Every field of the contract with a value of its type, one of them per key.
    fn every_field() -> String {
        let values = [
            r#""v":1"#,
            r#""type":"play_error""#,
            r#""ts":1763800000000"#,
            r#""session_id":"sid""#,
            r#""seq":4"#,
            r#""room_id":"rid""#,
            r#""platform":"ios""#,
            r#""user_id":"uid""#,
            r#""device_id":"did""#,
            r#""app_version":"av""#,
            r#""os":"os""#,
            r#""device_model":"dm""#,
            r#""network":"5g""#,
            r#""isp":"isp""#,
            r#""region":"reg""#,
            r#""cdn":"cdn""#,
            r#""edge_ip":"192.0.2.1""#,
            r#""exp":{}"#,
            r#""first_frame_ms":101"#,
            r#""dns_ms":102"#,
            r#""connect_ms":103"#,
            r#""first_packet_ms":104"#,
            r#""resolver":"cached""#,
            r#""rtt_ms":105"#,
            r#""interval_ms":106"#,
            r#""watch_ms":107"#,
            r#""stall_count":108"#,
            r#""stall_ms":109"#,
            r#""dropped_frames":110"#,
            r#""bitrate_kbps":111"#,
            r#""buffer_ms":112"#,
            r#""latency_ms":113"#,
            r#""fps":1.14e1"#,
            r#""startup_skip_ms":115"#,
            r#""startup_speedup_ms":116"#,
            r#""code":"c""#,
            r#""fatal":true"#,
            r#""category":"business""#,
            r#""stage":"decode""#,
            r#""reason":"r""#,
            r#""first_frame_seen":false"#,
            r#""capture_width":117"#,
            r#""capture_height":118"#,
            r#""capture_fps":-0.0"#,
            r#""encoder":"enc""#,
            r#""cpu_pct":12"#,
            r#""mem_mb":12.1"#,
            r#""encode_fps":12.2"#,
            r#""target_kbps":123"#,
            r#""output_kbps":124"#,
            r#""received_at":1763800000001"#,
            r#""event_time":1763800000002"#,
            r#""client_subnet":"10.0.0.0/24""#,
            r#""key_id":"k""#,
        ];
        assert_eq!(values.len(), FIELDS.len() + ENRICHMENT_FIELDS.len());
        format!(" {{ {} }}\n", values.join(" ,\t"))
    }

    #[test]
    fn the_names_are_the_contract_fields_in_order() {
        let contract: Vec<&str> = FIELDS
            .iter()
            .map(|field| field.name)
            .chain(ENRICHMENT_FIELDS.iter().copied())
            .collect();
        for (index, name) in contract.iter().enumerate() {
            assert_eq!(field_index(name), Some(index));
        }
        assert_eq!(field_index("extra"), None);
    }

    /// The contract: `Some` only with serde's value.
    fn agrees(text: &str) -> bool {
        let fast = beacon(text);
        if let Some(fast) = &fast {
            let serde = serde_json::from_str::<Beacon>(text);
            assert_eq!(serde.as_ref().ok(), Some(fast), "{text}");
        }
        fast.is_some()
    }

    #[test]
    fn the_common_form_is_read_as_serde_reads_it() {
        assert!(agrees(HEARTBEAT));
        assert!(agrees(&every_field()));
    }

    #[test]
    fn every_field_has_its_own_bit_and_a_repeated_key_is_left_to_serde() {
        let all = every_field();
        let fields: Vec<&str> = all.trim().trim_matches(['{', '}']).split(" ,\t").collect();
        for field in &fields {
            let repeated = format!("{},{field}}}", all.trim().trim_end_matches('}'));
            assert!(beacon(&repeated).is_none(), "{field} given twice");
            assert!(serde_json::from_str::<Beacon>(&repeated).is_err());
        }
        // Required fields: without any one of them serde refuses, and so does the scanner.
        for field in &fields[..7] {
            let without = all.replace(&format!("{field} ,\t"), "");
            assert!(!agrees(&without), "{without}");
        }
    }

    #[test]
    fn anything_else_is_left_to_serde() {
        let cases = [
            (r#""seq":47"#, r#""seq":47.0"#),
            (r#""seq":47"#, r#""seq":4.7e1"#),
            (r#""seq":47"#, r#""seq":047"#),
            (r#""seq":47"#, r#""seq":-47"#),
            (r#""seq":47"#, r#""seq":18446744073709551616"#),
            (r#""seq":47"#, r#""seq":null"#),
            (r#""seq":47"#, r#""seq":"47""#),
            (r#""cdn":"cdn-a""#, r#""cdn":"cdn\u002da""#),
            (r#""cdn":"cdn-a""#, r#""cdn":null"#),
            (r#""cdn":"cdn-a""#, "\"cdn\":\"cdn\u{1}a\""),
            (r#""cdn":"cdn-a""#, r#""cdn":"cdn-a","extra":1"#),
            (r#""platform":"tv""#, r#""platform":"TV""#),
            (r#""fps":29.3"#, r#""fps":29.3.1"#),
            (r#""fps":29.3"#, r#""fps":.3"#),
            (r#""fps":29.3"#, r#""fps":true"#),
            (r#""exp":{"abr_v2":"control","z":"é"}"#, r#""exp":{"a":"x","a":"y"}"#),
            (r#""exp":{"abr_v2":"control","z":"é"}"#, r#""exp":{"a":1}"#),
            (r#""exp":{"abr_v2":"control","z":"é"}"#, r#""exp":{"a":"x",}"#),
            (r#"{"v":1"#, r#"[{"v":1"#),
        ];
        for (from, to) in cases {
            let text = HEARTBEAT.replacen(from, to, 1);
            assert_ne!(text, HEARTBEAT, "{from}");
            assert!(!agrees(&text), "{text}");
        }
        for suffix in ["x", "}", ",", "{}"] {
            assert!(!agrees(&format!("{HEARTBEAT}{suffix}")));
        }
        assert!(agrees(&format!("{HEARTBEAT} \r\n")));
        assert!(!agrees(""));
        assert!(!agrees("{}"));
    }

    #[test]
    fn cut_or_changed_anywhere_it_never_disagrees_with_serde() {
        // Every prefix, and every position with a byte deleted or replaced by one of JSON's own.
        let samples = [HEARTBEAT.to_string(), every_field()];
        for text in &samples {
            let boundaries: Vec<usize> = (0..=text.len()).filter(|at| text.is_char_boundary(*at)).collect();
            for window in boundaries.windows(2) {
                let (at, next) = (window[0], window[1]);
                agrees(&text[..at]);
                agrees(&format!("{}{}", &text[..at], &text[next..]));
                for byte in [
                    "\"", "\\", "{", "}", ",", ":", "0", "-", ".", "e", " ", "n", "[", "\u{7f}",
                ] {
                    agrees(&format!("{}{byte}{}", &text[..at], &text[next..]));
                    agrees(&format!("{}{byte}{}", &text[..at], &text[at..]));
                }
            }
        }
    }
}
