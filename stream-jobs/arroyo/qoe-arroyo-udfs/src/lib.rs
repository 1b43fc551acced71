//! # qoe-arroyo-udfs: the metric functions of the Arroyo rollup pipeline
//!
//! `stream-jobs/arroyo/pipeline.sql` computes the rollup document v1 (`docs/metrics.md`) on Arroyo.
//! Counts, sums and distinct counts are plain SQL; what SQL cannot do comes from four UDFs, each a
//! thin `#[udf]` wrapper (one per crate under `udfs/`, because the macro exports a fixed symbol) over
//! a function here:
//!
//! | UDF | Kind | Function here | Returns |
//! |---|---|---|---|
//! | `qoe_sketch(DOUBLE)` | UDAF | [`sketch_json`] | the window's [`Sketch`] as JSON TEXT, NULL without values |
//! | `qoe_stats(TEXT, TEXT)` | scalar | [`stats_json`] | `{avg,sum,count[,p50][,p90][,p99]}` as the embedded engine writes it |
//! | `qoe_es_hist(TEXT)` | scalar | [`es_hist_json`] | Elasticsearch's `histogram` field `{values,counts}` |
//! | `qoe_json_string(TEXT)` | scalar | [`json_string`] | a JSON string literal (quoted and escaped) |
//!
//! The percentiles and histograms are those of `qoe-sketch`, the crate the embedded engine's
//! accumulator uses, with the same relative accuracy
//! ([`DEFAULT_RELATIVE_ACCURACY`](qoe_sketch::DEFAULT_RELATIVE_ACCURACY), 0.5 %), so the same values
//! give the same bytes. The sketch travels between the UDAF and the scalar UDFs as its serde JSON,
//! which [`Sketch`]'s deserializer checks. [`Stats`] mirrors `qoe_rollup::Stats` instead of using it,
//! so that the UDF libraries do not pull in `qoe-rollup` and `qoe-schemas`; the golden test
//! (`checks/tests/golden.rs`) holds the two to the same JSON.
//!
//! ```
//! // The UDAF's result for a window with one first-frame time (NULL for an empty window).
//! let sketch = qoe_arroyo_udfs::sketch_json(&[800.0]).unwrap().unwrap();
//! let stats = qoe_arroyo_udfs::stats_json(&sketch, "p50,p90").unwrap();
//! assert_eq!(stats, r#"{"avg":800.0,"sum":800.0,"count":1,"p50":800.0,"p90":800.0}"#);
//! let hist = qoe_arroyo_udfs::es_hist_json(&sketch).unwrap();
//! assert_eq!(hist, r#"{"values":[800.3452595569122],"counts":[1]}"#);
//! assert_eq!(qoe_arroyo_udfs::json_string("isp \"x\""), r#""isp \"x\"""#);
//! assert_eq!(
//!     qoe_arroyo_udfs::stats_json(&sketch, "p95").unwrap_err().to_string(),
//!     "percentile \"p95\" is not one of p50, p90, p99"
//! );
//! ```

use qoe_sketch::{Sketch, SketchError};
use serde::Serialize;

/// Why a UDF could not answer. The `#[udf]` wrappers return NULL on an error, so a bad argument
/// leaves the field out of the document instead of failing the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub enum UdfError {
    /// The sketch text is not a serialized [`Sketch`] (or fails its consistency checks).
    BadSketch(String),
    /// A value the sketch refuses (negative, infinite or NaN).
    BadValue(SketchError),
    /// A percentile name other than `p50`, `p90` or `p99`.
    BadPercentile(String),
}

impl std::fmt::Display for UdfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UdfError::BadSketch(problem) => write!(f, "not a qoe sketch: {problem}"),
            UdfError::BadValue(error) => write!(f, "{error}"),
            UdfError::BadPercentile(name) => {
                write!(f, "percentile {name:?} is not one of p50, p90, p99")
            }
        }
    }
}

impl std::error::Error for UdfError {}

/// The percentiles a document may carry, by name.
const PERCENTILES: [(&str, f64); 3] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)];

/// The sketch of `values` (UDAF `qoe_sketch`): `Ok(None)` without values, the serialized
/// [`Sketch`] (relative accuracy 0.5 %) otherwise.
pub fn sketch_of(values: &[f64]) -> Result<Option<Sketch>, UdfError> {
    if values.is_empty() {
        return Ok(None);
    }
    let mut sketch = Sketch::default();
    for value in values {
        sketch.add(*value).map_err(UdfError::BadValue)?;
    }
    Ok(Some(sketch))
}

/// [`sketch_of`] as JSON text: what the UDAF `qoe_sketch` returns (NULL for `None` or an error).
pub fn sketch_json(values: &[f64]) -> Result<Option<String>, UdfError> {
    Ok(sketch_of(values)?.map(|sketch| to_json(&sketch)))
}

/// Reads a sketch written by [`sketch_json`].
pub fn parse_sketch(text: &str) -> Result<Sketch, UdfError> {
    serde_json::from_str(text).map_err(|error| UdfError::BadSketch(error.to_string()))
}

/// `{avg, sum, count, p50?, p90?, p99?}` of a latency-like metric, as the embedded engine's
/// accumulator fills `qoe_rollup::Stats`: the sketch's exact mean, sum and count, and the listed
/// percentiles from `Sketch::quantile`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Mean of the samples.
    pub avg: f64,
    /// Sum of the samples.
    pub sum: f64,
    /// Number of samples.
    pub count: u64,
    /// Median.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    /// 90th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90: Option<f64>,
    /// 99th percentile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

/// The statistics of `sketch` with the percentiles named in `percentiles` (comma-separated, from
/// `p50`, `p90`, `p99`; empty for none). `None` for an empty sketch.
pub fn stats(sketch: &Sketch, percentiles: &str) -> Result<Option<Stats>, UdfError> {
    let mut wanted = [false; 3];
    for name in percentiles.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let at = PERCENTILES
            .iter()
            .position(|(known, _)| *known == name)
            .ok_or_else(|| UdfError::BadPercentile(name.to_string()))?;
        wanted[at] = true;
    }
    let Some(avg) = sketch.mean() else {
        return Ok(None);
    };
    let pick = |at: usize| wanted[at].then(|| sketch.quantile(PERCENTILES[at].1)).flatten();
    Ok(Some(Stats {
        avg,
        sum: sketch.sum(),
        count: sketch.count(),
        p50: pick(0),
        p90: pick(1),
        p99: pick(2),
    }))
}

/// [`stats`] of a serialized sketch, as JSON text: what the UDF `qoe_stats` returns.
pub fn stats_json(sketch: &str, percentiles: &str) -> Result<String, UdfError> {
    let sketch = parse_sketch(sketch)?;
    let stats = stats(&sketch, percentiles)?.ok_or(UdfError::BadSketch("empty sketch".to_string()))?;
    Ok(to_json(&stats))
}

/// The sketch's buckets in Elasticsearch's `histogram` field format, `{"values":[..],"counts":[..]}`
/// (`Sketch::histogram`, as the engine writes `<metric>_hist`): what the UDF `qoe_es_hist` returns.
pub fn es_hist_json(sketch: &str) -> Result<String, UdfError> {
    let sketch = parse_sketch(sketch)?;
    if sketch.count() == 0 {
        return Err(UdfError::BadSketch("empty sketch".to_string()));
    }
    Ok(to_json(&sketch.histogram()))
}

/// `text` as a JSON string literal, quoted and escaped: what the UDF `qoe_json_string` returns, so
/// that dimension values (any text up to 64 characters, control characters included) can be spliced
/// into the document SQL builds.
pub fn json_string(text: &str) -> String {
    to_json(text)
}

/// Serializes a value that cannot fail to serialize (no maps with non-string keys, no NaN: serde_json
/// writes a non-finite float as `null`).
fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_input_is_null() {
        assert_eq!(sketch_json(&[]), Ok(None));
    }

    #[test]
    fn bad_values_and_sketches_are_errors() {
        assert_eq!(
            sketch_json(&[1.0, -2.0]).unwrap_err().to_string(),
            "value -2 is negative or not finite"
        );
        assert!(stats_json("{}", "p50")
            .unwrap_err()
            .to_string()
            .starts_with("not a qoe sketch: "));
        assert!(es_hist_json("[1]").is_err());
    }

    #[test]
    fn percentile_lists() {
        // Percentiles are clamped to [min, max]: equal values give exact percentiles.
        let sketch = sketch_json(&[10.0, 10.0]).unwrap().unwrap();
        assert_eq!(stats_json(&sketch, "").unwrap(), r#"{"avg":10.0,"sum":20.0,"count":2}"#);
        assert_eq!(
            stats_json(&sketch, " p99 , p50").unwrap(),
            r#"{"avg":10.0,"sum":20.0,"count":2,"p50":10.0,"p99":10.0}"#
        );
    }

    #[test]
    fn zeros_have_their_own_bucket() {
        let sketch = sketch_json(&[0.0, 0.0, 200.0]).unwrap().unwrap();
        assert!(es_hist_json(&sketch).unwrap().starts_with(r#"{"values":[0.0,"#));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(json_string("a\u{1}b\\"), r#""a\u0001b\\""#);
    }
}
