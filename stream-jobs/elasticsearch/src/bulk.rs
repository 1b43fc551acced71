//! `_bulk` without IO: the request body, the response, and which items to send again.
//!
//! The body is NDJSON pairs `{"index":{"_index":…,"_id":…}}` + document, each line compact and the
//! last one ending in `\n`. `index` adds or replaces, so a document written again (an early result
//! overwritten by the final one, a replay after a crash) leaves one document per id.
//!
//! The response has one item per action, in request order. An item with status 429
//! (`es_rejected_execution_exception`: the node's write queue is full) or 502/503/504 (a shard
//! unavailable for now) is worth sending again, after a back-off; any other failure (a mapping
//! error, a document the template refuses) fails again however often it is sent, and is reported
//! as a rejection.

use serde::{Deserialize, Serialize};

use crate::EsError;

/// One document to write.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkDoc {
    /// The target index.
    pub index: String,
    /// The document id (deterministic: a replay overwrites).
    pub id: String,
    /// The document, compact JSON (no newline inside).
    pub source: Vec<u8>,
}

impl BulkDoc {
    /// Serializes `document` compactly.
    pub fn new(index: String, id: String, document: &impl Serialize) -> Result<Self, EsError> {
        let source = serde_json::to_vec(document).map_err(|source| EsError::Encode { id: id.clone(), source })?;
        Ok(BulkDoc { index, id, source })
    }

    /// The bytes this document adds to a bulk body.
    pub fn encoded_len(&self) -> usize {
        // {"index":{"_index":"…","_id":"…"}}\n + source + \n
        34 + self.index.len() + self.id.len() + self.source.len()
    }
}

#[derive(Serialize)]
struct Action<'a> {
    index: Target<'a>,
}

#[derive(Serialize)]
struct Target<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id")]
    id: &'a str,
}

/// The NDJSON body of `POST /_bulk` for `docs`, in order.
pub fn bulk_body<'a>(docs: impl IntoIterator<Item = &'a BulkDoc>) -> Vec<u8> {
    let mut body = Vec::new();
    for doc in docs {
        let action = Action {
            index: Target {
                index: &doc.index,
                id: &doc.id,
            },
        };
        // Serializing two string fields cannot fail.
        serde_json::to_writer(&mut body, &action).unwrap_or_default();
        body.push(b'\n');
        body.extend_from_slice(&doc.source);
        body.push(b'\n');
    }
    body
}

/// Splits `docs` into consecutive batches of at most `max_docs` documents and about `max_bytes`
/// (a single larger document goes alone).
pub fn batches(docs: &[BulkDoc], max_docs: usize, max_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (position, doc) in docs.iter().enumerate() {
        let size = doc.encoded_len();
        let full = position - start >= max_docs || (position > start && bytes + size > max_bytes);
        if full {
            ranges.push(start..position);
            start = position;
            bytes = 0;
        }
        bytes += size;
    }
    if start < docs.len() {
        ranges.push(start..docs.len());
    }
    ranges
}

/// The `_bulk` response (`_global.bulk.Response` in the API specification).
#[derive(Debug, Clone, Deserialize)]
pub struct BulkResponse {
    /// Whether any item failed.
    pub errors: bool,
    /// One map `{"<action>": item}` per action, in request order.
    pub items: Vec<std::collections::HashMap<String, BulkItem>>,
}

/// One action's result (`_global.bulk.ResponseItem`).
#[derive(Debug, Clone, Deserialize)]
pub struct BulkItem {
    /// The index the document went to (or would have).
    #[serde(rename = "_index")]
    pub index: String,
    /// The document id.
    #[serde(rename = "_id", default)]
    pub id: Option<String>,
    /// The HTTP status of this item.
    pub status: u16,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<ErrorCause>,
}

/// An Elasticsearch error (`_types.ErrorCause`): `type` and `reason`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorCause {
    /// The exception type (`es_rejected_execution_exception`, `document_parsing_exception`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// The message.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A document the cluster refused for good.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Its index.
    pub index: String,
    /// Its id.
    pub id: String,
    /// The item status.
    pub status: u16,
    /// The exception type.
    pub kind: String,
    /// The reason given.
    pub reason: String,
}

/// What to do after a `_bulk` response.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkOutcome {
    /// Documents written.
    pub written: usize,
    /// Positions (in the request) of items to send again.
    pub retry: Vec<usize>,
    /// Items refused for good.
    pub rejected: Vec<Rejection>,
}

/// Whether an HTTP status (of the whole request or of one item) may succeed if sent again.
pub fn retriable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Reads a `_bulk` response to a request of `sent` documents and sorts the items.
pub fn classify(body: &[u8], sent: &[&BulkDoc]) -> Result<BulkOutcome, EsError> {
    let response: BulkResponse = serde_json::from_slice(body).map_err(|error| EsError::Response {
        problem: format!("the _bulk response is not the documented shape: {error}"),
    })?;
    if response.items.len() != sent.len() {
        return Err(EsError::Response {
            problem: format!(
                "the _bulk response has {} items for {} documents sent",
                response.items.len(),
                sent.len()
            ),
        });
    }
    let mut outcome = BulkOutcome::default();
    for (position, (item, doc)) in response.items.iter().zip(sent).enumerate() {
        let Some(item) = item.get("index") else {
            return Err(EsError::Response {
                problem: format!("_bulk item {position} is not the result of an index action"),
            });
        };
        if (200..300).contains(&item.status) {
            outcome.written += 1;
        } else if retriable_status(item.status) {
            outcome.retry.push(position);
        } else {
            let (kind, reason) = match &item.error {
                Some(cause) => (cause.kind.clone(), cause.reason.clone().unwrap_or_default()),
                None => ("unknown".to_string(), String::new()),
            };
            outcome.rejected.push(Rejection {
                index: item.index.clone(),
                id: item.id.clone().unwrap_or_else(|| doc.id.clone()),
                status: item.status,
                kind,
                reason,
            });
        }
    }
    if !response.errors && (outcome.written != sent.len()) {
        return Err(EsError::Response {
            problem: "the _bulk response says errors: false but has failed items".to_string(),
        });
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, size: usize) -> BulkDoc {
        BulkDoc {
            index: "i".to_string(),
            id: id.to_string(),
            source: vec![b'x'; size],
        }
    }

    #[test]
    fn body_lines_are_compact_pairs_ending_in_a_newline() {
        let docs = [
            BulkDoc::new(
                "qoe-rollups-v1-2026.11.20-1".into(),
                "a1".into(),
                &serde_json::json!({"n": 1}),
            )
            .unwrap(),
            BulkDoc::new(
                "qoe-rollups-v1-2026.11.20-1".into(),
                "b2".into(),
                &serde_json::json!({"n": 2}),
            )
            .unwrap(),
        ];
        let body = String::from_utf8(bulk_body(&docs)).unwrap();
        assert_eq!(
            body,
            "{\"index\":{\"_index\":\"qoe-rollups-v1-2026.11.20-1\",\"_id\":\"a1\"}}\n{\"n\":1}\n\
             {\"index\":{\"_index\":\"qoe-rollups-v1-2026.11.20-1\",\"_id\":\"b2\"}}\n{\"n\":2}\n"
        );
        assert_eq!(docs.iter().map(BulkDoc::encoded_len).sum::<usize>(), body.len());
    }

    #[test]
    fn batches_respect_both_limits() {
        let docs: Vec<BulkDoc> = (0..7).map(|n| doc(&n.to_string(), 100)).collect();
        assert_eq!(batches(&docs, 3, 1 << 20), vec![0..3, 3..6, 6..7]);
        // 136 bytes each: two fit in 300.
        assert_eq!(batches(&docs, 100, 300), vec![0..2, 2..4, 4..6, 6..7]);
        let big = vec![doc("big", 1000), doc("small", 1)];
        assert_eq!(batches(&big, 100, 300), vec![0..1, 1..2]);
        assert!(batches(&[], 3, 300).is_empty());
    }

    #[test]
    fn rejected_and_retriable_items_are_told_apart() {
        let docs: Vec<BulkDoc> = ["a", "b", "c"].iter().map(|id| doc(id, 1)).collect();
        let sent: Vec<&BulkDoc> = docs.iter().collect();
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_index":"i","_id":"a","status":201,"result":"created","_version":1}},
            {"index":{"_index":"i","_id":"b","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"index":{"_index":"i","_id":"c","status":400,"error":{"type":"document_parsing_exception","reason":"[1:2] unknown field [x]"}}}]}"#;
        let outcome = classify(body, &sent).unwrap();
        assert_eq!(outcome.written, 1);
        assert_eq!(outcome.retry, vec![1]);
        assert_eq!(outcome.rejected.len(), 1);
        assert_eq!(outcome.rejected[0].kind, "document_parsing_exception");
        assert!(classify(br#"{"took":1,"errors":false,"items":[]}"#, &sent)
            .unwrap_err()
            .to_string()
            .contains("0 items for 3 documents"));
    }
}
