-- qoe-pipeline on Arroyo: beacons (Kafka qoe.beacons.v1) -> one-minute rollup documents v1
-- (Kafka qoe.rollups.v1), the same documents `qoe stream` writes (docs/metrics.md), within the gaps
-- listed in stream-jobs/arroyo/README.md ("Semantic gaps").
--
-- Needs the UDFs under stream-jobs/arroyo/udfs/ registered first: qoe_sketch (UDAF), qoe_stats,
-- qoe_es_hist, qoe_json_string. Replace the two `bootstrap_servers` values before deploying.
-- Settings that are literals here (defaults of `qoe stream`):
--   allowed lateness 5 s     -> the WATERMARK clause of `beacons`
--   idle partition after 30 s -> idle_micros of `beacons`
--   room viewer threshold 20 -> `v.viewers >= 20` in the final INSERT
--
-- Plan: beacons -> beacons_once (one row per (session_id, seq) and minute: SDK retries dropped)
--       -> keyed (one row per grain key the beacon counts in: cdn, edge, room or push)
--       -> metrics (one row per minute and grain key)
--       -> LEFT JOIN room_viewers (rooms below the threshold write no `room` document)
--       -> rollups: the document as JSON text (raw_string), keyed by grain, minute and dims.

CREATE TABLE beacons (
    v BIGINT,
    type TEXT NOT NULL,
    ts BIGINT NOT NULL,
    event_time BIGINT,
    session_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    cdn TEXT,
    region TEXT,
    isp TEXT,
    edge_ip TEXT,
    first_frame_ms BIGINT,
    dns_ms BIGINT,
    connect_ms BIGINT,
    first_packet_ms BIGINT,
    resolver TEXT,
    rtt_ms BIGINT,
    watch_ms BIGINT,
    stall_count BIGINT,
    stall_ms BIGINT,
    dropped_frames BIGINT,
    bitrate_kbps BIGINT,
    buffer_ms BIGINT,
    latency_ms BIGINT,
    startup_skip_ms BIGINT,
    fatal BOOLEAN,
    category TEXT,
    reason TEXT,
    first_frame_seen BOOLEAN,
    encode_fps DOUBLE,
    output_kbps BIGINT,
    target_kbps BIGINT,
    cpu_pct DOUBLE,
    -- Event time: the collector's skew-corrected `event_time`, or the client `ts` without enrichment.
    event_ts TIMESTAMP GENERATED ALWAYS AS (CAST(to_timestamp_millis(coalesce(event_time, ts)) AS TIMESTAMP)),
    WATERMARK FOR event_ts AS event_ts - INTERVAL '5' SECOND
) WITH (
    connector = 'kafka',
    format = 'json',
    type = 'source',
    bootstrap_servers = 'kafka:9092',
    topic = 'qoe.beacons.v1',
    'source.offset' = 'earliest',
    'source.group_id' = 'qoe-arroyo-rollups',
    -- A partition without records for 30 s stops holding windows open (`qoe stream`'s idle timeout;
    -- Arroyo's default is 5 minutes).
    idle_micros = 30000000
);

-- The document, as text: the Kafka value. `message_key` is the Kafka key (grain|@timestamp|dims).
CREATE TABLE rollups (
    value TEXT NOT NULL,
    message_key TEXT NOT NULL
) WITH (
    connector = 'kafka',
    format = 'raw_string',
    type = 'sink',
    bootstrap_servers = 'kafka:9092',
    topic = 'qoe.rollups.v1',
    'sink.key_field' = 'message_key',
    'sink.commit_mode' = 'exactly_once'
);

-- De-duplication within the minute: one row per (session_id, seq). A retried beacon repeats every
-- field, so max() of each column is that beacon.
CREATE VIEW beacons_once AS
SELECT
    TUMBLE(INTERVAL '1' MINUTE) AS window,
    session_id,
    seq,
    max(type) AS type,
    max(room_id) AS room_id,
    max(platform) AS platform,
    max(cdn) AS cdn,
    max(region) AS region,
    max(isp) AS isp,
    max(edge_ip) AS edge_ip,
    max(first_frame_ms) AS first_frame_ms,
    max(dns_ms) AS dns_ms,
    max(connect_ms) AS connect_ms,
    max(first_packet_ms) AS first_packet_ms,
    max(resolver) AS resolver,
    max(rtt_ms) AS rtt_ms,
    max(watch_ms) AS watch_ms,
    max(stall_count) AS stall_count,
    max(stall_ms) AS stall_ms,
    max(dropped_frames) AS dropped_frames,
    max(bitrate_kbps) AS bitrate_kbps,
    max(buffer_ms) AS buffer_ms,
    max(latency_ms) AS latency_ms,
    max(startup_skip_ms) AS startup_skip_ms,
    max(fatal) AS fatal,
    max(category) AS category,
    max(reason) AS reason,
    max(first_frame_seen) AS first_frame_seen,
    max(encode_fps) AS encode_fps,
    max(output_kbps) AS output_kbps,
    max(target_kbps) AS target_kbps,
    max(cpu_pct) AS cpu_pct
FROM beacons
GROUP BY window, session_id, seq;

-- Every grain key a beacon counts in (qoe_rollup's for_each_key): a publisher beacon in `push`; a
-- play or room beacon in `cdn`, `room`, and `edge` when it carries edge_ip. d1..d4 are the grain's
-- dimensions in contract order (docs/metrics.md), '' past the grain's last one.
CREATE VIEW keyed AS
SELECT
    window,
    grain,
    CASE grain
        WHEN 'cdn' THEN coalesce(cdn, 'unknown')
        WHEN 'edge' THEN coalesce(cdn, 'unknown')
        ELSE room_id
    END AS d1,
    CASE grain
        WHEN 'cdn' THEN coalesce(region, 'unknown')
        WHEN 'edge' THEN edge_ip
        ELSE coalesce(cdn, 'unknown')
    END AS d2,
    CASE grain
        WHEN 'cdn' THEN coalesce(isp, 'unknown')
        WHEN 'push' THEN coalesce(region, 'unknown')
        ELSE ''
    END AS d3,
    CASE grain
        WHEN 'cdn' THEN platform
        WHEN 'push' THEN coalesce(isp, 'unknown')
        ELSE ''
    END AS d4,
    type, session_id, first_frame_ms, dns_ms, connect_ms, first_packet_ms, resolver, rtt_ms,
    watch_ms, stall_count, stall_ms, dropped_frames, bitrate_kbps, buffer_ms, latency_ms,
    startup_skip_ms, fatal, category, reason, first_frame_seen, encode_fps, output_kbps,
    target_kbps, cpu_pct
FROM (
    SELECT
        *,
        unnest(CASE
            WHEN type IN ('push_start', 'push_heartbeat', 'push_end') THEN make_array('push')
            WHEN edge_ip IS NULL THEN make_array('cdn', 'room')
            ELSE make_array('cdn', 'edge', 'room')
        END) AS grain
    FROM beacons_once
);

-- The metrics of each minute and grain key (qoe_rollup's accumulator). Latency-like metrics and
-- gauges go through qoe_sketch, so their statistics and histograms are the embedded engine's.
CREATE VIEW metrics AS
SELECT
    window,
    grain,
    d1,
    d2,
    d3,
    d4,
    sum(CASE WHEN type = 'play_start' THEN 1 ELSE 0 END) AS play_starts,
    sum(CASE WHEN type = 'first_frame' THEN 1 ELSE 0 END) AS first_frames,
    sum(CASE WHEN type = 'play_end' THEN 1 ELSE 0 END) AS play_ends,
    sum(CASE WHEN type = 'play_end' AND first_frame_seen = false AND coalesce(reason, '') <> 'error'
        THEN 1 ELSE 0 END) AS ebvs,
    sum(CASE WHEN type = 'play_error' AND category = 'technical' AND fatal = true THEN 1 ELSE 0 END)
        AS fatal_errors,
    sum(CASE WHEN type = 'play_error' AND category = 'business' THEN 1 ELSE 0 END) AS business_errors,
    sum(CASE WHEN type = 'room_join' THEN 1 ELSE 0 END) AS joins,
    sum(CASE WHEN type = 'room_leave' THEN 1 ELSE 0 END) AS leaves,
    count(DISTINCT CASE WHEN type NOT IN ('room_join', 'room_leave') THEN session_id END)
        AS active_sessions,
    sum(CASE WHEN type = 'first_frame' AND resolver = 'httpdns' THEN 1 ELSE 0 END)
        AS httpdns_first_frames,
    sum(CASE WHEN type = 'first_frame' AND resolver IS NOT NULL THEN 1 ELSE 0 END)
        AS resolved_first_frames,
    sum(CASE WHEN type IN ('play_heartbeat', 'play_end') THEN coalesce(watch_ms, 0) ELSE 0 END)
        AS watch_ms,
    sum(CASE WHEN type IN ('play_heartbeat', 'play_end') THEN coalesce(stall_ms, 0) ELSE 0 END)
        AS stall_ms,
    sum(CASE WHEN type IN ('play_heartbeat', 'play_end') THEN coalesce(stall_count, 0) ELSE 0 END)
        AS stall_count,
    count(DISTINCT CASE WHEN type IN ('play_heartbeat', 'play_end') AND stall_count > 0
        THEN session_id END) AS stalled_sessions,
    count(DISTINCT CASE WHEN type = 'play_heartbeat' AND startup_skip_ms > 0 THEN session_id END)
        AS startup_skip_sessions,
    sum(CASE WHEN type IN ('play_heartbeat', 'play_end') THEN coalesce(dropped_frames, 0) ELSE 0 END)
        AS dropped_frames,
    sum(CASE WHEN type IN ('push_heartbeat', 'push_end') THEN coalesce(stall_ms, 0) ELSE 0 END)
        AS push_stall_ms,
    sum(CASE WHEN type IN ('push_heartbeat', 'push_end') THEN coalesce(dropped_frames, 0) ELSE 0 END)
        AS push_dropped_frames,
    qoe_sketch(CASE WHEN type = 'first_frame' THEN CAST(first_frame_ms AS DOUBLE) END) AS first_frame_sk,
    qoe_sketch(CASE WHEN type = 'first_frame' THEN CAST(dns_ms AS DOUBLE) END) AS dns_sk,
    qoe_sketch(CASE WHEN type = 'first_frame' THEN CAST(connect_ms AS DOUBLE) END) AS connect_sk,
    qoe_sketch(CASE WHEN type = 'first_frame' THEN CAST(first_packet_ms AS DOUBLE) END) AS first_packet_sk,
    qoe_sketch(CASE WHEN type = 'play_heartbeat' THEN CAST(startup_skip_ms AS DOUBLE) END) AS startup_skip_sk,
    qoe_sketch(CASE WHEN type = 'play_heartbeat' THEN CAST(latency_ms AS DOUBLE) END) AS latency_sk,
    qoe_sketch(CASE WHEN type IN ('first_frame', 'play_heartbeat', 'push_heartbeat', 'push_end')
        THEN CAST(rtt_ms AS DOUBLE) END) AS rtt_sk,
    qoe_sketch(CASE WHEN type = 'play_heartbeat' THEN CAST(bitrate_kbps AS DOUBLE) END) AS bitrate_sk,
    qoe_sketch(CASE WHEN type = 'play_heartbeat' THEN CAST(buffer_ms AS DOUBLE) END) AS buffer_sk,
    qoe_sketch(CASE WHEN type IN ('push_heartbeat', 'push_end') THEN encode_fps END) AS encode_fps_sk,
    qoe_sketch(CASE WHEN type IN ('push_heartbeat', 'push_end') THEN CAST(output_kbps AS DOUBLE) END)
        AS output_kbps_sk,
    qoe_sketch(CASE WHEN type IN ('push_heartbeat', 'push_end') THEN CAST(target_kbps AS DOUBLE) END)
        AS target_kbps_sk,
    qoe_sketch(CASE WHEN type IN ('push_heartbeat', 'push_end') THEN cpu_pct END) AS cpu_pct_sk
FROM keyed
GROUP BY window, grain, d1, d2, d3, d4;

-- Distinct play sessions per room and minute, over all the room's CDNs (the `room` grain threshold).
CREATE VIEW room_viewers AS
SELECT
    window,
    room_id,
    count(DISTINCT CASE
        WHEN type IN ('play_start', 'first_frame', 'play_heartbeat', 'play_error', 'play_end')
        THEN session_id
    END) AS viewers
FROM beacons_once
GROUP BY window, room_id;

-- The rollup document v1 as JSON text, field for field in RollupDoc's order. Absent fields
-- (statistics without samples, ratios over 0) are left out: `'...' || NULL` is NULL.
INSERT INTO rollups
SELECT
    '{"@timestamp":"' || to_char(m.window.start, '%Y-%m-%dT%H:%M:%SZ') || '"'
    || ',"window_s":60,"grain":"' || m.grain || '","final":true'
    || CASE m.grain
        WHEN 'cdn' THEN ',"cdn":' || qoe_json_string(m.d1) || ',"region":' || qoe_json_string(m.d2)
            || ',"isp":' || qoe_json_string(m.d3) || ',"platform":' || qoe_json_string(m.d4)
        WHEN 'edge' THEN ',"cdn":' || qoe_json_string(m.d1) || ',"edge_ip":' || qoe_json_string(m.d2)
        WHEN 'room' THEN ',"room_id":' || qoe_json_string(m.d1) || ',"cdn":' || qoe_json_string(m.d2)
        ELSE ',"room_id":' || qoe_json_string(m.d1) || ',"cdn":' || qoe_json_string(m.d2)
            || ',"region":' || qoe_json_string(m.d3) || ',"isp":' || qoe_json_string(m.d4)
    END
    || ',"play_starts":' || CAST(m.play_starts AS TEXT)
    || ',"first_frames":' || CAST(m.first_frames AS TEXT)
    || ',"play_ends":' || CAST(m.play_ends AS TEXT)
    || ',"ebvs":' || CAST(m.ebvs AS TEXT)
    || ',"fatal_errors":' || CAST(m.fatal_errors AS TEXT)
    || ',"business_errors":' || CAST(m.business_errors AS TEXT)
    || ',"joins":' || CAST(m.joins AS TEXT)
    || ',"leaves":' || CAST(m.leaves AS TEXT)
    || ',"active_sessions":' || CAST(m.active_sessions AS TEXT)
    || coalesce(',"first_frame_ms":' || qoe_stats(m.first_frame_sk, 'p50,p90,p99'), '')
    || coalesce(',"dns_ms":' || qoe_stats(m.dns_sk, 'p50,p90,p99'), '')
    || coalesce(',"connect_ms":' || qoe_stats(m.connect_sk, 'p50,p90,p99'), '')
    || coalesce(',"first_packet_ms":' || qoe_stats(m.first_packet_sk, 'p50,p90,p99'), '')
    || ',"httpdns_first_frames":' || CAST(m.httpdns_first_frames AS TEXT)
    || ',"resolved_first_frames":' || CAST(m.resolved_first_frames AS TEXT)
    || CASE WHEN m.resolved_first_frames > 0
        THEN ',"httpdns_share":' || CAST(CAST(m.httpdns_first_frames AS DOUBLE)
            / CAST(m.resolved_first_frames AS DOUBLE) AS TEXT)
        ELSE '' END
    || ',"watch_ms":' || CAST(m.watch_ms AS TEXT)
    || ',"stall_ms":' || CAST(m.stall_ms AS TEXT)
    || ',"stall_count":' || CAST(m.stall_count AS TEXT)
    || CASE WHEN m.watch_ms + m.stall_ms > 0
        THEN ',"stall_ratio":' || CAST(CAST(m.stall_ms AS DOUBLE)
            / CAST(m.watch_ms + m.stall_ms AS DOUBLE) AS TEXT)
        ELSE '' END
    || CASE WHEN m.watch_ms > 0
        THEN ',"stalls_per_hour":' || CAST(CAST(m.stall_count AS DOUBLE)
            / (CAST(m.watch_ms AS DOUBLE) / 3600000.0) AS TEXT)
        ELSE '' END
    || ',"stalled_sessions":' || CAST(m.stalled_sessions AS TEXT)
    || coalesce(',"startup_skip_ms":' || qoe_stats(m.startup_skip_sk, 'p90'), '')
    || ',"startup_skip_sessions":' || CAST(m.startup_skip_sessions AS TEXT)
    || coalesce(',"latency_ms":' || qoe_stats(m.latency_sk, 'p50,p90'), '')
    || coalesce(',"rtt_ms":' || qoe_stats(m.rtt_sk, 'p50,p90'), '')
    || coalesce(',"bitrate_kbps":' || qoe_stats(m.bitrate_sk, ''), '')
    || coalesce(',"buffer_ms":' || qoe_stats(m.buffer_sk, ''), '')
    || ',"dropped_frames":' || CAST(m.dropped_frames AS TEXT)
    || coalesce(',"encode_fps":' || qoe_stats(m.encode_fps_sk, ''), '')
    || coalesce(',"output_kbps":' || qoe_stats(m.output_kbps_sk, ''), '')
    || coalesce(',"target_kbps":' || qoe_stats(m.target_kbps_sk, ''), '')
    || coalesce(',"cpu_pct":' || qoe_stats(m.cpu_pct_sk, ''), '')
    || ',"push_stall_ms":' || CAST(m.push_stall_ms AS TEXT)
    || ',"push_dropped_frames":' || CAST(m.push_dropped_frames AS TEXT)
    || coalesce(',"first_frame_ms_hist":' || qoe_es_hist(m.first_frame_sk), '')
    || coalesce(',"dns_ms_hist":' || qoe_es_hist(m.dns_sk), '')
    || coalesce(',"connect_ms_hist":' || qoe_es_hist(m.connect_sk), '')
    || coalesce(',"first_packet_ms_hist":' || qoe_es_hist(m.first_packet_sk), '')
    || coalesce(',"startup_skip_ms_hist":' || qoe_es_hist(m.startup_skip_sk), '')
    || coalesce(',"latency_ms_hist":' || qoe_es_hist(m.latency_sk), '')
    || coalesce(',"rtt_ms_hist":' || qoe_es_hist(m.rtt_sk), '')
    || '}' AS value,
    m.grain || '|' || to_char(m.window.start, '%Y-%m-%dT%H:%M:%SZ')
        || '|' || m.d1 || '|' || m.d2 || '|' || m.d3 || '|' || m.d4 AS message_key
FROM metrics m
LEFT JOIN room_viewers v ON m.window = v.window AND m.d1 = v.room_id
WHERE m.grain <> 'room' OR v.viewers >= 20;
