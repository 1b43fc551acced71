//! `qoe report cdn`: per CDN per day, per CDN per day per region and per CDN per day per ISP.
//!
//! Session metrics come from `play_sessions` (a session counts on the UTC day of its `start_time`),
//! joins, leaves and bounces from `room` (UTC day of the join or leave), and peak concurrent viewers
//! from the sessions' `[start_time, last_time]` spans expanded to minutes. Formulas: `docs/reports.md`.

use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};
use datafusion::prelude::SessionContext;

use crate::html::{Chart, Page, Series};
use crate::output::{write_all, OutputTable};
use crate::warehouse::{check_range, day_lit, open, percentile, query};
use crate::{Context, Result};
use arrow::array::AsArray;

/// Parameters of the CDN report.
#[derive(Debug, Clone)]
pub struct CdnParams {
    /// First UTC day (inclusive).
    pub from: NaiveDate,
    /// Last UTC day (inclusive).
    pub to: NaiveDate,
    /// A join followed by a leave of the same session within this many seconds is a bounce.
    pub bounce_secs: u32,
}

/// The CDN report: three tables with the same metric columns, and notes about missing data.
#[derive(Debug, Clone)]
pub struct CdnReport {
    /// The parameters it was computed with.
    pub params: CdnParams,
    /// `cdn_daily`: one row per (day, cdn).
    pub daily: OutputTable,
    /// `cdn_region_daily`: one row per (day, cdn, region).
    pub region_daily: OutputTable,
    /// `cdn_isp_daily`: one row per (day, cdn, isp).
    pub isp_daily: OutputTable,
    /// Human-readable remarks (missing tables, no data in the range).
    pub notes: Vec<String>,
}

/// Computes the CDN report over `warehouse` for `params.from..=params.to`.
pub async fn cdn_report(warehouse: &Path, params: CdnParams) -> Result<CdnReport> {
    check_range(params.from, params.to)?;
    let (ctx, missing) = open(warehouse).await?;
    let mut notes: Vec<String> = missing
        .iter()
        .filter(|name| **name != "push")
        .map(|name| format!("table {name:?} is missing from the warehouse: its metrics are empty"))
        .collect();
    let sessions = load(&ctx, &params).await?;
    // The three breakdowns run side by side: planning is single-threaded, and small parts leave
    // cores idle.
    let (daily, region_daily, isp_daily) = tokio::try_join!(
        run(&ctx, &params, sessions, &[], "cdn_daily"),
        run(&ctx, &params, sessions, &["region"], "cdn_region_daily"),
        run(&ctx, &params, sessions, &["isp"], "cdn_isp_daily"),
    )?;
    if daily.num_rows() == 0 {
        notes.push(format!(
            "no plays and no room beacons between {} and {}",
            params.from, params.to
        ));
    }
    Ok(CdnReport {
        params,
        daily,
        region_daily,
        isp_daily,
        notes,
    })
}

/// Reads the partitions the report needs once into memory, as `cdn_sessions` and `cdn_room`: the three
/// tables of the report are three queries over the same rows, and decoding the Parquet files once
/// instead of once per table and per use in a query is most of the report's time.
async fn load(ctx: &SessionContext, params: &CdnParams) -> Result<Sessions> {
    let from = day_lit(params.from);
    let to = day_lit(params.to);
    // A session that started the day before `from` may still be watched on `from`; a leave that ends a
    // bounce may fall on the day after `to`.
    let before = day_lit(params.from - Days::new(1));
    let after = day_lit(params.to + Days::new(1));
    let sessions_sql = format!(
        "SELECT session_id, start_time, last_time, cdn, region, isp, has_play_start, fatal_error,
           business_error, ebvs, first_frame_ms, dns_ms, connect_ms, first_packet_ms, startup_skip_ms,
           watch_ms, stall_ms, stall_count, max_latency_ms
         FROM play_sessions WHERE dt BETWEEN {before} AND {to}"
    );
    let room_sql = format!(
        "SELECT event_time, cdn, region, isp, type, session_id, room_id, seq
         FROM room WHERE dt BETWEEN {from} AND {after}"
    );
    let cache = |name: &'static str, sql: String| async move {
        let loading = || format!("loading {name}");
        ctx.sql(&sql)
            .await
            .with_context(loading)?
            .cache()
            .await
            .with_context(loading)
    };
    let (sessions, room) = tokio::try_join!(cache("cdn_sessions", sessions_sql), cache("cdn_room", room_sql))?;
    for (name, frame) in [("cdn_sessions", sessions), ("cdn_room", room)] {
        ctx.register_table(name, frame.into_view())
            .with_context(|| format!("registering table {name:?}"))?;
    }
    // A session has several rows when it was cut (longer than the batch job's session horizon) or its
    // beacons came through several sources: only then can one session count twice in a minute.
    let (_, batches) = query(
        ctx,
        "cdn_sessions uniqueness",
        "SELECT COUNT(*) = COUNT(DISTINCT session_id) FROM cdn_sessions",
    )
    .await?;
    let one_row_each = batches
        .first()
        .filter(|batch| batch.num_rows() > 0)
        .and_then(|batch| batch.column(0).as_boolean_opt().map(|flags| flags.value(0)))
        .unwrap_or(false);
    Ok(Sessions { one_row_each })
}

/// What [`load`] found out about the sessions of the range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sessions {
    /// Every session has one `play_sessions` row: distinct sessions per minute need no DISTINCT.
    one_row_each: bool,
}

/// The CTEs that end in `c`, the peak concurrent viewers per (day, keys): the number of distinct
/// sessions whose `[start_time, last_time]` covers a minute, at its largest over the minutes of the day.
fn concurrency_sql(params: &CdnParams, keys: &[&str], sessions: Sessions) -> String {
    let key_list = keys.join(", ");
    let from = day_lit(params.from);
    let to = day_lit(params.to);
    if !sessions.one_row_each {
        // A cut session has several rows: expand every row to its minutes and count each session once.
        return format!(
            r#"
minutes AS (
  SELECT {key_list}, session_id,
    unnest(generate_series(CAST(start_time AS BIGINT) / 60000, CAST(last_time AS BIGINT) / 60000)) AS minute
  FROM sessions
),
session_minutes AS (
  SELECT DISTINCT minute, {key_list}, session_id FROM minutes
),
per_minute AS (
  SELECT CAST(to_timestamp_millis(minute * 60000) AS DATE) AS day, {key_list}, minute,
    COUNT(*) AS viewers
  FROM session_minutes GROUP BY minute, {key_list}
),
c AS (
  SELECT day, {key_list}, MAX(viewers) AS peak_concurrent
  FROM per_minute WHERE day BETWEEN CAST({from} AS DATE) AND CAST({to} AS DATE)
  GROUP BY day, {key_list}
)"#
        );
    }
    // One row per session: a sweep over the minutes where the count changes (+1 at a session's first
    // minute, -1 after its last), plus every day's first minute, where the count carried over from the
    // day before is seen. The count is constant between those minutes, so the largest of them is the
    // day's peak.
    let minute_of = |day: NaiveDate| day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() / 60;
    let first_minute = minute_of(params.from);
    let end_minute = minute_of(params.to + Days::new(1));
    let carried_keys = keys.iter().map(|key| format!("k.{key}")).collect::<Vec<_>>().join(", ");
    format!(
        r#"
events AS (
  SELECT {key_list}, CAST(start_time AS BIGINT) / 60000 AS minute, 1 AS delta FROM sessions
  UNION ALL
  SELECT {key_list}, CAST(last_time AS BIGINT) / 60000 + 1 AS minute, -1 AS delta FROM sessions
  UNION ALL
  SELECT {carried_keys}, d.minute, 0 AS delta
  FROM (SELECT DISTINCT {key_list} FROM sessions) k
  CROSS JOIN (SELECT unnest(generate_series({first_minute}, {end_minute} - 1, 1440)) AS minute) d
),
changes AS (
  SELECT {key_list}, minute, SUM(delta) AS delta FROM events GROUP BY {key_list}, minute
),
per_minute AS (
  SELECT {key_list}, minute,
    SUM(delta) OVER (PARTITION BY {key_list} ORDER BY minute ROWS UNBOUNDED PRECEDING) AS viewers
  FROM changes
),
c AS (
  SELECT CAST(to_timestamp_millis(minute * 60000) AS DATE) AS day, {key_list}, MAX(viewers) AS peak_concurrent
  FROM per_minute WHERE minute >= {first_minute} AND minute < {end_minute}
  GROUP BY 1, {key_list} HAVING MAX(viewers) > 0
)"#
    )
}

/// The parts of the report, each materialised as `<output table>_<part>` before the final join, which
/// reads each twice.
const PARTS: [&str; 4] = ["s", "r", "b", "c"];

/// The report's SQL over `cdn_sessions` and `cdn_room` ([`load`]) for the given extra grouping keys
/// (besides `day` and `cdn`): the queries of the [`PARTS`] as (table, SQL), and the final join of the
/// parts; `name` is the output table's.
pub(crate) fn sql(
    params: &CdnParams,
    extra: &[&str],
    name: &str,
    sessions: Sessions,
) -> (Vec<(String, String)>, String) {
    let from = day_lit(params.from);
    let to = day_lit(params.to);
    let keys: Vec<&str> = std::iter::once("cdn").chain(extra.iter().copied()).collect();
    let concurrency = concurrency_sql(params, &keys, sessions);
    let key_defs = keys
        .iter()
        .map(|k| format!("COALESCE({k}, 'unknown') AS {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let key_list = keys.join(", ");
    let key_join = |alias: &str| {
        std::iter::once("day")
            .chain(keys.iter().copied())
            .map(|k| format!("k.{k} = {alias}.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    let key_cols = keys.iter().map(|k| format!("k.{k}")).collect::<Vec<_>>().join(", ");
    let bounce = params.bounce_secs;
    let p = percentile;
    let ctes = format!(
        r#"
WITH sessions AS (
  SELECT CAST(start_time AS DATE) AS day, {key_defs}, session_id, start_time, last_time,
         has_play_start, fatal_error, business_error, ebvs, first_frame_ms, dns_ms, connect_ms,
         first_packet_ms, startup_skip_ms, watch_ms, stall_ms, stall_count, max_latency_ms
  FROM cdn_sessions
),
s AS (
  SELECT day, {key_list},
    COUNT(*) AS plays,
    SUM(CASE WHEN has_play_start THEN 1 ELSE 0 END) AS plays_with_play_start,
    100.0 * SUM(CASE WHEN fatal_error THEN 1 ELSE 0 END) / COUNT(*) AS failure_pct,
    100.0 * SUM(CASE WHEN business_error THEN 1 ELSE 0 END) / COUNT(*) AS business_error_pct,
    100.0 * SUM(CASE WHEN ebvs THEN 1 ELSE 0 END) / COUNT(*) AS ebvs_pct,
    COUNT(first_frame_ms) AS first_frames,
    {ff50} AS first_frame_p50_ms, {ff90} AS first_frame_p90_ms,
    {dns50} AS dns_p50_ms, {dns90} AS dns_p90_ms,
    {con50} AS connect_p50_ms, {con90} AS connect_p90_ms,
    {fp50} AS first_packet_p50_ms, {fp90} AS first_packet_p90_ms,
    CAST(SUM(stall_ms) AS DOUBLE) / NULLIF(SUM(watch_ms) + SUM(stall_ms), 0) AS stall_ratio,
    CAST(SUM(stall_count) AS DOUBLE) * 3600000.0 / NULLIF(SUM(watch_ms), 0) AS stalls_per_hour,
    AVG(CAST(startup_skip_ms AS DOUBLE)) AS startup_skip_avg_ms,
    AVG(CASE WHEN startup_skip_ms IS NULL THEN NULL WHEN startup_skip_ms > 0 THEN 1.0 ELSE 0.0 END)
      AS startup_skip_share,
    {lat90} AS latency_p90_ms,
    AVG(CAST(watch_ms AS DOUBLE)) / 1000.0 AS avg_watch_s,
    CAST(SUM(watch_ms) AS DOUBLE) / 3600000.0 AS watch_hours
  FROM sessions WHERE day BETWEEN CAST({from} AS DATE) AND CAST({to} AS DATE)
  GROUP BY day, {key_list}
),
room_beacons AS (
  SELECT CAST(event_time AS DATE) AS day, {key_defs}, type, session_id, room_id, seq, event_time
  FROM cdn_room
),
joins AS (
  SELECT j.day, {j_keys}, j.session_id, j.room_id, j.seq, j.event_time,
    MAX(CASE WHEN l.session_id IS NULL THEN 0 ELSE 1 END) AS bounced
  FROM room_beacons j
  LEFT JOIN room_beacons l
    ON l.type = 'room_leave' AND l.session_id = j.session_id AND l.room_id = j.room_id
   AND l.event_time >= j.event_time AND l.event_time <= j.event_time + INTERVAL '{bounce} seconds'
  WHERE j.type = 'room_join' AND j.day <= CAST({to} AS DATE)
  GROUP BY j.day, {j_keys}, j.session_id, j.room_id, j.seq, j.event_time
),
r AS (
  SELECT day, {key_list},
    SUM(CASE WHEN type = 'room_join' THEN 1 ELSE 0 END) AS joins,
    SUM(CASE WHEN type = 'room_leave' THEN 1 ELSE 0 END) AS leaves
  FROM room_beacons WHERE day <= CAST({to} AS DATE) GROUP BY day, {key_list}
),
b AS (
  SELECT day, {key_list}, CAST(SUM(bounced) AS DOUBLE) / COUNT(*) AS bounce_rate
  FROM joins GROUP BY day, {key_list}
),
{concurrency}
"#,
        j_keys = keys.iter().map(|k| format!("j.{k}")).collect::<Vec<_>>().join(", "),
        ff50 = p(0.5, "first_frame_ms"),
        ff90 = p(0.9, "first_frame_ms"),
        dns50 = p(0.5, "dns_ms"),
        dns90 = p(0.9, "dns_ms"),
        con50 = p(0.5, "connect_ms"),
        con90 = p(0.9, "connect_ms"),
        fp50 = p(0.5, "first_packet_ms"),
        fp90 = p(0.9, "first_packet_ms"),
        lat90 = p(0.9, "max_latency_ms"),
    );
    let parts = PARTS
        .iter()
        .map(|part| (format!("{name}_{part}"), format!("{ctes} SELECT * FROM {part}")))
        .collect();
    let joined = format!(
        r#"
WITH k AS (
  SELECT day, {key_list} FROM {name}_s UNION SELECT day, {key_list} FROM {name}_r
  UNION SELECT day, {key_list} FROM {name}_c
)
SELECT k.day, {key_cols},
  COALESCE(s.plays, 0) AS plays, COALESCE(s.plays_with_play_start, 0) AS plays_with_play_start,
  s.failure_pct, s.business_error_pct, s.ebvs_pct, COALESCE(s.first_frames, 0) AS first_frames,
  s.first_frame_p50_ms, s.first_frame_p90_ms, s.dns_p50_ms, s.dns_p90_ms,
  s.connect_p50_ms, s.connect_p90_ms, s.first_packet_p50_ms, s.first_packet_p90_ms,
  s.stall_ratio, s.stalls_per_hour, s.startup_skip_avg_ms, s.startup_skip_share, s.latency_p90_ms,
  s.avg_watch_s, COALESCE(s.watch_hours, 0.0) AS watch_hours,
  COALESCE(r.joins, 0) AS joins, COALESCE(r.leaves, 0) AS leaves, b.bounce_rate,
  COALESCE(c.peak_concurrent, 0) AS peak_concurrent
FROM k
LEFT JOIN {name}_s s ON {s_join}
LEFT JOIN {name}_r r ON {r_join}
LEFT JOIN {name}_b b ON {b_join}
LEFT JOIN {name}_c c ON {c_join}
ORDER BY k.day, {key_cols}
"#,
        s_join = key_join("s"),
        r_join = key_join("r"),
        b_join = key_join("b"),
        c_join = key_join("c"),
    );
    (parts, joined)
}

async fn run(
    ctx: &datafusion::prelude::SessionContext,
    params: &CdnParams,
    sessions: Sessions,
    extra: &[&str],
    name: &'static str,
) -> Result<OutputTable> {
    let (parts, joined) = sql(params, extra, name, sessions);
    for (table, part) in parts {
        let loading = || format!("loading {table}");
        let rows = ctx
            .sql(&part)
            .await
            .with_context(loading)?
            .cache()
            .await
            .with_context(loading)?;
        ctx.register_table(table.as_str(), rows.into_view())
            .with_context(|| format!("registering table {table:?}"))?;
    }
    let (schema, batches) = query(ctx, name, &joined).await?;
    Ok(OutputTable::new(name, schema, batches))
}

/// The daily charts: (column, title, unit).
const CHARTS: &[(&str, &str, &str)] = &[
    ("plays", "Plays", "sessions"),
    ("peak_concurrent", "Peak concurrent viewers", "viewers"),
    ("failure_pct", "Failure rate", "%"),
    ("ebvs_pct", "Exit before video start", "%"),
    ("first_frame_p50_ms", "First frame p50", "ms"),
    ("first_frame_p90_ms", "First frame p90", "ms"),
    ("stall_ratio", "Stall ratio", "ratio"),
    ("stalls_per_hour", "Stalls per hour of watch time", "1/h"),
    ("latency_p90_ms", "Live latency p90", "ms"),
    ("bounce_rate", "Bounce rate", "ratio"),
    ("avg_watch_s", "Average watch time", "s"),
    ("startup_skip_share", "Sessions with startup skip", "share"),
];

/// Per-CDN daily curves of one column of a (day, cdn, ...) table.
pub(crate) fn daily_chart(table: &OutputTable, column: &str, title: &str, unit: &str) -> Result<Chart> {
    let days = table.strings("day")?;
    let cdns = table.strings("cdn")?;
    let values = table.f64s(column)?;
    let mut x: Vec<String> = days.clone();
    x.sort();
    x.dedup();
    let mut names: Vec<String> = cdns.clone();
    names.sort();
    names.dedup();
    let series = names
        .into_iter()
        .map(|name| {
            let mut points = vec![None; x.len()];
            for row in 0..days.len() {
                if cdns[row] == name {
                    let i = x.binary_search(&days[row]).expect("day listed");
                    points[i] = values[row];
                }
            }
            Series { name, values: points }
        })
        .collect();
    Ok(Chart {
        title: title.to_string(),
        unit: unit.to_string(),
        x,
        series,
        marks: Vec::new(),
    })
}

impl CdnReport {
    /// The self-contained HTML page.
    pub fn html(&self) -> Result<String> {
        let mut page = Page::default();
        page.paragraph(&format!(
            "UTC days {} to {}; a bounce is a join followed by a leave of the same session within {} s. Definitions: docs/reports.md.",
            self.params.from, self.params.to, self.params.bounce_secs
        ));
        page.notes(&self.notes);
        page.heading(2, "Per CDN, per day");
        for (column, title, unit) in CHARTS {
            page.chart(daily_chart(&self.daily, column, title, unit)?);
        }
        page.table(&self.daily)?;
        page.heading(2, "Per CDN and region, per day");
        page.table(&self.region_daily)?;
        page.heading(2, "Per CDN and ISP, per day");
        page.table(&self.isp_daily)?;
        Ok(page.finish("qoe report cdn"))
    }

    /// Writes `cdn_daily.parquet`, `cdn_region_daily.parquet`, `cdn_isp_daily.parquet` and
    /// `report.html` into `out_dir` (created if needed); returns the paths written.
    pub async fn write_outputs(&self, out_dir: &Path) -> Result<Vec<PathBuf>> {
        let html = self.html()?;
        write_all(out_dir, &[&self.daily, &self.region_daily, &self.isp_daily], html).await
    }
}
