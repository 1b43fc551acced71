//! The targets of `run`: NDJSON files, discard, and HTTP against a mock collector that decodes
//! requests with the real wire code and validates every beacon.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use qoe_schemas::wire::{self, BodyFormat, ContentEncoding, Item, Limits};
use qoe_schemas::Beacon;
use qoe_simulator::{generate, run, Pause, SimConfig, Target};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const WRITE_KEY: &str = "test-key";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn small_config(target: Target) -> SimConfig {
    SimConfig {
        seed: 8,
        start_ms: now_ms() - 3 * 3_600_000,
        duration_ms: 5 * 60_000,
        rooms: 4,
        viewers: 60,
        target,
        ..SimConfig::default()
    }
}

/// What the mock collector saw.
#[derive(Default)]
struct Seen {
    requests: u64,
    beacons: Vec<serde_json::Value>,
    /// For each accepted beacon, its `ts` and the real clock when it arrived.
    arrivals: Vec<(u64, u64)>,
    problems: Vec<String>,
}

#[derive(Default)]
struct Mock {
    /// Answer 429 to the first request.
    throttle_first: bool,
    seen: Mutex<Seen>,
}

async fn collect(State(mock): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived_at = now_ms();
    let mut seen = mock.seen.lock().unwrap();
    seen.requests += 1;
    let authorization = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok());
    if authorization != Some(&format!("Bearer {WRITE_KEY}")) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "authorization: unknown write key"})),
        )
            .into_response();
    }
    if mock.throttle_first && seen.requests == 1 {
        return (StatusCode::TOO_MANY_REQUESTS, [(header::RETRY_AFTER, "1")], "slow down").into_response();
    }
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|value: &header::HeaderValue| value.to_str().ok())
    };
    let decoded = ContentEncoding::parse(header_text(header::CONTENT_ENCODING))
        .and_then(|encoding| wire::decompress(&body, encoding, &Limits::default()))
        .and_then(|decoded| {
            BodyFormat::parse(header_text(header::CONTENT_TYPE))
                .and_then(|format| wire::parse_batch(&decoded, format, &Limits::default()))
        });
    let batch = match decoded {
        Ok(batch) => batch,
        Err(error) => {
            seen.problems.push(error.to_string());
            return (StatusCode::BAD_REQUEST, error.to_string()).into_response();
        }
    };
    match batch.sent_at {
        Some(sent_at) if sent_at.abs_diff(arrived_at) < 60_000 => {}
        other => seen.problems.push(format!("sent_at {other:?} is not the real clock")),
    }
    let mut accepted = 0;
    let mut rejected = Vec::new();
    for (index, item) in batch.items.into_iter().enumerate() {
        let Item::Json(text) = item else {
            rejected.push(json!({"index": index, "error": "not json"}));
            continue;
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        match qoe_schemas::parse_beacon(&text) {
            Ok(beacon) => {
                accepted += 1;
                seen.arrivals.push((beacon.ts, arrived_at));
            }
            Err(error) => rejected.push(json!({"index": index, "error": error.to_string()})),
        }
        seen.beacons.push(value);
    }
    Json(json!({"accepted": accepted, "rejected": rejected})).into_response()
}

async fn start_mock(mock: Arc<Mock>) -> SocketAddr {
    let router = Router::new().route("/v1/beacons", post(collect)).with_state(mock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

fn http_target(address: SocketAddr, write_key: &str) -> Target {
    Target::Http {
        url: format!("http://{address}"),
        write_key: write_key.to_string(),
    }
}

#[tokio::test]
async fn http_sends_every_beacon_gzipped_and_retries_after_429() {
    let mock = Arc::new(Mock {
        throttle_first: true,
        ..Mock::default()
    });
    let address = start_mock(Arc::clone(&mock)).await;
    let config = SimConfig {
        gzip: true,
        invalid_fraction: 0.05,
        batch_size: 250,
        ..small_config(http_target(address, WRITE_KEY))
    };
    let report = run(config.clone(), CancellationToken::new()).await.unwrap();

    let expected: Vec<serde_json::Value> = generate(&config)
        .map(|beacon| serde_json::to_value(beacon).unwrap())
        .collect();
    let seen = mock.seen.lock().unwrap();
    assert!(seen.problems.is_empty(), "{:?}", seen.problems);
    assert_eq!(report.generated, expected.len() as u64);
    assert_eq!(report.sent, report.generated);
    assert_eq!(report.accepted + report.rejected, report.sent, "{report}");
    assert_eq!(report.failed, 0, "{report}");
    assert_eq!(report.retries, 1, "{report}");
    assert_eq!(report.request_errors.get("429"), Some(&1));
    assert!(report.rejected > 0 && !report.rejection_samples.is_empty(), "{report}");
    assert!(report.latency_ms.is_some());
    assert_eq!(report.requests, seen.requests);
    // Requests run in parallel, so batches may arrive out of order; the beacons are the same.
    let mut received = seen.beacons.clone();
    let key = |value: &serde_json::Value| value.to_string();
    received.sort_by_key(key);
    let mut expected = expected;
    expected.sort_by_key(key);
    assert_eq!(received, expected);
}

#[tokio::test]
async fn http_pregenerated_plain_bodies_are_accepted_and_a_wrong_key_fails() {
    let mock = Arc::new(Mock::default());
    let address = start_mock(Arc::clone(&mock)).await;
    let config = SimConfig {
        pregenerate: true,
        concurrency: 2,
        ..small_config(http_target(address, WRITE_KEY))
    };
    let report = run(config, CancellationToken::new()).await.unwrap();
    assert_eq!(report.accepted, report.generated, "{report}");
    assert!(report.pregenerate_secs > 0.0);
    assert_eq!(report.rejected + report.failed + report.retries, 0, "{report}");

    let wrong_key = SimConfig {
        max_beacons: Some(500),
        ..small_config(http_target(address, "nope"))
    };
    let report = run(wrong_key, CancellationToken::new()).await.unwrap();
    assert_eq!(report.failed, 500, "{report}");
    assert_eq!(report.accepted, 0);
    assert_eq!(report.request_errors.get("401"), Some(&report.requests));
}

#[tokio::test]
async fn http_holds_beacons_until_their_time_and_respects_the_rate() {
    let mock = Arc::new(Mock::default());
    let address = start_mock(Arc::clone(&mock)).await;
    let config = SimConfig {
        start_ms: now_ms() - 1_000,
        duration_ms: 3_000,
        rooms: 1,
        viewers: 30,
        ..small_config(http_target(address, WRITE_KEY))
    };
    let report = run(config, CancellationToken::new()).await.unwrap();
    assert!(report.elapsed_secs >= 1.5, "{report}");
    {
        let seen = mock.seen.lock().unwrap();
        assert!(!seen.arrivals.is_empty());
        for (ts, arrived_at) in &seen.arrivals {
            assert!(ts <= arrived_at, "beacon stamped {ts} arrived early at {arrived_at}");
        }
    }

    let paced = SimConfig {
        rate: Some(2_000),
        batch_size: 100,
        max_beacons: Some(3_000),
        duration_ms: 30 * 60_000,
        ..small_config(http_target(address, WRITE_KEY))
    };
    let report = run(paced, CancellationToken::new()).await.unwrap();
    assert_eq!(report.accepted, 3_000);
    // 3000 beacons at 2000/s: the first batch goes at once, the rest over about 1.45 s.
    assert!(report.elapsed_secs >= 1.3, "{report}");
}

#[tokio::test]
async fn a_paused_sender_trickles_until_resumed() {
    let mock = Arc::new(Mock::default());
    let address = start_mock(Arc::clone(&mock)).await;
    let pause = Pause::new();
    pause.pause();
    let config = SimConfig {
        hold_future: false,
        batch_size: 50,
        pause: Some(pause.clone()),
        ..small_config(http_target(address, WRITE_KEY))
    };
    let run = tokio::spawn(run(config, CancellationToken::new()));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // One request every 250 ms while paused: about 5 in 1.1 s, of the dozens the run needs.
    let while_paused = mock.seen.lock().unwrap().requests;
    assert!((1..=8).contains(&while_paused), "{while_paused} requests while paused");
    assert!(!run.is_finished());
    pause.resume();
    let report = run.await.unwrap().unwrap();
    assert!(report.accepted > 0, "{report}");
    assert_eq!(report.accepted, report.generated, "{report}");
    assert_eq!(mock.seen.lock().unwrap().requests, report.requests);
}

#[tokio::test]
async fn file_target_writes_ndjson_that_round_trips() {
    let path = std::env::temp_dir().join(format!("qoe-simulator-test-{}.ndjson", std::process::id()));
    let config = small_config(Target::File(path.clone()));
    let report = run(config.clone(), CancellationToken::new()).await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let written: Vec<Beacon> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let expected: Vec<Beacon> = generate(&config).collect();
    assert_eq!(written, expected);
    assert_eq!(report.sent, expected.len() as u64);
    assert_eq!(report.by_type.values().sum::<u64>(), report.generated);
    let mut temporary = path.into_os_string();
    temporary.push(".tmp");
    assert!(!std::path::Path::new(&temporary).exists());
}

#[tokio::test]
async fn shutdown_stops_the_run_and_bad_configs_are_refused() {
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let report = run(small_config(Target::Discard), shutdown).await.unwrap();
    assert!(report.interrupted);
    assert_eq!(report.generated, 0);

    let report = run(small_config(Target::Discard), CancellationToken::new())
        .await
        .unwrap();
    assert!(!report.interrupted && report.generated > 0);
    assert_eq!(report.sent, 0);

    let bad = SimConfig {
        rooms: 0,
        ..small_config(Target::Discard)
    };
    let error = run(bad, CancellationToken::new()).await.unwrap_err();
    assert_eq!(error.to_string(), "invalid config: rooms: must be at least 1, got 0");

    let https = small_config(Target::Http {
        url: "https://collector:8080".to_string(),
        write_key: WRITE_KEY.to_string(),
    });
    let error = run(https, CancellationToken::new()).await.unwrap_err();
    assert!(error.to_string().contains("\"https://collector:8080\""), "{error}");
}

#[tokio::test]
async fn http_gives_up_on_an_unreachable_collector() {
    // A port nothing listens on: bind, note the port, close.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let config = SimConfig {
        max_beacons: Some(50),
        max_attempts: 2,
        request_timeout: Duration::from_secs(2),
        ..small_config(http_target(address, WRITE_KEY))
    };
    let report = run(config, CancellationToken::new()).await.unwrap();
    assert_eq!(report.failed, 50, "{report}");
    assert_eq!(report.requests, 2);
    assert_eq!(report.request_errors.get("transport"), Some(&2));
}
