//! The sink's retry paths over real HTTP, against a scripted responder on 127.0.0.1 that answers
//! each request with the next response of a script. The responder is not Elasticsearch: it only
//! returns responses shaped as Elastic's API document says (each one checked against the
//! document's response schema here), and records what the official client sent (each request
//! checked against the document too).

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use qoe_es::bulk::BulkDoc;
use qoe_es::template::rollup_mappings;
use qoe_es::{EsConfig, EsError, EsMetrics, EsSink, Retention};
use serde_json::{json, Value};
use support::openapi::Spec;

#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

#[derive(Default)]
struct Script {
    responses: VecDeque<(u16, Value)>,
    received: Vec<Received>,
}

type Shared = Arc<Mutex<Script>>;

async fn respond(
    State(script): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut script = script.lock().unwrap();
    script.received.push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        content_type: headers
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (status, body) = script
        .responses
        .pop_front()
        .unwrap_or((500, json!({"error": "the script ran out"})));
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
}

async fn responder(responses: Vec<(u16, Value)>) -> (String, Shared) {
    let script: Shared = Arc::new(Mutex::new(Script {
        responses: responses.into(),
        received: Vec::new(),
    }));
    let app = axum::Router::new().fallback(respond).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, script)
}

fn sink(url: &str, change: impl FnOnce(&mut EsConfig)) -> EsSink {
    let mut config = EsConfig {
        url: url.to_string(),
        initial_backoff_ms: 1,
        max_backoff_ms: 5,
        retry_for_secs: 5,
        ..EsConfig::default()
    };
    change(&mut config);
    EsSink::new(config, EsMetrics::new(&prometheus::Registry::new())).unwrap()
}

fn docs(ids: &[&str]) -> Vec<BulkDoc> {
    ids.iter()
        .map(|id| {
            BulkDoc::new(
                "qoe-rollups-v1-2026.11.20-1".to_string(),
                id.to_string(),
                &json!({"grain": "cdn", "joins": 1}),
            )
            .unwrap()
        })
        .collect()
}

fn ok_item(id: &str) -> Value {
    json!({"index": {"_index": "qoe-rollups-v1-2026.11.20-1", "_id": id, "_version": 1, "result": "created",
        "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1, "status": 201}})
}

fn failed_item(id: &str, status: u16, kind: &str, reason: &str) -> Value {
    json!({"index": {"_index": "qoe-rollups-v1-2026.11.20-1", "_id": id, "status": status,
        "error": {"type": kind, "reason": reason}}})
}

fn bulk_response(items: Vec<Value>) -> Value {
    let errors = items
        .iter()
        .any(|item| item["index"]["status"].as_u64().unwrap_or(500) >= 300);
    json!({"took": 3, "errors": errors, "items": items})
}

fn rejected_for_now(id: &str) -> Value {
    failed_item(
        id,
        429,
        "es_rejected_execution_exception",
        "rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=1024, max_coordinating_and_primary_bytes=0]",
    )
}

/// Every scripted response is what the API document says the real one looks like.
fn check_script(spec: &Spec, method: &str, path: &str, responses: &[(u16, Value)]) {
    let operation = spec.operation(method, path).unwrap();
    for (status, body) in responses.iter().filter(|(status, _)| *status == 200) {
        let schema = spec.response_schema(operation, *status).expect("a documented response");
        let mut errors = Vec::new();
        spec.check(schema, body, "response", &mut errors);
        assert_eq!(errors, Vec::<String>::new(), "scripted response {body}");
    }
}

/// Every request the client sent is a valid bulk request; returns the ids of each request.
fn sent_ids(spec: &Spec, received: &[Received]) -> Vec<Vec<String>> {
    received
        .iter()
        .map(|request| {
            assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/_bulk"));
            assert!(spec.operation("post", &request.path).is_ok());
            assert_eq!(request.content_type, "application/x-ndjson");
            assert!(request.body.ends_with('\n'));
            let lines: Vec<Value> = request
                .body
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect();
            lines
                .chunks(2)
                .map(|pair| {
                    assert_eq!(
                        spec.check_named("_global.bulk.OperationContainer", &pair[0]),
                        Vec::<String>::new()
                    );
                    pair[0]["index"]["_id"].as_str().unwrap().to_string()
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn only_items_rejected_with_429_are_sent_again() {
    let spec = Spec::load();
    let script = vec![
        (
            200,
            bulk_response(vec![
                ok_item("a"),
                rejected_for_now("b"),
                ok_item("c"),
                rejected_for_now("d"),
            ]),
        ),
        (200, bulk_response(vec![rejected_for_now("b"), ok_item("d")])),
        (200, bulk_response(vec![ok_item("b")])),
    ];
    check_script(&spec, "post", "/_bulk", &script);
    let (url, shared) = responder(script).await;
    let report = sink(&url, |_| {}).write(&docs(&["a", "b", "c", "d"])).await.unwrap();
    assert_eq!((report.written, report.retried, report.requests), (4, 3, 3));
    let ids = sent_ids(&spec, &shared.lock().unwrap().received);
    assert_eq!(ids, vec![vec!["a", "b", "c", "d"], vec!["b", "d"], vec!["b"]]);
}

#[tokio::test]
async fn a_mapping_error_fails_the_write_after_the_rest_is_written() {
    let spec = Spec::load();
    let script = vec![
        (
            200,
            bulk_response(vec![
                ok_item("a"),
                failed_item(
                    "b",
                    400,
                    "document_parsing_exception",
                    "[1:12] mapping set to strict, dynamic introduction of [stall_ration] within [_doc] is not allowed",
                ),
                rejected_for_now("c"),
            ]),
        ),
        (200, bulk_response(vec![ok_item("c")])),
    ];
    check_script(&spec, "post", "/_bulk", &script);
    let (url, shared) = responder(script).await;
    let error = sink(&url, |_| {}).write(&docs(&["a", "b", "c"])).await.unwrap_err();
    let EsError::Rejected { count, first } = &error else {
        panic!("expected a rejection, got {error}");
    };
    assert_eq!((*count, first.id.as_str(), first.status), (1, "b", 400));
    assert!(error.to_string().contains("stall_ration"), "{error}");
    assert_eq!(
        sent_ids(&spec, &shared.lock().unwrap().received),
        vec![vec!["a", "b", "c"], vec!["c"]]
    );
}

#[tokio::test]
async fn whole_requests_refused_for_now_are_sent_again() {
    let spec = Spec::load();
    let too_many =
        json!({"error": {"type": "es_rejected_execution_exception", "reason": "rejected execution"}, "status": 429});
    let unavailable = json!({"error": {"type": "unavailable_shards_exception", "reason": "primary shard is not active"}, "status": 503});
    let script = vec![
        (429, too_many),
        (503, unavailable),
        (200, bulk_response(vec![ok_item("a"), ok_item("b")])),
    ];
    check_script(&spec, "post", "/_bulk", &script);
    let (url, shared) = responder(script).await;
    let report = sink(&url, |_| {}).write(&docs(&["a", "b"])).await.unwrap();
    assert_eq!((report.written, report.requests), (2, 1));
    assert_eq!(sent_ids(&spec, &shared.lock().unwrap().received).len(), 3);
}

#[tokio::test]
async fn a_bad_request_is_not_retried() {
    let bad = json!({"error": {"type": "illegal_argument_exception", "reason": "The bulk request must be terminated by a newline [\\n]"}, "status": 400});
    let (url, shared) = responder(vec![(400, bad)]).await;
    let error = sink(&url, |_| {}).write(&docs(&["a"])).await.unwrap_err();
    assert!(matches!(error, EsError::Http { status: 400, .. }), "{error}");
    assert!(error.to_string().contains("terminated by a newline"));
    assert_eq!(shared.lock().unwrap().received.len(), 1);
}

#[tokio::test]
async fn retries_stop_after_the_retry_time() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let started = std::time::Instant::now();
    let error = sink(&url, |config| config.retry_for_secs = 1)
        .write(&docs(&["a"]))
        .await
        .unwrap_err();
    assert!(matches!(error, EsError::GaveUp { seconds: 1, .. }), "{error}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn item_retries_stop_after_the_retry_time() {
    let script: Vec<(u16, Value)> = (0..200)
        .map(|_| (200, bulk_response(vec![rejected_for_now("a")])))
        .collect();
    let (url, shared) = responder(script).await;
    let error = sink(&url, |config| {
        config.retry_for_secs = 1;
        config.initial_backoff_ms = 50;
        config.max_backoff_ms = 100;
    })
    .write(&docs(&["a"]))
    .await
    .unwrap_err();
    assert!(matches!(error, EsError::GaveUp { seconds: 1, .. }), "{error}");
    let sent = shared.lock().unwrap().received.len();
    assert!(
        (5..=40).contains(&sent),
        "{sent} requests in one second of 50-100 ms back-offs"
    );
}

#[tokio::test]
async fn batches_follow_the_document_limit() {
    let script = vec![
        (200, bulk_response(vec![ok_item("a"), ok_item("b")])),
        (200, bulk_response(vec![ok_item("c"), ok_item("d")])),
        (200, bulk_response(vec![ok_item("e")])),
    ];
    let (url, shared) = responder(script).await;
    let report = sink(&url, |config| config.bulk_max_docs = 2)
        .write(&docs(&["a", "b", "c", "d", "e"]))
        .await
        .unwrap();
    assert_eq!((report.written, report.requests), (5, 3));
    let ids = sent_ids(&Spec::load(), &shared.lock().unwrap().received);
    assert_eq!(ids, vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
}

#[tokio::test]
async fn install_puts_the_lifecycle_then_the_template() {
    let spec = Spec::load();
    let acknowledged = json!({"acknowledged": true});
    check_script(
        &spec,
        "put",
        "/_index_template/qoe-rollups-v1",
        &[(200, acknowledged.clone())],
    );
    let (url, shared) = responder(vec![(200, acknowledged.clone()), (200, acknowledged)]).await;
    sink(&url, |_| {}).install(rollup_mappings()).await.unwrap();
    let received = shared.lock().unwrap().received.clone();
    assert_eq!(received.len(), 2);
    assert_eq!(
        (received[0].method.as_str(), received[0].path.as_str()),
        ("PUT", "/_ilm/policy/qoe-rollups-v1")
    );
    assert_eq!(
        (received[1].method.as_str(), received[1].path.as_str()),
        ("PUT", "/_index_template/qoe-rollups-v1")
    );
    let template: Value = serde_json::from_str(&received[1].body).unwrap();
    assert_eq!(
        spec.check_request("PUT", &received[1].path, &[], Some(&template)),
        Vec::<String>::new()
    );
    assert_eq!(template["template"]["mappings"]["dynamic"], "strict");

    // A cluster without ILM (serverless) refuses the policy: the error says what to do.
    let no_ilm = json!({"error": {"type": "api_not_available_exception", "reason": "Request for uri [/_ilm/policy/qoe-rollups-v1] with method [PUT] exists but is not available when running in serverless mode"}, "status": 410});
    let (url, _) = responder(vec![(410, no_ilm)]).await;
    let error = sink(&url, |_| {}).install(rollup_mappings()).await.unwrap_err();
    assert!(error.to_string().contains("--es-retention none"), "{error}");
    let (url, shared) = responder(vec![(200, json!({"acknowledged": true}))]).await;
    sink(&url, |config| config.retention = Retention::None)
        .install(rollup_mappings())
        .await
        .unwrap();
    assert_eq!(
        shared.lock().unwrap().received[0].path,
        "/_index_template/qoe-rollups-v1"
    );
}
