//! The searches dashboards run over the rollup indices, as requests the tests check against the API
//! document (and the live suite runs against a real cluster). Two rules they all follow:
//!
//! - **one grain and final results only**: every beacon is counted once per grain, and an early
//!   document is replaced by its final one; a search without `grain` and `final` filters counts
//!   things several times;
//! - **ratios from sums, percentiles from histograms**: `stall_ratio` over many documents is
//!   Σstall_ms / (Σwatch_ms + Σstall_ms), never an average of ratios; percentiles come from the
//!   `*_hist` fields, merged by Elasticsearch, never an average of per-document percentiles.

use serde_json::{json, Value};

use crate::request::{EsBody, EsRequest, Method};

/// Per minute and CDN over `[from, to)` (RFC 3339): plays, stall ratio and the first-frame time's
/// p50/p90 — the "QoS per CDN" panel.
pub fn cdn_quality_over_time(alias: &str, from: &str, to: &str) -> EsRequest {
    let body = json!({
        "size": 0,
        "query": {"bool": {"filter": [
            {"term": {"grain": {"value": "cdn"}}},
            {"term": {"final": {"value": true}}},
            {"range": {"@timestamp": {"gte": from, "lt": to}}},
        ]}},
        "aggregations": {
            "per_minute": {
                "date_histogram": {"field": "@timestamp", "fixed_interval": "1m", "min_doc_count": 0},
                "aggregations": {
                    "per_cdn": {
                        "terms": {"field": "cdn", "size": 20},
                        "aggregations": {
                            "play_starts": {"sum": {"field": "play_starts"}},
                            "stall_ms": {"sum": {"field": "stall_ms"}},
                            "watch_ms": {"sum": {"field": "watch_ms"}},
                            "stall_ratio": {"bucket_script": {
                                "buckets_path": {"stall": "stall_ms", "watch": "watch_ms"},
                                "script": {"source": "params.watch + params.stall > 0 ? params.stall / (params.watch + params.stall) : null"},
                            }},
                            "first_frame_ms": {"percentiles": {"field": "first_frame_ms_hist", "percents": [50, 90]}},
                        }
                    }
                }
            }
        }
    });
    search(alias, body)
}

/// The edge nodes of `cdn` over `[from, to)` with the most stall time, with their stall ratio and
/// RTT p90 — the "per edge node" table.
pub fn worst_edges(alias: &str, cdn: &str, from: &str, to: &str) -> EsRequest {
    let body = json!({
        "size": 0,
        "query": {"bool": {"filter": [
            {"term": {"grain": {"value": "edge"}}},
            {"term": {"final": {"value": true}}},
            {"term": {"cdn": {"value": cdn}}},
            {"range": {"@timestamp": {"gte": from, "lt": to}}},
        ]}},
        "aggregations": {
            "per_edge": {
                "terms": {"field": "edge_ip", "size": 10, "order": {"stall_ms": "desc"}},
                "aggregations": {
                    "stall_ms": {"sum": {"field": "stall_ms"}},
                    "watch_ms": {"sum": {"field": "watch_ms"}},
                    "rtt_ms": {"percentiles": {"field": "rtt_ms_hist", "percents": [90]}},
                }
            }
        }
    });
    search(alias, body)
}

/// Joins, leaves and active sessions of `room_id` per minute and CDN over `[from, to)` — the QoE
/// curves of a room beside its CDNs.
pub fn room_curves(alias: &str, room_id: &str, from: &str, to: &str) -> EsRequest {
    let body = json!({
        "size": 0,
        "query": {"bool": {"filter": [
            {"term": {"grain": {"value": "room"}}},
            {"term": {"final": {"value": true}}},
            {"term": {"room_id": {"value": room_id}}},
            {"range": {"@timestamp": {"gte": from, "lt": to}}},
        ]}},
        "aggregations": {
            "per_minute": {
                "date_histogram": {"field": "@timestamp", "fixed_interval": "1m"},
                "aggregations": {
                    "per_cdn": {
                        "terms": {"field": "cdn", "size": 10},
                        "aggregations": {
                            "joins": {"sum": {"field": "joins"}},
                            "leaves": {"sum": {"field": "leaves"}},
                            "active_sessions": {"sum": {"field": "active_sessions"}},
                        }
                    }
                }
            }
        }
    });
    search(alias, body)
}

fn search(alias: &str, body: Value) -> EsRequest {
    EsRequest {
        method: Method::Post,
        path: format!("/{alias}/_search"),
        query: Vec::new(),
        body: Some(EsBody::Json(body)),
        in_spec: true,
    }
}
