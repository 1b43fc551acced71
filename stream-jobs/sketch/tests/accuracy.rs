//! The sketch against exact answers computed from the sorted values: quantiles within the relative
//! accuracy, merges equal to the sketch of the union, histograms in Elasticsearch's format.

use qoe_sketch::{Sketch, SketchError, DEFAULT_RELATIVE_ACCURACY};

/// A small deterministic generator (xorshift64*), so the tests need no dependency and always see the
/// same values.
struct Values(u64);

impl Values {
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Distributions shaped like the rollups' inputs: uniform milliseconds, a heavy tail (log-uniform over
/// six decades), integers with many repeats, and many zeros (stall time).
fn distributions() -> Vec<(&'static str, Vec<f64>)> {
    let mut values = Values(0x9e37_79b9_7f4a_7c15);
    let uniform = (0..20_000).map(|_| 1.0 + 9_999.0 * values.next_unit()).collect();
    let heavy = (0..20_000)
        .map(|_| 10f64.powf(-1.0 + 6.0 * values.next_unit()))
        .collect();
    let repeats = (0..20_000)
        .map(|_| (values.next_unit() * 20.0).floor() * 250.0 + 500.0)
        .collect();
    let zeros = (0..20_000)
        .map(|_| {
            let draw = values.next_unit();
            if draw < 0.7 {
                0.0
            } else {
                draw * 3_000.0
            }
        })
        .collect();
    vec![
        ("uniform", uniform),
        ("heavy tail", heavy),
        ("repeats", repeats),
        ("zeros", zeros),
        ("one value", vec![1234.0; 10]),
        ("single", vec![42.0]),
    ]
}

fn sketch_of(values: &[f64]) -> Sketch {
    let mut sketch = Sketch::default();
    for value in values {
        sketch.add(*value).unwrap();
    }
    sketch
}

const QUANTILES: [f64; 11] = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0];

/// Relative error allowed: the accuracy, plus rounding at bucket boundaries.
fn within(estimate: f64, exact: f64) -> bool {
    (estimate - exact).abs() <= exact.abs() * (DEFAULT_RELATIVE_ACCURACY + 1e-12)
}

#[test]
fn quantiles_are_within_the_relative_accuracy_of_the_exact_order_statistic() {
    for (name, values) in distributions() {
        let sketch = sketch_of(&values);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for q in QUANTILES {
            let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
            let exact = sorted[rank];
            let estimate = sketch.quantile(q).unwrap();
            assert!(within(estimate, exact), "{name} q={q}: {estimate} vs exact {exact}");
        }
        assert_eq!(sketch.count(), values.len() as u64, "{name}");
        assert_eq!(sketch.min(), sorted.first().copied(), "{name}");
        assert_eq!(sketch.max(), sorted.last().copied(), "{name}");
        let sum: f64 = values.iter().sum();
        assert!((sketch.sum() - sum).abs() <= sum.abs() * 1e-12, "{name}");
    }
}

#[test]
fn a_merge_is_the_sketch_of_the_union_whatever_the_split() {
    for (name, values) in distributions() {
        let whole = sketch_of(&values);
        for parts in [2, 3, 7] {
            let mut merged = Sketch::default();
            let mut reversed = Sketch::default();
            let chunks: Vec<Sketch> = values.chunks(values.len().div_ceil(parts)).map(sketch_of).collect();
            for chunk in &chunks {
                merged.merge(chunk).unwrap();
            }
            for chunk in chunks.iter().rev() {
                reversed.merge(chunk).unwrap();
            }
            for sketch in [&merged, &reversed] {
                assert_eq!(sketch.histogram(), whole.histogram(), "{name} in {parts}");
                assert_eq!(sketch.count(), whole.count());
                assert_eq!((sketch.min(), sketch.max()), (whole.min(), whole.max()));
                for q in QUANTILES {
                    assert_eq!(sketch.quantile(q), whole.quantile(q), "{name} in {parts}, q={q}");
                }
            }
        }
    }
}

#[test]
fn the_histogram_is_in_elasticsearch_form_and_each_value_stands_for_its_bucket() {
    for (name, values) in distributions() {
        let histogram = sketch_of(&values).histogram();
        assert_eq!(histogram.values.len(), histogram.counts.len());
        assert!(
            histogram.values.windows(2).all(|pair| pair[0] < pair[1]),
            "{name}: ascending"
        );
        assert!(
            histogram.counts.iter().all(|count| *count > 0),
            "{name}: positive counts"
        );
        assert_eq!(histogram.counts.iter().sum::<u64>(), values.len() as u64, "{name}");
        // Every value added is within the accuracy of the value of the bucket it was counted in: the
        // nearest bucket value in the relative sense.
        for value in values.iter().step_by(97) {
            let nearest = histogram
                .values
                .iter()
                .copied()
                .min_by(|a, b| ((a - value).abs()).total_cmp(&(b - value).abs()))
                .unwrap();
            assert!(within(nearest, *value), "{name}: {value} nearest bucket {nearest}");
        }
    }
    let json = serde_json::to_string(&sketch_of(&[0.0, 100.0, 100.0]).histogram()).unwrap();
    assert!(json.starts_with(r#"{"values":[0.0,"#), "{json}");
    assert!(json.ends_with(r#"],"counts":[1,2]}"#), "{json}");
}

#[test]
fn a_sketch_round_trips_through_json_and_keeps_answering() {
    let (_, values) = distributions().remove(1);
    let sketch = sketch_of(&values);
    let text = serde_json::to_string(&sketch).unwrap();
    let back: Sketch = serde_json::from_str(&text).unwrap();
    // The buckets and counts come back exactly; serde_json (without its `float_roundtrip` feature)
    // may move the last bit of min, max and sum.
    assert!(back.histogram() == sketch.histogram() && back.count() == sketch.count());
    let close = |a: Option<f64>, b: Option<f64>| (a.unwrap() - b.unwrap()).abs() <= b.unwrap().abs() * 1e-15;
    assert!(close(back.min(), sketch.min()) && close(back.max(), sketch.max()));
    assert!(close(Some(back.sum()), Some(sketch.sum())));
    for q in QUANTILES {
        assert!(close(back.quantile(q), sketch.quantile(q)), "q={q}");
    }
}

#[test]
fn a_corrupt_serialized_sketch_is_refused() {
    let good = serde_json::to_value(sketch_of(&[0.0, 5.0, 7.0])).unwrap();
    let cases = [
        (
            "alpha",
            serde_json::json!(2.0),
            "relative accuracy 2 is not between 0 and 1",
        ),
        (
            "count",
            serde_json::json!(4),
            "inconsistent sketch: count is not the sum of the buckets",
        ),
        (
            "offset",
            serde_json::json!(i32::MAX),
            "inconsistent sketch: bucket range beyond i32",
        ),
        (
            "min",
            serde_json::json!(-1.0),
            "inconsistent sketch: min, max or sum out of range",
        ),
    ];
    for (field, value, message) in cases {
        let mut bad = good.clone();
        bad[field] = value;
        let error = serde_json::from_value::<Sketch>(bad).unwrap_err().to_string();
        assert_eq!(error, message, "{field}");
    }
    assert!(serde_json::from_value::<Sketch>(good).is_ok());
}

#[test]
fn bad_values_and_mismatched_merges_are_refused_and_change_nothing() {
    let mut sketch = sketch_of(&[10.0, 20.0]);
    for bad in [-0.5, f64::NAN, f64::INFINITY] {
        let error = sketch.add(bad).unwrap_err();
        assert!(matches!(error, SketchError::BadValue(_)), "{bad}");
        assert!(error.to_string().contains("negative or not finite"));
    }
    assert_eq!(sketch.count(), 2);
    let coarse = Sketch::new(0.02).unwrap();
    assert_eq!(
        sketch.merge(&coarse).unwrap_err().to_string(),
        "cannot merge a sketch of relative accuracy 0.02 into one of 0.005"
    );
    assert_eq!(
        Sketch::new(1.5).unwrap_err().to_string(),
        "relative accuracy 1.5 is not between 0 and 1"
    );
    let empty = Sketch::default();
    assert_eq!((empty.quantile(0.5), empty.mean(), empty.min()), (None, None, None));
    assert!(empty.histogram().values.is_empty());
}

#[test]
fn an_empty_sketch_round_trips_through_json() {
    let empty = Sketch::default();
    let text = serde_json::to_string(&empty).unwrap();
    let back: Sketch = serde_json::from_str(&text).unwrap();
    assert_eq!(back, empty, "{text}");
    let mut merged = back;
    merged.merge(&sketch_of(&[3.0])).unwrap();
    assert_eq!((merged.min(), merged.max()), (Some(3.0), Some(3.0)));
}
