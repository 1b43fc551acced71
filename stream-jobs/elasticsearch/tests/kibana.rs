//! The Kibana saved objects of `dashboards/kibana/qoe-saved-objects.ndjson` (as `POST
//! /api/saved_objects/_import` takes them) against the index templates and the API: every field a
//! visualization uses is mapped with a type its aggregation accepts, every rollup query keeps to one
//! grain and final documents, every search a visualization sends is valid against Elastic's API
//! document (after the rewrites of `support::checks::as_documented`), and every reference resolves.
//!
//! The searches are restated after Kibana's `AggConfigs.toDsl` (aggregation-based charts: buckets in
//! their order, metrics innermost; a KQL `field:value` becomes a `match` in a `bool` filter) and
//! TSVB's series request (terms, then a date histogram, then the series' metrics; its `math` metric
//! is computed by Kibana from the others, so it sends no aggregation). Our restatement, not Kibana's
//! code.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use support::checks::{as_documented, check_field, check_query, mappings_of, NUMERIC};
use support::openapi::Spec;

fn kibana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboards/kibana")
}

fn saved_objects() -> Vec<Value> {
    let path = kibana_dir().join("qoe-saved-objects.ndjson");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A string attribute that holds JSON (`visState`, `panelsJSON`, `searchSourceJSON`), parsed.
fn embedded(value: &Value) -> Value {
    serde_json::from_str(value.as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// The data view a visualization's reference `name` points at.
fn referenced_view(object: &Value, name: &str) -> Option<String> {
    object["references"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|reference| reference["name"] == name && reference["type"] == "index-pattern")
        .and_then(|reference| reference["id"].as_str())
        .map(str::to_string)
}

/// KQL `a:b and c:d`, as Kibana sends it: one `match` per term in a `bool` filter.
fn kql(query: &str) -> Value {
    let clauses: Vec<Value> = query
        .split(" and ")
        .filter_map(|term| term.split_once(':'))
        .map(|(field, value)| {
            json!({"bool": {"should": [{"match": {field.trim(): value.trim()}}], "minimum_should_match": 1}})
        })
        .collect();
    json!({"bool": {"filter": clauses}})
}

fn time_filter(field: &str, from_ms: i64, to_ms: i64) -> Value {
    json!({"range": {field: {"gte": from_ms, "lte": to_ms, "format": "epoch_millis"}}})
}

/// The search of an aggregation-based chart.
fn agg_based_search(vis: &Value, query: &str, time_field: &str, from_ms: i64, to_ms: i64) -> Value {
    let aggs = vis["aggs"].as_array().unwrap();
    let mut inner = Map::new();
    for agg in aggs.iter().filter(|agg| agg["schema"] == "metric") {
        let params = &agg["params"];
        let body = match agg["type"].as_str().unwrap() {
            "count" => continue,
            "percentiles" => json!({"percentiles": {"field": params["field"], "percents": params["percents"]}}),
            kind => json!({kind: {"field": params["field"]}}),
        };
        inner.insert(agg["id"].as_str().unwrap().to_string(), body);
    }
    for agg in aggs.iter().filter(|agg| agg["schema"] != "metric").rev() {
        let params = &agg["params"];
        let mut body = match agg["type"].as_str().unwrap() {
            "date_histogram" => json!({"date_histogram": {
                "field": params["field"], "fixed_interval": params["interval"],
                "min_doc_count": params["min_doc_count"], "extended_bounds": {"min": from_ms, "max": to_ms},
            }}),
            "terms" => {
                let order_by = params["orderBy"].as_str().unwrap();
                json!({"terms": {"field": params["field"], "size": params["size"], "order": {order_by: params["order"]}}})
            }
            other => panic!("bucket {other}"),
        };
        if !inner.is_empty() {
            body["aggs"] = Value::Object(inner);
        }
        inner = Map::from_iter([(agg["id"].as_str().unwrap().to_string(), body)]);
    }
    json!({"size": 0, "query": {"bool": {"filter": [time_filter(time_field, from_ms, to_ms), kql(query)]}}, "aggs": inner})
}

/// Why `script` is not an expression TSVB's math (tinymath) evaluates, if it is not: only
/// `params.<variable>` of the declared variables, numbers, `+ - * /` and parentheses (tinymath has no
/// comparison and no `? :`).
fn tinymath_problem(script: &str, variables: &[&str]) -> Option<String> {
    let mut depth = 0i32;
    let mut rest = script;
    while let Some(next) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("params.") {
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !variables.contains(&name.as_str()) {
                return Some(format!("params.{name} is not a declared variable"));
            }
            rest = &after[name.len()..];
            continue;
        }
        match next {
            '(' => depth += 1,
            ')' => depth -= 1,
            '+' | '-' | '*' | '/' | ' ' | '.' | '0'..='9' => {}
            other => return Some(format!("{other:?} is not tinymath")),
        }
        if depth < 0 {
            return Some("unbalanced parentheses".to_string());
        }
        rest = &rest[next.len_utf8()..];
    }
    (depth != 0).then(|| "unbalanced parentheses".to_string())
}

#[test]
fn the_tinymath_check_refuses_what_tsvb_cannot_evaluate() {
    let names = ["stall", "watch"];
    assert_eq!(
        tinymath_problem("params.stall / (params.watch + params.stall)", &names),
        None
    );
    for bad in [
        "params.watch > 0 ? params.stall / params.watch : 0",
        "params.stalls / params.watch",
        "(params.stall / params.watch",
    ] {
        assert!(tinymath_problem(bad, &names).is_some(), "{bad}");
    }
}

/// The search of a TSVB series.
fn tsvb_search(params: &Value, from_ms: i64, to_ms: i64) -> Value {
    let series = &params["series"][0];
    let metrics: Map<String, Value> = series["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|metric| metric["type"] != "math")
        .map(|metric| {
            let kind = metric["type"].as_str().unwrap();
            (
                metric["id"].as_str().unwrap().to_string(),
                json!({kind: {"field": metric["field"]}}),
            )
        })
        .collect();
    let size: i64 = series["terms_size"].as_str().unwrap().parse().unwrap();
    json!({
        "size": 0,
        "query": {"bool": {"must": [
            time_filter(params["time_field"].as_str().unwrap(), from_ms, to_ms),
            kql(params["filter"]["query"].as_str().unwrap()),
        ]}},
        "aggs": {series["id"].as_str().unwrap(): {
            "terms": {"field": series["terms_field"], "size": size, "order": {"_count": "desc"}},
            "aggs": {"timeseries": {
                "date_histogram": {"field": params["time_field"], "fixed_interval": params["interval"],
                    "min_doc_count": 0, "extended_bounds": {"min": from_ms, "max": to_ms}},
                "aggs": metrics,
            }},
        }},
    })
}

/// One Kibana visualization's fields and query, checked as a Grafana target's are; returns the data
/// view it reads and the search it sends.
fn check_visualization(object: &Value, problems: &mut Vec<String>) -> (String, Value) {
    let (from_ms, to_ms) = (1_763_800_000_000, 1_763_821_600_000);
    let id = object["id"].as_str().unwrap();
    let at = format!("kibana visualization {id}");
    let vis = embedded(&object["attributes"]["visState"]);
    let (view, query, body) = if vis["type"] == "metrics" {
        let params = &vis["params"];
        let view =
            referenced_view(object, params["index_pattern_ref_name"].as_str().unwrap_or_default()).unwrap_or_default();
        let mappings = mappings_of(&view);
        check_field(
            &mappings,
            "the time field",
            params["time_field"].as_str().unwrap_or_default(),
            &["date"],
            &at,
            problems,
        );
        let series = &params["series"][0];
        check_field(
            &mappings,
            "terms",
            series["terms_field"].as_str().unwrap_or_default(),
            &["keyword"],
            &at,
            problems,
        );
        let metrics = series["metrics"].as_array().unwrap();
        for (index, metric) in metrics.iter().enumerate() {
            match metric["type"].as_str().unwrap_or_default() {
                "sum" => check_field(
                    &mappings,
                    "a sum",
                    metric["field"].as_str().unwrap_or_default(),
                    NUMERIC,
                    &at,
                    problems,
                ),
                "math" => {
                    if index + 1 != metrics.len() {
                        problems.push(format!("{at}: math is not the series' last metric"));
                    }
                    let names: Vec<&str> = metric["variables"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|variable| variable["name"].as_str())
                        .collect();
                    let script = metric["script"].as_str().unwrap_or_default();
                    if let Some(problem) = tinymath_problem(script, &names) {
                        problems.push(format!("{at}: math script {script:?}: {problem}"));
                    }
                    for variable in metric["variables"].as_array().into_iter().flatten() {
                        if !metrics[..index].iter().any(|other| other["id"] == variable["field"]) {
                            problems.push(format!("{at}: math variable {variable} names no earlier metric"));
                        }
                    }
                }
                other => problems.push(format!("{at}: TSVB metric {other:?} not checked by this test")),
            }
        }
        let query = params["filter"]["query"].as_str().unwrap_or_default().to_string();
        (view, query, tsvb_search(params, from_ms, to_ms))
    } else {
        let view = referenced_view(object, "kibanaSavedObjectMeta.searchSourceJSON.index").unwrap_or_default();
        let mappings = mappings_of(&view);
        let search_source = embedded(&object["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"]);
        let query = search_source["query"]["query"].as_str().unwrap_or_default().to_string();
        let mut time_field = String::new();
        for agg in vis["aggs"].as_array().into_iter().flatten() {
            let field = agg["params"]["field"].as_str().unwrap_or_default();
            match agg["type"].as_str().unwrap_or_default() {
                "sum" => check_field(&mappings, "a sum", field, NUMERIC, &at, problems),
                "percentiles" => check_field(&mappings, "percentiles", field, &["histogram"], &at, problems),
                "count" => {}
                "terms" => check_field(&mappings, "terms", field, &["keyword"], &at, problems),
                "date_histogram" => {
                    check_field(&mappings, "a date histogram", field, &["date"], &at, problems);
                    time_field = field.to_string();
                }
                other => problems.push(format!("{at}: aggregation {other:?} not checked by this test")),
            }
        }
        let body = agg_based_search(&vis, &query, &time_field, from_ms, to_ms);
        (view, query, body)
    };
    check_query(&view, &query, &at, problems);
    (view, body)
}

#[test]
fn the_kibana_saved_objects_use_mapped_fields_send_valid_searches_and_resolve_their_references() {
    let objects = saved_objects();
    let spec = Spec::load();
    let ids = |kind: &str| -> Vec<String> {
        objects
            .iter()
            .filter(|object| object["type"] == kind)
            .map(|object| object["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (views, visualizations) = (ids("index-pattern"), ids("visualization"));
    assert_eq!(views, ["qoe-rollups", "qoe-alerts"]);
    let mut problems = Vec::new();
    for object in &objects {
        for key in ["type", "id", "attributes", "references"] {
            if object.get(key).is_none() {
                problems.push(format!("{}: no {key:?}", object["id"]));
            }
        }
        for reference in object["references"].as_array().into_iter().flatten() {
            let known = match reference["type"].as_str().unwrap_or_default() {
                "index-pattern" => &views,
                "visualization" => &visualizations,
                other => panic!("reference type {other}"),
            };
            if !known.iter().any(|id| reference["id"] == id.as_str()) {
                problems.push(format!(
                    "{}: reference {reference} resolves to nothing here",
                    object["id"]
                ));
            }
        }
        match object["type"].as_str().unwrap_or_default() {
            "index-pattern" => {
                let view = object["id"].as_str().unwrap();
                let time = object["attributes"]["timeFieldName"].as_str().unwrap_or_default();
                check_field(
                    &mappings_of(view),
                    "the time field",
                    time,
                    &["date"],
                    view,
                    &mut problems,
                );
            }
            "visualization" => {
                let (view, body) = check_visualization(object, &mut problems);
                for error in spec.check_request("POST", &format!("/{view}/_search"), &[], Some(&as_documented(&body))) {
                    problems.push(format!("kibana visualization {}: {error}", object["id"]));
                }
            }
            "dashboard" => {
                let panels = embedded(&object["attributes"]["panelsJSON"]);
                for panel in panels.as_array().into_iter().flatten() {
                    let index = panel["panelIndex"].as_str().unwrap_or_default();
                    let named = format!("{index}:panel_{index}");
                    if panel["panelRefName"] != format!("panel_{index}").as_str()
                        || !object["references"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|reference| reference["name"] == named.as_str())
                    {
                        problems.push(format!(
                            "dashboard {}: panel {index} has no reference {named}",
                            object["id"]
                        ));
                    }
                }
            }
            other => problems.push(format!("{}: saved object type {other:?} not checked", object["id"])),
        }
    }
    assert!(visualizations.len() >= 20, "{} visualizations", visualizations.len());
    assert!(problems.is_empty(), "{problems:#?}");

    // The API check can fail: a misspelt parameter in one visualization's search is refused.
    let first = objects.iter().find(|object| object["type"] == "visualization").unwrap();
    let (view, body) = check_visualization(first, &mut Vec::new());
    let mut wrong = as_documented(&body);
    wrong["size"] = json!("all");
    assert!(!spec
        .check_request("POST", &format!("/{view}/_search"), &[], Some(&wrong))
        .is_empty());
}
