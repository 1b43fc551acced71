//! What the sink installs before its first write: the index template of the rollup documents (strict
//! mappings: a field the template does not know is an error, not a new mapping) and, with
//! [`Retention::Ilm`], the lifecycle policy that deletes old daily indices.
//!
//! Every body here is checked in the tests: the template against Elastic's OpenAPI document of the
//! REST API (`spec/`), and the mappings against a rollup document with every field set (each field
//! mapped with a compatible type, and nothing mapped that the document does not have).

use serde_json::{json, Map, Value};

use crate::config::{EsConfig, Retention};

/// Ratios and rates: `double`.
const DOUBLE_FIELDS: &[&str] = &["httpdns_share", "stall_ratio", "stalls_per_hour"];

/// Dimensions: `keyword`.
const KEYWORD_FIELDS: &[&str] = &["grain", "cdn", "region", "isp", "platform", "edge_ip", "room_id"];

/// `{avg, sum, count, …}` objects, with the percentiles each one has (`docs/metrics.md`).
const STATS_FIELDS: &[(&str, &[&str])] = &[
    ("first_frame_ms", &["p50", "p90", "p99"]),
    ("dns_ms", &["p50", "p90", "p99"]),
    ("connect_ms", &["p50", "p90", "p99"]),
    ("first_packet_ms", &["p50", "p90", "p99"]),
    ("startup_skip_ms", &["p90"]),
    ("latency_ms", &["p50", "p90"]),
    ("rtt_ms", &["p50", "p90"]),
    ("bitrate_kbps", &[]),
    ("buffer_ms", &[]),
    ("encode_fps", &[]),
    ("output_kbps", &[]),
    ("target_kbps", &[]),
    ("cpu_pct", &[]),
];

/// Elasticsearch `histogram` fields (`{"values": [...], "counts": [...]}`).
const HISTOGRAM_FIELDS: &[&str] = &[
    "first_frame_ms_hist",
    "dns_ms_hist",
    "connect_ms_hist",
    "first_packet_ms_hist",
    "startup_skip_ms_hist",
    "latency_ms_hist",
    "rtt_ms_hist",
];

/// The mappings of the rollup document v1: `dynamic: strict` everywhere, so that a field written
/// by a newer job into an older template fails loudly instead of being guessed.
///
/// `edge_ip` is a `keyword`, not an `ip`: a beacon's edge may be a host name, and it is a dimension
/// to filter and group by, not a range to search.
pub fn rollup_mappings() -> Value {
    let mut properties = Map::new();
    properties.insert("@timestamp".to_string(), json!({"type": "date"}));
    properties.insert("window_s".to_string(), json!({"type": "integer"}));
    properties.insert("final".to_string(), json!({"type": "boolean"}));
    for name in KEYWORD_FIELDS {
        properties.insert(name.to_string(), json!({"type": "keyword"}));
    }
    // Counts and sums of the document: `long`.
    for (name, _) in qoe_rollup::COUNT_FIELDS {
        properties.insert(name.to_string(), json!({"type": "long"}));
    }
    for name in DOUBLE_FIELDS {
        properties.insert(name.to_string(), json!({"type": "double"}));
    }
    for (name, percentiles) in STATS_FIELDS {
        let mut stats = json!({
            "avg": {"type": "double"},
            "sum": {"type": "double"},
            "count": {"type": "long"},
        });
        for percentile in *percentiles {
            stats[*percentile] = json!({"type": "double"});
        }
        properties.insert(
            name.to_string(),
            json!({"type": "object", "dynamic": "strict", "properties": stats}),
        );
    }
    for name in HISTOGRAM_FIELDS {
        properties.insert(name.to_string(), json!({"type": "histogram"}));
    }
    json!({
        "dynamic": "strict",
        "_meta": {"contract": "qoe rollup document v1", "definitions": "docs/metrics.md"},
        "properties": properties,
    })
}

/// The mappings of the alert events (`qoe_alert::AlertEvent`, the `qoe-alerts` indices). `labels`
/// takes new keys without mapping them (`dynamic: "false"`: kept in `_source`, not searchable), so a
/// detector that adds a label never fails a write; the known labels are keywords.
pub fn alert_mappings() -> Value {
    let keyword = json!({"type": "keyword"});
    let date = json!({"type": "date"});
    let mut labels = Map::new();
    for name in [
        "cdn", "edge_ip", "isp", "region", "platform", "room_id", "level", "target",
    ] {
        labels.insert(name.to_string(), keyword.clone());
    }
    json!({
        "dynamic": "strict",
        "_meta": {"contract": "qoe alert event v1", "definitions": "stream-jobs/alert/README.md"},
        "properties": {
            "id": keyword, "fingerprint": keyword, "rule": keyword, "kind": keyword, "state": keyword,
            "severity": keyword, "starts_at": date, "ends_at": date, "window": date,
            "window_s": {"type": "integer"}, "grain": keyword,
            "labels": {"type": "object", "dynamic": "false", "properties": labels},
            "localisation": {"type": "object", "dynamic": "strict", "properties": {"level": keyword, "target": keyword}},
            "value": {"type": "double"}, "threshold": {"type": "double"},
            "summary": {"type": "text"},
        }
    })
}

/// The body of `PUT /_index_template/<prefix>-v1`: daily indices `<prefix>-v1-*`, the alias
/// `<prefix>`, strict mappings, shards and replicas if set, and the lifecycle policy when retention
/// is by ILM.
pub fn index_template(config: &EsConfig, mappings: Value) -> Value {
    let mut settings = json!({});
    // Serverless projects refuse shard settings (its API document has none): set only when asked.
    if let Some(shards) = config.shards {
        settings["number_of_shards"] = json!(shards);
    }
    if let Some(replicas) = config.replicas {
        settings["number_of_replicas"] = json!(replicas);
    }
    if config.retention == Retention::Ilm {
        settings["lifecycle"] = json!({
            "name": config.template_name(),
            "parse_origination_date": true,
        });
    }
    json!({
        "index_patterns": [format!("{}-v1-*", config.index_prefix)],
        "priority": 200,
        "version": 1,
        "_meta": {"managed_by": "qoe-pipeline", "retention_weeks": config.retention_weeks},
        "template": {
            "aliases": {config.alias(): {}},
            "settings": {"index": settings},
            "mappings": mappings,
        }
    })
}

/// The body of `PUT /_ilm/policy/<prefix>-v1`: delete a daily index once its window date
/// (`parse_origination_date`) is `retention_weeks` old. No rollover: indices are daily by name.
///
/// Not in the OpenAPI document (it describes serverless, which has no ILM); the shape is that of
/// Elastic's "Create or update lifecycle policy" API reference.
pub fn lifecycle_policy(config: &EsConfig) -> Value {
    json!({
        "policy": {
            "_meta": {"managed_by": "qoe-pipeline"},
            "phases": {
                "hot": {"min_age": "0ms", "actions": {}},
                "delete": {
                    "min_age": format!("{}d", u64::from(config.retention_weeks) * 7),
                    "actions": {"delete": {}},
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifecycle_deletes_after_the_retention() {
        let config = EsConfig {
            retention_weeks: 4,
            ..EsConfig::default()
        };
        assert_eq!(
            lifecycle_policy(&config)["policy"]["phases"]["delete"]["min_age"],
            "28d"
        );
        let template = index_template(&config, rollup_mappings());
        assert_eq!(
            template["template"]["settings"]["index"]["lifecycle"]["name"],
            "qoe-rollups-v1"
        );
        let unmanaged = EsConfig {
            retention: Retention::None,
            ..config
        };
        let template = index_template(&unmanaged, rollup_mappings());
        assert!(template["template"]["settings"]["index"].get("lifecycle").is_none());
    }
}
