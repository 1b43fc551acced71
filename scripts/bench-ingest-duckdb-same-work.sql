-- The ingest benchmark's context baseline (scripts/bench-batch.sh): DuckDB's COPY of the same NDJSON
-- doing the work `qoe batch` does besides parsing and typing, still into one file:
--   * `(session_id, seq)` de-duplicated (ours keeps the first within a 2 h horizon; any one here),
--   * rows sorted by family (play / push / room), event hour, then our tables' sort key
--     (cdn, room_id, session_id, seq), which is the order of our partitions and their rows.
-- It does not validate beacons as the collector does, nor build `play_sessions`, nor write one file
-- per (table, date, hour) partition: those stay ours alone.
-- {{ndjson}}, {{columns}} and {{out}} are filled in by the script.
SET threads = 2;
COPY (
  SELECT * FROM read_ndjson('{{ndjson}}', columns = {{columns}})
  QUALIFY row_number() OVER (PARTITION BY session_id, seq) = 1
  ORDER BY split_part(type, '_', 1), ts // 3600000, cdn, room_id, session_id, seq
) TO '{{out}}' (FORMAT parquet, COMPRESSION zstd);
