//! `qoe report rooms`: minute curves of chosen rooms (joins, leaves, concurrent viewers, stall ratio,
//! first-frame time) per CDN and for the whole room (`cdn = 'all'`), with technical-exit episodes:
//! minutes where joins and leaves spike together, localised to the publisher or to one CDN.
//!
//! Spike rule (per series, i.e. per room and CDN or `all`): a count `x(m)` spikes when
//! `x(m) >= floor` and `x(m) >= k × median(x(m-window) .. x(m-1))` (the trailing median over the
//! series' zero-filled minutes), evaluated only once the room has at least `window` minutes of data
//! before `m` in the report's range (missing history is not a quiet history). An episode is a minute
//! where both joins and leaves of the `all` series spike. Localisation: CDNs serving the room in that
//! minute are those with viewers, joins or leaves; if at least two serve it and all of them spike →
//! `publisher`; if exactly one CDN spikes → that CDN (`undetermined (one cdn)` when only one serves
//! the room); none → `undetermined`; otherwise `cdns: a,b`.

use std::path::{Path, PathBuf};

use chrono::{Days, NaiveDate};

use crate::html::{Chart, Page, Series};
use crate::output::{write_all, OutputTable};
use crate::warehouse::{check_range, day_lit, lit, open, percentile, query};
use crate::{Context, ReportError, Result};

/// The spike rule's parameters.
#[derive(Debug, Clone, Copy)]
pub struct SpikeRule {
    /// Multiple of the trailing median (default 3).
    pub k: f64,
    /// Trailing window in minutes (default 30).
    pub window_minutes: u32,
    /// Absolute floor per minute (default 5).
    pub floor: u32,
}

impl Default for SpikeRule {
    fn default() -> Self {
        SpikeRule {
            k: 3.0,
            window_minutes: 30,
            floor: 5,
        }
    }
}

/// Parameters of the rooms report.
#[derive(Debug, Clone)]
pub struct RoomsParams {
    /// Room ids (at least one).
    pub rooms: Vec<String>,
    /// First UTC day (inclusive).
    pub from: NaiveDate,
    /// Last UTC day (inclusive).
    pub to: NaiveDate,
    /// The spike rule.
    pub spike: SpikeRule,
}

/// The rooms report.
#[derive(Debug, Clone)]
pub struct RoomsReport {
    /// The parameters.
    pub params: RoomsParams,
    /// `room_minutes`: room_id, cdn (`all` for the whole room), minute, joins, leaves, viewers,
    /// stall_ratio, first_frames, first_frame_p50_ms, joins_base, leaves_base, joins_spike,
    /// leaves_spike.
    pub minutes: OutputTable,
    /// `room_episodes`: room_id, minute, joins, leaves, serving_cdns, spiking_cdns, localisation.
    pub episodes: OutputTable,
    /// Remarks (no data).
    pub notes: Vec<String>,
}

/// Computes the rooms report.
pub async fn rooms_report(warehouse: &Path, params: RoomsParams) -> Result<RoomsReport> {
    check_range(params.from, params.to)?;
    if params.rooms.is_empty() {
        return Err(ReportError::BadArgument {
            flag: "--room",
            value: String::new(),
            reason: "give at least one room".to_string(),
        });
    }
    if params.spike.k.is_nan() || params.spike.k <= 0.0 {
        return Err(ReportError::BadArgument {
            flag: "--spike-k",
            value: params.spike.k.to_string(),
            reason: "must be positive".to_string(),
        });
    }
    let (ctx, _missing) = open(warehouse).await?;
    let (schema, batches) = query(&ctx, "room_minutes", &minutes_sql(&params)).await?;
    let minutes = OutputTable::new("room_minutes", schema, batches);
    let registering = || "registering table \"room_minutes\"".to_string();
    let table = datafusion::datasource::MemTable::try_new(minutes.schema.clone(), vec![minutes.batches.clone()])
        .with_context(registering)?;
    ctx.register_table("room_minutes", std::sync::Arc::new(table))
        .with_context(registering)?;
    let (schema, batches) = query(&ctx, "room_episodes", EPISODES_SQL).await?;
    let episodes = OutputTable::new("room_episodes", schema, batches);
    let mut notes = Vec::new();
    if minutes.num_rows() == 0 {
        notes.push(format!(
            "no data for rooms {:?} between {} and {}",
            params.rooms, params.from, params.to
        ));
    }
    Ok(RoomsReport {
        params,
        minutes,
        episodes,
        notes,
    })
}

fn minutes_sql(params: &RoomsParams) -> String {
    let rooms = params.rooms.iter().map(|r| lit(r)).collect::<Vec<_>>().join(", ");
    let before = day_lit(params.from - Days::new(1));
    let from = day_lit(params.from);
    let to = day_lit(params.to);
    let minute_of = |day: NaiveDate| day.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() / 60;
    let lo = minute_of(params.from);
    let hi = minute_of(params.to) + 1439;
    let SpikeRule {
        k,
        window_minutes: w,
        floor,
    } = params.spike;
    let ff_p50 = percentile(0.5, "first_frame_ms");
    format!(
        r#"
WITH r0 AS (
  SELECT room_id, COALESCE(cdn, 'unknown') AS cdn, type, CAST(event_time AS BIGINT) / 60000 AS m
  FROM room WHERE dt BETWEEN {from} AND {to} AND room_id IN ({rooms})
),
r AS (SELECT * FROM r0 UNION ALL SELECT room_id, 'all' AS cdn, type, m FROM r0),
jl AS (
  SELECT room_id, cdn, m, SUM(CASE WHEN type = 'room_join' THEN 1 ELSE 0 END) AS joins,
    SUM(CASE WHEN type = 'room_leave' THEN 1 ELSE 0 END) AS leaves
  FROM r GROUP BY room_id, cdn, m
),
s0 AS (
  SELECT session_id, room_id, COALESCE(cdn, 'unknown') AS cdn, start_time, last_time, first_frame_time, first_frame_ms
  FROM play_sessions WHERE dt BETWEEN {before} AND {to} AND room_id IN ({rooms})
),
s AS (SELECT * FROM s0 UNION ALL SELECT session_id, room_id, 'all' AS cdn, start_time, last_time, first_frame_time, first_frame_ms FROM s0),
v AS (
  SELECT room_id, cdn, m, COUNT(DISTINCT session_id) AS viewers FROM (
    SELECT room_id, cdn, session_id,
      unnest(generate_series(CAST(start_time AS BIGINT) / 60000, CAST(last_time AS BIGINT) / 60000)) AS m
    FROM s) GROUP BY room_id, cdn, m
),
f AS (
  SELECT room_id, cdn, CAST(first_frame_time AS BIGINT) / 60000 AS m, COUNT(*) AS first_frames,
    {ff_p50} AS first_frame_p50_ms
  FROM s WHERE first_frame_time IS NOT NULL AND first_frame_ms IS NOT NULL GROUP BY room_id, cdn, m
),
st AS (
  SELECT s.room_id, s.cdn, CAST(p.event_time AS BIGINT) / 60000 AS m,
    CAST(SUM(COALESCE(p.stall_ms, 0)) AS DOUBLE) / NULLIF(SUM(COALESCE(p.watch_ms, 0)) + SUM(COALESCE(p.stall_ms, 0)), 0) AS stall_ratio
  FROM play p JOIN s ON p.session_id = s.session_id AND p.room_id = s.room_id
  WHERE p.dt BETWEEN {from} AND {to} AND p.room_id IN ({rooms}) AND p.type IN ('play_heartbeat', 'play_end')
  GROUP BY s.room_id, s.cdn, CAST(p.event_time AS BIGINT) / 60000
),
keys AS (
  SELECT room_id, cdn, m FROM jl UNION SELECT room_id, cdn, m FROM v
  UNION SELECT room_id, cdn, m FROM f UNION SELECT room_id, cdn, m FROM st
),
bounds AS (
  SELECT room_id, MAX(lo) AS lo, MIN(hi) AS hi FROM (
    SELECT room_id, GREATEST(MIN(m), {lo}) AS lo, LEAST(MAX(m), {hi}) AS hi FROM keys GROUP BY room_id
  ) GROUP BY room_id
),
series AS (SELECT DISTINCT room_id, cdn FROM keys),
grid AS (
  SELECT room_id, cdn, lo, unnest(generate_series(lo, hi)) AS m
  FROM series JOIN bounds USING (room_id) WHERE lo <= hi
),
curves AS (
  SELECT g.room_id, g.cdn, g.m, g.m - g.lo AS history, COALESCE(jl.joins, 0) AS joins, COALESCE(jl.leaves, 0) AS leaves,
    COALESCE(v.viewers, 0) AS viewers, st.stall_ratio, COALESCE(f.first_frames, 0) AS first_frames,
    f.first_frame_p50_ms
  FROM grid g
  LEFT JOIN jl ON jl.room_id = g.room_id AND jl.cdn = g.cdn AND jl.m = g.m
  LEFT JOIN v ON v.room_id = g.room_id AND v.cdn = g.cdn AND v.m = g.m
  LEFT JOIN f ON f.room_id = g.room_id AND f.cdn = g.cdn AND f.m = g.m
  LEFT JOIN st ON st.room_id = g.room_id AND st.cdn = g.cdn AND st.m = g.m
),
based AS (
  SELECT *,
    COALESCE(median(CAST(joins AS DOUBLE)) OVER (PARTITION BY room_id, cdn ORDER BY m ROWS BETWEEN {w} PRECEDING AND 1 PRECEDING), 0.0) AS joins_base,
    COALESCE(median(CAST(leaves AS DOUBLE)) OVER (PARTITION BY room_id, cdn ORDER BY m ROWS BETWEEN {w} PRECEDING AND 1 PRECEDING), 0.0) AS leaves_base
  FROM curves
)
SELECT room_id, cdn, to_timestamp_millis(m * 60000) AS minute, joins, leaves, viewers, stall_ratio,
  first_frames, first_frame_p50_ms, joins_base, leaves_base,
  history >= {w} AND joins >= {floor} AND CAST(joins AS DOUBLE) >= {k} * joins_base AS joins_spike,
  history >= {w} AND leaves >= {floor} AND CAST(leaves AS DOUBLE) >= {k} * leaves_base AS leaves_spike
FROM based ORDER BY room_id, cdn, m
"#
    )
}

const EPISODES_SQL: &str = r#"
WITH per_cdn AS (
  SELECT room_id, minute,
    SUM(CASE WHEN viewers > 0 OR joins > 0 OR leaves > 0 THEN 1 ELSE 0 END) AS serving_cdns,
    SUM(CASE WHEN joins_spike AND leaves_spike THEN 1 ELSE 0 END) AS spiking_cdns,
    CAST(string_agg(CASE WHEN joins_spike AND leaves_spike THEN cdn END, ',' ORDER BY cdn) AS VARCHAR) AS spiking
  FROM room_minutes WHERE cdn <> 'all' GROUP BY room_id, minute
)
SELECT a.room_id, a.minute, a.joins, a.leaves, COALESCE(p.serving_cdns, 0) AS serving_cdns,
  COALESCE(p.spiking_cdns, 0) AS spiking_cdns,
  CAST(CASE
    WHEN p.serving_cdns >= 2 AND p.spiking_cdns = p.serving_cdns THEN 'publisher'
    WHEN p.spiking_cdns = 1 AND p.serving_cdns = 1 THEN 'undetermined (one cdn)'
    WHEN p.spiking_cdns = 1 THEN p.spiking
    WHEN COALESCE(p.spiking_cdns, 0) = 0 THEN 'undetermined'
    ELSE concat('cdns: ', p.spiking)
  END AS VARCHAR) AS localisation
FROM room_minutes a LEFT JOIN per_cdn p ON p.room_id = a.room_id AND p.minute = a.minute
WHERE a.cdn = 'all' AND a.joins_spike AND a.leaves_spike
ORDER BY a.room_id, a.minute
"#;

impl RoomsReport {
    /// The self-contained HTML page: per room, the curves of each metric per CDN with episodes marked.
    pub fn html(&self) -> Result<String> {
        let mut page = Page::default();
        page.paragraph(&format!(
            "UTC days {} to {}. Spike: count >= {} and >= {} x trailing {}-minute median; episode = joins and leaves spike together (dashed red lines). Definitions: docs/reports.md.",
            self.params.from, self.params.to, self.params.spike.floor, self.params.spike.k, self.params.spike.window_minutes
        ));
        page.notes(&self.notes);
        let rooms = self.minutes.strings("room_id")?;
        let cdns = self.minutes.strings("cdn")?;
        let minutes = self.minutes.strings("minute")?;
        let ep_rooms = self.episodes.strings("room_id")?;
        let ep_minutes = self.episodes.strings("minute")?;
        for room in &self.params.rooms {
            page.heading(2, &format!("Room {room}"));
            let rows: Vec<usize> = (0..rooms.len()).filter(|&r| &rooms[r] == room).collect();
            let mut x: Vec<String> = rows.iter().map(|&r| minutes[r].clone()).collect();
            x.sort();
            x.dedup();
            let marks: Vec<usize> = (0..ep_rooms.len())
                .filter(|&e| &ep_rooms[e] == room)
                .filter_map(|e| x.binary_search(&ep_minutes[e]).ok())
                .collect();
            let mut names: Vec<String> = rows.iter().map(|&r| cdns[r].clone()).collect();
            names.sort();
            names.dedup();
            for (column, title, unit) in [
                ("joins", "Joins per minute", "joins"),
                ("leaves", "Leaves per minute", "leaves"),
                ("viewers", "Concurrent viewers", "viewers"),
                ("stall_ratio", "Stall ratio", "ratio"),
                ("first_frame_p50_ms", "First frame p50", "ms"),
            ] {
                let values = self.minutes.f64s(column)?;
                let series = names
                    .iter()
                    .map(|name| {
                        let mut points = vec![None; x.len()];
                        for &r in rows.iter().filter(|&&r| &cdns[r] == name) {
                            let i = x.binary_search(&minutes[r]).expect("minute listed");
                            points[i] = values[r];
                        }
                        Series {
                            name: name.clone(),
                            values: points,
                        }
                    })
                    .collect();
                page.chart(Chart {
                    title: format!("{title} ({room})"),
                    unit: unit.to_string(),
                    x: x.iter().map(|m| m.get(11..16).unwrap_or(m).to_string()).collect(),
                    series,
                    marks: marks.clone(),
                });
            }
        }
        page.heading(2, "Technical-exit episodes");
        page.table(&self.episodes)?;
        Ok(page.finish("qoe report rooms"))
    }

    /// Writes `room_minutes.parquet`, `room_episodes.parquet` and `report.html` into `out_dir`.
    pub async fn write_outputs(&self, out_dir: &Path) -> Result<Vec<PathBuf>> {
        let html = self.html()?;
        write_all(out_dir, &[&self.minutes, &self.episodes], html).await
    }
}
