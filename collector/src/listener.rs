//! The accept loop: HTTP/1.1 connections under a cap, with header and keep-alive timeouts.
//!
//! What a client gets (the "Hostile clients" section of `docs/collector.md` lists the defaults):
//! - **At most `max_connections` open.** A connection accepted at the cap closes the connection that
//!   has been idle longest (no request in progress: waiting for its first headers, or between two
//!   requests) among all open ones, or among 256 chosen at random when more are open, so a valid
//!   request still gets through while sockets that send nothing hold every slot. A connection shed
//!   just as its request arrives gets 100 ms to start it, and then finishes it. Only when no
//!   connection looked at is idle is the new one closed at once. Counted as
//!   `qoe_collector_connections_closed_total{reason="shed"}` and `{reason="refused"}`.
//! - **Headers within `header_timeout`** of the connection's start, and the next request's headers
//!   within `idle_timeout` of the previous response: otherwise the connection is closed without an
//!   answer (`reason="header_timeout"`, `reason="idle_timeout"`), as nginx does. The body has its own
//!   timeout in the request handler (408).
//! - **hyper's own refusals are counted**: a request line or header block that does not parse (400),
//!   a URI over hyper's limit (414) or headers over it (431) are answered by hyper before any handler
//!   runs; they appear in `qoe_collector_requests_total{status}` like every other answer.
//! - **Graceful shutdown**: on cancellation nothing more is accepted, idle connections close, and
//!   requests in flight finish (bounded by the caller's drain deadline).
//!
//! Each connection's state is two atomics and a token, read by its own watchdog: no lock on the
//! request path. The registry of open connections takes a lock on accept and close only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use prometheus::{IntCounterVec, IntGauge};

/// Most bytes hyper buffers for one connection: the request line and headers must fit (else 431,
/// or 414 for a request line over hyper's URI limit of 65,534 bytes), and body bytes wait here
/// until the handler takes them. hyper's default is about 400 KiB; 128 KiB keeps a connection's
/// buffer small while leaving the 414 answer reachable.
pub const MAX_HEAD_BYTES: usize = 128 * 1024;

/// The connection limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time from accepting a connection to the end of its first request's headers.
    pub header_timeout: Duration,
    /// Time from the end of a response to the end of the next request's headers.
    pub idle_timeout: Duration,
}

/// The metrics the listener keeps (registered by `crate::metrics`).
#[derive(Clone)]
pub struct ConnectionMetrics {
    /// Connections open now.
    pub open: IntGauge,
    /// Connections the collector closed, by [`CloseReason`].
    pub closed: IntCounterVec,
    /// Requests by HTTP status: the listener counts the answers hyper gives without a handler.
    pub requests: IntCounterVec,
}

impl ConnectionMetrics {
    fn count_closed(&self, reason: CloseReason) {
        self.closed.with_label_values(&[reason.as_str()]).inc();
    }
}

/// Why a connection was closed by the collector rather than by its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The first request's headers did not arrive in time.
    HeaderTimeout,
    /// The next request's headers did not arrive in time after a response.
    IdleTimeout,
    /// Closed while idle to make room for a new connection at the cap.
    Shed,
    /// A new connection at the cap while every open one was busy.
    Refused,
}

impl CloseReason {
    /// Every reason, for pre-registering metrics.
    pub const ALL: &'static [CloseReason] = &[
        CloseReason::HeaderTimeout,
        CloseReason::IdleTimeout,
        CloseReason::Shed,
        CloseReason::Refused,
    ];

    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shed => "shed",
            CloseReason::Refused => "refused",
        }
    }
}

/// One open connection, as its watchdog and the registry see it.
struct Connection {
    /// Requests whose handler is running (0 or 1 for HTTP/1.1 without pipelining).
    in_progress: AtomicU32,
    /// When it last became idle (accepted, or a response handed to hyper), in ms since `epoch`.
    idle_since_ms: AtomicU64,
    /// Whether it has served a request (then `idle_timeout` applies rather than `header_timeout`).
    served: AtomicBool,
    /// Cancelled to shed it.
    shed: CancellationToken,
}

impl Connection {
    fn is_idle(&self) -> bool {
        self.in_progress.load(Ordering::Acquire) == 0
    }
}

/// Marks a request in progress for as long as it lives.
struct InProgress {
    connection: Arc<Connection>,
    epoch: Instant,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let connection = &self.connection;
        connection.idle_since_ms.store(ms_since(self.epoch), Ordering::Release);
        connection.served.store(true, Ordering::Release);
        connection.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, in slots (a connection's id is its slot) so that a victim can be sampled
/// without walking every connection.
struct Registry {
    epoch: Instant,
    open: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    slots: Vec<Option<Arc<Connection>>>,
    free: Vec<usize>,
    len: usize,
    /// xorshift state for sampling.
    random: u64,
}

/// Connections looked at to find the one to shed: all of them up to this many, else this many
/// chosen at random (the oldest idle of a random sample, as Redis approximates LRU), so an accept at
/// the cap costs the same with 100 connections open or a million.
const SHED_SAMPLE: usize = 256;

impl Slots {
    fn next_random(&mut self) -> u64 {
        // xorshift64: sampling needs spread, not unpredictability.
        let mut x = self.random.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        x
    }

    /// The idle connection idle longest among a sample, if any.
    fn victim(&mut self) -> Option<usize> {
        let is_candidate = |connection: &Arc<Connection>| connection.is_idle() && !connection.shed.is_cancelled();
        let idle_since = |connection: &Arc<Connection>| connection.idle_since_ms.load(Ordering::Acquire);
        if self.slots.len() <= SHED_SAMPLE {
            return self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(id, slot)| slot.as_ref().filter(|c| is_candidate(c)).map(|c| (id, idle_since(c))))
                .min_by_key(|(_, since)| *since)
                .map(|(id, _)| id);
        }
        let mut best: Option<(usize, u64)> = None;
        for _ in 0..SHED_SAMPLE {
            let id = (self.next_random() % self.slots.len() as u64) as usize;
            if let Some(connection) = self.slots[id].as_ref().filter(|c| is_candidate(c)) {
                let since = idle_since(connection);
                if best.is_none_or(|(_, oldest)| since < oldest) {
                    best = Some((id, since));
                }
            }
        }
        best.map(|(id, _)| id)
    }

    fn insert(&mut self, connection: Arc<Connection>) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some(connection);
                id
            }
            None => {
                self.slots.push(Some(connection));
                self.slots.len() - 1
            }
        }
    }

    fn remove(&mut self, id: usize) -> Option<Arc<Connection>> {
        let connection = self.slots.get_mut(id)?.take()?;
        self.free.push(id);
        self.len -= 1;
        Some(connection)
    }
}

impl Registry {
    /// Registers a new connection, shedding the longest-idle one of a sample at the cap; `None` when
    /// the cap is reached and no sampled connection is idle.
    fn admit(self: &Arc<Self>, max_connections: usize, metrics: &ConnectionMetrics) -> Option<Registered> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.len >= max_connections {
            let Some(victim) = open.victim() else {
                metrics.count_closed(CloseReason::Refused);
                return None;
            };
            if let Some(connection) = open.remove(victim) {
                connection.shed.cancel();
                metrics.count_closed(CloseReason::Shed);
            }
        }
        let connection = Arc::new(Connection {
            in_progress: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(ms_since(self.epoch)),
            served: AtomicBool::new(false),
            shed: CancellationToken::new(),
        });
        let id = open.insert(Arc::clone(&connection));
        metrics.open.set(open.len as i64);
        Some(Registered {
            id,
            connection,
            registry: Arc::clone(self),
            metrics: metrics.clone(),
        })
    }

    /// Removes `id` unless it was shed already (then its slot may hold a newer connection).
    fn remove(&self, id: usize, connection: &Arc<Connection>, metrics: &ConnectionMetrics) {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let same = open
            .slots
            .get(id)
            .and_then(Option::as_ref)
            .is_some_and(|held| Arc::ptr_eq(held, connection));
        if same {
            open.remove(id);
        }
        metrics.open.set(open.len as i64);
    }
}

/// A connection's place in the registry, given back when dropped (also when its task panics).
struct Registered {
    id: usize,
    connection: Arc<Connection>,
    registry: Arc<Registry>,
    metrics: ConnectionMetrics,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.id, &self.connection, &self.metrics);
    }
}

fn ms_since(epoch: Instant) -> u64 {
    Instant::now().saturating_duration_since(epoch).as_millis() as u64
}

/// Serves `router` on `listener` under `limits` until `shutdown` is cancelled, then stops accepting
/// and lets the open connections finish; returns when all have closed. The caller bounds the drain.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        open: Mutex::new(Slots::default()),
    });
    let mut tasks = JoinSet::new();
    let mut last_accept_error: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connection tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors (EMFILE) and the like: the error repeats for every pending
                // connection, so log it at most once a second and give closing sockets a moment.
                if last_accept_error.is_none_or(|at| at.elapsed() > Duration::from_secs(1)) {
                    tracing::warn!(%error, "accepting a connection failed");
                    last_accept_error = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(registered) = registry.admit(limits.max_connections, &metrics) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            registered,
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

/// How long a shed connection may take to start a request it had already sent when it was chosen
/// (the victim is picked as idle, but its request may be parsed at that moment).
const SHED_GRACE: Duration = Duration::from_millis(100);

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    registered: Registered,
    shutdown: CancellationToken,
) {
    let epoch = registered.registry.epoch;
    let connection = Arc::clone(&registered.connection);
    let metrics = registered.metrics.clone();
    let service = {
        let connection = Arc::clone(&connection);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            connection.in_progress.fetch_add(1, Ordering::AcqRel);
            let in_progress = InProgress {
                connection: Arc::clone(&connection),
                epoch,
            };
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut router = router.clone();
            async move {
                let response: Result<axum::response::Response, Infallible> =
                    router.call(request.map(axum::body::Body::new)).await;
                drop(in_progress);
                response
            }
        })
    };
    let serving = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(serving);
    let mut draining = false;
    // Shed: hyper is asked to stop after the request in progress, if any; a connection still idle
    // after the grace is closed, one that started a request finishes it and then closes.
    let mut shed_at: Option<Instant> = None;
    loop {
        let deadline = match shed_at {
            Some(at) => at + SHED_GRACE,
            None => watchdog_deadline(&connection, &limits, epoch),
        };
        tokio::select! {
            result = serving.as_mut() => {
                if let Err(error) = result {
                    count_hyper_refusal(&error, &metrics);
                }
                break;
            }
            _ = connection.shed.cancelled(), if shed_at.is_none() => {
                if !draining {
                    serving.as_mut().graceful_shutdown();
                    draining = true;
                }
                shed_at = Some(Instant::now());
            }
            _ = shutdown.cancelled(), if !draining => {
                serving.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = tokio::time::sleep_until(deadline) => {
                if shed_at.is_some() {
                    if connection.is_idle() {
                        break;
                    }
                    // A request started: let it finish under its own timeouts.
                    shed_at = Some(Instant::now() + limits.idle_timeout);
                    continue;
                }
                if connection.is_idle() && watchdog_deadline(&connection, &limits, epoch) <= Instant::now() {
                    let reason = if connection.served.load(Ordering::Acquire) {
                        CloseReason::IdleTimeout
                    } else {
                        CloseReason::HeaderTimeout
                    };
                    metrics.count_closed(reason);
                    tracing::debug!(reason = reason.as_str(), "connection closed");
                    break;
                }
            }
        }
    }
    drop(registered);
}

/// When the watchdog next looks: the idle deadline of an idle connection, or one idle timeout from
/// now for a busy one (its request is bounded by the handler's own timeouts).
fn watchdog_deadline(connection: &Connection, limits: &ConnectionLimits, epoch: Instant) -> Instant {
    if !connection.is_idle() {
        return Instant::now() + limits.idle_timeout;
    }
    let timeout = if connection.served.load(Ordering::Acquire) {
        limits.idle_timeout
    } else {
        limits.header_timeout
    };
    epoch + Duration::from_millis(connection.idle_since_ms.load(Ordering::Acquire)) + timeout
}

/// hyper answered the request itself (400, 414 or 431) and ended the connection: count the answer.
/// hyper answers only head parse errors (its `on_error`): a bad method, URI, version or header
/// (400), a head over the buffer (431) or a URI over its limit (414); other errors get no answer.
fn count_hyper_refusal(error: &hyper::Error, metrics: &ConnectionMetrics) {
    if !error.is_parse() && !error.is_parse_too_large() {
        return;
    }
    // hyper's error kinds are not public beyond these predicates; its message names each case.
    let message = error.to_string();
    let status = if message.contains("URI too long") {
        "414"
    } else if error.is_parse_too_large() {
        "431"
    } else if !message.contains("HTTP2 preface")
        && [
            "invalid HTTP method",
            "invalid URI",
            "invalid HTTP version",
            "invalid HTTP header",
            "invalid content-length",
            "invalid transfer-encoding",
            "unexpected transfer-encoding",
        ]
        .iter()
        .any(|answered| message.starts_with(answered))
    {
        "400"
    } else {
        return;
    };
    metrics.requests.with_label_values(&[status]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(busy: bool, idle_since_ms: u64) -> Arc<Connection> {
        Arc::new(Connection {
            in_progress: AtomicU32::new(u32::from(busy)),
            idle_since_ms: AtomicU64::new(idle_since_ms),
            served: AtomicBool::new(false),
            shed: CancellationToken::new(),
        })
    }

    #[test]
    fn the_victim_is_the_longest_idle_of_few_connections() {
        let mut slots = Slots::default();
        slots.insert(connection(true, 0));
        slots.insert(connection(false, 50));
        slots.insert(connection(false, 20));
        assert_eq!(slots.victim(), Some(2));
        slots.remove(2);
        assert_eq!(slots.victim(), Some(1));
        slots.remove(1);
        assert_eq!(slots.victim(), None, "a busy connection is never shed");
    }

    #[test]
    fn among_many_connections_a_sample_finds_an_idle_one() {
        let mut slots = Slots::default();
        // 100,000 open, a tenth idle: a sample of 256 misses them all with probability 0.9^256.
        for id in 0..100_000u64 {
            slots.insert(connection(id % 10 != 0, id));
        }
        for _ in 0..100 {
            let victim = slots.victim().expect("an idle connection in the sample");
            assert_eq!(victim % 10, 0);
            slots.remove(victim);
            slots.insert(connection(true, 0));
        }
        assert_eq!(slots.len, 100_000);
    }
}
