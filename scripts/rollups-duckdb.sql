-- The minute rollups of docs/metrics.md in DuckDB SQL, written from the definitions, not from the code:
-- the independent check of stream-jobs/rollup/tests/duckdb.rs and the baseline of scripts/bench-stream.sh.
-- INPUT is the NDJSON file, MIN_VIEWERS the room threshold. Sample lists stand for the percentile fields
-- (the test takes DuckDB's order statistics from them; the benchmark swaps them for quantile_disc).
CREATE TABLE raw AS SELECT * FROM read_ndjson('INPUT', columns = {
  type: 'VARCHAR', ts: 'BIGINT', event_time: 'BIGINT', session_id: 'VARCHAR', seq: 'BIGINT', room_id: 'VARCHAR', platform: 'VARCHAR',
  cdn: 'VARCHAR', region: 'VARCHAR', isp: 'VARCHAR', edge_ip: 'VARCHAR',
  first_frame_ms: 'BIGINT', dns_ms: 'BIGINT', connect_ms: 'BIGINT', first_packet_ms: 'BIGINT', resolver: 'VARCHAR',
  rtt_ms: 'BIGINT', watch_ms: 'BIGINT', stall_ms: 'BIGINT', stall_count: 'BIGINT', dropped_frames: 'BIGINT',
  bitrate_kbps: 'BIGINT', buffer_ms: 'BIGINT', latency_ms: 'BIGINT', startup_skip_ms: 'BIGINT',
  fatal: 'BOOLEAN', category: 'VARCHAR', reason: 'VARCHAR', first_frame_seen: 'BOOLEAN',
  cpu_pct: 'DOUBLE', encode_fps: 'DOUBLE', target_kbps: 'BIGINT', output_kbps: 'BIGINT'});
-- One row per (session_id, seq): retries here are exact copies of the same record.
CREATE TABLE b AS SELECT *, coalesce(event_time, ts) // 60000 * 60000 AS window_ms, type LIKE 'push%' AS is_push,
  type IN ('play_start', 'first_frame', 'play_heartbeat', 'play_error', 'play_end') AS is_play
  FROM (SELECT DISTINCT * FROM raw);
CREATE TABLE k AS
  SELECT *, 'cdn' AS grain, [coalesce(cdn, 'unknown'), coalesce(region, 'unknown'), coalesce(isp, 'unknown'), platform] AS dims FROM b WHERE NOT is_push
  UNION ALL SELECT *, 'edge', [coalesce(cdn, 'unknown'), edge_ip] FROM b WHERE NOT is_push AND edge_ip IS NOT NULL
  UNION ALL SELECT *, 'room', [room_id, coalesce(cdn, 'unknown')] FROM b WHERE NOT is_push
  UNION ALL SELECT *, 'push', [room_id, coalesce(cdn, 'unknown'), coalesce(region, 'unknown'), coalesce(isp, 'unknown')] FROM b WHERE is_push;
CREATE TABLE big_rooms AS SELECT room_id, window_ms FROM b WHERE is_play
  GROUP BY ALL HAVING count(DISTINCT session_id) >= MIN_VIEWERS;
CREATE MACRO nth(xs, q) AS list_sort(xs)[CAST(floor(q * (len(xs) - 1)) AS BIGINT) + 1];
SELECT strftime(make_timestamp(window_ms * 1000), '%Y-%m-%dT%H:%M:%SZ') AS ts, grain, dims,
  count(*) FILTER (type = 'play_start') AS play_starts,
  count(*) FILTER (type = 'first_frame') AS first_frames,
  count(*) FILTER (type = 'play_end') AS play_ends,
  count(*) FILTER (type = 'play_end' AND NOT first_frame_seen AND reason <> 'error') AS ebvs,
  count(*) FILTER (type = 'play_error' AND fatal AND category = 'technical') AS fatal_errors,
  count(*) FILTER (type = 'play_error' AND category = 'business') AS business_errors,
  count(*) FILTER (type = 'room_join') AS joins,
  count(*) FILTER (type = 'room_leave') AS leaves,
  count(DISTINCT session_id) FILTER (is_play OR is_push) AS active_sessions,
  count(*) FILTER (type = 'first_frame' AND resolver = 'httpdns') AS httpdns_first_frames,
  count(*) FILTER (type = 'first_frame' AND resolver IS NOT NULL) AS resolved_first_frames,
  CAST(coalesce(sum(watch_ms) FILTER (is_play), 0) AS BIGINT) AS watch_ms,
  CAST(coalesce(sum(stall_ms) FILTER (is_play), 0) AS BIGINT) AS stall_ms,
  CAST(coalesce(sum(stall_count) FILTER (is_play), 0) AS BIGINT) AS stall_count,
  count(DISTINCT session_id) FILTER (is_play AND stall_count > 0) AS stalled_sessions,
  count(DISTINCT session_id) FILTER (startup_skip_ms > 0) AS startup_skip_sessions,
  CAST(coalesce(sum(dropped_frames) FILTER (is_play), 0) AS BIGINT) AS dropped_frames,
  CAST(coalesce(sum(stall_ms) FILTER (is_push), 0) AS BIGINT) AS push_stall_ms,
  CAST(coalesce(sum(dropped_frames) FILTER (is_push), 0) AS BIGINT) AS push_dropped_frames,
  list(first_frame_ms) FILTER (first_frame_ms IS NOT NULL) AS first_frame_ms,
  list(dns_ms) FILTER (dns_ms IS NOT NULL) AS dns_ms,
  list(connect_ms) FILTER (connect_ms IS NOT NULL) AS connect_ms,
  list(first_packet_ms) FILTER (first_packet_ms IS NOT NULL) AS first_packet_ms,
  list(startup_skip_ms) FILTER (startup_skip_ms IS NOT NULL) AS startup_skip_ms,
  list(latency_ms) FILTER (latency_ms IS NOT NULL) AS latency_ms,
  list(rtt_ms) FILTER (rtt_ms IS NOT NULL) AS rtt_ms,
  list(bitrate_kbps) FILTER (bitrate_kbps IS NOT NULL) AS bitrate_kbps,
  list(buffer_ms) FILTER (buffer_ms IS NOT NULL) AS buffer_ms,
  list(encode_fps) FILTER (encode_fps IS NOT NULL) AS encode_fps,
  list(output_kbps) FILTER (output_kbps IS NOT NULL) AS output_kbps,
  list(target_kbps) FILTER (target_kbps IS NOT NULL) AS target_kbps,
  list(cpu_pct) FILTER (cpu_pct IS NOT NULL) AS cpu_pct
FROM k
WHERE grain <> 'room' OR (room_id, window_ms) IN (SELECT (room_id, window_ms) FROM big_rooms)
GROUP BY ALL;
