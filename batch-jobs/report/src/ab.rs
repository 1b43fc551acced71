//! `qoe report ab`: the arms of an experiment (`exp[NAME]` of `play_sessions`) compared on failure %,
//! EBVS %, first-frame mean and median, stall ratio, stalls per hour and average watch time, each with a
//! 95 % confidence interval and the difference to the control arm.
//!
//! DataFusion computes per-arm sums, means, sample variances and covariances; the intervals are
//! closed-form from those (z = 1.959964): Wilson score for proportions and Newcombe's hybrid score
//! interval for their difference; normal approximation with the per-session sample variance for
//! means and Welch's standard error for their difference; the delta method for ratios of sums
//! (per-session numerator and denominator, with their covariance) and independent-arm variances for
//! the difference; the distribution-free order-statistic interval for the median (the quantiles
//! `0.5 ± z·sqrt(0.25/n)`), with no interval for the median difference.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::NaiveDate;

use crate::html::Page;
use crate::output::{write_all, OutputTable};
use crate::warehouse::{check_range, day_lit, lit, open, percentile, query};
use crate::{Context, ReportError, Result};

const Z: f64 = 1.959_963_984_540_054;

/// Parameters of the A/B report.
#[derive(Debug, Clone)]
pub struct AbParams {
    /// The experiment: the key of `exp`.
    pub experiment: String,
    /// First UTC day (inclusive), by session start.
    pub from: NaiveDate,
    /// Last UTC day (inclusive).
    pub to: NaiveDate,
    /// The control arm; default the alphabetically first arm.
    pub control: Option<String>,
}

/// The A/B report.
#[derive(Debug, Clone)]
pub struct AbReport {
    /// The parameters.
    pub params: AbParams,
    /// The control arm used (None when there is no data).
    pub control: Option<String>,
    /// `ab_metrics`: metric, arm, is_control, n, value, ci_low, ci_high, diff, diff_ci_low,
    /// diff_ci_high, method.
    pub metrics: OutputTable,
    /// Remarks.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Estimate {
    n: f64,
    value: Option<f64>,
    low: Option<f64>,
    high: Option<f64>,
    /// Variance of the estimate (normal-approximation metrics), for the difference.
    var: Option<f64>,
}

fn wilson(x: f64, n: f64) -> Estimate {
    if n <= 0.0 {
        return Estimate::default();
    }
    let p = x / n;
    let z2 = Z * Z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Estimate {
        n,
        value: Some(p),
        low: Some(center - half),
        high: Some(center + half),
        var: None,
    }
}

fn normal(n: f64, mean: Option<f64>, var: Option<f64>) -> Estimate {
    let (Some(mean), Some(var)) = (mean, var) else {
        return Estimate {
            n,
            value: mean,
            ..Default::default()
        };
    };
    let v = var / n;
    Estimate {
        n,
        value: Some(mean),
        low: Some(mean - Z * v.sqrt()),
        high: Some(mean + Z * v.sqrt()),
        var: Some(v),
    }
}

/// Delta method for mean(y)/mean(x), scaled.
fn ratio(n: f64, my: f64, mx: f64, vy: Option<f64>, vx: Option<f64>, cxy: Option<f64>, scale: f64) -> Estimate {
    if n <= 0.0 || mx <= 0.0 {
        return Estimate {
            n,
            ..Default::default()
        };
    }
    let r = my / mx;
    let (Some(vy), Some(vx), Some(cxy)) = (vy, vx, cxy) else {
        return Estimate {
            n,
            value: Some(r * scale),
            ..Default::default()
        };
    };
    let var = ((vy - 2.0 * r * cxy + r * r * vx) / (n * mx * mx)).max(0.0) * scale * scale;
    let value = r * scale;
    Estimate {
        n,
        value: Some(value),
        low: Some(value - Z * var.sqrt()),
        high: Some(value + Z * var.sqrt()),
        var: Some(var),
    }
}

/// Difference arm − control: Newcombe for proportions, normal otherwise.
fn difference(arm: &Estimate, control: &Estimate, proportion: bool) -> (Option<f64>, Option<f64>, Option<f64>) {
    let (Some(a), Some(c)) = (arm.value, control.value) else {
        return (None, None, None);
    };
    let d = a - c;
    if proportion {
        let (Some(al), Some(ah), Some(cl), Some(ch)) = (arm.low, arm.high, control.low, control.high) else {
            return (Some(d), None, None);
        };
        let low = d - ((a - al).powi(2) + (ch - c).powi(2)).sqrt();
        let high = d + ((ah - a).powi(2) + (c - cl).powi(2)).sqrt();
        return (Some(d), Some(low), Some(high));
    }
    match (arm.var, control.var) {
        (Some(va), Some(vc)) => {
            let se = (va + vc).sqrt();
            (Some(d), Some(d - Z * se), Some(d + Z * se))
        }
        _ => (Some(d), None, None),
    }
}

fn scaled(e: Estimate, k: f64) -> Estimate {
    Estimate {
        n: e.n,
        value: e.value.map(|v| v * k),
        low: e.low.map(|v| v * k),
        high: e.high.map(|v| v * k),
        var: e.var.map(|v| v * k * k),
    }
}

/// Computes the A/B report.
pub async fn ab_report(warehouse: &Path, params: AbParams) -> Result<AbReport> {
    check_range(params.from, params.to)?;
    if params.experiment.is_empty() {
        return Err(ReportError::BadArgument {
            flag: "--experiment",
            value: String::new(),
            reason: "must not be empty".into(),
        });
    }
    let (ctx, _) = open(warehouse).await?;
    let exp = format!("exp[{}]", lit(&params.experiment));
    let filter = format!(
        "dt BETWEEN {from} AND {to} AND CAST(start_time AS DATE) BETWEEN CAST({from} AS DATE) AND CAST({to} AS DATE) AND {exp} IS NOT NULL",
        from = day_lit(params.from),
        to = day_lit(params.to)
    );
    let sql = format!(
        "SELECT {exp} AS arm, CAST(COUNT(*) AS DOUBLE) AS n,
           CAST(SUM(CASE WHEN fatal_error THEN 1 ELSE 0 END) AS DOUBLE) AS failures,
           CAST(SUM(CASE WHEN ebvs THEN 1 ELSE 0 END) AS DOUBLE) AS ebvs,
           CAST(COUNT(first_frame_ms) AS DOUBLE) AS ff_n, AVG(CAST(first_frame_ms AS DOUBLE)) AS ff_mean,
           var_samp(CAST(first_frame_ms AS DOUBLE)) AS ff_var,
           AVG(CAST(watch_ms AS DOUBLE)) AS w_mean, var_samp(CAST(watch_ms AS DOUBLE)) AS w_var,
           AVG(CAST(stall_ms AS DOUBLE)) AS s_mean, var_samp(CAST(stall_ms AS DOUBLE)) AS s_var,
           AVG(CAST(watch_ms + stall_ms AS DOUBLE)) AS ws_mean, var_samp(CAST(watch_ms + stall_ms AS DOUBLE)) AS ws_var,
           covar_samp(CAST(stall_ms AS DOUBLE), CAST(watch_ms + stall_ms AS DOUBLE)) AS s_ws_cov,
           AVG(CAST(stall_count AS DOUBLE)) AS c_mean, var_samp(CAST(stall_count AS DOUBLE)) AS c_var,
           covar_samp(CAST(stall_count AS DOUBLE), CAST(watch_ms AS DOUBLE)) AS c_w_cov
         FROM play_sessions WHERE {filter} GROUP BY {exp} ORDER BY arm"
    );
    let (schema, batches) = query(&ctx, "arms", &sql).await?;
    let arms_table = OutputTable::new("arms", schema, batches);
    let arms = arms_table.strings("arm")?;
    let col = |name: &str| arms_table.f64s(name);
    let (n, failures, ebvs) = (col("n")?, col("failures")?, col("ebvs")?);
    let (ff_n, ff_mean, ff_var) = (col("ff_n")?, col("ff_mean")?, col("ff_var")?);
    let (w_mean, w_var) = (col("w_mean")?, col("w_var")?);
    let (s_mean, s_var, ws_mean, ws_var, s_ws_cov) = (
        col("s_mean")?,
        col("s_var")?,
        col("ws_mean")?,
        col("ws_var")?,
        col("s_ws_cov")?,
    );
    let (c_mean, c_var, c_w_cov) = (col("c_mean")?, col("c_var")?, col("c_w_cov")?);
    let mut per_arm: Vec<Vec<Estimate>> = Vec::new();
    for i in 0..arms.len() {
        let n_i = n[i].unwrap_or(0.0);
        let ffn = ff_n[i].unwrap_or(0.0);
        // the median and its order-statistic interval
        let median = if ffn > 0.0 {
            let half = Z * (0.25 / ffn).sqrt();
            let (ql, qh) = ((0.5 - half).max(0.0), (0.5 + half).min(1.0));
            let sql = format!(
                "SELECT {m} AS m, {l} AS l, {h} AS h FROM play_sessions WHERE {filter} AND {exp} = {arm}",
                m = percentile(0.5, "first_frame_ms"),
                l = percentile(ql, "first_frame_ms"),
                h = percentile(qh, "first_frame_ms"),
                arm = lit(&arms[i])
            );
            let (schema, batches) = query(&ctx, "median", &sql).await?;
            let t = OutputTable::new("median", schema, batches);
            Estimate {
                n: ffn,
                value: t.f64s("m")?[0],
                low: t.f64s("l")?[0],
                high: t.f64s("h")?[0],
                var: None,
            }
        } else {
            Estimate::default()
        };
        per_arm.push(vec![
            scaled(wilson(failures[i].unwrap_or(0.0), n_i), 100.0),
            scaled(wilson(ebvs[i].unwrap_or(0.0), n_i), 100.0),
            normal(ffn, ff_mean[i], ff_var[i]),
            median,
            ratio(
                n_i,
                s_mean[i].unwrap_or(0.0),
                ws_mean[i].unwrap_or(0.0),
                s_var[i],
                ws_var[i],
                s_ws_cov[i],
                1.0,
            ),
            ratio(
                n_i,
                c_mean[i].unwrap_or(0.0),
                w_mean[i].unwrap_or(0.0),
                c_var[i],
                w_var[i],
                c_w_cov[i],
                3_600_000.0,
            ),
            scaled(normal(n_i, w_mean[i], w_var[i]), 0.001),
        ]);
    }
    const METRICS: [(&str, bool, &str); 7] = [
        ("failure_pct", true, "wilson score; diff: newcombe hybrid score"),
        ("ebvs_pct", true, "wilson score; diff: newcombe hybrid score"),
        (
            "first_frame_mean_ms",
            false,
            "normal approx, per-session variance; diff: welch",
        ),
        (
            "first_frame_p50_ms",
            false,
            "order-statistic interval; no diff interval",
        ),
        ("stall_ratio", false, "delta method on per-session sums; diff: normal"),
        (
            "stalls_per_hour",
            false,
            "delta method on per-session sums; diff: normal",
        ),
        ("avg_watch_s", false, "normal approx, per-session variance; diff: welch"),
    ];
    let control = match &params.control {
        Some(c) if !arms.contains(c) && !arms.is_empty() => {
            return Err(ReportError::BadArgument {
                flag: "--control",
                value: c.clone(),
                reason: format!("not an arm of {:?} (arms: {})", params.experiment, arms.join(", ")),
            });
        }
        Some(c) => Some(c.clone()),
        None => arms.first().cloned(),
    };
    let ci = control.as_ref().and_then(|c| arms.iter().position(|a| a == c));
    let (mut m, mut a, mut is_c, mut nn, mut v, mut lo, mut hi, mut d, mut dl, mut dh, mut meth) = (
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
        vec![],
    );
    for (k, (metric, proportion, method)) in METRICS.iter().enumerate() {
        for (i, arm) in arms.iter().enumerate() {
            let e = per_arm[i][k];
            let (diff, diff_low, diff_high) = match ci {
                Some(c) if c != i => difference(&e, &per_arm[c][k], *proportion),
                Some(_) => (Some(0.0), None, None),
                None => (None, None, None),
            };
            let (diff_low, diff_high) = if k == 3 { (None, None) } else { (diff_low, diff_high) };
            m.push(metric.to_string());
            a.push(arm.clone());
            is_c.push(Some(i) == ci);
            nn.push(e.n as i64);
            v.push(e.value);
            lo.push(e.low);
            hi.push(e.high);
            d.push(diff);
            dl.push(diff_low);
            dh.push(diff_high);
            meth.push(method.to_string());
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("is_control", DataType::Boolean, false),
        Field::new("n", DataType::Int64, false),
        Field::new("value", DataType::Float64, true),
        Field::new("ci_low", DataType::Float64, true),
        Field::new("ci_high", DataType::Float64, true),
        Field::new("diff", DataType::Float64, true),
        Field::new("diff_ci_low", DataType::Float64, true),
        Field::new("diff_ci_high", DataType::Float64, true),
        Field::new("method", DataType::Utf8, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(m)),
        Arc::new(StringArray::from(a)),
        Arc::new(BooleanArray::from(is_c)),
        Arc::new(Int64Array::from(nn)),
        Arc::new(Float64Array::from(v)),
        Arc::new(Float64Array::from(lo)),
        Arc::new(Float64Array::from(hi)),
        Arc::new(Float64Array::from(d)),
        Arc::new(Float64Array::from(dl)),
        Arc::new(Float64Array::from(dh)),
        Arc::new(StringArray::from(meth)),
    ];
    let batch =
        RecordBatch::try_new(schema.clone(), columns).with_context(|| "building table \"ab_metrics\"".to_string())?;
    let mut notes = Vec::new();
    if arms.is_empty() {
        notes.push(format!(
            "no sessions in experiment {:?} between {} and {}",
            params.experiment, params.from, params.to
        ));
    }
    Ok(AbReport {
        params,
        control,
        metrics: OutputTable::new("ab_metrics", schema, vec![batch]),
        notes,
    })
}

impl AbReport {
    /// The self-contained HTML page.
    pub fn html(&self) -> Result<String> {
        let mut page = Page::default();
        page.paragraph(&format!(
            "Experiment {:?}, sessions started on UTC days {} to {}; control arm {}. 95 % intervals; methods per row. Definitions: docs/reports.md.",
            self.params.experiment, self.params.from, self.params.to, self.control.as_deref().unwrap_or("(none)")
        ));
        page.notes(&self.notes);
        page.table(&self.metrics)?;
        Ok(page.finish("qoe report ab"))
    }

    /// Writes `ab_metrics.parquet` and `report.html` into `out_dir`.
    pub async fn write_outputs(&self, out_dir: &Path) -> Result<Vec<PathBuf>> {
        let html = self.html()?;
        write_all(out_dir, &[&self.metrics], html).await
    }
}
