//! The accept loop: HTTP/1.1 connections under a cap, with header and keep-alive timeouts.
//!
//! What a client gets (the "Hostile clients" section of `docs/collector.md` lists the defaults):
//! - **At most `max_connections` open.** A connection accepted at the cap closes the connection that
//!   has been idle longest (no request in progress: waiting for its first headers, or between two
//!   requests), so a valid request still gets through while sockets that send nothing hold every
//!   slot. Only when every open connection is in the middle of a request is the new one closed at
//!   once. Counted as `qoe_collector_connections_closed_total{reason="shed"}` and `{reason="refused"}`.
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

use std::collections::HashMap;
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

/// The open connections.
struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Registry {
    /// Registers a new connection, shedding the longest-idle one at the cap; `None` when the cap is
    /// reached and no connection is idle.
    fn admit(&self, max_connections: usize, metrics: &ConnectionMetrics) -> Option<(u64, Arc<Connection>)> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.len() >= max_connections {
            let victim = open
                .iter()
                .filter(|(_, connection)| connection.is_idle() && !connection.shed.is_cancelled())
                .min_by_key(|(_, connection)| connection.idle_since_ms.load(Ordering::Acquire))
                .map(|(id, _)| *id);
            let Some(victim) = victim else {
                metrics.count_closed(CloseReason::Refused);
                return None;
            };
            if let Some(connection) = open.remove(&victim) {
                connection.shed.cancel();
                metrics.count_closed(CloseReason::Shed);
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            in_progress: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(ms_since(self.epoch)),
            served: AtomicBool::new(false),
            shed: CancellationToken::new(),
        });
        open.insert(id, Arc::clone(&connection));
        metrics.open.set(open.len() as i64);
        Some((id, connection))
    }

    fn remove(&self, id: u64, metrics: &ConnectionMetrics) {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        open.remove(&id);
        metrics.open.set(open.len() as i64);
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
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
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
        let Some((id, connection)) = registry.admit(limits.max_connections, &metrics) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits,
            Arc::clone(&registry),
            (id, connection),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    while tasks.join_next().await.is_some() {}
}

#[allow(clippy::too_many_arguments)] // one call site, each argument a distinct piece of the connection
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    registry: Arc<Registry>,
    (id, connection): (u64, Arc<Connection>),
    metrics: ConnectionMetrics,
    shutdown: CancellationToken,
) {
    let epoch = registry.epoch;
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
    loop {
        let deadline = watchdog_deadline(&connection, &limits, epoch);
        tokio::select! {
            result = serving.as_mut() => {
                if let Err(error) = result {
                    count_hyper_refusal(&error, &metrics);
                }
                break;
            }
            _ = connection.shed.cancelled() => break,
            _ = shutdown.cancelled(), if !draining => {
                serving.as_mut().graceful_shutdown();
                draining = true;
            }
            _ = tokio::time::sleep_until(deadline) => {
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
    registry.remove(id, &metrics);
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
fn count_hyper_refusal(error: &hyper::Error, metrics: &ConnectionMetrics) {
    if !error.is_parse() && !error.is_parse_too_large() {
        return;
    }
    // hyper's error kinds are not public beyond these predicates; its message names the URI case.
    let status = if !error.is_parse_too_large() {
        "400"
    } else if error.to_string().contains("URI too long") {
        "414"
    } else {
        "431"
    };
    metrics.requests.with_label_values(&[status]).inc();
}
