//! The live suite: against a real Elasticsearch cluster named by `ES_URL` (with `ES_USERNAME` and
//! `ES_PASSWORD`, or `ES_API_KEY`; `ES_RETENTION=none` on a serverless project). No cluster can run
//! on the development machines, so `scripts/test.sh` runs these tests only when `ES_URL` is set,
//! and says so when it is not. Each test uses its own index prefix and removes what it created.

use qoe_es::bulk::BulkDoc;
use qoe_es::request::{EsBody, EsRequest, Method};
use qoe_es::template::rollup_mappings;
use qoe_es::{EsConfig, EsError, EsMetrics, EsSink, Retention};
use serde_json::{json, Value};

fn live_config() -> EsConfig {
    let url = std::env::var("ES_URL").expect("the live suite needs ES_URL");
    let prefix = format!(
        "qoe-live-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    EsConfig {
        url,
        username: std::env::var("ES_USERNAME").ok(),
        password: std::env::var("ES_PASSWORD").ok(),
        api_key: std::env::var("ES_API_KEY").ok(),
        index_prefix: prefix,
        retention: match std::env::var("ES_RETENTION").as_deref() {
            Ok("none") => Retention::None,
            _ => Retention::Ilm,
        },
        retry_for_secs: 60,
        ..EsConfig::default()
    }
}

fn request(method: Method, path: String, body: Option<Value>) -> EsRequest {
    EsRequest {
        method,
        path,
        query: Vec::new(),
        body: body.map(EsBody::Json),
        in_spec: true,
    }
}

fn golden_docs() -> Vec<qoe_rollup::RollupDoc> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../rollup/tests/golden/basic/expected.ndjson"
    );
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn bulk_docs(config: &EsConfig, docs: &[qoe_rollup::RollupDoc]) -> Vec<BulkDoc> {
    docs.iter()
        .map(|doc| {
            let start = qoe_schemas::time::parse_rfc3339_utc(&doc.timestamp).unwrap();
            BulkDoc::new(config.index_for(start), doc.id(), doc).unwrap()
        })
        .collect()
}

async fn clean_up(sink: &EsSink) {
    let config = sink.config();
    let deletes = [
        format!("/{}-v1-*", config.index_prefix),
        format!("/_index_template/{}", config.template_name()),
        format!("/_ilm/policy/{}", config.template_name()),
    ];
    for path in deletes {
        let _ = sink.run(&request(Method::Delete, path, None)).await;
    }
}

#[tokio::test]
#[ignore = "needs a real Elasticsearch cluster in ES_URL (scripts/test.sh runs it when set)"]
async fn live_es_writes_overwrite_by_id_and_dashboards_read_them() {
    let config = live_config();
    let sink = EsSink::new(config.clone(), EsMetrics::new(&prometheus::Registry::new())).unwrap();
    sink.install(rollup_mappings()).await.unwrap();
    let docs = golden_docs();
    let report = sink.write(&bulk_docs(&config, &docs)).await.unwrap();
    assert_eq!(report.written, docs.len());
    // Written again (a replay): the same documents, not twice as many.
    sink.write(&bulk_docs(&config, &docs)).await.unwrap();
    let alias = config.alias();
    sink.run(&request(Method::Post, format!("/{alias}/_refresh"), None))
        .await
        .unwrap();
    let count = sink
        .run(&request(Method::Post, format!("/{alias}/_count"), None))
        .await
        .unwrap();
    assert_eq!(count["count"].as_u64(), Some(docs.len() as u64));

    // The dashboards' search: per-CDN plays per minute equal the documents' sums.
    let search = qoe_es::searches::cdn_quality_over_time(&alias, "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z");
    let answer = sink.run(&search).await.unwrap();
    let mut plays_from_es = 0.0;
    for minute in answer["aggregations"]["per_minute"]["buckets"].as_array().unwrap() {
        for cdn in minute["per_cdn"]["buckets"].as_array().unwrap() {
            plays_from_es += cdn["play_starts"]["value"].as_f64().unwrap();
        }
    }
    let plays: u64 = docs
        .iter()
        .filter(|doc| doc.grain == qoe_rollup::Grain::Cdn && doc.is_final)
        .map(|doc| doc.play_starts)
        .sum();
    assert_eq!(plays_from_es as u64, plays);

    // The strict mapping refuses an unknown field, and the sink reports it.
    let mut stray = serde_json::to_value(&docs[0]).unwrap();
    stray["stall_ration"] = json!(0.5);
    let index = bulk_docs(&config, &docs[..1])[0].index.clone();
    let error = sink
        .write(&[BulkDoc::new(index, "stray".to_string(), &stray).unwrap()])
        .await
        .unwrap_err();
    assert!(matches!(error, EsError::Rejected { .. }), "{error}");
    clean_up(&sink).await;
}
