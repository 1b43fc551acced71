//! The HTTP target: batches of beacons to `POST {url}/v1/beacons`, several requests in flight, an
//! optional rate cap, retries on 429/503 that honour `Retry-After`, and request latency.
//!
//! A blocking thread generates the beacons and serializes (and gzips) each batch's `[...]}` part; the
//! async side only prepends `{"sent_at":<now>,"beacons":` at send time. With gzip the body is then two
//! gzip members, the small head and the pre-compressed rest, which decode to the whole JSON document
//! (RFC 1952 allows several members; the collector reads them all).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use qoe_runtime::clock::epoch_ms;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::report::{LatencyPercentiles, SimReport, TypeTally};
use crate::sink::SHUTDOWN_CHECK_EVERY;
use crate::{generate, SimConfig, SimError, Target};

/// A batch in live mode is cut once it spans this much simulated time, so beacons are not held long.
const LIVE_BATCH_SPAN_MS: u64 = 1_000;
/// Longest `Retry-After` honoured, and the wait when the header is missing.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Back-off after a transport error, doubled per attempt up to the cap.
const TRANSPORT_BACKOFF_START: Duration = Duration::from_millis(200);
const TRANSPORT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How many distinct rejection messages the report keeps.
const REJECTION_SAMPLES: usize = 5;
/// How much of an error response body goes into the log.
const ERROR_BODY_CHARS: usize = 200;

/// The collector endpoint for a base URL: `http://host:port` becomes `http://host:port/v1/beacons`;
/// a URL already ending in `/v1/beacons` is kept.
pub(crate) fn endpoint(url: &str) -> Result<String, SimError> {
    let invalid = |problem: &'static str| SimError::InvalidUrl {
        url: url.to_string(),
        problem,
    };
    if url.starts_with("https://") {
        return Err(invalid("https is not supported (this build has no TLS), use http://"));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(invalid("must start with http://"));
    };
    let base = url.trim_end_matches('/');
    if rest.trim_end_matches('/').is_empty() {
        return Err(invalid("has no host"));
    }
    if base.ends_with("/v1/beacons") {
        return Ok(base.to_string());
    }
    Ok(format!("{base}/v1/beacons"))
}

/// A batch ready to send.
#[derive(Debug)]
struct PreparedBatch {
    beacons: u64,
    /// `ts` of the newest beacon in the batch.
    last_ts: u64,
    /// `[beacon,...]}`, gzipped as one complete member when the run gzips.
    rest: Vec<u8>,
}

/// What the generating thread did.
#[derive(Debug, Default)]
struct ProducerOutcome {
    tally: TypeTally,
    interrupted: bool,
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 6 + 64), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Generates, batches and serializes the beacons of `config`, handing each batch to `deliver` until it
/// returns false. Runs on a blocking thread.
fn produce(
    config: &SimConfig,
    shutdown: &CancellationToken,
    mut deliver: impl FnMut(PreparedBatch) -> bool,
) -> ProducerOutcome {
    let mut outcome = ProducerOutcome::default();
    let mut stream = generate(config).peekable();
    let mut json = Vec::with_capacity(config.batch_size * 700);
    let mut wall_ms = epoch_ms();
    loop {
        if shutdown.is_cancelled() {
            outcome.interrupted = true;
            break;
        }
        json.clear();
        json.push(b'[');
        let mut count = 0u64;
        let mut first_ts = 0;
        let mut last_ts = 0;
        while count < config.batch_size as u64 {
            let Some(next) = stream.peek() else {
                break;
            };
            if config.hold_future && count > 0 && next.ts >= first_ts + LIVE_BATCH_SPAN_MS {
                // In live mode, cut the batch rather than hold early beacons for late ones.
                if next.ts > wall_ms {
                    wall_ms = epoch_ms();
                }
                if next.ts > wall_ms {
                    break;
                }
            }
            let Some(beacon) = stream.next() else {
                break;
            };
            if count > 0 {
                json.push(b',');
            } else {
                first_ts = beacon.ts;
            }
            last_ts = beacon.ts;
            // Serializing a Beacon into a Vec cannot fail: every field is a plain value.
            let _ = serde_json::to_writer(&mut json, &beacon);
            outcome.tally.count(&beacon);
            count += 1;
            if outcome.tally.total() % SHUTDOWN_CHECK_EVERY == 0 && shutdown.is_cancelled() {
                break;
            }
        }
        if count == 0 {
            break;
        }
        json.extend_from_slice(b"]}");
        let rest = if config.gzip { gzip(&json) } else { json.clone() };
        let batch = PreparedBatch {
            beacons: count,
            last_ts,
            rest,
        };
        if !deliver(batch) {
            outcome.interrupted = true;
            break;
        }
    }
    outcome
}

/// Everything a request needs.
#[derive(Debug)]
struct HttpContext {
    client: reqwest::Client,
    endpoint: String,
    write_key: String,
    gzip: bool,
    max_attempts: u32,
    shutdown: CancellationToken,
}

impl HttpContext {
    /// The request body for `batch`, with `sent_at` set to the real clock now.
    fn body(&self, batch: &PreparedBatch) -> Vec<u8> {
        let head = format!("{{\"sent_at\":{},\"beacons\":", epoch_ms());
        let head = if self.gzip {
            gzip(head.as_bytes())
        } else {
            head.into_bytes()
        };
        let mut body = Vec::with_capacity(head.len() + batch.rest.len());
        body.extend_from_slice(&head);
        body.extend_from_slice(&batch.rest);
        body
    }
}

/// The collector's 200 response.
#[derive(Debug, Deserialize)]
struct Accepted {
    accepted: u64,
    #[serde(default)]
    rejected: Vec<Rejection>,
}

#[derive(Debug, Deserialize)]
struct Rejection {
    #[serde(default)]
    error: String,
}

/// A failed request: a label for counting (`"401"`, `"transport"`) and what went wrong.
#[derive(Debug)]
struct RequestFailure {
    label: String,
    detail: String,
}

/// What became of one batch.
#[derive(Debug, Default)]
struct BatchResult {
    beacons: u64,
    accepted: u64,
    rejected: u64,
    failed: bool,
    requests: u64,
    latencies_ms: Vec<f64>,
    failures: Vec<RequestFailure>,
    rejection_samples: Vec<String>,
}

/// Sends one batch, resending on 429, 503 and transport errors up to the attempt limit.
async fn send_batch(context: Arc<HttpContext>, batch: PreparedBatch) -> BatchResult {
    let mut result = BatchResult {
        beacons: batch.beacons,
        ..BatchResult::default()
    };
    let mut transport_backoff = TRANSPORT_BACKOFF_START;
    for attempt in 1..=context.max_attempts {
        let mut request = context
            .client
            .post(&context.endpoint)
            .header(CONTENT_TYPE, "application/json")
            .bearer_auth(&context.write_key)
            .body(context.body(&batch));
        if context.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let sent_at = Instant::now();
        result.requests += 1;
        let wait = match request.send().await {
            Err(error) => {
                result.failures.push(RequestFailure {
                    label: "transport".to_string(),
                    detail: error.to_string(),
                });
                let wait = transport_backoff;
                transport_backoff = (transport_backoff * 2).min(TRANSPORT_BACKOFF_MAX);
                wait
            }
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(response.headers());
                let body = response.bytes().await;
                result.latencies_ms.push(sent_at.elapsed().as_secs_f64() * 1_000.0);
                let body = match body {
                    Ok(body) => body,
                    Err(error) => {
                        result.failures.push(RequestFailure {
                            label: "transport".to_string(),
                            detail: error.to_string(),
                        });
                        result.failed = true;
                        return result;
                    }
                };
                if status == StatusCode::OK {
                    record_acceptance(&mut result, &body);
                    return result;
                }
                result.failures.push(RequestFailure {
                    label: status.as_u16().to_string(),
                    detail: String::from_utf8_lossy(&body).chars().take(ERROR_BODY_CHARS).collect(),
                });
                let retryable = status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
                if !retryable {
                    result.failed = true;
                    return result;
                }
                retry_after.unwrap_or(DEFAULT_RETRY_AFTER)
            }
        };
        if attempt == context.max_attempts {
            break;
        }
        tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "batch will be resent");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = context.shutdown.cancelled() => break,
        }
    }
    result.failed = true;
    result
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

fn record_acceptance(result: &mut BatchResult, body: &[u8]) {
    match serde_json::from_slice::<Accepted>(body) {
        Ok(response) => {
            result.accepted = response.accepted;
            result.rejected = response.rejected.len() as u64;
            result.rejection_samples = response
                .rejected
                .into_iter()
                .take(REJECTION_SAMPLES)
                .map(|rejection| rejection.error)
                .collect();
        }
        Err(error) => {
            result.failures.push(RequestFailure {
                label: "bad_response".to_string(),
                detail: format!("200 response is not {{\"accepted\": N, \"rejected\": [...]}}: {error}"),
            });
            result.failed = true;
        }
    }
}

/// Where batches come from: the generating thread, live, or the pre-built list.
enum BatchSource {
    Live(mpsc::Receiver<PreparedBatch>),
    Prepared(std::vec::IntoIter<PreparedBatch>),
}

impl BatchSource {
    async fn next(&mut self, shutdown: &CancellationToken) -> Option<PreparedBatch> {
        match self {
            BatchSource::Prepared(batches) => batches.next(),
            BatchSource::Live(receiver) => tokio::select! {
                batch = receiver.recv() => batch,
                () = shutdown.cancelled() => None,
            },
        }
    }
}

/// Spaces batches so that beacons go out at no more than `rate` per second; no credit is banked
/// while the sender is slower than the rate.
#[derive(Debug)]
struct Pacer {
    per_beacon: Option<Duration>,
    next_at: tokio::time::Instant,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Pacer {
        Pacer {
            per_beacon: rate.map(|rate| Duration::from_secs_f64(1.0 / rate.max(1) as f64)),
            next_at: tokio::time::Instant::now(),
        }
    }

    /// Waits for the slot of `beacons` beacons; false if shutdown came first.
    async fn wait(&mut self, beacons: u64, shutdown: &CancellationToken) -> bool {
        let Some(per_beacon) = self.per_beacon else {
            return true;
        };
        let now = tokio::time::Instant::now();
        if self.next_at < now {
            self.next_at = now;
        }
        tokio::select! {
            () = tokio::time::sleep_until(self.next_at) => {}
            () = shutdown.cancelled() => return false,
        }
        self.next_at += per_beacon * beacons as u32;
        true
    }
}

/// How often a paused sender looks at its [`Pause`] switch again.
const PAUSE_POLL: Duration = Duration::from_millis(20);
/// A paused sender still starts one request this often (see [`crate::Pause`]).
const PAUSED_REQUEST_EVERY: Duration = Duration::from_millis(250);

/// Waits while `pause` is set, at most [`PAUSED_REQUEST_EVERY`]; false if shutdown came first.
async fn wait_while_paused(pause: Option<&crate::Pause>, shutdown: &CancellationToken) -> bool {
    let Some(pause) = pause else {
        return true;
    };
    let waiting = Instant::now();
    while pause.is_paused() && waiting.elapsed() < PAUSED_REQUEST_EVERY {
        tokio::select! {
            () = tokio::time::sleep(PAUSE_POLL) => {}
            () = shutdown.cancelled() => return false,
        }
    }
    true
}

/// Waits until the real clock reaches `ts`; false if shutdown came first.
async fn wait_for_wall_clock(ts: u64, shutdown: &CancellationToken) -> bool {
    loop {
        let now_ms = epoch_ms();
        if ts <= now_ms {
            return true;
        }
        let wait = Duration::from_millis((ts - now_ms).min(1_000));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return false,
        }
    }
}

/// Adds one batch's result to the report; warns the first time each request error appears.
fn absorb(report: &mut SimReport, latencies_ms: &mut Vec<f64>, result: BatchResult) {
    report.requests += result.requests;
    report.retries += result.requests.saturating_sub(1);
    report.accepted += result.accepted;
    report.rejected += result.rejected;
    if result.failed {
        report.failed += result.beacons;
    }
    latencies_ms.extend_from_slice(&result.latencies_ms);
    for failure in result.failures {
        let count = report.request_errors.entry(failure.label.clone()).or_insert(0);
        if *count == 0 {
            tracing::warn!(
                status = %failure.label,
                detail = %failure.detail,
                "collector request failed; later failures with this status are only counted"
            );
        }
        *count += 1;
    }
    for sample in result.rejection_samples {
        if report.rejection_samples.len() < REJECTION_SAMPLES && !report.rejection_samples.contains(&sample) {
            report.rejection_samples.push(sample);
        }
    }
}

/// Runs the HTTP target.
pub(crate) async fn run_http(config: &SimConfig, shutdown: CancellationToken) -> Result<SimReport, SimError> {
    let Target::Http { url, write_key } = &config.target else {
        return Err(SimError::InvalidConfig {
            field: "target",
            problem: format!("expected an http target, got {}", config.target),
        });
    };
    let client = reqwest::Client::builder()
        .http1_only()
        .timeout(config.request_timeout)
        .pool_max_idle_per_host(config.concurrency)
        .build()
        .map_err(SimError::HttpClient)?;
    let context = Arc::new(HttpContext {
        client,
        endpoint: endpoint(url)?,
        write_key: write_key.clone(),
        gzip: config.gzip,
        max_attempts: config.max_attempts,
        shutdown: shutdown.clone(),
    });
    let mut report = SimReport::new(config);

    let producer_config = config.clone();
    let producer_shutdown = shutdown.clone();
    let (source, producer) = if config.pregenerate {
        let started = Instant::now();
        let (batches, outcome) = tokio::task::spawn_blocking(move || {
            let mut batches = Vec::new();
            let outcome = produce(&producer_config, &producer_shutdown, |batch| {
                batches.push(batch);
                true
            });
            (batches, outcome)
        })
        .await
        .map_err(|error| SimError::Task(error.to_string()))?;
        report.pregenerate_secs = started.elapsed().as_secs_f64();
        tracing::info!(
            batches = batches.len(),
            beacons = outcome.tally.total(),
            pregenerate_secs = report.pregenerate_secs,
            "request bodies built"
        );
        (
            BatchSource::Prepared(batches.into_iter()),
            PendingProducer::Done(outcome),
        )
    } else {
        let (sender, receiver) = mpsc::channel(config.concurrency * 2);
        let handle = tokio::task::spawn_blocking(move || {
            produce(&producer_config, &producer_shutdown, |batch| {
                sender.blocking_send(batch).is_ok()
            })
        });
        (BatchSource::Live(receiver), PendingProducer::Running(handle))
    };

    let started = Instant::now();
    let mut latencies_ms = Vec::new();
    let interrupted = send_all(config, source, &context, &mut report, &mut latencies_ms).await;
    let outcome = match producer {
        PendingProducer::Done(outcome) => outcome,
        PendingProducer::Running(handle) => handle.await.map_err(|error| SimError::Task(error.to_string()))?,
    };
    report.generated = outcome.tally.total();
    report.by_type = outcome.tally.by_name();
    report.interrupted = interrupted || outcome.interrupted || shutdown.is_cancelled();
    report.latency_ms = LatencyPercentiles::from_samples(&mut latencies_ms);
    report.finish(report.sent, started.elapsed().as_secs_f64());
    Ok(report)
}

/// The generating thread, still running (live) or already finished (pregenerate).
enum PendingProducer {
    Running(tokio::task::JoinHandle<ProducerOutcome>),
    Done(ProducerOutcome),
}

/// Sends every batch from `source` with `concurrency` requests in flight; returns whether shutdown
/// stopped it. Waits for the requests in flight before returning.
async fn send_all(
    config: &SimConfig,
    mut source: BatchSource,
    context: &Arc<HttpContext>,
    report: &mut SimReport,
    latencies_ms: &mut Vec<f64>,
) -> bool {
    let shutdown = &context.shutdown;
    let permits = Arc::new(Semaphore::new(config.concurrency));
    let mut pacer = Pacer::new(config.rate);
    let mut in_flight = JoinSet::new();
    let mut interrupted = false;
    while let Some(batch) = source.next(shutdown).await {
        let ready = pacer.wait(batch.beacons, shutdown).await
            && (!config.hold_future || wait_for_wall_clock(batch.last_ts, shutdown).await)
            && wait_while_paused(config.pause.as_ref(), shutdown).await;
        if !ready {
            interrupted = true;
            break;
        }
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit,
            () = shutdown.cancelled() => {
                interrupted = true;
                break;
            }
        };
        let Ok(permit) = permit else {
            break;
        };
        report.sent += batch.beacons;
        let context = Arc::clone(context);
        in_flight.spawn(async move {
            let result = send_batch(context, batch).await;
            drop(permit);
            result
        });
        while let Some(done) = in_flight.try_join_next() {
            absorb_joined(report, latencies_ms, done);
        }
    }
    while let Some(done) = in_flight.join_next().await {
        absorb_joined(report, latencies_ms, done);
    }
    interrupted || shutdown.is_cancelled()
}

fn absorb_joined(
    report: &mut SimReport,
    latencies_ms: &mut Vec<f64>,
    joined: Result<BatchResult, tokio::task::JoinError>,
) {
    match joined {
        Ok(result) => absorb(report, latencies_ms, result),
        Err(error) => {
            tracing::warn!(error = %error, "request task failed");
            *report.request_errors.entry("task".to_string()).or_insert(0) += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_derived_from_base_urls() {
        assert_eq!(
            endpoint("http://localhost:8080").unwrap(),
            "http://localhost:8080/v1/beacons"
        );
        assert_eq!(
            endpoint("http://localhost:8080/").unwrap(),
            "http://localhost:8080/v1/beacons"
        );
        assert_eq!(endpoint("http://h:1/v1/beacons").unwrap(), "http://h:1/v1/beacons");
        let https = endpoint("https://h").unwrap_err().to_string();
        assert_eq!(
            https,
            "target url \"https://h\": https is not supported (this build has no TLS), use http://"
        );
        assert!(endpoint("localhost:8080").is_err());
        assert!(endpoint("http://").is_err());
    }

    #[test]
    fn two_gzip_members_decode_to_one_document() {
        use std::io::Read;
        let mut body = gzip(b"{\"sent_at\":1,\"beacons\":");
        body.extend_from_slice(&gzip(b"[]}"));
        let mut decoded = String::new();
        flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_string(&mut decoded)
            .unwrap();
        assert_eq!(decoded, "{\"sent_at\":1,\"beacons\":[]}");
    }
}
