//! `--metrics-addr`: a job's own metrics at `/metrics` in the Prometheus text format.

use std::net::SocketAddr;

use anyhow::Context;
use axum::routing::get;
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// Serves `registry` at `http://ADDR/metrics` until `shutdown`.
pub(crate) async fn spawn(addr: SocketAddr, registry: Registry, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-addr {addr}: cannot listen"))?;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { qoe_runtime::metrics::render(&registry) }
        }),
    );
    tracing::info!(%addr, "metrics at /metrics");
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "metrics endpoint stopped");
        }
    });
    Ok(())
}
