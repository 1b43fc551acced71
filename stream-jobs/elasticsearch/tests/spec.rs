//! Every request the sink sends, checked against Elastic's OpenAPI document of the REST API
//! (`spec/`), and the rollup documents checked against the template's strict mappings.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use qoe_es::bulk::{bulk_body, BulkDoc};
use qoe_es::request::{self, EsBody, EsRequest};
use qoe_es::template::{index_template, rollup_mappings};
use qoe_es::{EsConfig, Retention};
use serde_json::{json, Value};
use support::openapi::Spec;

fn check(spec: &Spec, request: &EsRequest) -> Vec<String> {
    let body = match &request.body {
        Some(EsBody::Json(value)) => Some(value.clone()),
        _ => None,
    };
    spec.check_request(request.method.as_str(), &request.path, &request.query, body.as_ref())
}

/// The checker is not a rubber stamp: it refuses what Elasticsearch would refuse.
#[test]
fn the_checker_refuses_wrong_requests() {
    let spec = Spec::load();
    let config = EsConfig::default();
    let good = index_template(&config, rollup_mappings());
    assert_eq!(
        check(&spec, &request::put_index_template(&config, good.clone())),
        Vec::<String>::new()
    );

    let mut misspelt = good.clone();
    misspelt["index_pattern"] = misspelt["index_patterns"].take();
    misspelt.as_object_mut().unwrap().remove("index_patterns");
    let errors = check(&spec, &request::put_index_template(&config, misspelt));
    assert!(
        errors
            .iter()
            .any(|error| error.contains("unknown key \"index_pattern\"")),
        "{errors:?}"
    );

    let mut wrong_type = good.clone();
    wrong_type["priority"] = json!("high");
    assert!(!check(&spec, &request::put_index_template(&config, wrong_type)).is_empty());

    let mut unknown_mapping_type = good.clone();
    unknown_mapping_type["template"]["mappings"]["properties"]["stall_ratio"] = json!({"type": "histogramm"});
    let errors = check(&spec, &request::put_index_template(&config, unknown_mapping_type));
    assert!(errors.iter().any(|error| error.contains("histogramm")), "{errors:?}");

    let mut bad_dynamic = good;
    bad_dynamic["template"]["mappings"]["dynamic"] = json!("strictly");
    assert!(!check(&spec, &request::put_index_template(&config, bad_dynamic)).is_empty());

    let wrong_path = EsRequest {
        path: "/_index_templates/qoe".to_string(),
        ..request::put_index_template(&config, json!({}))
    };
    assert!(check(&spec, &wrong_path)[0].contains("no path"));

    assert!(!spec
        .check_named("_global.bulk.OperationContainer", &json!({"indx": {"_index": "i"}}))
        .is_empty());
    assert!(!spec
        .check_named("_global.bulk.OperationContainer", &json!({"index": {"_index": 3}}))
        .is_empty());
}

#[test]
fn the_index_template_is_valid_with_and_without_a_lifecycle() {
    let spec = Spec::load();
    for retention in [Retention::Ilm, Retention::None] {
        let config = EsConfig {
            retention,
            ..EsConfig::default()
        };
        let request = request::put_index_template(&config, index_template(&config, rollup_mappings()));
        assert!(request.in_spec);
        assert_eq!(check(&spec, &request), Vec::<String>::new(), "{retention:?}");
    }
    let alerts = EsConfig {
        index_prefix: "qoe-alerts".to_string(),
        ..EsConfig::default()
    };
    let request = request::put_index_template(&alerts, index_template(&alerts, qoe_es::template::alert_mappings()));
    assert_eq!(check(&spec, &request), Vec::<String>::new(), "alerts template");
    // Shard settings are for stateful clusters: the serverless document has none.
    let stateful = EsConfig {
        shards: Some(3),
        replicas: Some(0),
        ..EsConfig::default()
    };
    let request = request::put_index_template(&stateful, index_template(&stateful, rollup_mappings()));
    let errors = check(&spec, &request);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|error| error.contains("number_of_")), "{errors:?}");
}

#[test]
fn bulk_requests_are_valid_action_and_document_pairs() {
    let spec = Spec::load();
    let config = EsConfig::default();
    let docs: Vec<BulkDoc> = golden_docs()
        .iter()
        .take(5)
        .map(|doc| BulkDoc::new(config.index_for(0), doc["grain"].to_string(), doc).unwrap())
        .collect();
    let request = request::bulk(bulk_body(&docs));
    assert!(spec.operation(request.method.as_str(), &request.path).is_ok());
    assert_eq!(
        spec.check_request(request.method.as_str(), &request.path, &request.query, None),
        Vec::<String>::new()
    );
    let Some(EsBody::Ndjson(body)) = &request.body else {
        panic!("a bulk body is NDJSON");
    };
    let text = String::from_utf8(body.clone()).unwrap();
    assert!(text.ends_with('\n'), "the last line must end in a newline");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * docs.len());
    for pair in lines.chunks(2) {
        let action: Value = serde_json::from_str(pair[0]).unwrap();
        assert_eq!(
            spec.check_named("_global.bulk.OperationContainer", &action),
            Vec::<String>::new()
        );
        assert!(action["index"]["_id"].is_string() && action["index"]["_index"].is_string());
        let _: Value = serde_json::from_str(pair[1]).unwrap();
    }
}

/// The document describes serverless, which has no ILM: the lifecycle request is marked as not in
/// it, and its body follows Elastic's lifecycle API reference (checked by the live suite).
#[test]
fn the_lifecycle_api_is_not_in_the_serverless_document() {
    let spec = Spec::load();
    assert!(spec.paths().all(|path| !path.starts_with("/_ilm")));
    let request = request::put_lifecycle(&EsConfig::default());
    assert!(!request.in_spec);
    assert_eq!(request.path, "/_ilm/policy/qoe-rollups-v1");
}

/// The searches the dashboards run are valid requests; a common mistake in one is caught.
#[test]
fn dashboard_searches_are_valid() {
    let spec = Spec::load();
    let (from, to) = ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z");
    let searches = [
        qoe_es::searches::cdn_quality_over_time("qoe-rollups", from, to),
        qoe_es::searches::worst_edges("qoe-rollups", "cdn-b", from, to),
        qoe_es::searches::room_curves("qoe-rollups", "room-0001", from, to),
    ];
    for search in &searches {
        assert_eq!(check(&spec, search), Vec::<String>::new(), "{}", search.path);
    }
    let Some(EsBody::Json(mut body)) = searches[0].body.clone() else {
        panic!("a search has a JSON body");
    };
    body["aggregations"]["per_minute"]["date_histogram"]["fixed_intervals"] = json!("1m");
    let errors = spec.check_request("POST", "/qoe-rollups/_search", &[], Some(&body));
    assert!(
        errors.iter().any(|error| error.contains("fixed_intervals")),
        "{errors:?}"
    );
}

fn golden_docs() -> Vec<Value> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../rollup/tests/golden");
    let mut docs = Vec::new();
    let mut cases: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    cases.sort();
    for case in cases {
        let text = std::fs::read_to_string(case.join("expected.ndjson")).unwrap();
        docs.extend(text.lines().map(|line| serde_json::from_str::<Value>(line).unwrap()));
    }
    assert!(docs.len() > 10);
    docs
}

/// Whether a JSON value fits a mapping type.
fn fits(mapping_type: &str, value: &Value) -> bool {
    match mapping_type {
        "keyword" => value.is_string(),
        "long" | "integer" => value.is_u64() || value.is_i64(),
        "double" => value.is_number(),
        "boolean" => value.is_boolean(),
        "date" => value
            .as_str()
            .is_some_and(|text| text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T'),
        "histogram" => {
            let (Some(values), Some(counts)) = (value["values"].as_array(), value["counts"].as_array()) else {
                return false;
            };
            let ascending = values.windows(2).all(|pair| pair[0].as_f64() < pair[1].as_f64());
            value.as_object().is_some_and(|object| object.len() == 2)
                && values.len() == counts.len()
                && ascending
                && values.iter().all(Value::is_number)
                && counts.iter().all(Value::is_u64)
        }
        _ => false,
    }
}

/// Every field of every golden rollup document is mapped with a type that takes its value, and every
/// mapped field occurs in some document (no stale mapping).
#[test]
fn rollup_documents_fit_the_strict_mappings() {
    let mappings = rollup_mappings();
    assert_eq!(mappings["dynamic"], "strict");
    let properties = mappings["properties"].as_object().unwrap();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for doc in golden_docs() {
        for (name, value) in doc.as_object().unwrap() {
            let mapping = properties.get(name).unwrap_or_else(|| panic!("{name} is not mapped"));
            let subfields = seen.entry(name.clone()).or_default();
            match mapping["type"].as_str().unwrap() {
                "object" => {
                    assert_eq!(mapping["dynamic"], "strict");
                    for (key, item) in value.as_object().unwrap() {
                        let field = &mapping["properties"][key];
                        let kind = field["type"]
                            .as_str()
                            .unwrap_or_else(|| panic!("{name}.{key} is not mapped"));
                        assert!(fits(kind, item), "{name}.{key} = {item} does not fit {kind}");
                        subfields.insert(key.clone());
                    }
                }
                kind => assert!(fits(kind, value), "{name} = {value} does not fit {kind}"),
            }
        }
    }
    for (name, mapping) in properties {
        let subfields = seen
            .get(name)
            .unwrap_or_else(|| panic!("{name} is mapped but in no golden document"));
        if let Some(object) = mapping["properties"].as_object() {
            let stale: Vec<&String> = object.keys().filter(|key| !subfields.contains(*key)).collect();
            assert!(stale.is_empty(), "{name}: mapped but never written: {stale:?}");
        }
    }
    // And a field the mapping does not know would be refused by the fit check itself.
    assert!(properties.get("stall_ration").is_none());
    assert!(!fits("histogram", &json!({"values": [2.0, 1.0], "counts": [1, 1]})));
}
