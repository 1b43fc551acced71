//! # qoe-simulator: deterministic live-video traffic for qoe-pipeline
//!
//! The load generator and test-data source of the pipeline: it plays out a live-streaming service in
//! simulated time and emits the beacons its SDKs would send, then hands them to a [`Target`] (the
//! collector over HTTP, an NDJSON file, or nowhere).
//!
//! ## What it models
//!
//! - **Rooms** `room-0001`.. with Zipf popularity (exponent 1.1): viewer arrivals pick rooms by it.
//! - **Publishers**: one push session per room for the whole span, `push_start` at `start_ms`, a
//!   `push_heartbeat` every heartbeat interval (CPU, memory, encoder and bitrate-controller output,
//!   stalls, RTT to the ingest origin), `push_end` (reason `ended`) at the end.
//! - **Viewers**: Poisson arrivals sized so that about [`SimConfig::viewers`] are in rooms at any time,
//!   log-normal watch time (median 5 minutes). Each viewer has a platform, network, ISP, region, CDN
//!   (`cdn-a`/`cdn-b`/`cdn-c`, 50/30/20) and edge node, DNS resolver (httpDNS/localDNS/cached), and an
//!   A/B arm of experiment `abr_v2` (treatment stalls 20 % less). A session is `room_join`,
//!   `play_start`, `first_frame` (DNS, connect and first-packet parts), a `play_heartbeat` per interval
//!   (with the startup skip/speed-up once, in the heartbeat covering the 10 s mark), `play_end` with the
//!   last partial interval (`interval_ms: 0` when the session ends within 250 ms after a heartbeat: it
//!   then ends at the heartbeat, as a page-hide handler fires right after a timer tick), `room_leave`. Some sessions never start: the viewer gives up (exit before
//!   video start), a fatal technical error at the DNS, connect or first-packet stage, or a business
//!   refusal (`GEO_BLOCKED`, ...). Rare non-fatal errors happen during playback.
//! - **Warm start** (on by default): the viewers already watching at `start_ms` are in the stream from
//!   their next heartbeat on (their join, start and first frame happened before the window, their `seq`
//!   continues), so concurrency is flat from the first minute instead of ramping up. Viewer sessions
//!   still open at the end are cut off without `play_end`, as a window of a longer stream would be.
//! - **Incidents** (see [`incidents()`]): a `cdn-b` stall incident and a publisher network jitter in the
//!   most popular room, during which viewers on every CDN leave and re-join at once.
//!
//! ## Guarantees
//!
//! - **Determinism**: [`generate`] is a pure function of the model fields of [`SimConfig`] (`seed`,
//!   `start_ms`, `duration_ms`, `rooms`, `viewers`, `heartbeat_interval_ms`, `incidents`, `warm_start`,
//!   `invalid_fraction`, `max_beacons`): the same config gives the same beacons in the same order, on the
//!   same build. The sending fields only change how the stream is delivered, and `sent_at` in HTTP
//!   requests is the real clock.
//! - Beacons come in non-decreasing `ts` order, all within `start_ms..=start_ms + duration_ms`;
//!   `(session_id, seq)` is unique; every beacon passes [`qoe_schemas::validate()`] except the share
//!   `invalid_fraction` deliberately broken (an SDK-set enrichment field, an empty session id, a wrong
//!   version, or a missing required field). Enrichment fields are never set otherwise.
//!
//! ```
//! use qoe_simulator::{generate, SimConfig};
//! let config = SimConfig { rooms: 3, viewers: 20, duration_ms: 60_000, ..SimConfig::default() };
//! let first: Vec<_> = generate(&config).take(100).collect();
//! let again: Vec<_> = generate(&config).take(100).collect();
//! assert_eq!(first, again);
//! assert!(first.windows(2).all(|pair| pair[0].ts <= pair[1].ts));
//! ```

mod actors;
mod generator;
mod http;
mod incidents;
mod model;
mod quality;
mod report;
mod sink;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use generator::BeaconStream;
pub use incidents::{incidents, Incident, IncidentKind};
pub use report::{LatencyPercentiles, SimReport};

/// Where [`run`] delivers the beacons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `POST {url}/v1/beacons` on a collector, with `Authorization: Bearer {write_key}`.
    Http {
        /// Base URL of the collector, `http://host:port` (no TLS in this build).
        url: String,
        /// The write key.
        write_key: String,
    },
    /// An NDJSON file, one beacon per line (written to `<path>.tmp`, renamed at the end).
    File(PathBuf),
    /// Generate and count only: measures the generator itself.
    Discard,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Http { url, .. } => f.write_str(url),
            Target::File(path) => write!(f, "file:{}", path.display()),
            Target::Discard => f.write_str("discard"),
        }
    }
}

/// Back-pressure from the receiving side of an HTTP simulation: while paused, the sender slows to a
/// trickle of one request every 250 ms (requests in flight finish). For a pipeline that must not
/// fall too far behind the sender, such as `qoe demo` on a broker that keeps only a few megabytes
/// per partition. A trickle rather than a stop, so that a consumer that ends when no record came
/// for a few seconds (`exit_when_idle`) does not take the pause for the end of the traffic. Clones
/// share the switch.
#[derive(Debug, Clone, Default)]
pub struct Pause(Arc<AtomicBool>);

impl Pause {
    /// A switch, not paused.
    pub fn new() -> Self {
        Pause::default()
    }

    /// Holds new requests back until [`Pause::resume`].
    pub fn pause(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Lets requests go again.
    pub fn resume(&self) {
        self.0.store(false, Ordering::Relaxed);
    }

    /// Whether new requests are held back.
    pub fn is_paused(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Two handles are equal when they are the same switch.
impl PartialEq for Pause {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Everything a simulation needs: the model (what traffic) and the delivery (where, how fast).
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Simulated clock at the start, epoch ms. The default is a fixed instant (2025-11-22T08:26:40Z) so
    /// that the default config is reproducible; set the current time for live traffic.
    pub start_ms: u64,
    /// Simulated time span, ms.
    pub duration_ms: u64,
    /// Number of rooms (live streams), each with one publisher.
    pub rooms: usize,
    /// Target average number of concurrent viewers over all rooms.
    pub viewers: usize,
    /// Interval of play and push heartbeats, ms (1 s to 10 minutes).
    pub heartbeat_interval_ms: u64,
    /// Whether to play out the scripted incidents (see [`incidents()`]).
    pub incidents: bool,
    /// Whether viewers are already watching at `start_ms` (flat concurrency from the start) rather than
    /// all arriving after it.
    pub warm_start: bool,
    /// Share of beacons deliberately made invalid, 0 to 1, to exercise rejection.
    pub invalid_fraction: f64,
    /// Stop after this many beacons.
    pub max_beacons: Option<u64>,

    /// Where the beacons go.
    pub target: Target,
    /// Beacons per HTTP request (the collector accepts up to 2000).
    pub batch_size: usize,
    /// Gzip request bodies (fast level).
    pub gzip: bool,
    /// Cap on beacons per second, in real time.
    pub rate: Option<u64>,
    /// HTTP requests in flight at once.
    pub concurrency: usize,
    /// Build every request body before sending the first, so that a benchmark measures the collector
    /// rather than the generator (memory: about 500 bytes per beacon plain, several times less gzipped).
    pub pregenerate: bool,
    /// Hold beacons stamped in the future until the real clock reaches their `ts`, as live SDKs would
    /// (HTTP only). With `start_ms` in the past the backlog goes out at full speed first. Off sends
    /// everything at once; the collector refuses `ts` more than a few minutes ahead.
    pub hold_future: bool,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Attempts per batch on 429/503 and transport errors before the batch counts as failed.
    pub max_attempts: u32,
    /// HTTP only: a switch the receiving side flips to hold the sender back (see [`Pause`]).
    pub pause: Option<Pause>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            start_ms: 1_763_800_000_000,
            duration_ms: 10 * 60_000,
            rooms: 50,
            viewers: 2_000,
            heartbeat_interval_ms: 10_000,
            incidents: true,
            warm_start: true,
            invalid_fraction: 0.0,
            max_beacons: None,
            target: Target::Discard,
            batch_size: 100,
            gzip: false,
            rate: None,
            concurrency: 4,
            pregenerate: false,
            hold_future: true,
            request_timeout: Duration::from_secs(30),
            max_attempts: 10,
            pause: None,
        }
    }
}

impl SimConfig {
    /// Checks every setting; [`run`] calls it first. ([`generate`] clamps instead.)
    pub fn validate(&self) -> Result<(), SimError> {
        let invalid = |field: &'static str, problem: String| Err(SimError::InvalidConfig { field, problem });
        let span_end = self.start_ms.checked_add(self.duration_ms);
        if self.start_ms < qoe_schemas::fields::MIN_TS_MS {
            return invalid(
                "start_ms",
                format!(
                    "must be at or after 2000-01-01 ({}), got {}",
                    qoe_schemas::fields::MIN_TS_MS,
                    self.start_ms
                ),
            );
        }
        if span_end.is_none_or(|end| end > qoe_schemas::fields::MAX_TS_MS) {
            return invalid(
                "duration_ms",
                format!(
                    "start_ms + duration_ms must end before 2100, got duration {}",
                    self.duration_ms
                ),
            );
        }
        if self.rooms == 0 {
            return invalid("rooms", "must be at least 1, got 0".to_string());
        }
        if !(1_000..=600_000).contains(&self.heartbeat_interval_ms) {
            return invalid(
                "heartbeat_interval_ms",
                format!("must be 1000 to 600000, got {}", self.heartbeat_interval_ms),
            );
        }
        if !(0.0..=1.0).contains(&self.invalid_fraction) {
            return invalid(
                "invalid_fraction",
                format!("must be 0 to 1, got {}", self.invalid_fraction),
            );
        }
        if !(1..=qoe_schemas::wire::Limits::default().max_beacons).contains(&self.batch_size) {
            return invalid(
                "batch_size",
                format!(
                    "must be 1 to {}, got {}",
                    qoe_schemas::wire::Limits::default().max_beacons,
                    self.batch_size
                ),
            );
        }
        if self.concurrency == 0 {
            return invalid("concurrency", "must be at least 1, got 0".to_string());
        }
        if self.rate == Some(0) {
            return invalid("rate", "must be at least 1 beacon/s, got 0".to_string());
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts", "must be at least 1, got 0".to_string());
        }
        if let Target::Http { url, write_key } = &self.target {
            http::endpoint(url)?;
            if write_key.is_empty() {
                return invalid("write_key", "must not be empty for an http target".to_string());
            }
        }
        Ok(())
    }
}

/// Why a simulation could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A setting is out of range.
    #[error("invalid config: {field}: {problem}")]
    InvalidConfig {
        /// The [`SimConfig`] field.
        field: &'static str,
        /// What is wrong, quoting the value.
        problem: String,
    },
    /// The collector URL is not usable.
    #[error("target url {url:?}: {problem}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the http client: {0}")]
    HttpClient(reqwest::Error),
    /// Writing the NDJSON file failed.
    #[error("cannot write {path:?}: {cause}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// The generator or writer thread panicked or was cancelled.
    #[error("generator task failed: {0}")]
    Task(String),
}

/// The deterministic beacon stream of `config`, in non-decreasing `ts` order (see the crate docs).
///
/// Out-of-range settings are clamped rather than refused; use [`SimConfig::validate`] to check them.
pub fn generate(config: &SimConfig) -> BeaconStream {
    BeaconStream::new(config)
}

/// Generates the beacons of `config` and delivers them to its target, until the stream ends, the
/// `max_beacons` cap is reached, or `shutdown` is cancelled (the report then says `interrupted`).
///
/// Generation and file writing run on blocking threads; only the HTTP sending runs on the runtime.
pub async fn run(config: SimConfig, shutdown: CancellationToken) -> Result<SimReport, SimError> {
    config.validate()?;
    tracing::info!(
        target = %config.target,
        seed = config.seed,
        start_ms = config.start_ms,
        duration_ms = config.duration_ms,
        rooms = config.rooms,
        viewers = config.viewers,
        "simulation started"
    );
    let report = match &config.target {
        Target::Discard => sink::run_discard(&config, shutdown).await?,
        Target::File(path) => sink::run_file(&config, path.clone(), shutdown).await?,
        Target::Http { .. } => http::run_http(&config, shutdown).await?,
    };
    tracing::info!(
        generated = report.generated,
        sent = report.sent,
        accepted = report.accepted,
        rejected = report.rejected,
        failed = report.failed,
        elapsed_secs = report.elapsed_secs,
        interrupted = report.interrupted,
        "simulation finished"
    );
    Ok(report)
}
