//! # qoe-sketch: mergeable quantiles with a relative-error bound
//!
//! The percentiles of the stream job's minute rollups (first-frame time, RTT, latency, ...) come from
//! a [`Sketch`]: a logarithmic histogram in the manner of DDSketch (Masson, Rim, Lee, VLDB 2019). It is
//! the one piece of metric code that the embedded engine and the Arroyo UDFs share, so it has no
//! dependencies beyond `serde` and does no IO.
//!
//! Guarantees, for non-negative finite values:
//! - **relative error**: [`Sketch::quantile`] returns a value within `α` (the sketch's relative
//!   accuracy, [`DEFAULT_RELATIVE_ACCURACY`] = 0.5 % unless chosen otherwise) of the exact order
//!   statistic `x_⌊q(n−1)⌋` of the values added (`x_0 ≤ … ≤ x_{n−1}`); values below
//!   [`MIN_POSITIVE`] are kept as 0;
//! - **mergeable**: [`Sketch::merge`] of the sketches of two sets of values is the sketch of their
//!   union, bucket for bucket, so minute rollups can be merged into hours or across dimensions;
//! - **exact totals**: count, sum, min and max are kept exactly (the sum as an `f64`);
//! - [`Sketch::histogram`] gives the buckets as Elasticsearch's `histogram` field expects them
//!   (`values` strictly ascending, `counts` positive integers), each value within `α` of every value
//!   counted in its bucket, so Kibana and Grafana compute percentiles over any time range and any set
//!   of dimensions from merged buckets, not averages of percentiles.
//!
//! ```
//! use qoe_sketch::Sketch;
//! let mut sketch = Sketch::default();
//! for first_frame_ms in [800.0, 950.0, 1200.0, 4000.0] {
//!     sketch.add(first_frame_ms).unwrap();
//! }
//! let p50 = sketch.quantile(0.5).unwrap(); // the order statistic x_1 = 950, within 0.5 %
//! assert!((p50 - 950.0).abs() <= 950.0 * 0.005);
//! assert_eq!(sketch.count(), 4);
//! assert_eq!(sketch.histogram().counts, vec![1, 1, 1, 1]);
//! assert_eq!(sketch.add(-1.0).unwrap_err().to_string(), "value -1 is negative or not finite");
//! ```

use serde::{Deserialize, Serialize};

/// The relative accuracy of [`Sketch::default`]: 0.5 %.
pub const DEFAULT_RELATIVE_ACCURACY: f64 = 0.005;

/// Values below this are counted as 0 (a duration of a nanosecond of a millisecond is no duration).
pub const MIN_POSITIVE: f64 = 1e-9;

/// Why a value or a merge was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SketchError {
    /// The sketch holds durations, sizes and rates: a negative, infinite or NaN value is a bug upstream.
    #[error("value {0} is negative or not finite")]
    BadValue(f64),
    /// Sketches of different accuracies have different buckets.
    #[error("cannot merge a sketch of relative accuracy {theirs} into one of {ours}")]
    AccuracyMismatch {
        /// This sketch's accuracy.
        ours: f64,
        /// The other sketch's accuracy.
        theirs: f64,
    },
    /// A relative accuracy outside (0, 1).
    #[error("relative accuracy {0} is not between 0 and 1")]
    BadAccuracy(f64),
    /// A serialized sketch whose fields contradict each other.
    #[error("inconsistent sketch: {0}")]
    Inconsistent(&'static str),
}

/// A sketch as serialized, before its checks. The min and max of an empty sketch are infinite, which
/// JSON writes as `null`.
#[derive(Deserialize)]
struct SketchState {
    alpha: f64,
    zeros: u64,
    offset: i32,
    bins: Vec<u64>,
    count: u64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
}

impl TryFrom<SketchState> for Sketch {
    type Error = SketchError;

    fn try_from(state: SketchState) -> Result<Self, SketchError> {
        let empty = Sketch::new(state.alpha)?;
        let counted = state
            .bins
            .iter()
            .try_fold(state.zeros, |total, count| total.checked_add(*count));
        if counted != Some(state.count) {
            return Err(SketchError::Inconsistent("count is not the sum of the buckets"));
        }
        let fits = i32::try_from(state.bins.len())
            .ok()
            .and_then(|len| state.offset.checked_add(len))
            .is_some();
        if !fits {
            return Err(SketchError::Inconsistent("bucket range beyond i32"));
        }
        if state.count == 0 {
            return Ok(empty);
        }
        let (Some(min), Some(max)) = (state.min, state.max) else {
            return Err(SketchError::Inconsistent("min, max or sum out of range"));
        };
        if !(min.is_finite() && max.is_finite() && 0.0 <= min && min <= max && state.sum.is_finite()) {
            return Err(SketchError::Inconsistent("min, max or sum out of range"));
        }
        Ok(Sketch {
            zeros: state.zeros,
            offset: state.offset,
            bins: state.bins,
            count: state.count,
            sum: state.sum,
            min,
            max,
            ..empty
        })
    }
}

/// A mergeable quantile sketch of non-negative values (see the crate docs for its guarantees).
///
/// Serialized as its fields; a serialized sketch is checked when it is read back (accuracy in range,
/// counts that add up, bucket range within `i32`), so a corrupt rollup is refused instead of answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "SketchState")]
pub struct Sketch {
    /// Relative accuracy `α`.
    alpha: f64,
    /// Values below [`MIN_POSITIVE`].
    zeros: u64,
    /// Index of `bins[0]`: bucket `k` holds the values in `(γ^(k−1), γ^k]`, `γ = (1+α)/(1−α)`.
    offset: i32,
    /// Counts of buckets `offset, offset + 1, …`.
    bins: Vec<u64>,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::empty(DEFAULT_RELATIVE_ACCURACY)
    }
}

/// The buckets of a sketch in Elasticsearch's `histogram` field format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Bucket values, strictly ascending (0 for the bucket of zeros).
    pub values: Vec<f64>,
    /// How many values each bucket counts, all positive.
    pub counts: Vec<u64>,
}

impl Sketch {
    /// An empty sketch of relative accuracy `alpha` (in (0, 1)).
    pub fn new(alpha: f64) -> Result<Self, SketchError> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(SketchError::BadAccuracy(alpha));
        }
        Ok(Sketch::empty(alpha))
    }

    fn empty(alpha: f64) -> Self {
        Sketch {
            alpha,
            zeros: 0,
            offset: 0,
            bins: Vec::new(),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// The relative accuracy `α`.
    pub fn relative_accuracy(&self) -> f64 {
        self.alpha
    }

    fn ln_gamma(&self) -> f64 {
        ((1.0 + self.alpha) / (1.0 - self.alpha)).ln()
    }

    /// The bucket of a value of at least [`MIN_POSITIVE`].
    fn index(&self, value: f64) -> i32 {
        // |ln(1e-9)| / ln γ and ln(f64::MAX) / ln γ fit an i32 for any α above 1e-6.
        (value.ln() / self.ln_gamma()).ceil() as i32
    }

    /// The value that stands for bucket `k`: `2γ^k / (γ + 1)`, within `α` of every value in it.
    fn bucket_value(&self, index: i32) -> f64 {
        let gamma = (1.0 + self.alpha) / (1.0 - self.alpha);
        2.0 * (f64::from(index) * self.ln_gamma()).exp() / (gamma + 1.0)
    }

    /// Adds one value.
    pub fn add(&mut self, value: f64) -> Result<(), SketchError> {
        self.add_n(value, 1)
    }

    /// Adds a value `n` times.
    pub fn add_n(&mut self, value: f64, n: u64) -> Result<(), SketchError> {
        if !(value.is_finite() && value >= 0.0) {
            return Err(SketchError::BadValue(value));
        }
        if n == 0 {
            return Ok(());
        }
        if value < MIN_POSITIVE {
            self.zeros += n;
        } else {
            let index = self.index(value);
            *self.bin_mut(index) += n;
        }
        self.count += n;
        self.sum += value * n as f64;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        Ok(())
    }

    /// The count of bucket `index`, growing the dense bucket range to hold it.
    fn bin_mut(&mut self, index: i32) -> &mut u64 {
        if self.bins.is_empty() {
            self.offset = index;
            self.bins.push(0);
        } else if index < self.offset {
            let missing = (self.offset - index) as usize;
            self.bins.splice(0..0, std::iter::repeat_n(0, missing));
            self.offset = index;
        } else if (index - self.offset) as usize >= self.bins.len() {
            self.bins.resize((index - self.offset) as usize + 1, 0);
        }
        &mut self.bins[(index - self.offset) as usize]
    }

    /// Adds every value of `other`, a sketch of the same relative accuracy.
    pub fn merge(&mut self, other: &Sketch) -> Result<(), SketchError> {
        if other.alpha != self.alpha {
            return Err(SketchError::AccuracyMismatch {
                ours: self.alpha,
                theirs: other.alpha,
            });
        }
        for (at, count) in other.bins.iter().enumerate() {
            if *count > 0 {
                *self.bin_mut(other.offset + at as i32) += count;
            }
        }
        self.zeros += other.zeros;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        Ok(())
    }

    /// How many values were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their sum.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Their mean, `None` without values.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The smallest value, `None` without values.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value, `None` without values.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The `q`-quantile (`q` in [0, 1], clamped): within `α` of the order statistic `x_⌊q(n−1)⌋`;
    /// `None` without values.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        if rank < self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        for (at, count) in self.bins.iter().enumerate() {
            seen += count;
            if seen > rank {
                let estimate = self.bucket_value(self.offset + at as i32);
                // The order statistic lies in [min, max]: clamping only moves the estimate towards it.
                return Some(estimate.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The non-empty buckets in Elasticsearch's `histogram` field format.
    pub fn histogram(&self) -> Histogram {
        let mut values = Vec::new();
        let mut counts = Vec::new();
        if self.zeros > 0 {
            values.push(0.0);
            counts.push(self.zeros);
        }
        for (at, count) in self.bins.iter().enumerate() {
            if *count > 0 {
                values.push(self.bucket_value(self.offset + at as i32));
                counts.push(*count);
            }
        }
        Histogram { values, counts }
    }
}
