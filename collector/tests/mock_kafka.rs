//! The collector against librdkafka's in-process mock cluster: the real Kafka protocol over loopback,
//! with fault injection. Covers every status of the request contract, enrichment, the dead-letter
//! topic, and the durability promise when the brokers go down mid-load.

#![allow(clippy::type_complexity)] // the request tables below read best as tuples

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use serde_json::{json, Value};

use support::{beacon, config, read_topic, Collector, BEACONS, DLQ, SECRET};

fn cluster() -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String) {
    support::mock_cluster(3)
}

async fn raw_post(
    collector: &Collector,
    query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = collector.client.post(collector.url(&format!("/v1/beacons{query}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
    (status, headers, body)
}

const AUTH: (&str, &str) = ("authorization", "Bearer test-secret-1");
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_beacons_are_produced_enriched_and_bad_ones_go_to_the_dead_letter_topic() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(config(&brokers)).await;
    let mut bad_type = beacon("s1", 3, "room-b");
    bad_type["type"] = json!("play_pause");
    let mut negative_seq = beacon("s1", 4, "room-b");
    negative_seq["seq"] = json!(-1);
    let beacons = vec![
        beacon("s1", 0, "room-a"),
        bad_type,
        beacon("s1", 1, "room-a"),
        negative_seq,
        beacon("s2", 0, "room-b"),
    ];
    let (status, _, body) = collector.post(&beacons).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 3);
    assert_eq!(body["rejected"][0]["index"], 1);
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .starts_with("type: unknown beacon type \"play_pause\""),
        "{body}"
    );
    assert_eq!(
        body["rejected"][1],
        json!({"index": 3, "error": "seq: must be >= 0, got -1"})
    );

    let records = read_topic(&brokers, BEACONS, 3);
    assert_eq!(records.len(), 3);
    for (key, record) in &records {
        assert_eq!(key.as_deref(), record["room_id"].as_str(), "record key is the room id");
        assert_eq!(record["key_id"], "test");
        assert_eq!(record["client_subnet"], "127.0.0.0/24");
        assert!(record["received_at"].as_u64().unwrap() >= record["event_time"].as_u64().unwrap());
        assert!(qoe_schemas::validate(strip_enrichment(record.clone())).is_ok());
    }
    let letters = read_topic(&brokers, DLQ, 2);
    assert_eq!(letters.len(), 2);
    let reasons: HashSet<_> = letters
        .iter()
        .map(|(_, letter)| letter["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, HashSet::from(["out_of_range".to_string()]));
    assert!(letters.iter().all(|(key, _)| key.as_deref() == Some("room-b")));

    let metrics = collector.metrics().await;
    assert!(
        metrics.contains("qoe_collector_beacons_accepted_total{type=\"play_heartbeat\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("qoe_collector_beacons_rejected_total{reason=\"out_of_range\"} 2"));
    assert!(metrics.contains("qoe_collector_requests_total{status=\"200\"} 1"));
    assert!(metrics.contains("qoe_collector_kafka_up_bool 1"));
    collector.stop().await;
}

/// End beacons that cover no time (the session ended right at a heartbeat) are accepted and stored as
/// sent; a heartbeat of 0 ms, and an end of 0 ms with a stall counted in it, are refused with the field
/// named and go to the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_beacons_that_cover_no_time_are_accepted_and_a_zero_heartbeat_is_not() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(config(&brokers)).await;
    let ts = support::now_ms() - 1_000;
    let common = json!({"v": 1, "ts": ts, "room_id": "room-z", "platform": "web", "cdn": "cdn-a"});
    let with = |fields: Value| {
        let mut beacon = common.clone();
        for (key, value) in fields.as_object().unwrap() {
            beacon[key] = value.clone();
        }
        beacon
    };
    let zeros = json!({"interval_ms": 0, "watch_ms": 0, "stall_ms": 0, "stall_count": 0, "dropped_frames": 0});
    let mut play_end = with(
        json!({"type": "play_end", "session_id": "v1", "seq": 9, "reason": "exit",
                                    "first_frame_seen": true}),
    );
    let mut ebvs = with(
        json!({"type": "play_end", "session_id": "v2", "seq": 1, "reason": "exit",
                                "first_frame_seen": false}),
    );
    let mut zero_heartbeat = with(json!({"type": "play_heartbeat", "session_id": "v3", "seq": 4}));
    let mut stall_in_nothing = with(
        json!({"type": "play_end", "session_id": "v3", "seq": 5, "reason": "exit",
                                            "first_frame_seen": true}),
    );
    for beacon in [&mut play_end, &mut ebvs, &mut zero_heartbeat, &mut stall_in_nothing] {
        for (key, value) in zeros.as_object().unwrap() {
            beacon[key] = value.clone();
        }
    }
    zero_heartbeat.as_object_mut().unwrap().remove("dropped_frames");
    stall_in_nothing["stall_count"] = json!(1);
    let push_end = with(
        json!({"type": "push_end", "session_id": "p1", "seq": 30, "reason": "ended",
                                "interval_ms": 0, "stall_ms": 0, "stall_count": 0, "dropped_frames": 0}),
    );
    let beacons = vec![
        play_end.clone(),
        zero_heartbeat,
        ebvs.clone(),
        stall_in_nothing,
        push_end.clone(),
    ];
    let (status, _, body) = collector.post(&beacons).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 3, "{body}");
    assert_eq!(
        body["rejected"],
        json!([
            {"index": 1, "error": "interval_ms: must be >= 1 on play_heartbeat beacons, got 0"},
            {"index": 3, "error": "stall_count: must be 0 when interval_ms is 0, got 1"}
        ])
    );

    let mut stored: Vec<Value> = read_topic(&brokers, BEACONS, 3)
        .into_iter()
        .map(|(_, record)| strip_enrichment(record))
        .collect();
    stored.sort_by_key(|record| record["session_id"].as_str().unwrap().to_string());
    let mut sent = vec![push_end, play_end, ebvs];
    sent.sort_by_key(|record| record["session_id"].as_str().unwrap().to_string());
    assert_eq!(
        stored, sent,
        "stored exactly as sent, with nothing but the enrichment added"
    );
    let letters = read_topic(&brokers, DLQ, 2);
    let mut reasons: Vec<_> = letters
        .iter()
        .map(|(_, letter)| letter["reason"].as_str().unwrap().to_string())
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["inconsistent", "out_of_range"]);
    let metrics = collector.metrics().await;
    for line in [
        "qoe_collector_beacons_accepted_total{type=\"play_end\"} 2",
        "qoe_collector_beacons_accepted_total{type=\"push_end\"} 1",
        "qoe_collector_beacons_rejected_total{reason=\"inconsistent\"} 1",
        "qoe_collector_beacons_rejected_total{reason=\"out_of_range\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    collector.stop().await;
}

fn strip_enrichment(mut record: Value) -> Value {
    for field in qoe_schemas::fields::ENRICHMENT_FIELDS {
        record.as_object_mut().unwrap().remove(*field);
    }
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_encoding_and_format_is_accepted() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(config(&brokers)).await;
    let ndjson: String = (0..5).map(|seq| format!("{}\n", beacon("nd", seq, "r"))).collect();
    let batch = json!({"beacons": [beacon("js", 0, "r"), beacon("js", 1, "r")]}).to_string();

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(ndjson.as_bytes()).unwrap();
    let gzipped = gzip.finish().unwrap();
    let zstded = zstd::encode_all(batch.as_bytes(), 3).unwrap();

    let ndjson_type = ("content-type", "application/x-ndjson");
    let cases: Vec<(&str, Vec<(&str, &str)>, Vec<u8>, u64)> = vec![
        ("", vec![AUTH, ndjson_type], ndjson.clone().into_bytes(), 5),
        ("", vec![AUTH, ndjson_type, ("content-encoding", "gzip")], gzipped, 5),
        ("", vec![AUTH, JSON, ("content-encoding", "zstd")], zstded, 2),
        // Browsers' sendBeacon: key in the query string, text/plain body.
        (
            "?key=test-secret-1",
            vec![("content-type", "text/plain;charset=UTF-8")],
            batch.into_bytes(),
            2,
        ),
    ];
    for (query, headers, body, expected) in cases {
        let (status, response_headers, response) = raw_post(&collector, query, &headers, body).await;
        assert_eq!(status, 200, "{headers:?}: {response}");
        assert_eq!(response["accepted"], expected, "{headers:?}");
        assert_eq!(response_headers["access-control-allow-origin"], "*");
    }
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_problems_get_their_status_and_a_message() {
    let (_cluster, brokers) = cluster();
    let mut config = config(&brokers);
    config.limits.max_body_bytes = 64 * 1024;
    config.limits.max_decoded_bytes = 256 * 1024;
    config.limits.max_beacons = 50;
    let collector = Collector::start(config).await;
    let one = json!({"beacons": [beacon("s", 0, "r")]}).to_string().into_bytes();

    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; 50 * 1024 * 1024]).unwrap();
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 64 * 1024, "the bomb itself fits the body limit");
    let too_many = json!({"beacons": (0..51).map(|seq| beacon("s", seq, "r")).collect::<Vec<_>>()});

    let cases: Vec<(&str, Vec<(&str, &str)>, Vec<u8>, u16, &str)> = vec![
        ("", vec![JSON], one.clone(), 401, "authorization: missing write key"),
        (
            "",
            vec![("authorization", "Bearer nope-nope"), JSON],
            one.clone(),
            401,
            "authorization: unknown write key",
        ),
        (
            "?key=wrong-key",
            vec![JSON],
            one.clone(),
            401,
            "authorization: unknown write key",
        ),
        (
            "",
            vec![AUTH, ("content-type", "application/xml")],
            one.clone(),
            415,
            "content-type: \"application/xml\" is not supported",
        ),
        (
            "",
            vec![AUTH, JSON, ("content-encoding", "br")],
            one.clone(),
            415,
            "content-encoding: \"br\" is not supported",
        ),
        (
            "",
            vec![AUTH, JSON],
            b"{\"beacons\": [".to_vec(),
            400,
            "body: not a JSON batch",
        ),
        ("", vec![AUTH, JSON], b"[1, 2]".to_vec(), 400, "body: not a JSON batch"),
        (
            "",
            vec![AUTH, ("content-type", "application/x-ndjson")],
            b"nope\nnope\n".to_vec(),
            400,
            "body: not NDJSON",
        ),
        (
            "",
            vec![AUTH, JSON, ("content-encoding", "gzip")],
            one.clone(),
            400,
            "body: not valid gzip data",
        ),
        (
            "?sent_at=yesterday",
            vec![AUTH, JSON],
            one.clone(),
            400,
            "sent_at: \"yesterday\" is not an epoch-ms time",
        ),
        (
            "",
            vec![AUTH, JSON],
            b"{\"sent_at\": 1, \"beacons\": []}".to_vec(),
            400,
            "sent_at: 1 is not an epoch-ms time",
        ),
        (
            "",
            vec![AUTH, JSON],
            vec![b' '; 65 * 1024],
            413,
            "body: 66560 bytes is over the limit of 65536 bytes",
        ),
        (
            "",
            vec![AUTH, JSON, ("content-encoding", "gzip")],
            bomb,
            413,
            "body: decompresses to more than the limit of 262144 bytes",
        ),
        (
            "",
            vec![AUTH, JSON],
            too_many.to_string().into_bytes(),
            413,
            "beacons: more than 50 beacons in one request, the limit is 50",
        ),
    ];
    for (query, headers, body, status, message) in cases {
        let (got, response_headers, response) = raw_post(&collector, query, &headers, body).await;
        assert_eq!(got, status, "{query} {headers:?}: {response}");
        let error = response["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(message),
            "{query} {headers:?}: {error:?} does not start with {message:?}"
        );
        assert!(response["code"].is_string());
        if status == 401 {
            assert_eq!(response_headers["www-authenticate"], "Bearer");
        }
    }
    let metrics = collector.metrics().await;
    assert!(
        metrics.contains("qoe_collector_requests_total{status=\"413\"} 3"),
        "{metrics}"
    );
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let (_cluster, brokers) = cluster();
    let mut config = config(&brokers);
    config.rate_limit.beacons_per_sec = 10;
    config.rate_limit.burst = 20;
    config.limits.max_beacons = 20;
    let collector = Collector::start(config).await;
    let batch: Vec<Value> = (0..15).map(|seq| beacon("s", seq, "r")).collect();
    let (status, _, _) = collector.post(&batch).await;
    assert_eq!(status, 200);
    let (status, retry_after, body) = collector.post(&batch).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(body["error"]
        .as_str()
        .unwrap()
        .starts_with("rate limit: write key \"test\" is over 10 beacons/s"));
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_health_and_readiness() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(config(&brokers)).await;
    let response = collector
        .client
        .request(reqwest::Method::OPTIONS, collector.url("/v1/beacons"))
        .header("origin", "https://player.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    assert!(response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let health = collector.client.get(collector.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = collector.client.get(collector.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_pass_through_option_stops_the_start_with_its_name() {
    let (_cluster, brokers) = cluster();
    let mut config = config(&brokers);
    config.kafka.options.insert("no.such.property".into(), "1".into());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = qoe_collector::serve(listener, config, Default::default())
        .await
        .unwrap_err();
    // The message says which client; the cause, printed once further down the chain, names the
    // property.
    assert_eq!(error.to_string(), "kafka producer");
    let mut chain = Vec::new();
    let mut cause: Option<&dyn std::error::Error> = Some(&error);
    while let Some(current) = cause {
        chain.push(current.to_string());
        cause = current.source();
    }
    assert!(chain.iter().any(|text| text.contains("no.such.property")), "{chain:?}");
    assert_eq!(
        chain.iter().filter(|text| text.contains("no.such.property")).count(),
        1,
        "the cause is printed once: {chain:?}"
    );
}

/// Brokers go down in the middle of a load: requests get 503 with Retry-After (never a 200 for beacons
/// Kafka does not have), and once the brokers are back, every beacon of every 200 is in the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_down_mid_load_give_503_and_lose_nothing_acknowledged() {
    let (cluster, brokers) = cluster();
    let mut config = config(&brokers);
    config.kafka.produce_timeout_ms = 2_000;
    let collector = Collector::start(config).await;

    let mut acknowledged = HashSet::new();
    let mut statuses = Vec::new();
    let mut seq = 0u64;
    // 15 rounds before the outage, 25 during it, then rounds until at least 5 batches were
    // acknowledged after the brokers came back (librdkafka reconnects with a backoff of up to 10 s,
    // longer on a loaded machine), and at least 60 rounds in all; at most 200 rounds.
    let mut round = 0;
    loop {
        if round == 15 {
            for broker in 1..=3 {
                cluster.broker_down(broker).unwrap();
            }
        }
        if round == 40 {
            for broker in 1..=3 {
                cluster.broker_up(broker).unwrap();
            }
        }
        let batch: Vec<Value> = (0..20)
            .map(|_| {
                seq += 1;
                beacon("load", seq, &format!("room-{}", seq % 7))
            })
            .collect();
        let (status, retry_after, body) = collector.post(&batch).await;
        statuses.push(status);
        match status {
            200 => {
                assert_eq!(body["accepted"], 20);
                acknowledged.extend(batch.iter().map(|b| b["seq"].as_u64().unwrap()));
            }
            503 => {
                assert_eq!(retry_after.as_deref(), Some("5"));
                assert!(
                    body["error"].as_str().unwrap().starts_with("kafka unavailable"),
                    "{body}"
                );
            }
            other => panic!("unexpected status {other}: {body}"),
        }
        if round >= 40 && status == 503 {
            // Give the health probe time to see the brokers again.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        round += 1;
        let acknowledged_after = statuses
            .get(40..)
            .unwrap_or_default()
            .iter()
            .filter(|s| **s == 200)
            .count();
        if (round >= 60 && status == 200 && acknowledged_after >= 5) || round >= 200 {
            break;
        }
    }
    assert!(statuses[..15].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[16..40].iter().all(|s| *s == 503), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");

    let stored: HashSet<u64> = read_topic(&brokers, BEACONS, acknowledged.len())
        .iter()
        .map(|(_, record)| record["seq"].as_u64().unwrap())
        .collect();
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    // 15 rounds before the outage, and at least 5 after the brokers came back.
    assert!(acknowledged.len() >= 20 * 20, "{} acknowledged", acknowledged.len());
    let metrics = collector.metrics().await;
    assert!(metrics.contains("qoe_collector_kafka_up_bool 1"));
    collector.stop().await;
    let _ = SECRET;
}

/// Shutdown: a request in flight still gets its 200 (Kafka acknowledged it), and `serve` returns
/// once the producer is flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_requests_in_flight_then_stops() {
    let (cluster, brokers) = cluster();
    let collector = Collector::start(config(&brokers)).await;
    // Slow the brokers down so that the request is still waiting for its acknowledgement when the
    // shutdown starts.
    for broker in 1..=3 {
        cluster
            .broker_round_trip_time(broker, Duration::from_millis(700))
            .unwrap();
    }
    let client = collector.client.clone();
    let url = collector.url("/v1/beacons");
    let in_flight = tokio::spawn(async move {
        let body = json!({"beacons": [beacon("shutdown", 0, "r")]}).to_string();
        let response = client
            .post(url)
            .header(AUTH.0, AUTH.1)
            .header(JSON.0, JSON.1)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        (status, body)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    collector.shutdown.cancel();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(1)), "{body}");
    tokio::time::timeout(Duration::from_secs(30), collector.handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(read_topic(&brokers, BEACONS, 1).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_cors_headers_and_the_proxy_address_is_the_last_forwarded_entry() {
    let (_cluster, brokers) = cluster();
    let mut config = config(&brokers);
    config.trust_forwarded_for = true;
    let collector = Collector::start(config).await;
    let (status, headers, _) = raw_post(&collector, "", &[JSON], b"{}".to_vec()).await;
    assert_eq!(status, 401);
    assert_eq!(headers["access-control-allow-origin"], "*");
    let body = json!({"beacons": [beacon("xff", 0, "r")]}).to_string().into_bytes();
    let forwarded = ("x-forwarded-for", "10.9.9.9, 198.51.100.77");
    let (status, _, response) = raw_post(&collector, "", &[AUTH, JSON, forwarded], body).await;
    assert_eq!(status, 200, "{response}");
    let records = read_topic(&brokers, BEACONS, 1);
    assert_eq!(records[0].1["client_subnet"], "198.51.100.0/24");
    collector.stop().await;
}
