//! Checks shared by the dashboard suites: which fields the index templates map, with which types,
//! and requests rewritten into the long forms of Elastic's API document.

#![allow(dead_code, unreachable_pub)]

use qoe_es::template::{alert_mappings, rollup_mappings};
use serde_json::{json, Value};

/// The mapped type of `field` (a dotted path for object fields), if mapped.
pub fn field_type(mappings: &Value, field: &str) -> Option<String> {
    let mut properties = &mappings["properties"];
    let mut parts = field.split('.').peekable();
    while let Some(part) = parts.next() {
        let mapping = properties.get(part)?;
        if parts.peek().is_none() {
            return mapping["type"].as_str().map(str::to_string);
        }
        properties = &mapping["properties"];
    }
    None
}

/// The mappings of the index a data source uid reads.
pub fn mappings_of(uid: &str) -> Value {
    match uid {
        "qoe-rollups" => rollup_mappings(),
        "qoe-alerts" => alert_mappings(),
        other => panic!("unknown data source uid {other:?} (expected qoe-rollups or qoe-alerts)"),
    }
}

pub const NUMERIC: &[&str] = &["long", "integer", "double"];

/// Problems with one field used by an aggregation or a query term.
pub fn check_field(mappings: &Value, use_: &str, field: &str, accepted: &[&str], at: &str, problems: &mut Vec<String>) {
    match field_type(mappings, field) {
        None => problems.push(format!("{at}: {use_} on {field:?}, which the template does not map")),
        Some(found) if !accepted.contains(&found.as_str()) => problems.push(format!(
            "{at}: {use_} on {field:?}, mapped as {found}, expected one of {accepted:?}"
        )),
        Some(_) => {}
    }
}

/// The `field:` terms of a Lucene query (the simple `name:value` form these dashboards use).
pub fn query_fields(query: &str) -> Vec<String> {
    query
        .split_whitespace()
        .filter_map(|token| token.split_once(':'))
        .map(|(name, _)| name.trim_start_matches(['(', '-', '+']).to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// A query of a dashboard over the index `index`: every `field:` term a keyword or boolean the
/// template maps, and, over the rollups, the rules of `qoe_es::searches`: one grain, final documents
/// only (a query without them counts beacons once per grain and early results twice).
pub fn check_query(index: &str, query: &str, at: &str, problems: &mut Vec<String>) {
    let mappings = mappings_of(index);
    for field in query_fields(query) {
        check_field(&mappings, "a query term", &field, &["keyword", "boolean"], at, problems);
    }
    if index == "qoe-rollups" {
        for rule in ["grain:", "final:true"] {
            if !query.contains(rule) {
                problems.push(format!(
                    "{at}: the query {query:?} lacks {rule} (one grain, final documents only)"
                ));
            }
        }
    }
}

/// `body` in the API document's long forms: `aggs` named `aggregations`, string scripts as
/// `{"source": ...}`, `match` shorthands as `{"query": ...}`, and the time filter's
/// epoch-millisecond bounds as strings (see the module doc).
pub fn as_documented(body: &Value) -> Value {
    match body {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let key = if key == "aggs" {
                        "aggregations".to_string()
                    } else {
                        key.clone()
                    };
                    let value = match (key.as_str(), value) {
                        ("range", _) => range_as_strings(value),
                        ("script", Value::String(source)) => json!({"source": source}),
                        ("match", Value::Object(fields)) => Value::Object(
                            fields
                                .iter()
                                .map(|(field, query)| match query {
                                    Value::Object(_) => (field.clone(), query.clone()),
                                    short => (field.clone(), json!({"query": short})),
                                })
                                .collect(),
                        ),
                        _ => as_documented(value),
                    };
                    (key, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(as_documented).collect()),
        other => other.clone(),
    }
}

pub fn range_as_strings(range: &Value) -> Value {
    let mut range = range.clone();
    for bounds in range.as_object_mut().into_iter().flat_map(|fields| fields.values_mut()) {
        for key in ["gte", "lte", "gt", "lt"] {
            if let Some(number) = bounds.get(key).and_then(Value::as_i64) {
                bounds[key] = Value::String(number.to_string());
            }
        }
    }
    range
}
