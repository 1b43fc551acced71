//! The request contract of `POST /v1/beacons`: content encodings, body formats and their limits.
//!
//! Decoding is pure: bytes in, items out. Whole-request problems are a [`WireError`] (the collector maps
//! each kind to an HTTP status); a problem with one item stays with that item so the others are kept.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::fields::{MAX_TS_MS, MIN_TS_MS};

/// How the body is compressed (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    /// No compression (`identity` or no header).
    Identity,
    /// `gzip`.
    Gzip,
    /// `zstd`.
    Zstd,
}

impl ContentEncoding {
    /// Parses a `Content-Encoding` header value.
    pub fn parse(header: Option<&str>) -> Result<Self, WireError> {
        let Some(header) = header else {
            return Ok(ContentEncoding::Identity);
        };
        match header.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(ContentEncoding::Identity),
            "gzip" | "x-gzip" => Ok(ContentEncoding::Gzip),
            "zstd" => Ok(ContentEncoding::Zstd),
            other => Err(WireError::UnsupportedEncoding(other.to_string())),
        }
    }
}

/// The body format (`Content-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`: `{"sent_at": ..., "beacons": [...]}`.
    Json,
    /// `application/x-ndjson`: one beacon per line.
    Ndjson,
}

impl BodyFormat {
    /// Parses a `Content-Type` header value. `text/plain` is read as JSON, because browsers'
    /// `navigator.sendBeacon` sends strings with that type and cannot set another without a CORS
    /// preflight.
    pub fn parse(header: Option<&str>) -> Result<Self, WireError> {
        let header = header.unwrap_or("");
        let media_type = header.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media_type.as_str() {
            "application/json" | "text/plain" => Ok(BodyFormat::Json),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => Ok(BodyFormat::Ndjson),
            _ => Err(WireError::UnsupportedMediaType(header.to_string())),
        }
    }
}

/// Size limits of one request (also the collector's `[limits]` configuration table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest body as sent (compressed), bytes.
    pub max_body_bytes: usize,
    /// Largest body after decompression, bytes: refuses decompression bombs.
    pub max_decoded_bytes: usize,
    /// Most beacons in one request.
    pub max_beacons: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_decoded_bytes: 8 << 20,
            max_beacons: 2_000,
        }
    }
}

/// A whole-request problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// `Content-Encoding` is not gzip, zstd or identity.
    #[error("content-encoding: {0:?} is not supported, use gzip, zstd or identity")]
    UnsupportedEncoding(String),
    /// `Content-Type` is not JSON or NDJSON.
    #[error("content-type: {0:?} is not supported, use application/json or application/x-ndjson")]
    UnsupportedMediaType(String),
    /// The body as sent is over the limit.
    #[error("body: {size} bytes is over the limit of {limit} bytes")]
    BodyTooLarge {
        /// Bytes received (at least).
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body decompresses to more than the limit.
    #[error("body: decompresses to more than the limit of {limit} bytes")]
    DecodedTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Too many beacons in one request (counted while parsing, so a huge batch is never built).
    #[error("beacons: more than {limit} beacons in one request, the limit is {limit}")]
    TooManyBeacons {
        /// The limit.
        limit: usize,
    },
    /// `sent_at` (in the body or the query string) is not a plausible epoch-ms time.
    #[error("sent_at: {0} is not an epoch-ms time between 2000-01-01 and 2099-12-31")]
    BadSentAt(String),
    /// The compressed stream is corrupt.
    #[error("body: not valid {encoding} data: {detail}")]
    BadCompression {
        /// `gzip` or `zstd`.
        encoding: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The body is not the JSON batch or NDJSON it claims to be.
    #[error("body: {0}")]
    Malformed(String),
}

/// One item of a decoded batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// The text of one JSON value, to be validated (kept as text: the fast path deserializes it
    /// straight into a beacon, and a rejected item is dead-lettered exactly as sent).
    Json(Box<str>),
    /// An NDJSON line that is not JSON: the line (cut to 1 KiB) and the parser's message.
    NotJson {
        /// The line as sent, cut to 1 KiB.
        line: String,
        /// What the JSON parser said.
        error: String,
    },
}

/// A decoded request body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// The client clock when the batch was sent, epoch ms, if the client said.
    pub sent_at: Option<u64>,
    /// The items, in request order (the index in responses is the position here).
    pub items: Vec<Item>,
}

/// Decompresses `body`, refusing output over `limits.max_decoded_bytes`.
pub fn decompress(body: &[u8], encoding: ContentEncoding, limits: &Limits) -> Result<Vec<u8>, WireError> {
    if body.len() > limits.max_body_bytes {
        return Err(WireError::BodyTooLarge {
            size: body.len(),
            limit: limits.max_body_bytes,
        });
    }
    let (name, decoder): (&'static str, Box<dyn Read + '_>) = match encoding {
        ContentEncoding::Identity => {
            if body.len() > limits.max_decoded_bytes {
                return Err(WireError::DecodedTooLarge {
                    limit: limits.max_decoded_bytes,
                });
            }
            return Ok(body.to_vec());
        }
        ContentEncoding::Gzip => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(body))),
        ContentEncoding::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::with_buffer(body).map_err(|error| WireError::BadCompression {
                    encoding: "zstd",
                    detail: error.to_string(),
                })?;
            ("zstd", Box::new(decoder))
        }
    };
    // Read at most one byte more than the limit: enough to know the limit was passed.
    let mut decoded = Vec::with_capacity(body.len().saturating_mul(4).min(limits.max_decoded_bytes));
    decoder
        .take((limits.max_decoded_bytes as u64).saturating_add(1))
        .read_to_end(&mut decoded)
        .map_err(|error| WireError::BadCompression {
            encoding: name,
            detail: error.to_string(),
        })?;
    if decoded.len() > limits.max_decoded_bytes {
        return Err(WireError::DecodedTooLarge {
            limit: limits.max_decoded_bytes,
        });
    }
    Ok(decoded)
}

/// The JSON batch body. `beacons` is read through [`BoundedItems`], which stops at the limit.
struct JsonBatch {
    sent_at: Option<Value>,
    beacons: Vec<Box<RawValue>>,
}

struct JsonBatchSeed {
    max_beacons: usize,
}

impl<'de> DeserializeSeed<'de> for JsonBatchSeed {
    type Value = JsonBatch;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<JsonBatch, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for JsonBatchSeed {
    type Value = JsonBatch;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object with \"beacons\" and an optional \"sent_at\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonBatch, A::Error> {
        let mut sent_at = None;
        let mut beacons = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "sent_at" if sent_at.is_some() => return Err(de::Error::duplicate_field("sent_at")),
                "beacons" if beacons.is_some() => return Err(de::Error::duplicate_field("beacons")),
                // `"sent_at": null` means the client does not say.
                "sent_at" => sent_at = Some(map.next_value::<Value>()?).filter(|value| !value.is_null()),
                "beacons" => beacons = Some(map.next_value_seed(BoundedItems { max: self.max_beacons })?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown field {other:?}, expected \"beacons\" or \"sent_at\""
                    )))
                }
            }
        }
        let beacons = beacons.ok_or_else(|| de::Error::missing_field("beacons"))?;
        Ok(JsonBatch { sent_at, beacons })
    }
}

/// An array of JSON values that fails as soon as it holds more than `max` items.
struct BoundedItems {
    max: usize,
}

/// The message [`BoundedItems`] fails with, recognised by [`parse_json_batch`].
const TOO_MANY_ITEMS: &str = "qoe: too many beacons";

impl<'de> DeserializeSeed<'de> for BoundedItems {
    type Value = Vec<Box<RawValue>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Box<RawValue>>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BoundedItems {
    type Value = Vec<Box<RawValue>>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an array of beacons")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Box<RawValue>>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while let Some(item) = seq.next_element::<Box<RawValue>>()? {
            if items.len() == self.max {
                return Err(de::Error::custom(TOO_MANY_ITEMS));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// Checks a `sent_at` given in the body (a JSON number) or the query string (text).
pub fn parse_sent_at(value: &Value) -> Result<u64, WireError> {
    let bad = || WireError::BadSentAt(value.to_string());
    let millis = match value {
        Value::Number(number) => match number.as_u64() {
            Some(integer) => integer,
            None => {
                let float = number.as_f64().ok_or_else(bad)?;
                if float.fract() != 0.0 || !(0.0..1e15).contains(&float) {
                    return Err(bad());
                }
                float as u64
            }
        },
        Value::String(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| WireError::BadSentAt(format!("{text:?}")))?,
        _ => return Err(bad()),
    };
    if !(MIN_TS_MS..=MAX_TS_MS).contains(&millis) {
        return Err(bad());
    }
    Ok(millis)
}

/// Splits a decompressed body into items.
///
/// ```
/// use qoe_schemas::wire::{parse_batch, BodyFormat, Item, Limits};
/// let body = br#"{"sent_at": 1763800000000, "beacons": [{"v": 1}, 7]}"#;
/// let batch = parse_batch(body, BodyFormat::Json, &Limits::default()).unwrap();
/// assert_eq!(batch.sent_at, Some(1_763_800_000_000));
/// assert_eq!(batch.items.len(), 2);
///
/// let ndjson = b"{\"v\": 1}\nnot json\n\n";
/// let batch = parse_batch(ndjson, BodyFormat::Ndjson, &Limits::default()).unwrap();
/// assert!(matches!(batch.items[1], Item::NotJson { .. }));
/// ```
pub fn parse_batch(body: &[u8], format: BodyFormat, limits: &Limits) -> Result<Batch, WireError> {
    match format {
        BodyFormat::Json => parse_json_batch(body, limits.max_beacons),
        BodyFormat::Ndjson => parse_ndjson(body, limits.max_beacons),
    }
}

fn parse_json_batch(body: &[u8], max_beacons: usize) -> Result<Batch, WireError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = JsonBatchSeed { max_beacons }
        .deserialize(&mut deserializer)
        .and_then(|batch| deserializer.end().map(|()| batch));
    let batch = parsed.map_err(|error| {
        if error.to_string().starts_with(TOO_MANY_ITEMS) {
            return WireError::TooManyBeacons { limit: max_beacons };
        }
        WireError::Malformed(format!(
            "not a JSON batch {{\"sent_at\": <epoch ms>, \"beacons\": [...]}}: {error}"
        ))
    })?;
    let sent_at = batch.sent_at.as_ref().map(parse_sent_at).transpose()?;
    Ok(Batch {
        sent_at,
        items: batch.beacons.into_iter().map(|raw| Item::Json(raw.into())).collect(),
    })
}

fn parse_ndjson(body: &[u8], max_beacons: usize) -> Result<Batch, WireError> {
    let text =
        std::str::from_utf8(body).map_err(|error| WireError::Malformed(format!("NDJSON is not UTF-8: {error}")))?;
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|line| !line.is_empty()).collect();
    if lines.len() > max_beacons {
        return Err(WireError::TooManyBeacons { limit: max_beacons });
    }
    let items: Vec<Item> = lines
        .into_iter()
        .map(|line| match serde_json::from_str::<IgnoredAny>(line) {
            Ok(_) => Item::Json(line.into()),
            Err(error) => Item::NotJson {
                line: cut(line, 1024),
                error: error.to_string(),
            },
        })
        .collect();
    let every_line_is_garbage = !items.is_empty() && items.iter().all(|item| matches!(item, Item::NotJson { .. }));
    if every_line_is_garbage {
        return Err(WireError::Malformed("not NDJSON: no line is JSON".to_string()));
    }
    Ok(Batch { sent_at: None, items })
}

fn cut(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
