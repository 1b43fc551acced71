//! The Grafana dashboards of `dashboards/grafana/` against the index templates and the API:
//! - every field a panel, a query or a variable uses exists in the template's mappings, with a type
//!   its aggregation accepts (sums on numbers, percentiles on `histogram` fields, terms on keywords,
//!   time on dates);
//! - every rollup query keeps to the rules of `qoe_es::searches`: one grain, final documents only;
//! - the search Grafana's Elasticsearch data source builds from each panel's query is one the API
//!   document accepts. `build_search` restates that translation for the parts these dashboards use,
//!   after Grafana's backend (`pkg/tsdb/elasticsearch`: `data_query.go`, `client/search_request.go`,
//!   `client/aggregation_builder.go`): it is our restatement, not Grafana's code. Grafana sends it
//!   in an `_msearch`; each search there has the body of `_search`, which is what is checked. Four
//!   shorthands Elasticsearch accepts are rewritten to the API document's long forms before the
//!   check: `aggs` as `aggregations`; a script given as a string as `{"source": ...}`; a `match`
//!   given as `{field: value}` as `{field: {"query": value}}`; and the epoch-millisecond bounds of
//!   the time filter as strings (the document types the bounds of an untyped `range` as objects,
//!   and those of a date `range` as date-math strings).
//!
//! The Kibana saved objects have their own suite (`kibana.rs`); the checks both use are in
//! `support/checks.rs`.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use support::checks::{as_documented, check_field, check_query, field_type, mappings_of, NUMERIC};
use support::openapi::Spec;

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dashboards/grafana/dashboards")
}

fn dashboards() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dashboards_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let dashboard: Value =
                serde_json::from_str(&text).unwrap_or_else(|error| panic!("{name}: not JSON: {error}"));
            found.push((name, dashboard));
        }
    }
    assert!(!found.is_empty(), "no dashboards in {}", dashboards_dir().display());
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Every panel of a dashboard, rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        found.push(panel);
        found.extend(panel["panels"].as_array().into_iter().flatten());
    }
    found
}

/// Grafana's variables (`${name:lucene}`) replaced as their "All" option does (`*`).
fn with_variables(query: &str) -> String {
    let mut out = String::new();
    let mut rest = query;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        out.push('*');
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn check_target(name: &str, panel: &Value, target: &Value, problems: &mut Vec<String>) {
    let at = format!("{name}: panel {:?} query {}", panel["title"], target["refId"]);
    let uid = target["datasource"]["uid"].as_str().unwrap_or_default();
    let mappings = mappings_of(uid);
    let time_field = target["timeField"].as_str().unwrap_or_default();
    check_field(&mappings, "the time field", time_field, &["date"], &at, problems);
    let query = target["query"].as_str().unwrap_or_default();
    check_query(uid, query, &at, problems);
    for metric in target["metrics"].as_array().into_iter().flatten() {
        let field = metric["field"].as_str().unwrap_or_default();
        match metric["type"].as_str().unwrap_or_default() {
            "sum" | "avg" | "min" | "max" => check_field(&mappings, "a sum", field, NUMERIC, &at, problems),
            "percentiles" => {
                check_field(&mappings, "percentiles", field, &["histogram"], &at, problems);
            }
            "cardinality" => check_field(&mappings, "a distinct count", field, &["keyword"], &at, problems),
            "count" => {}
            "bucket_script" => {
                for variable in metric["pipelineVariables"].as_array().into_iter().flatten() {
                    let source = &variable["pipelineAgg"];
                    let known = target["metrics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|other| &other["id"] == source && other["type"] != "bucket_script");
                    if !known {
                        problems.push(format!("{at}: bucket_script variable {variable} names no metric"));
                    }
                }
            }
            other => problems.push(format!("{at}: metric type {other:?} not checked by this test")),
        }
    }
    for bucket in target["bucketAggs"].as_array().into_iter().flatten() {
        let field = bucket["field"].as_str().unwrap_or_default();
        match bucket["type"].as_str().unwrap_or_default() {
            "terms" => check_field(&mappings, "terms", field, &["keyword"], &at, problems),
            "date_histogram" => check_field(&mappings, "a date histogram", field, &["date"], &at, problems),
            other => problems.push(format!("{at}: bucket type {other:?} not checked by this test")),
        }
    }
}

/// A setting that Grafana keeps as a string or a number, as a number.
fn number(value: &Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
}

/// The metric aggregations of a target, by id (hidden ones too: a bucket script reads them).
fn metric_aggregations(target: &Value) -> Map<String, Value> {
    let mut aggregations = Map::new();
    for metric in target["metrics"].as_array().into_iter().flatten() {
        let id = metric["id"].as_str().unwrap_or_default().to_string();
        let field = &metric["field"];
        let body = match metric["type"].as_str().unwrap_or_default() {
            "count" => continue,
            // Grafana passes the settings through: `percents` goes out as the dashboard has it.
            "percentiles" => json!({"percentiles": {"field": field, "percents": metric["settings"]["percents"]}}),
            "bucket_script" => {
                let paths: Map<String, Value> = metric["pipelineVariables"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|variable| {
                        (
                            variable["name"].as_str().unwrap_or_default().to_string(),
                            variable["pipelineAgg"].clone(),
                        )
                    })
                    .collect();
                json!({"bucket_script": {"buckets_path": paths, "script": metric["settings"]["script"]}})
            }
            kind => json!({kind: {"field": field}}),
        };
        aggregations.insert(id, body);
    }
    aggregations
}

/// The `_search` body for a target over `[from_ms, to_ms]`: the time range and the Lucene query as
/// filters, the bucket aggregations nested in their order, the metrics inside the innermost.
fn build_search(target: &Value, from_ms: i64, to_ms: i64) -> Value {
    let time_field = target["timeField"].as_str().unwrap_or_default();
    let query = with_variables(target["query"].as_str().unwrap_or_default());
    let mut inner = metric_aggregations(target);
    for bucket in target["bucketAggs"].as_array().into_iter().flatten().rev() {
        let id = bucket["id"].as_str().unwrap_or_default().to_string();
        let settings = &bucket["settings"];
        let field = &bucket["field"];
        let mut aggregation = match bucket["type"].as_str().unwrap_or_default() {
            "terms" => {
                let order_by = match settings["orderBy"].as_str().unwrap_or("_key") {
                    "_term" => "_key",
                    other => other,
                };
                json!({"terms": {
                    "field": field,
                    "size": number(&settings["size"]).unwrap_or(10.0) as i64,
                    "order": {order_by: settings["order"].as_str().unwrap_or("desc")},
                    "min_doc_count": number(&settings["min_doc_count"]).unwrap_or(1.0) as i64,
                }})
            }
            "date_histogram" => json!({"date_histogram": {
                "field": field,
                "fixed_interval": settings["interval"].as_str().unwrap_or("1m"),
                "min_doc_count": number(&settings["min_doc_count"]).unwrap_or(0.0) as i64,
                "extended_bounds": {"min": from_ms, "max": to_ms},
                "format": "epoch_millis",
            }}),
            other => panic!("bucket type {other}"),
        };
        if !inner.is_empty() {
            aggregation["aggs"] = Value::Object(inner);
        }
        inner = Map::from_iter([(id, aggregation)]);
    }
    json!({
        "size": 0,
        "query": {"bool": {"filter": [
            {"range": {time_field: {"gte": from_ms, "lte": to_ms, "format": "epoch_millis"}}},
            {"query_string": {"analyze_wildcard": true, "query": query}},
        ]}},
        "aggs": inner,
    })
}

#[test]
fn every_field_a_dashboard_uses_is_mapped_with_a_fitting_type() {
    let mut problems = Vec::new();
    let mut targets = 0;
    for (name, dashboard) in dashboards() {
        for key in ["uid", "title", "schemaVersion", "panels"] {
            if dashboard.get(key).is_none() {
                problems.push(format!("{name}: no {key:?} (Grafana's dashboard JSON model)"));
            }
        }
        for variable in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            let uid = variable["datasource"]["uid"].as_str().unwrap_or_default();
            let definition: Value = serde_json::from_str(variable["query"].as_str().unwrap_or("{}")).unwrap();
            let at = format!("{name}: variable {:?}", variable["name"]);
            let mappings = mappings_of(uid);
            check_field(
                &mappings,
                "terms",
                definition["field"].as_str().unwrap_or_default(),
                &["keyword"],
                &at,
                &mut problems,
            );
            check_query(
                uid,
                definition["query"].as_str().unwrap_or_default(),
                &at,
                &mut problems,
            );
        }
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                check_target(&name, panel, target, &mut problems);
                targets += 1;
            }
        }
    }
    assert!(targets >= 25, "only {targets} queries found");
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_checks_catch_a_wrong_field_a_wrong_type_and_a_missing_grain() {
    let panel = json!({"title": "bad"});
    let target = json!({
        "refId": "A", "datasource": {"type": "elasticsearch", "uid": "qoe-rollups"},
        "query": "final:true", "timeField": "@timestamp",
        "metrics": [
            {"id": "1", "type": "sum", "field": "stall_msec"},
            {"id": "2", "type": "percentiles", "field": "first_frame_ms.p90", "settings": {"percents": ["90"]}},
        ],
        "bucketAggs": [{"id": "3", "type": "terms", "field": "play_starts", "settings": {}}],
    });
    let mut problems = Vec::new();
    check_target("test", &panel, &target, &mut problems);
    let text = problems.join("\n");
    assert!(
        text.contains("\"stall_msec\", which the template does not map"),
        "{text}"
    );
    assert!(
        text.contains("percentiles on \"first_frame_ms.p90\", mapped as double"),
        "{text}"
    );
    assert!(text.contains("terms on \"play_starts\", mapped as long"), "{text}");
    assert!(text.contains("lacks grain:"), "{text}");
}

#[test]
fn every_query_a_dashboard_sends_is_a_valid_search() {
    let spec = Spec::load();
    let (from_ms, to_ms) = (1_763_800_000_000, 1_763_821_600_000);
    let mut problems = Vec::new();
    for (name, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let uid = target["datasource"]["uid"].as_str().unwrap_or_default();
                let body = as_documented(&build_search(target, from_ms, to_ms));
                let path = format!("/{uid}/_search");
                for error in spec.check_request("POST", &path, &[], Some(&body)) {
                    problems.push(format!(
                        "{name}: panel {:?} query {}: {error}",
                        panel["title"], target["refId"]
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");

    // The checker refuses a misspelt aggregation parameter, so the loop above can fail.
    let mut wrong = as_documented(&build_search(
        &dashboards()[0].1["panels"][0]["targets"][0],
        from_ms,
        to_ms,
    ));
    let first = wrong["aggregations"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    wrong["aggregations"][&first]["terms"]["sizes"] = json!(5);
    assert!(!spec
        .check_request("POST", "/qoe-rollups/_search", &[], Some(&wrong))
        .is_empty());
}

/// The provisioned data sources (YAML, read as lines: the workspace has no YAML parser) name the uids
/// the dashboards use, with the index each uid's checks assume.
#[test]
fn the_provisioned_data_sources_are_the_ones_the_dashboards_use() {
    let path = dashboards_dir().join("../provisioning/datasources/qoe-elasticsearch.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().any(|line| line.trim() == "apiVersion: 1"));
    let values = |key: &str| -> Vec<String> {
        text.lines()
            .filter_map(|line| line.trim().trim_start_matches("- ").strip_prefix(key))
            .map(|value| value.trim().trim_matches('"').to_string())
            .collect()
    };
    let uids = values("uid:");
    assert_eq!(uids, ["qoe-rollups", "qoe-alerts"]);
    assert_eq!(values("index:"), uids, "each data source reads the alias of its name");
    assert_eq!(values("timeField:"), ["@timestamp", "starts_at"]);
    for (uid, time_field) in uids.iter().zip(["@timestamp", "starts_at"]) {
        assert_eq!(
            field_type(&mappings_of(uid), time_field).as_deref(),
            Some("date"),
            "{uid}"
        );
    }
    for (name, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let uid = target["datasource"]["uid"].as_str().unwrap_or_default();
                assert!(
                    uids.iter().any(|known| known == uid),
                    "{name}: data source {uid:?} is not provisioned"
                );
            }
        }
    }
    assert_eq!(qoe_alert::ALERTS_INDEX, "qoe-alerts");
}

/// The Grafana alert rules (`provisioning/alerting/qoe-rules.yaml`, YAML written in its JSON form so
/// that this test reads it without a YAML parser): the provisioning keys Grafana requires, each
/// rule's steps chained from its Elasticsearch query to its condition, and each query checked as
/// the dashboards' are (fields, grain and final, a valid search).
#[test]
fn the_alert_rules_are_well_formed_and_query_mapped_fields() {
    let path = dashboards_dir().join("../provisioning/alerting/qoe-rules.yaml");
    let rules: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let spec = Spec::load();
    let mut problems = Vec::new();
    assert_eq!(rules["apiVersion"], 1);
    let mut count = 0;
    for group in rules["groups"].as_array().unwrap() {
        for key in ["orgId", "name", "folder", "interval"] {
            if group.get(key).is_none() {
                problems.push(format!("group {:?}: no {key:?}", group["name"]));
            }
        }
        for rule in group["rules"].as_array().unwrap() {
            count += 1;
            let title = rule["title"].as_str().unwrap_or_default();
            for key in ["uid", "title", "condition", "data", "for"] {
                if rule.get(key).is_none() {
                    problems.push(format!("rule {title:?}: no {key:?}"));
                }
            }
            let mut defined: Vec<&str> = Vec::new();
            for step in rule["data"].as_array().into_iter().flatten() {
                let reference = step["refId"].as_str().unwrap_or_default();
                let model = &step["model"];
                if model["refId"] != step["refId"] {
                    problems.push(format!("rule {title:?} step {reference}: the model's refId differs"));
                }
                match step["datasourceUid"].as_str().unwrap_or_default() {
                    "__expr__" => {
                        let source = model["expression"].as_str().unwrap_or_default();
                        if !defined.contains(&source) {
                            problems.push(format!(
                                "rule {title:?} step {reference}: reads {source:?}, not an earlier step"
                            ));
                        }
                        match model["type"].as_str().unwrap_or_default() {
                            "reduce" => {
                                if !["last", "sum", "mean", "max", "min", "count"]
                                    .contains(&model["reducer"].as_str().unwrap_or_default())
                                {
                                    problems
                                        .push(format!("rule {title:?} step {reference}: reducer {}", model["reducer"]));
                                }
                            }
                            "threshold" => {
                                let conditions = model["conditions"].as_array().map_or(0, Vec::len);
                                let evaluator = &model["conditions"][0]["evaluator"];
                                let known = ["gt", "lt", "within_range", "outside_range"]
                                    .contains(&evaluator["type"].as_str().unwrap_or_default());
                                if conditions != 1 || !known || !evaluator["params"][0].is_number() {
                                    problems.push(format!("rule {title:?} step {reference}: threshold {model}"));
                                }
                            }
                            other => {
                                problems.push(format!("rule {title:?} step {reference}: expression type {other:?}"))
                            }
                        }
                    }
                    uid => {
                        let target = json!({
                            "refId": reference, "datasource": {"type": "elasticsearch", "uid": uid},
                            "query": model["query"], "timeField": model["timeField"],
                            "metrics": model["metrics"], "bucketAggs": model["bucketAggs"],
                        });
                        check_target("qoe-rules.yaml", &json!({"title": title}), &target, &mut problems);
                        let body = as_documented(&build_search(&target, 1_763_800_000_000, 1_763_800_600_000));
                        for error in spec.check_request("POST", &format!("/{uid}/_search"), &[], Some(&body)) {
                            problems.push(format!("rule {title:?} step {reference}: {error}"));
                        }
                    }
                }
                defined.push(reference);
            }
            let condition = rule["condition"].as_str().unwrap_or_default();
            if !defined.contains(&condition) {
                problems.push(format!("rule {title:?}: condition {condition:?} is no step"));
            }
        }
    }
    assert!(count >= 3, "{count} rules");
    assert!(problems.is_empty(), "{problems:#?}");
}
