//! The request contract of `POST /v1/beacons`: content encodings, body formats and their limits.
//!
//! Decoding is pure: bytes in, items out. Whole-request problems are a [`WireError`] (the collector maps
//! each kind to an HTTP status); a problem with one item stays with that item so the others are kept.

use std::io::Read;

use serde::Deserialize;
use serde_json::Value;

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

/// Size limits of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Too many beacons in one request.
    #[error("beacons: {count} beacons is over the limit of {limit} per request")]
    TooManyBeacons {
        /// Beacons in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
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
    /// A JSON value, to be validated.
    Json(Value),
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
        .take(limits.max_decoded_bytes as u64 + 1)
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    #[serde(default)]
    sent_at: Option<u64>,
    beacons: Vec<Value>,
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
    let batch = match format {
        BodyFormat::Json => parse_json_batch(body)?,
        BodyFormat::Ndjson => parse_ndjson(body)?,
    };
    if batch.items.len() > limits.max_beacons {
        return Err(WireError::TooManyBeacons {
            count: batch.items.len(),
            limit: limits.max_beacons,
        });
    }
    Ok(batch)
}

fn parse_json_batch(body: &[u8]) -> Result<Batch, WireError> {
    let batch: JsonBatch = serde_json::from_slice(body).map_err(|error| {
        WireError::Malformed(format!(
            "not a JSON batch {{\"sent_at\": <epoch ms>, \"beacons\": [...]}}: {error}"
        ))
    })?;
    Ok(Batch {
        sent_at: batch.sent_at,
        items: batch.beacons.into_iter().map(Item::Json).collect(),
    })
}

fn parse_ndjson(body: &[u8]) -> Result<Batch, WireError> {
    let text =
        std::str::from_utf8(body).map_err(|error| WireError::Malformed(format!("NDJSON is not UTF-8: {error}")))?;
    let mut items = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let item = match serde_json::from_str::<Value>(line) {
            Ok(value) => Item::Json(value),
            Err(error) => Item::NotJson {
                line: cut(line, 1024),
                error: error.to_string(),
            },
        };
        items.push(item);
    }
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
