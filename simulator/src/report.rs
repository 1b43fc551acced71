//! The outcome of [`crate::run`]: counts, throughput and request latency.

use std::collections::BTreeMap;
use std::fmt;

use qoe_schemas::{Beacon, BeaconType};
use serde::Serialize;

use crate::incidents::Incident;
use crate::SimConfig;

/// Request latency percentiles, ms, from sending a request to reading its whole response.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyPercentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest request.
    pub max: f64,
}

impl LatencyPercentiles {
    /// Percentiles of `samples` (ms), nearest-rank; `None` when empty. Sorts the samples.
    pub fn from_samples(samples: &mut [f64]) -> Option<LatencyPercentiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable_by(f64::total_cmp);
        let rank = |percent: f64| {
            let index = ((percent / 100.0) * samples.len() as f64).ceil() as usize;
            samples[index.clamp(1, samples.len()) - 1]
        };
        Some(LatencyPercentiles {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: samples[samples.len() - 1],
        })
    }
}

/// What a simulation did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimReport {
    /// The target, as `http://...`, `file:PATH` or `discard`.
    pub target: String,
    /// The seed.
    pub seed: u64,
    /// Simulated start, epoch ms.
    pub start_ms: u64,
    /// Simulated span, ms.
    pub duration_ms: u64,
    /// Beacons the generator produced.
    pub generated: u64,
    /// Beacons handed to the target: put in a request (each batch counted once, however often it was
    /// retried) or written to the file; 0 for `discard`.
    pub sent: u64,
    /// Beacons the collector accepted.
    pub accepted: u64,
    /// Beacons the collector rejected (listed in its 200 responses).
    pub rejected: u64,
    /// Beacons in batches that ultimately failed (error status, attempts exhausted, or shutdown).
    pub failed: u64,
    /// HTTP requests made, retries included.
    pub requests: u64,
    /// Requests that were resends of a batch after 429, 503 or a transport error.
    pub retries: u64,
    /// Failed requests by HTTP status (or `transport`, `bad_response`).
    pub request_errors: BTreeMap<String, u64>,
    /// The first few distinct rejection messages, for a quick look at what the collector refused.
    pub rejection_samples: Vec<String>,
    /// Wall-clock seconds of the run (of the sending phase when `pregenerate`).
    pub elapsed_secs: f64,
    /// Wall-clock seconds spent building request bodies up front (`pregenerate` only).
    pub pregenerate_secs: f64,
    /// Beacons per second achieved: `sent` (or `generated` for `discard`) over `elapsed_secs`.
    pub beacons_per_sec: f64,
    /// Request latency, when requests were made.
    pub latency_ms: Option<LatencyPercentiles>,
    /// Generated beacons by type.
    pub by_type: BTreeMap<String, u64>,
    /// The scripted incidents of this simulation.
    pub incidents: Vec<Incident>,
    /// Whether the run stopped early because of shutdown.
    pub interrupted: bool,
}

impl SimReport {
    /// An empty report for `config`.
    pub(crate) fn new(config: &SimConfig) -> SimReport {
        SimReport {
            target: config.target.to_string(),
            seed: config.seed,
            start_ms: config.start_ms,
            duration_ms: config.duration_ms,
            generated: 0,
            sent: 0,
            accepted: 0,
            rejected: 0,
            failed: 0,
            requests: 0,
            retries: 0,
            request_errors: BTreeMap::new(),
            rejection_samples: Vec::new(),
            elapsed_secs: 0.0,
            pregenerate_secs: 0.0,
            beacons_per_sec: 0.0,
            latency_ms: None,
            by_type: BTreeMap::new(),
            incidents: crate::incidents(config),
            interrupted: false,
        }
    }

    /// Sets `elapsed_secs` and the throughput of `handled` beacons.
    pub(crate) fn finish(&mut self, handled: u64, elapsed_secs: f64) {
        self.elapsed_secs = elapsed_secs;
        self.beacons_per_sec = if elapsed_secs > 0.0 {
            handled as f64 / elapsed_secs
        } else {
            0.0
        };
    }
}

/// Counts beacons by type on the generating thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct TypeTally {
    counts: [u64; BeaconType::ALL.len()],
}

impl TypeTally {
    pub(crate) fn count(&mut self, beacon: &Beacon) {
        self.counts[beacon.kind as usize] += 1;
    }

    pub(crate) fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The counts by wire name, types with no beacon left out.
    pub(crate) fn by_name(&self) -> BTreeMap<String, u64> {
        BeaconType::ALL
            .iter()
            .zip(self.counts)
            .filter(|(_, count)| *count > 0)
            .map(|(kind, count)| (kind.as_str().to_string(), count))
            .collect()
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let minutes = self.duration_ms as f64 / 60_000.0;
        write!(
            f,
            "simulated {minutes:.1} min (seed {}) to {}: {} beacons generated",
            self.seed, self.target, self.generated
        )?;
        if self.target != "discard" {
            write!(f, ", {} sent", self.sent)?;
        }
        if self.requests > 0 {
            write!(
                f,
                ": {} accepted, {} rejected, {} failed",
                self.accepted, self.rejected, self.failed
            )?;
        }
        if self.interrupted {
            f.write_str(" (interrupted)")?;
        }
        writeln!(f)?;
        write!(f, "{:.2} s, {:.0} beacons/s", self.elapsed_secs, self.beacons_per_sec)?;
        if self.pregenerate_secs > 0.0 {
            write!(f, " (bodies built beforehand in {:.2} s)", self.pregenerate_secs)?;
        }
        if self.requests > 0 {
            write!(f, "; {} requests, {} retries", self.requests, self.retries)?;
        }
        if let Some(latency) = self.latency_ms {
            write!(
                f,
                "; latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                latency.p50, latency.p90, latency.p99, latency.max
            )?;
        }
        writeln!(f)?;
        if !self.request_errors.is_empty() {
            let errors: Vec<String> = self
                .request_errors
                .iter()
                .map(|(status, count)| format!("{status} x{count}"))
                .collect();
            writeln!(f, "request errors: {}", errors.join(", "))?;
        }
        if !self.rejection_samples.is_empty() {
            writeln!(f, "rejections, e.g.: {}", self.rejection_samples.join("; "))?;
        }
        let types: Vec<String> = self
            .by_type
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect();
        write!(f, "by type: {}", types.join(", "))?;
        for incident in &self.incidents {
            let subject = incident.cdn.as_deref().or(incident.room_id.as_deref()).unwrap_or("-");
            let minutes_in = |ts: u64| ts.saturating_sub(self.start_ms) as f64 / 60_000.0;
            write!(
                f,
                "\nincident {} on {subject}: ts {}..{} (minutes {:.1} to {:.1} of the run)",
                incident.kind.as_str(),
                incident.start_ms,
                incident.end_ms,
                minutes_in(incident.start_ms),
                minutes_in(incident.end_ms)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let latency = LatencyPercentiles::from_samples(&mut samples).unwrap();
        assert_eq!(
            (latency.p50, latency.p90, latency.p99, latency.max),
            (50.0, 90.0, 99.0, 100.0)
        );
        let mut one = vec![7.0];
        let latency = LatencyPercentiles::from_samples(&mut one).unwrap();
        assert_eq!((latency.p50, latency.max), (7.0, 7.0));
        assert!(LatencyPercentiles::from_samples(&mut []).is_none());
    }
}
