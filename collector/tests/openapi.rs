//! `collector/openapi.json` against the collector itself: every `$ref` resolves (the beacon is the
//! contract's JSON Schema, by reference), the error codes and statuses are exactly the collector's, and
//! every documented path and method is routed by a running collector (over librdkafka's mock cluster).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rdkafka::mocking::MockCluster;
use serde_json::Value;

use qoe_collector::error::ApiError;
use support::{config, Collector};

fn document_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

fn document() -> Value {
    let text = std::fs::read_to_string(document_path()).unwrap();
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// Every `$ref` string in `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target),
                    _ => refs(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|inner| refs(inner, found)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_the_beacon_is_the_contract_schema() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(!found.is_empty());
    let mut external = BTreeSet::new();
    for target in found {
        let (file, pointer) = target.split_once('#').unwrap_or((target, ""));
        let resolved = if file.is_empty() {
            document.clone()
        } else {
            let path = document_path().parent().unwrap().join(file);
            external.insert(
                path.canonicalize()
                    .unwrap_or_else(|_| panic!("{target:?}: no file {path:?}")),
            );
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
        };
        assert!(
            resolved.pointer(pointer).is_some(),
            "{target:?}: the pointer {pointer:?} finds nothing"
        );
    }
    let contract = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/beacon-v1.schema.json")
        .canonicalize()
        .unwrap();
    assert_eq!(external, BTreeSet::from([contract]));
}

#[test]
fn error_codes_and_statuses_are_the_collectors() {
    let document = document();
    let documented: BTreeSet<&str> = document["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    let codes: BTreeSet<&str> = ApiError::CODES.iter().map(|(code, _)| *code).collect();
    assert_eq!(documented, codes);

    let responses = document["paths"]["/v1/beacons"]["post"]["responses"]
        .as_object()
        .unwrap();
    let documented: BTreeSet<u16> = responses.keys().map(|status| status.parse().unwrap()).collect();
    let mut statuses: BTreeSet<u16> = ApiError::CODES.iter().map(|(_, status)| *status).collect();
    statuses.insert(200);
    assert_eq!(documented, statuses);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let cluster = MockCluster::new(1).unwrap();
    cluster.create_topic("qoe.beacons.v1", 1, 1).unwrap();
    cluster.create_topic("qoe.beacons.dlq", 1, 1).unwrap();
    let collector = Collector::start(config(&cluster.bootstrap_servers())).await;
    let document = document();
    let mut operations = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documented: BTreeSet<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|status| status.parse().unwrap())
                .collect();
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            // Without a key: a POST answers 401, the others their success status.
            let response = collector
                .client
                .request(method.clone(), collector.url(path))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(
                documented.contains(&status),
                "{method} {path} answered {status}, the document lists {documented:?}"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 5);
    collector.shutdown.cancel();
}
