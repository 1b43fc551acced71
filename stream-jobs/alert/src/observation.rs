//! What both kinds of rule share: the observation a rule makes of one series in one window, and the
//! robust statistics (median, MAD) and number formatting they judge and describe it with. Used by
//! the evaluator ([`crate::evaluator`]) and the incident rules ([`crate::incident`]).

use std::collections::BTreeMap;

use qoe_rollup::Grain;

use crate::event::Localisation;

/// 1.4826 × MAD estimates the standard deviation of normal data.
pub(crate) const MAD_SCALE: f64 = 1.4826;

/// What one rule saw of one series in one window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Observation {
    pub(crate) grain: Grain,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) holds: bool,
    pub(crate) value: Option<f64>,
    pub(crate) threshold: Option<f64>,
    pub(crate) localisation: Localisation,
    pub(crate) summary: String,
}

/// Median and median absolute deviation (0 and 0 for no values).
pub(crate) fn median_mad(values: &[f64]) -> (f64, f64) {
    fn median(sorted: &mut [f64]) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        sorted.sort_by(f64::total_cmp);
        let mid = sorted.len() / 2;
        if sorted.len() % 2 == 1 {
            sorted[mid]
        } else {
            (sorted[mid - 1] + sorted[mid]) / 2.0
        }
    }
    let mut sorted = values.to_vec();
    let center = median(&mut sorted);
    let mut deviations: Vec<f64> = values.iter().map(|value| (value - center).abs()).collect();
    (center, median(&mut deviations))
}

/// Four significant digits, for summaries.
pub(crate) fn round(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}
