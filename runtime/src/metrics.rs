//! Registering Prometheus metrics: one helper for every crate's metrics, so that names are checked
//! and registered the same way everywhere, and one renderer for `/metrics`.
//!
//! Each process's metrics live in a [`Registry`] of the component that owns them; a name
//! registered twice in one registry, or an invalid name or label, is a programming error and
//! panics with the metric's name (tests catch it; it cannot depend on input).
//!
//! ```
//! use prometheus::Registry;
//! use qoe_runtime::metrics;
//!
//! let registry = Registry::new();
//! let requests = metrics::counter_vec(&registry, "qoe_example_requests_total", "Requests, by result", &["result"]);
//! requests.with_label_values(&["ok"]).inc();
//! assert!(metrics::render(&registry).contains("qoe_example_requests_total{result=\"ok\"} 1"));
//! ```

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Registers `metric` in `registry` and returns it.
///
/// # Panics
/// When a metric of the same name is registered in `registry` already.
pub fn register<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    let name = metric
        .desc()
        .first()
        .map(|desc| desc.fq_name.clone())
        .unwrap_or_default();
    if let Err(error) = registry.register(Box::new(metric.clone())) {
        panic!("metric {name:?}: {error}");
    }
    metric
}

fn valid<M>(name: &str, metric: prometheus::Result<M>) -> M {
    metric.unwrap_or_else(|error| panic!("metric {name:?}: {error}"))
}

/// A counter `name` in `registry`.
pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, valid(name, IntCounter::new(name, help)))
}

/// A counter `name` with `labels` in `registry`.
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(registry, valid(name, IntCounterVec::new(Opts::new(name, help), labels)))
}

/// A gauge `name` in `registry`.
pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, valid(name, IntGauge::new(name, help)))
}

/// A gauge `name` with `labels` in `registry`.
pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(registry, valid(name, IntGaugeVec::new(Opts::new(name, help), labels)))
}

/// A histogram `name` in `registry`, with `buckets` (Prometheus's default buckets when `None`).
pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: Option<Vec<f64>>) -> Histogram {
    register(
        registry,
        valid(name, Histogram::with_opts(histogram_opts(name, help, buckets))),
    )
}

/// A histogram `name` with `labels` in `registry`.
pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Option<Vec<f64>>,
) -> HistogramVec {
    register(
        registry,
        valid(name, HistogramVec::new(histogram_opts(name, help, buckets), labels)),
    )
}

fn histogram_opts(name: &str, help: &str, buckets: Option<Vec<f64>>) -> HistogramOpts {
    let opts = HistogramOpts::new(name, help);
    match buckets {
        Some(buckets) => opts.buckets(buckets),
        None => opts,
    }
}

/// Every metric of `registry` in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Encoding into a String only fails on invalid UTF-8, which metric names never are.
    let _ = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut text);
    text
}

/// The sum of `counter` over its label values: a job's progress read from its metric handle.
pub fn total(counter: &IntCounterVec) -> u64 {
    counter
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "metric \"qoe_twice_total\"")]
    fn a_name_registered_twice_panics_with_the_name() {
        let registry = Registry::new();
        counter(&registry, "qoe_twice_total", "first");
        counter(&registry, "qoe_twice_total", "second");
    }

    #[test]
    fn total_adds_the_label_values() {
        let registry = Registry::new();
        let by_outcome = counter_vec(&registry, "qoe_sum_total", "help", &["outcome"]);
        assert_eq!(total(&by_outcome), 0);
        by_outcome.with_label_values(&["a"]).inc_by(2);
        by_outcome.with_label_values(&["b"]).inc_by(3);
        assert_eq!(total(&by_outcome), 5);
    }
}
