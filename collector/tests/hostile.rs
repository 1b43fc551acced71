//! The attacks of a hostile client, each reproduced on 127.0.0.1 in bounded time against a collector
//! with lowered limits (a few hundred sockets, not 20,000), over librdkafka's mock cluster:
//! sockets that send nothing or stop mid-headers, a body that stops, a declared 10 GB body, bodies
//! that stall to hold memory, junk that would amplify into dead letters, control characters in ids,
//! wrong-key floods, and the answers hyper gives by itself. Each test shows the documented answer
//! ("Hostile clients" in docs/collector.md) and its counter.

mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use qoe_collector::CollectorConfig;
use support::{beacon, config, read_topic, Collector, BEACONS, DLQ, SECRET};

fn cluster() -> (MockCluster<'static, rdkafka::producer::DefaultProducerContext>, String) {
    support::mock_cluster(1)
}

/// The value of the metric line `name` (with its labels), or 0 when absent.
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Reads what the server sends until it closes the connection or `within` passes; `None` on timeout.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&received).into_owned()),
            Ok(Ok(read)) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

/// The status code of a raw HTTP/1.1 answer.
fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The JSON body of a raw HTTP/1.1 answer.
fn body_of(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not a JSON body: {body:?}"))
}

fn post_head(address: SocketAddr, content_length: u64) -> String {
    format!(
        "POST /v1/beacons HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {SECRET}\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

async fn valid_post_succeeds(collector: &Collector, session: &str) {
    let started = Instant::now();
    let (status, _, body) = collector.post(&[beacon(session, 0, "room-a")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a valid POST took {:?}",
        started.elapsed()
    );
}

fn with_connections(brokers: &str, change: impl FnOnce(&mut CollectorConfig)) -> CollectorConfig {
    let mut config = config(brokers);
    change(&mut config);
    config
}

/// 300 sockets that send nothing, or half a header block, against a cap of 40: the idle ones are
/// shed to make room, so a valid POST still gets through at once, and the open count stays at the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_at_the_cap_are_shed_and_a_valid_request_gets_through() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(with_connections(&brokers, |config| {
        config.connections.max_connections = 40;
    }))
    .await;
    let mut sockets = Vec::new();
    for index in 0..300 {
        let mut socket = TcpStream::connect(collector.address).await.unwrap();
        if index % 2 == 0 {
            socket
                .write_all(b"POST /v1/beacons HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
        }
        sockets.push(socket);
    }
    // Give the accept loop a moment to see every connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    valid_post_succeeds(&collector, "s-cap").await;
    let metrics = collector.metrics().await;
    assert!(metric(&metrics, "qoe_collector_open_connections") <= 40.0, "{metrics}");
    assert!(
        metric(&metrics, "qoe_collector_connections_closed_total{reason=\"shed\"}") >= 250.0,
        "{metrics}"
    );
    // The first sockets were shed: the server closed them.
    assert!(read_until_closed(&mut sockets[0], Duration::from_secs(2))
        .await
        .is_some());
    collector.stop().await;
}

/// A socket that sends nothing and one that stops mid-headers are closed after the header timeout,
/// without an answer; a kept-alive socket that sends no second request is closed after the idle
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_and_keep_alive_timeouts_close_silent_sockets() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(with_connections(&brokers, |config| {
        config.connections.header_timeout_secs = 1;
        config.connections.idle_timeout_secs = 2;
    }))
    .await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(collector.address).await.unwrap();
    let mut half = TcpStream::connect(collector.address).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut kept = TcpStream::connect(collector.address).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 1024];
    let read = kept.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..read]).starts_with("HTTP/1.1 200"));

    assert_eq!(
        read_until_closed(&mut silent, Duration::from_secs(5)).await.unwrap(),
        ""
    );
    assert_eq!(read_until_closed(&mut half, Duration::from_secs(5)).await.unwrap(), "");
    let headers_closed = started.elapsed();
    assert!(headers_closed >= Duration::from_millis(900), "{headers_closed:?}");
    assert_eq!(read_until_closed(&mut kept, Duration::from_secs(5)).await.unwrap(), "");
    let kept_closed = started.elapsed();
    assert!(kept_closed >= Duration::from_millis(1900), "{kept_closed:?}");
    assert!(kept_closed < Duration::from_secs(5), "{kept_closed:?}");

    // A fresh client: the harness's pooled connection may itself be at its idle timeout now.
    let metrics = reqwest::get(collector.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // At least these: the test client's own pooled connections may time out too.
    assert!(
        metric(
            &metrics,
            "qoe_collector_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "qoe_collector_connections_closed_total{reason=\"idle_timeout\"}"
        ) >= 1.0,
        "{metrics}"
    );
    collector.stop().await;
}

/// A body that stops short gets 408 `body_timeout` after the body timeout, and the connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_gets_408_and_a_close() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(with_connections(&brokers, |config| {
        config.connections.body_timeout_secs = 1;
    }))
    .await;
    let mut socket = TcpStream::connect(collector.address).await.unwrap();
    socket
        .write_all(post_head(collector.address, 1000).as_bytes())
        .await
        .unwrap();
    socket.write_all(b"{\"beacons\": [").await.unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut socket, Duration::from_secs(5)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(status_of(&answer), 408, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
    let body = body_of(&answer);
    assert_eq!(body["code"], "body_timeout");
    assert_eq!(body["error"], "body: not received within 1 s");
    let metrics = collector.metrics().await;
    assert_eq!(
        metric(&metrics, "qoe_collector_request_errors_total{code=\"body_timeout\"}"),
        1.0
    );
    assert_eq!(metric(&metrics, "qoe_collector_requests_total{status=\"408\"}"), 1.0);
    collector.stop().await;
}

/// A declared `Content-Length` of 10 GB is refused with 413 at once, before any body byte is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_10_gb_body_is_refused_before_it_is_read() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(config(&brokers)).await;
    let mut socket = TcpStream::connect(collector.address).await.unwrap();
    socket
        .write_all(post_head(collector.address, 10_000_000_000).as_bytes())
        .await
        .unwrap();
    let answer = read_until_closed(&mut socket, Duration::from_secs(2))
        .await
        .expect("answered and closed within 2 s");
    assert_eq!(status_of(&answer), 413, "{answer}");
    let body = body_of(&answer);
    assert_eq!(body["code"], "body_too_large");
    assert_eq!(
        body["error"],
        "body: 10000000000 bytes is over the limit of 1048576 bytes"
    );
    collector.stop().await;
}

/// 120 key holders each stop one byte short of their body: what the collector holds stays under
/// `max_inflight_bytes` (the gauge, and the process's resident memory), the requests past the bound
/// get 503 `overloaded` with `Retry-After`, and once the stalled bodies time out a valid POST is
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_hold_at_most_the_inflight_bound() {
    const BODY: usize = 256 * 1024;
    const BOUND: u64 = 2 * 1024 * 1024;
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(with_connections(&brokers, |config| {
        config.limits.max_body_bytes = BODY;
        config.limits.max_decoded_bytes = BODY;
        config.connections.max_inflight_bytes = BOUND;
        config.connections.body_timeout_secs = 3;
    }))
    .await;
    // One copy of the body for every sender, so the senders add nothing to the resident memory.
    let body: std::sync::Arc<[u8]> = vec![b' '; BODY - 1].into();
    let rss_before = resident_bytes();
    let mut stalls = tokio::task::JoinSet::new();
    for _ in 0..120 {
        let address = collector.address;
        let body = std::sync::Arc::clone(&body);
        stalls.spawn(async move {
            let mut socket = TcpStream::connect(address).await.unwrap();
            socket
                .write_all(post_head(address, BODY as u64).as_bytes())
                .await
                .unwrap();
            // The server may answer and close before all of it is taken.
            let _ = tokio::time::timeout(Duration::from_secs(5), socket.write_all(&body)).await;
            read_until_closed(&mut socket, Duration::from_secs(10)).await
        });
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let metrics = collector.metrics().await;
    let held = metric(&metrics, "qoe_collector_inflight_body_bytes");
    assert!(held > 0.0 && held <= BOUND as f64, "{held}");
    let rss_growth = resident_bytes().saturating_sub(rss_before);
    eprintln!("resident memory grew by {rss_growth} bytes while {held} bytes were held");
    // 120 x 256 KiB = 30 MiB were sent; unbounded, the collector would hold all of it.
    assert!(
        rss_growth < 20 * 1024 * 1024,
        "resident memory grew by {rss_growth} bytes"
    );

    let mut statuses = Vec::new();
    while let Some(answer) = stalls.join_next().await {
        if let Some(answer) = answer.unwrap().filter(|answer| !answer.is_empty()) {
            statuses.push(status_of(&answer));
            if status_of(&answer) == 503 {
                assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
                assert_eq!(body_of(&answer)["code"], "overloaded");
            }
        }
    }
    let overloaded = statuses.iter().filter(|status| **status == 503).count();
    let timed_out = statuses.iter().filter(|status| **status == 408).count();
    assert!(overloaded >= 100, "{statuses:?}");
    assert!(timed_out >= 1, "{statuses:?}");
    assert_eq!(overloaded + timed_out, 120, "{statuses:?}");
    valid_post_succeeds(&collector, "s-after-stalls").await;
    let metrics = collector.metrics().await;
    assert_eq!(metric(&metrics, "qoe_collector_inflight_body_bytes"), 0.0, "{metrics}");
    collector.stop().await;
}

/// The process's resident set size, from `/proc/self/status`.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A gzip body of a few KB holding 500 junk strings of 16 KB: every item is refused and listed, and
/// the dead letters written stay within twice the bytes sent (plus one letter and a summary of
/// the rest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_cannot_amplify_into_dead_letters() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(config(&brokers)).await;
    let junk = format!("\"{}\"", "A".repeat(16 * 1024));
    let batch = format!("{{\"beacons\": [{}]}}", vec![junk; 500].join(","));
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(batch.as_bytes()).unwrap();
    let gzip = encoder.finish().unwrap();
    assert!(gzip.len() < 20_000, "{}", gzip.len());
    let response = collector
        .client
        .post(collector.url("/v1/beacons"))
        .header("authorization", format!("Bearer {SECRET}"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["rejected"].as_array().unwrap().len(), 500);

    let letters = read_topic(&brokers, DLQ, 2);
    let written: usize = letters.iter().map(|(_, letter)| letter.to_string().len()).sum();
    // Twice the body (at least 8 KiB), one letter of 4 KiB over it and the summary.
    assert!(
        written < (2 * gzip.len()).max(8192) + 6 * 1024,
        "{written} bytes of dead letters for {} bytes sent",
        gzip.len()
    );
    let summary = letters
        .iter()
        .map(|(_, letter)| letter)
        .find(|letter| letter["reason"] == "omitted")
        .expect("a summary of the letters not written");
    assert_eq!(
        summary["omitted"]["malformed"].as_u64().unwrap() as usize + letters.len() - 1,
        500,
        "{summary}"
    );
    let first = letters
        .iter()
        .map(|(_, letter)| letter)
        .find(|letter| letter["reason"] != "omitted")
        .unwrap();
    assert_eq!(first["size"], 16 * 1024 + 2);
    assert_eq!(first["truncated"], true);
    collector.stop().await;
}

/// Control characters (C0, bidi overrides), blank values and edge whitespace in ids and dimensions
/// are refused with the field named and reason `invalid_text`; the good beacon beside them is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_and_blank_values_are_refused_naming_the_field() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(config(&brokers)).await;
    let with = |field: &str, value: &str| {
        let mut bad = beacon("s-text", 1, "room-t");
        bad[field] = json!(value);
        bad
    };
    let beacons = vec![
        with("room_id", "room\nb"),
        with("room_id", "\u{202E}moor"),
        with("session_id", "s\u{0000}"),
        with("cdn", "   "),
        with("cdn", " cdn-a"),
        beacon("s-text", 0, "room-t"),
    ];
    let (status, _, body) = collector.post(&beacons).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 1);
    let errors: Vec<&str> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rejected| rejected["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors,
        [
            "room_id: contains the control character U+000A, got \"room\\nb\"",
            "room_id: contains the control character U+202E, got \"\\u{202e}moor\"",
            "session_id: contains the control character U+0000, got \"s\\0\"",
            "cdn: must not be blank, got \"   \"",
            "cdn: must not start or end with whitespace (U+0020), got \" cdn-a\"",
        ]
    );
    let metrics = collector.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "qoe_collector_beacons_rejected_total{reason=\"invalid_text\"}"
        ),
        5.0,
        "{metrics}"
    );
    let stored = read_topic(&brokers, BEACONS, 1);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1["session_id"], "s-text");
    collector.stop().await;
}

/// Wrong keys from one address: the first `auth_failures_burst` get 401, then 429
/// `auth_rate_limited` with `Retry-After` (even with a valid key, so guessing gains nothing), and
/// another address is not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_limited_per_address() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(with_connections(&brokers, |config| {
        config.rate_limit.auth_failures_per_sec = 1;
        config.rate_limit.auth_failures_burst = 5;
        config.trust_forwarded_for = true;
    }))
    .await;
    let attempt = |key: &'static str, from: &'static str| {
        collector
            .client
            .post(collector.url("/v1/beacons"))
            .header("authorization", format!("Bearer {key}"))
            .header("x-forwarded-for", from)
            .header("content-type", "application/json")
            .body(json!({"beacons": [beacon("s-auth", 0, "room-a")]}).to_string())
            .send()
    };
    for _ in 0..5 {
        assert_eq!(attempt("wrong", "198.51.100.7").await.unwrap().status(), 401);
    }
    let limited = attempt("wrong", "198.51.100.7").await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let body: Value = serde_json::from_slice(&limited.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], "auth_rate_limited");
    assert_eq!(attempt(SECRET, "198.51.100.7").await.unwrap().status(), 429);
    assert_eq!(attempt(SECRET, "198.51.100.8").await.unwrap().status(), 200);
    let metrics = collector.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "qoe_collector_request_errors_total{code=\"auth_rate_limited\"}"
        ),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "qoe_collector_request_errors_total{code=\"unknown_key\"}"),
        5.0
    );
    collector.stop().await;
}

/// With `metrics_listen`, `/metrics` answers there and 404 on the public address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listen_takes_metrics_off_the_public_port() {
    let (_cluster, brokers) = cluster();
    let metrics_address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let collector = Collector::start(with_connections(&brokers, |config| {
        config.metrics_listen = Some(metrics_address);
    }))
    .await;
    assert_eq!(collector.get("/metrics").await.0, 404);
    let response = reqwest::get(format!("http://{metrics_address}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("qoe_collector_open_connections"));
    collector.stop().await;
}

/// hyper answers an unparsable request (400), a URI over its limit (414) and a header block over
/// the buffer limit (431) before any handler runs: each is counted in `qoe_collector_requests_total`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_hyper_gives_by_itself_are_counted() {
    let (_cluster, brokers) = cluster();
    let collector = Collector::start(config(&brokers)).await;
    let requests = [
        (b"NOT HTTP AT ALL\r\n\r\n".to_vec(), 400),
        (
            format!("GET /healthz?{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000)).into_bytes(),
            414,
        ),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "b".repeat(200_000)
            )
            .into_bytes(),
            431,
        ),
    ];
    for (request, expected) in requests {
        let mut socket = TcpStream::connect(collector.address).await.unwrap();
        let _ = socket.write_all(&request).await;
        let answer = read_until_closed(&mut socket, Duration::from_secs(5)).await.unwrap();
        assert_eq!(status_of(&answer), expected, "{answer}");
    }
    let metrics = collector.metrics().await;
    for status in ["400", "414", "431"] {
        assert_eq!(
            metric(
                &metrics,
                &format!("qoe_collector_requests_total{{status=\"{status}\"}}")
            ),
            1.0,
            "{status}: {metrics}"
        );
    }
    collector.stop().await;
}
