//! `qoe_quantile_cont(value, q)`: the exact continuous quantile, as a DataFusion aggregate.
//!
//! Definition (`docs/reports.md`, the same as DuckDB's `quantile_cont`): of the `n` non-null values
//! sorted ascending `x_0 ≤ … ≤ x_{n-1}`, with `h = q (n − 1)` and `l = ⌊h⌋`, the quantile is
//! `x_l + (h − l)(x_{min(l+1, n−1)} − x_l)`; null when there is no value. DataFusion's own
//! `percentile_cont` (alias `quantile_cont`) is not used: it rounds the interpolation weight to 6
//! decimals (p90 of 470 and 471 at weight 0.2 gives 470.199999); the name is our own so that a
//! context without it fails instead of falling back to that one.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, ListArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{create_udaf, Accumulator, AggregateUDF, ColumnarValue, Volatility};
use datafusion::scalar::ScalarValue;

/// The `qoe_quantile_cont(DOUBLE value, DOUBLE q)` aggregate; `q` must be a constant in `[0, 1]`.
pub(crate) fn quantile_cont() -> AggregateUDF {
    create_udaf(
        "qoe_quantile_cont",
        vec![DataType::Float64, DataType::Float64],
        Arc::new(DataType::Float64),
        Volatility::Immutable,
        Arc::new(|args: AccumulatorArgs<'_>| Ok(Box::new(QuantileCont::new(constant_q(&args)?)))),
        Arc::new(vec![DataType::List(Arc::new(Field::new_list_field(
            DataType::Float64,
            true,
        )))]),
    )
}

/// The constant `q` of a call.
fn constant_q(args: &AccumulatorArgs<'_>) -> Result<f64> {
    let bad = || DataFusionError::Plan("qoe_quantile_cont: q must be a constant between 0 and 1".to_string());
    let expr = args.exprs.get(1).ok_or_else(bad)?;
    let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
    match expr.evaluate(&empty)? {
        ColumnarValue::Scalar(ScalarValue::Float64(Some(q))) if (0.0..=1.0).contains(&q) => Ok(q),
        _ => Err(bad()),
    }
}

/// The exact continuous quantile of sorted values (see the module docs); `None` without values.
pub(crate) fn interpolate(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = q * last as f64;
    let low = (h.floor() as usize).min(last);
    let high = (low + 1).min(last);
    Some(sorted[low] + (h - low as f64) * (sorted[high] - sorted[low]))
}

#[derive(Debug)]
struct QuantileCont {
    q: f64,
    values: Vec<f64>,
}

impl QuantileCont {
    fn new(q: f64) -> Self {
        QuantileCont { q, values: Vec::new() }
    }

    fn extend(&mut self, array: &Float64Array) {
        self.values.extend(array.iter().flatten());
    }
}

impl Accumulator for QuantileCont {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        if let Some(array) = values.first() {
            self.extend(array.as_primitive::<Float64Type>());
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        self.values.sort_unstable_by(f64::total_cmp);
        Ok(ScalarValue::Float64(interpolate(&self.values, self.q)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.capacity() * std::mem::size_of::<f64>()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values = std::mem::take(&mut self.values);
        let list = ListArray::new(
            Arc::new(Field::new_list_field(DataType::Float64, true)),
            arrow::buffer::OffsetBuffer::from_lengths([values.len()]),
            Arc::new(Float64Array::from(values)),
            None,
        );
        Ok(vec![ScalarValue::List(Arc::new(list))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states.first() else {
            return Ok(());
        };
        for row in lists.as_list::<i32>().iter().flatten() {
            self.extend(row.as_primitive::<Float64Type>());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_between_the_order_statistics() {
        assert_eq!(interpolate(&[], 0.5), None);
        assert_eq!(interpolate(&[7.0], 0.9), Some(7.0));
        // h = 0.9 * 1 = 0.9: 470 + 0.9 * 1.
        assert_eq!(interpolate(&[470.0, 471.0], 0.9), Some(470.9));
        // h = 0.9 * 5 = 4.5: between the 5th and 6th values.
        assert_eq!(interpolate(&[1.0, 2.0, 3.0, 4.0, 10.0, 20.0], 0.9), Some(15.0));
        assert_eq!(interpolate(&[1.0, 2.0, 3.0], 1.0), Some(3.0));
        assert_eq!(interpolate(&[1.0, 2.0, 3.0], 0.0), Some(1.0));
    }
}
