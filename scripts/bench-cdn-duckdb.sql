-- The 30-day CDN question of scripts/bench-batch.sh, answered by DuckDB over the Parquet file it wrote
-- itself from the raw beacons (no play_sessions: the sessions are folded here, in the query).
-- Same definitions as `qoe report cdn` (docs/reports.md); {{parquet}}, {{from}}, {{to}}, {{bounce}}
-- are replaced by the script.
SET threads = 2;
CREATE OR REPLACE TEMP VIEW b AS
  SELECT *, make_timestamp(COALESCE(event_time, ts) * 1000) AS t FROM read_parquet('{{parquet}}');
COPY (
WITH sessions AS (
  SELECT session_id,
    min(t) AS start_time, max(t) AS last_time,
    COALESCE(arg_min(cdn, t) FILTER (WHERE cdn IS NOT NULL), 'unknown') AS cdn,
    bool_or(type = 'play_start') AS has_play_start,
    bool_or(type = 'play_error' AND fatal AND category = 'technical') AS fatal_error,
    bool_or(type = 'play_error' AND category = 'business') AS business_error,
    arg_max(reason, t) FILTER (WHERE type = 'play_end') AS end_reason,
    arg_max(first_frame_seen, t) FILTER (WHERE type = 'play_end') AS first_frame_seen,
    arg_min(first_frame_ms, t) FILTER (WHERE type = 'first_frame') AS first_frame_ms,
    arg_min(dns_ms, t) FILTER (WHERE type = 'first_frame') AS dns_ms,
    arg_min(connect_ms, t) FILTER (WHERE type = 'first_frame') AS connect_ms,
    arg_min(first_packet_ms, t) FILTER (WHERE type = 'first_frame') AS first_packet_ms,
    arg_min(startup_skip_ms, t) FILTER (WHERE startup_skip_ms IS NOT NULL) AS startup_skip_ms,
    COALESCE(sum(watch_ms) FILTER (WHERE type IN ('play_heartbeat', 'play_end')), 0) AS watch_ms,
    COALESCE(sum(stall_ms) FILTER (WHERE type IN ('play_heartbeat', 'play_end')), 0) AS stall_ms,
    COALESCE(sum(stall_count) FILTER (WHERE type IN ('play_heartbeat', 'play_end')), 0) AS stall_count,
    max(latency_ms) FILTER (WHERE type = 'play_heartbeat') AS max_latency_ms
  FROM b
  WHERE type IN ('play_start', 'first_frame', 'play_heartbeat', 'play_error', 'play_end')
  GROUP BY session_id
),
s AS (
  SELECT CAST(start_time AS DATE) AS day, cdn,
    count(*) AS plays,
    100.0 * count(*) FILTER (WHERE fatal_error) / count(*) AS failure_pct,
    100.0 * count(*) FILTER (WHERE end_reason IS NOT NULL AND NOT first_frame_seen AND end_reason <> 'error')
      / count(*) AS ebvs_pct,
    quantile_cont(first_frame_ms, 0.5) AS first_frame_p50_ms, quantile_cont(first_frame_ms, 0.9) AS first_frame_p90_ms,
    quantile_cont(dns_ms, 0.5) AS dns_p50_ms, quantile_cont(dns_ms, 0.9) AS dns_p90_ms,
    quantile_cont(connect_ms, 0.5) AS connect_p50_ms, quantile_cont(connect_ms, 0.9) AS connect_p90_ms,
    quantile_cont(first_packet_ms, 0.5) AS first_packet_p50_ms, quantile_cont(first_packet_ms, 0.9) AS first_packet_p90_ms,
    sum(stall_ms) / NULLIF(sum(watch_ms) + sum(stall_ms), 0) AS stall_ratio,
    sum(stall_count) * 3600000.0 / NULLIF(sum(watch_ms), 0) AS stalls_per_hour,
    avg(startup_skip_ms) AS startup_skip_avg_ms,
    quantile_cont(max_latency_ms, 0.9) AS latency_p90_ms,
    avg(watch_ms) / 1000.0 AS avg_watch_s
  FROM sessions
  WHERE CAST(start_time AS DATE) BETWEEN DATE '{{from}}' AND DATE '{{to}}'
  GROUP BY ALL
),
room AS (
  SELECT CAST(t AS DATE) AS day, COALESCE(cdn, 'unknown') AS cdn, type, session_id, room_id, t
  FROM b WHERE type IN ('room_join', 'room_leave') AND CAST(t AS DATE) BETWEEN DATE '{{from}}' AND DATE '{{to}}'
),
r AS (
  SELECT day, cdn, count(*) FILTER (WHERE type = 'room_join') AS joins,
    count(*) FILTER (WHERE type = 'room_leave') AS leaves
  FROM room GROUP BY ALL
),
bounces AS (
  SELECT j.day, j.cdn,
    avg(CASE WHEN EXISTS (
      SELECT 1 FROM room l WHERE l.type = 'room_leave' AND l.session_id = j.session_id AND l.room_id = j.room_id
        AND l.t BETWEEN j.t AND j.t + INTERVAL '{{bounce}} seconds') THEN 1.0 ELSE 0.0 END) AS bounce_rate
  FROM room j WHERE j.type = 'room_join' GROUP BY ALL
),
c AS (
  SELECT CAST(to_timestamp(minute * 60) AS DATE) AS day, cdn, max(viewers) AS peak_concurrent FROM (
    SELECT minute, cdn, count(DISTINCT session_id) AS viewers FROM (
      SELECT cdn, session_id,
        unnest(generate_series(epoch_ms(start_time) // 60000, epoch_ms(last_time) // 60000)) AS minute
      FROM sessions)
    GROUP BY ALL)
  WHERE CAST(to_timestamp(minute * 60) AS DATE) BETWEEN DATE '{{from}}' AND DATE '{{to}}'
  GROUP BY ALL
)
SELECT s.*, r.joins, r.leaves, bounces.bounce_rate, c.peak_concurrent
FROM s
LEFT JOIN r USING (day, cdn) LEFT JOIN bounces USING (day, cdn) LEFT JOIN c USING (day, cdn)
ORDER BY day, cdn
) TO '{{out}}' (FORMAT parquet);
