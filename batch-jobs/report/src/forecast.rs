//! `qoe report forecast`: next-day peak concurrent viewers and traffic per CDN.
//!
//! DataFusion computes, per CDN and UTC hour of the history, the peak concurrent viewers (max over the
//! hour's minutes of sessions whose `[start_time, last_time]` covers the minute), the watch hours
//! (sum of `watch_ms` of `play_heartbeat`/`play_end` beacons, the session's CDN) and the bytes
//! (sum of `bitrate_kbps × watch_ms / 8`). Model, per CDN and hour of day `h`, for a target day `T`:
//! `profile(h)` = mean of the value at hour `h` over the last `N` days before `T` that lie in the
//! history (a day without data is 0); `trend` = (mean daily total of the last `min(3, n)` of them) /
//! (mean daily total of all `n`), 1 when that is 0; `forecast(h) = profile(h) × trend`. The daily peak
//! forecast is the max over hours, traffic the sum. Backtest: the same model predicts each history
//! day from the days before it (at least one), and the error is the mean absolute percentage error
//! over days whose actual value is positive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::{Days, NaiveDate};

use crate::html::{Chart, Page, Series};
use crate::output::{write_all, OutputTable};
use crate::warehouse::{day_lit, open, query};
use crate::{Context, ReportError, Result};

/// Parameters of the forecast.
#[derive(Debug, Clone)]
pub struct ForecastParams {
    /// Last history day (inclusive); the forecast is for the day after.
    pub to: NaiveDate,
    /// History length in days, ending at `to` (default 28).
    pub history_days: u32,
    /// Days in the hour-of-day profile (default 7).
    pub profile_days: u32,
}

/// The forecast report.
#[derive(Debug, Clone)]
pub struct ForecastReport {
    /// The parameters.
    pub params: ForecastParams,
    /// `forecast_daily`: cdn, day, predicted_peak_concurrent, predicted_watch_hours, predicted_bytes,
    /// backtest_days, backtest_mape_peak, backtest_mape_watch_hours.
    pub daily: OutputTable,
    /// `forecast_backtest`: cdn, day, predicted/actual peak_concurrent and watch_hours.
    pub backtest: OutputTable,
    /// `forecast_hourly`: cdn, hour (0–23 of the forecast day), predicted_peak_concurrent,
    /// predicted_watch_hours, predicted_bytes.
    pub hourly: OutputTable,
    /// Remarks.
    pub notes: Vec<String>,
}

/// Values of one metric: day index → 24 hourly values.
type Grid = Vec<[f64; 24]>;

/// `(hourly forecast, daily peak (max), daily total (sum))` of day `t` from days `t-n..t`.
fn model(grid: &Grid, t: usize, n: usize) -> Option<[f64; 24]> {
    let start = t.saturating_sub(n);
    let days = &grid[start..t];
    if days.is_empty() {
        return None;
    }
    let totals: Vec<f64> = days.iter().map(|d| d.iter().sum()).collect();
    let mean_all = totals.iter().sum::<f64>() / totals.len() as f64;
    let recent = &totals[totals.len().saturating_sub(3)..];
    let mean_recent = recent.iter().sum::<f64>() / recent.len() as f64;
    let trend = if mean_all > 0.0 { mean_recent / mean_all } else { 1.0 };
    let mut out = [0.0; 24];
    for (h, slot) in out.iter_mut().enumerate() {
        *slot = days.iter().map(|d| d[h]).sum::<f64>() / days.len() as f64 * trend;
    }
    Some(out)
}

fn max24(v: &[f64; 24]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

fn mape(pairs: &[(f64, f64)]) -> Option<f64> {
    let used: Vec<f64> = pairs
        .iter()
        .filter(|(_, a)| *a > 0.0)
        .map(|(p, a)| (p - a).abs() / a)
        .collect();
    (!used.is_empty()).then(|| 100.0 * used.iter().sum::<f64>() / used.len() as f64)
}

/// Computes the forecast.
pub async fn forecast_report(warehouse: &Path, params: ForecastParams) -> Result<ForecastReport> {
    if params.history_days == 0 || params.profile_days == 0 {
        return Err(ReportError::BadArgument {
            flag: "--history-days",
            value: params.history_days.to_string(),
            reason: "history and profile need at least one day".into(),
        });
    }
    let first = params.to - Days::new(u64::from(params.history_days) - 1);
    let (ctx, _) = open(warehouse).await?;
    let epoch_day = |d: NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() / 86_400;
    let (lo, hi) = (epoch_day(first) * 24, epoch_day(params.to) * 24 + 23);
    let sql = format!(
        r#"
WITH s AS (SELECT session_id, COALESCE(cdn, 'unknown') AS cdn, start_time, last_time FROM play_sessions WHERE dt BETWEEN {before} AND {to}),
pm AS (SELECT cdn, m, COUNT(DISTINCT session_id) AS viewers FROM (
  SELECT cdn, session_id, unnest(generate_series(CAST(start_time AS BIGINT) / 60000, CAST(last_time AS BIGINT) / 60000)) AS m FROM s
) GROUP BY cdn, m),
pk AS (SELECT cdn, m / 60 AS h, MAX(viewers) AS peak FROM pm GROUP BY cdn, m / 60),
tr AS (SELECT s.cdn, CAST(p.event_time AS BIGINT) / 3600000 AS h, SUM(COALESCE(p.watch_ms, 0)) AS watch_ms,
  SUM(CAST(COALESCE(p.bitrate_kbps, 0) AS DOUBLE) * CAST(COALESCE(p.watch_ms, 0) AS DOUBLE)) / 8.0 AS bytes
  FROM play p JOIN s ON p.session_id = s.session_id
  WHERE p.dt BETWEEN {from} AND {to} AND p.type IN ('play_heartbeat', 'play_end')
  GROUP BY s.cdn, CAST(p.event_time AS BIGINT) / 3600000),
k AS (SELECT cdn, h FROM pk UNION SELECT cdn, h FROM tr)
SELECT k.cdn, k.h, CAST(COALESCE(pk.peak, 0) AS DOUBLE) AS peak, CAST(COALESCE(tr.watch_ms, 0) AS DOUBLE) / 3600000.0 AS watch_hours,
  COALESCE(tr.bytes, 0.0) AS bytes
FROM k LEFT JOIN pk ON pk.cdn = k.cdn AND pk.h = k.h LEFT JOIN tr ON tr.cdn = k.cdn AND tr.h = k.h
WHERE k.h BETWEEN {lo} AND {hi} ORDER BY k.cdn, k.h
"#,
        before = day_lit(first - Days::new(1)),
        from = day_lit(first),
        to = day_lit(params.to),
    );
    let (schema, batches) = query(&ctx, "history", &sql).await?;
    let hist = OutputTable::new("history", schema, batches);
    let (cdns, hours) = (hist.strings("cdn")?, hist.f64s("h")?);
    let (peak, watch, bytes) = (hist.f64s("peak")?, hist.f64s("watch_hours")?, hist.f64s("bytes")?);
    let ndays = params.history_days as usize;
    let mut grids: BTreeMap<String, [Grid; 3]> = BTreeMap::new();
    for row in 0..cdns.len() {
        let h = hours[row].unwrap_or(0.0) as i64 - lo;
        let (d, hh) = ((h / 24) as usize, (h % 24) as usize);
        let entry = grids
            .entry(cdns[row].clone())
            .or_insert_with(|| [vec![[0.0; 24]; ndays], vec![[0.0; 24]; ndays], vec![[0.0; 24]; ndays]]);
        entry[0][d][hh] = peak[row].unwrap_or(0.0);
        entry[1][d][hh] = watch[row].unwrap_or(0.0);
        entry[2][d][hh] = bytes[row].unwrap_or(0.0);
    }
    // Days before the first day with data (of any CDN) are outside the history.
    let first_data = grids
        .values()
        .filter_map(|g| (0..ndays).find(|&d| g.iter().any(|m| m[d].iter().any(|v| *v > 0.0))))
        .min();
    let n = params.profile_days as usize;
    let target = params.to + Days::new(1);
    let (mut dc, mut dd, mut dp, mut dw, mut db, mut dn, mut dmp, mut dmw) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut bc, mut bd, mut bpp, mut bap, mut bpw, mut baw) = (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut hc, mut hh, mut hp, mut hw, mut hb) = (vec![], vec![], vec![], vec![], vec![]);
    let to_date32 = |d: NaiveDate| epoch_day(d) as i32;
    if let Some(start) = first_data {
        for (cdn, g) in &grids {
            let trimmed: Vec<Grid> = g.iter().map(|m| m[start..].to_vec()).collect();
            let len = trimmed[0].len();
            let (mut peaks, mut watches) = (vec![], vec![]);
            for t in 1..len {
                let (Some(p), Some(w)) = (model(&trimmed[0], t, n), model(&trimmed[1], t, n)) else {
                    continue;
                };
                let (pp, ap) = (max24(&p), max24(&trimmed[0][t]));
                let (pw, aw) = (w.iter().sum::<f64>(), trimmed[1][t].iter().sum::<f64>());
                peaks.push((pp, ap));
                watches.push((pw, aw));
                bc.push(cdn.clone());
                bd.push(to_date32(first + Days::new((start + t) as u64)));
                bpp.push(pp);
                bap.push(ap);
                bpw.push(pw);
                baw.push(aw);
            }
            let p = model(&trimmed[0], len, n).expect("len >= 1");
            let w = model(&trimmed[1], len, n).expect("len >= 1");
            let b = model(&trimmed[2], len, n).expect("len >= 1");
            for h in 0..24 {
                hc.push(cdn.clone());
                hh.push(h as i64);
                hp.push(p[h]);
                hw.push(w[h]);
                hb.push(b[h]);
            }
            dc.push(cdn.clone());
            dd.push(to_date32(target));
            dp.push(max24(&p));
            dw.push(w.iter().sum::<f64>());
            db.push(b.iter().sum::<f64>());
            dn.push(peaks.len() as i64);
            dmp.push(mape(&peaks));
            dmw.push(mape(&watches));
        }
    }
    let f = |name: &str, t: DataType, null: bool| Field::new(name, t, null);
    let daily_schema = Arc::new(Schema::new(vec![
        f("cdn", DataType::Utf8, false),
        f("day", DataType::Date32, false),
        f("predicted_peak_concurrent", DataType::Float64, false),
        f("predicted_watch_hours", DataType::Float64, false),
        f("predicted_bytes", DataType::Float64, false),
        f("backtest_days", DataType::Int64, false),
        f("backtest_mape_peak", DataType::Float64, true),
        f("backtest_mape_watch_hours", DataType::Float64, true),
    ]));
    let daily: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(dc)),
        Arc::new(Date32Array::from(dd)),
        Arc::new(Float64Array::from(dp)),
        Arc::new(Float64Array::from(dw)),
        Arc::new(Float64Array::from(db)),
        Arc::new(Int64Array::from(dn)),
        Arc::new(Float64Array::from(dmp)),
        Arc::new(Float64Array::from(dmw)),
    ];
    let back_schema = Arc::new(Schema::new(vec![
        f("cdn", DataType::Utf8, false),
        f("day", DataType::Date32, false),
        f("predicted_peak_concurrent", DataType::Float64, false),
        f("actual_peak_concurrent", DataType::Float64, false),
        f("predicted_watch_hours", DataType::Float64, false),
        f("actual_watch_hours", DataType::Float64, false),
    ]));
    let back: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(bc)),
        Arc::new(Date32Array::from(bd)),
        Arc::new(Float64Array::from(bpp)),
        Arc::new(Float64Array::from(bap)),
        Arc::new(Float64Array::from(bpw)),
        Arc::new(Float64Array::from(baw)),
    ];
    let hourly_schema = Arc::new(Schema::new(vec![
        f("cdn", DataType::Utf8, false),
        f("hour", DataType::Int64, false),
        f("predicted_peak_concurrent", DataType::Float64, false),
        f("predicted_watch_hours", DataType::Float64, false),
        f("predicted_bytes", DataType::Float64, false),
    ]));
    let hourly: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(hc)),
        Arc::new(Int64Array::from(hh)),
        Arc::new(Float64Array::from(hp)),
        Arc::new(Float64Array::from(hw)),
        Arc::new(Float64Array::from(hb)),
    ];
    let mut notes = Vec::new();
    if first_data.is_none() {
        notes.push(format!(
            "no play data between {first} and {}: nothing to forecast",
            params.to
        ));
    }
    Ok(ForecastReport {
        daily: OutputTable::new(
            "forecast_daily",
            daily_schema.clone(),
            vec![RecordBatch::try_new(daily_schema, daily)
                .with_context(|| "building table \"forecast_daily\"".to_string())?],
        ),
        backtest: OutputTable::new(
            "forecast_backtest",
            back_schema.clone(),
            vec![RecordBatch::try_new(back_schema, back)
                .with_context(|| "building table \"forecast_backtest\"".to_string())?],
        ),
        hourly: OutputTable::new(
            "forecast_hourly",
            hourly_schema.clone(),
            vec![RecordBatch::try_new(hourly_schema, hourly)
                .with_context(|| "building table \"forecast_hourly\"".to_string())?],
        ),
        params,
        notes,
    })
}

impl ForecastReport {
    /// The self-contained HTML page: backtest curves (predicted vs actual) and the forecast.
    pub fn html(&self) -> Result<String> {
        let mut page = Page::default();
        page.paragraph(&format!(
            "History ending {} ({} days), profile of the last {} days scaled by the recent trend. Definitions: docs/reports.md.",
            self.params.to, self.params.history_days, self.params.profile_days
        ));
        page.notes(&self.notes);
        let cdns = self.backtest.strings("cdn")?;
        let days = self.backtest.strings("day")?;
        for (pred, actual, title) in [
            (
                "predicted_peak_concurrent",
                "actual_peak_concurrent",
                "Peak concurrent viewers: backtest",
            ),
            ("predicted_watch_hours", "actual_watch_hours", "Watch hours: backtest"),
        ] {
            let (p, a) = (self.backtest.f64s(pred)?, self.backtest.f64s(actual)?);
            let mut x = days.clone();
            x.sort();
            x.dedup();
            let mut names = cdns.clone();
            names.sort();
            names.dedup();
            let mut series = Vec::new();
            for name in &names {
                for (label, values) in [("actual", &a), ("predicted", &p)] {
                    let mut points = vec![None; x.len()];
                    for r in (0..cdns.len()).filter(|&r| &cdns[r] == name) {
                        points[x.binary_search(&days[r]).expect("day")] = values[r];
                    }
                    series.push(Series {
                        name: format!("{name} {label}"),
                        values: points,
                    });
                }
            }
            page.chart(Chart {
                title: title.into(),
                unit: String::new(),
                x,
                series,
                marks: vec![],
            });
        }
        page.heading(2, "Next-day forecast");
        page.table(&self.daily)?;
        page.heading(2, "Hourly forecast");
        page.table(&self.hourly)?;
        page.heading(2, "Backtest");
        page.table(&self.backtest)?;
        Ok(page.finish("qoe report forecast"))
    }

    /// Writes `forecast_daily.parquet`, `forecast_hourly.parquet`, `forecast_backtest.parquet` and
    /// `report.html` into `out_dir`.
    pub async fn write_outputs(&self, out_dir: &Path) -> Result<Vec<PathBuf>> {
        let html = self.html()?;
        write_all(out_dir, &[&self.daily, &self.hourly, &self.backtest], html).await
    }
}
