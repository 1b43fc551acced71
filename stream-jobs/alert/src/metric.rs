//! Metric paths (`stall_ratio`, `first_frame_ms.p90`, ...) and their values over one or more rollup
//! documents of a window, combined as `docs/metrics.md` says dashboards must: counts and sums added,
//! ratios and averages recomputed from the sums, percentiles from the merged `*_hist` histograms.

use std::collections::BTreeMap;

use qoe_rollup::{Hist, RollupDoc, Stats, COUNT_FIELDS};

/// A statistics field and its histogram, if it has one.
type StatsFn = fn(&RollupDoc) -> (Option<&Stats>, Option<&Hist>);

/// Statistics fields with the percentiles the contract writes for them.
const STATS: &[(&str, &[&str], StatsFn)] = &[
    ("first_frame_ms", &["p50", "p90", "p99"], |d| {
        (d.first_frame_ms.as_ref(), d.first_frame_ms_hist.as_ref())
    }),
    ("dns_ms", &["p50", "p90", "p99"], |d| {
        (d.dns_ms.as_ref(), d.dns_ms_hist.as_ref())
    }),
    ("connect_ms", &["p50", "p90", "p99"], |d| {
        (d.connect_ms.as_ref(), d.connect_ms_hist.as_ref())
    }),
    ("first_packet_ms", &["p50", "p90", "p99"], |d| {
        (d.first_packet_ms.as_ref(), d.first_packet_ms_hist.as_ref())
    }),
    ("startup_skip_ms", &["p90"], |d| {
        (d.startup_skip_ms.as_ref(), d.startup_skip_ms_hist.as_ref())
    }),
    ("latency_ms", &["p50", "p90"], |d| {
        (d.latency_ms.as_ref(), d.latency_ms_hist.as_ref())
    }),
    ("rtt_ms", &["p50", "p90"], |d| {
        (d.rtt_ms.as_ref(), d.rtt_ms_hist.as_ref())
    }),
    ("bitrate_kbps", &[], |d| (d.bitrate_kbps.as_ref(), None)),
    ("buffer_ms", &[], |d| (d.buffer_ms.as_ref(), None)),
    ("encode_fps", &[], |d| (d.encode_fps.as_ref(), None)),
    ("output_kbps", &[], |d| (d.output_kbps.as_ref(), None)),
    ("target_kbps", &[], |d| (d.target_kbps.as_ref(), None)),
    ("cpu_pct", &[], |d| (d.cpu_pct.as_ref(), None)),
];

/// A numeric rollup field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Metric {
    /// A count or sum (index into `COUNT_FIELDS`).
    Count(usize),
    /// `stall_ms / (watch_ms + stall_ms)`.
    StallRatio,
    /// `stall_count / (watch_ms / 3,600,000)`.
    StallsPerHour,
    /// `httpdns_first_frames / resolved_first_frames`.
    HttpdnsShare,
    /// `<stats>.avg|sum|count` (index into `STATS`).
    Stat(usize, StatPart),
    /// `<stats>.p50|p90|p99`.
    Percentile(usize, f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatPart {
    Avg,
    Sum,
    Count,
}

impl Metric {
    /// The metric of a path, if it names a numeric field of the contract.
    pub(crate) fn parse(path: &str) -> Option<Metric> {
        if let Some(index) = COUNT_FIELDS.iter().position(|(name, _)| *name == path) {
            return Some(Metric::Count(index));
        }
        match path {
            "stall_ratio" => return Some(Metric::StallRatio),
            "stalls_per_hour" => return Some(Metric::StallsPerHour),
            "httpdns_share" => return Some(Metric::HttpdnsShare),
            _ => {}
        }
        let (field, part) = path.split_once('.')?;
        let index = STATS.iter().position(|(name, _, _)| *name == field)?;
        match part {
            "avg" => Some(Metric::Stat(index, StatPart::Avg)),
            "sum" => Some(Metric::Stat(index, StatPart::Sum)),
            "count" => Some(Metric::Stat(index, StatPart::Count)),
            _ if STATS[index].1.contains(&part) => {
                let quantile = match part {
                    "p50" => 0.5,
                    "p90" => 0.9,
                    _ => 0.99,
                };
                Some(Metric::Percentile(index, quantile))
            }
            _ => None,
        }
    }

    /// The value over `docs` (one series' documents of one window), or `None` where the contract
    /// leaves it out (no samples, a zero denominator) or there is no document.
    pub(crate) fn value(self, docs: &[&RollupDoc]) -> Option<f64> {
        if docs.is_empty() {
            return None;
        }
        let sum = |field: fn(&RollupDoc) -> u64| docs.iter().map(|doc| field(doc)).sum::<u64>() as f64;
        let ratio = |numerator: f64, denominator: f64| (denominator > 0.0).then(|| numerator / denominator);
        match self {
            Metric::Count(index) => Some(sum(COUNT_FIELDS[index].1)),
            Metric::StallRatio => {
                let stall = sum(|d| d.stall_ms);
                ratio(stall, stall + sum(|d| d.watch_ms))
            }
            Metric::StallsPerHour => ratio(sum(|d| d.stall_count), sum(|d| d.watch_ms) / 3_600_000.0),
            Metric::HttpdnsShare => ratio(sum(|d| d.httpdns_first_frames), sum(|d| d.resolved_first_frames)),
            Metric::Stat(index, part) => {
                let stats: Vec<&Stats> = docs.iter().filter_map(|doc| STATS[index].2(doc).0).collect();
                let total: f64 = stats.iter().map(|stats| stats.sum).sum();
                let count: u64 = stats.iter().map(|stats| stats.count).sum();
                match part {
                    _ if count == 0 => None,
                    StatPart::Avg => Some(total / count as f64),
                    StatPart::Sum => Some(total),
                    StatPart::Count => Some(count as f64),
                }
            }
            Metric::Percentile(index, quantile) => {
                if let [doc] = docs {
                    let stats = STATS[index].2(doc).0?;
                    return match quantile {
                        0.5 => stats.p50,
                        0.9 => stats.p90,
                        _ => stats.p99,
                    };
                }
                merged_quantile(docs.iter().filter_map(|doc| STATS[index].2(doc).1), quantile)
            }
        }
    }
}

/// The order statistic `x_⌊q(n−1)⌋` of the merged histograms (each bucket value stands for its
/// samples, within the sketch's relative accuracy, as in the documents' own percentiles).
fn merged_quantile<'a>(hists: impl Iterator<Item = &'a Hist>, quantile: f64) -> Option<f64> {
    // Non-negative finite values order like their bit patterns.
    let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
    for hist in hists {
        for (value, count) in hist.values.iter().zip(&hist.counts) {
            *buckets.entry(value.max(0.0).to_bits()).or_default() += count;
        }
    }
    let total: u64 = buckets.values().sum();
    if total == 0 {
        return None;
    }
    let rank = (quantile * (total - 1) as f64).floor() as u64;
    let mut seen = 0;
    for (bits, count) in &buckets {
        seen += count;
        if seen > rank {
            return Some(f64::from_bits(*bits));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_contract() {
        for good in [
            "joins",
            "stall_ratio",
            "first_frame_ms.p99",
            "rtt_ms.avg",
            "cpu_pct.count",
            "startup_skip_ms.p90",
        ] {
            assert!(Metric::parse(good).is_some(), "{good}");
        }
        for bad in [
            "stal_ratio",
            "rtt_ms.p99",
            "cpu_pct.p50",
            "first_frame_ms",
            "cdn",
            "joins.avg",
            "",
        ] {
            assert!(Metric::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn combined_documents_use_sums_and_merged_histograms() {
        let doc = |stall_ms, watch_ms, values: Vec<f64>, counts: Vec<u64>| RollupDoc {
            stall_ms,
            watch_ms,
            first_frame_ms: Some(Stats {
                avg: 0.0,
                sum: 100.0,
                count: counts.iter().sum(),
                p50: Some(1.0),
                p90: None,
                p99: None,
            }),
            first_frame_ms_hist: Some(Hist { values, counts }),
            ..RollupDoc::default()
        };
        let a = doc(10, 90, vec![100.0, 200.0], vec![1, 1]);
        let b = doc(0, 900, vec![300.0], vec![2]);
        let both = [&a, &b];
        assert_eq!(Metric::parse("stall_ratio").unwrap().value(&both), Some(0.01));
        assert_eq!(Metric::parse("first_frame_ms.avg").unwrap().value(&both), Some(50.0));
        // Samples 100, 200, 300, 300: x_⌊0.5·3⌋ = x_1 = 200; x_⌊0.99·3⌋ = x_2 = 300.
        assert_eq!(Metric::parse("first_frame_ms.p50").unwrap().value(&both), Some(200.0));
        assert_eq!(Metric::parse("first_frame_ms.p99").unwrap().value(&both), Some(300.0));
        // One document: its own field.
        assert_eq!(Metric::parse("first_frame_ms.p50").unwrap().value(&[&a]), Some(1.0));
        assert_eq!(
            Metric::parse("stall_ratio").unwrap().value(&[&RollupDoc::default()]),
            None
        );
    }
}
