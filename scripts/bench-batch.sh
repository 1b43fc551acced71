#!/usr/bin/env bash
# Batch benchmark (BENCHMARKS.md). In one run, on this machine, against the real DuckDB CLI from PyPI:
#   1. ingest:  `qoe batch --input file:` (validation, de-duplication, partitioned sorted zstd Parquet and
#               play_sessions) against DuckDB's typed `COPY (SELECT * FROM read_ndjson(...)) TO ... parquet`
#               of the same NDJSON, as beacons per second;
#      and, for context, against DuckDB doing the work ours does besides parsing: the same COPY with
#      `(session_id, seq)` de-duplicated and rows sorted by family, event hour and our sort key
#      (cdn, room_id, session_id, seq), still one file (scripts/bench-ingest-duckdb-same-work.sql);
#   2. report:  `qoe report cdn` over 30 days of our warehouse against DuckDB answering the same question
#               (scripts/bench-cdn-duckdb.sql) over the Parquet file it wrote itself, as seconds (five
#               interleaved runs each, medians).
# Usage: scripts/bench-batch.sh [BEACONS] (default 1000000 for the ingest part).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
beacons="${1:-1000000}"
work="${BENCH_WORK:-$(mktemp -d)}"
mkdir -p "$work"
columns="$(cat scripts/duckdb-columns.sql)"

step "build (release)"
cargo build --release --locked -p qoe-cli
qoe="$CARGO_TARGET_DIR/release/qoe"
ensure_duckdb

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.3f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

step "ingest: $beacons beacons from the simulator"
"$qoe" simulate --target "file:$work/ingest.ndjson" --seed 7 --start=-20m --duration 15m --rooms 200 \
  --viewers 20000 --max-beacons "$beacons" >/dev/null
ls -l "$work/ingest.ndjson"
# Three runs of each, interleaved (this machine's timings vary by up to 50 % from run to run); the
# ratio is taken between the medians.
sed -e "s|{{ndjson}}|$work/ingest.ndjson|" -e "s|{{columns}}|$columns|" \
  -e "s|{{out}}|$work/duck-same-work.parquet|" scripts/bench-ingest-duckdb-same-work.sql >"$work/duck-same-work.sql"
ours_runs=(); duck_runs=(); same_runs=()
for run in 1 2 3; do
  rm -rf "$work/wh-ingest" "$work/duck-ingest.parquet" "$work/duck-same-work.parquet"
  t0=$(now)
  "$qoe" batch --input "file:$work/ingest.ndjson" --warehouse "$work/wh-ingest" --log warn >/dev/null
  t1=$(now)
  "$DUCKDB" -c "SET threads = 2; COPY (SELECT * FROM read_ndjson('$work/ingest.ndjson', columns = $columns)) TO '$work/duck-ingest.parquet' (FORMAT parquet, COMPRESSION zstd);"
  t2=$(now)
  "$DUCKDB" <"$work/duck-same-work.sql"
  t3=$(now)
  ours_runs+=("$(elapsed "$t0" "$t1")"); duck_runs+=("$(elapsed "$t1" "$t2")"); same_runs+=("$(elapsed "$t2" "$t3")")
  echo "ingest, run $run: qoe batch ${ours_runs[-1]} s, duckdb COPY ${duck_runs[-1]} s, duckdb same-work COPY ${same_runs[-1]} s"
done
median() { python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
ours=$(median "${ours_runs[@]}"); duck=$(median "${duck_runs[@]}"); same=$(median "${same_runs[@]}")
ours_rate=$(python3 -c "print(round($beacons / $ours))"); duck_rate=$(python3 -c "print(round($beacons / $duck))")
same_rate=$(python3 -c "print(round($beacons / $same))")
echo "ingest (medians): qoe batch ${ours} s (${ours_rate} beacons/s), duckdb COPY ${duck} s (${duck_rate} beacons/s), ratio $(ratio "$ours_rate" "$duck_rate")"
echo "ingest, context (medians): duckdb same-work COPY ${same} s (${same_rate} beacons/s), ratio $(ratio "$ours_rate" "$same_rate")"
"$DUCKDB" -c "SELECT (SELECT count(*) FROM read_parquet(['$work/wh-ingest/play/**/*.parquet', '$work/wh-ingest/push/**/*.parquet', '$work/wh-ingest/room/**/*.parquet'])) AS ours_rows,
  (SELECT count(*) FROM '$work/duck-ingest.parquet') AS duckdb_rows, (SELECT count(*) FROM '$work/duck-same-work.parquet') AS same_work_rows;"
du -sh "$work/wh-ingest" "$work/duck-ingest.parquet" "$work/duck-same-work.parquet"

step "report: 30 days of simulated traffic"
days=30
start_ms=$(python3 -c "import time; d = 86400000; print((int(time.time() * 1000) // d - $days - 1) * d)")
from=$(python3 -c "import datetime; print(datetime.datetime.utcfromtimestamp($start_ms / 1000).date())")
to=$(python3 -c "import datetime; print((datetime.datetime.utcfromtimestamp($start_ms / 1000) + datetime.timedelta(days=$days - 1)).date())")
if [ ! -s "$work/month.ndjson" ]; then
  "$qoe" simulate --target "file:$work/month.ndjson" --seed 11 --start "$start_ms" --duration "${days}d" \
    --rooms "${BENCH_ROOMS:-10}" --viewers "${BENCH_VIEWERS:-20}" >/dev/null
fi
month_beacons=$(wc -l <"$work/month.ndjson")
echo "$month_beacons beacons, $from .. $to"
rm -rf "$work/wh-month" "$work/duck-month.parquet" "$work/report-month" "$work/duck-report.parquet"
t0=$(now)
"$qoe" batch --input "file:$work/month.ndjson" --warehouse "$work/wh-month" --log warn
t1=$(now)
"$DUCKDB" -c "SET threads = 2; COPY (SELECT * FROM read_ndjson('$work/month.ndjson', columns = $columns)) TO '$work/duck-month.parquet' (FORMAT parquet, COMPRESSION zstd);"
t2=$(now)
echo "month ingest: qoe batch $(elapsed "$t0" "$t1") s, duckdb COPY $(elapsed "$t1" "$t2") s"
sed -e "s|{{parquet}}|$work/duck-month.parquet|" -e "s|{{from}}|$from|g" -e "s|{{to}}|$to|g" \
  -e "s|{{bounce}}|10|" -e "s|{{out}}|$work/duck-report.parquet|" scripts/bench-cdn-duckdb.sql >"$work/duck-report.sql"
ours_runs=(); duck_runs=()
for run in 1 2 3 4 5; do
  t0=$(now)
  "$qoe" report cdn --warehouse "$work/wh-month" --from "$from" --to "$to" --out "$work/report-month" >/dev/null
  t1=$(now)
  "$DUCKDB" <"$work/duck-report.sql"
  t2=$(now)
  ours_runs+=("$(elapsed "$t0" "$t1")"); duck_runs+=("$(elapsed "$t1" "$t2")")
  echo "30-day cdn report, run $run: qoe report ${ours_runs[-1]} s, duckdb ${duck_runs[-1]} s"
done
ours=$(median "${ours_runs[@]}"); duck=$(median "${duck_runs[@]}")
echo "30-day cdn report (medians): qoe report ${ours} s, duckdb ${duck} s, duckdb/qoe $(ratio "$duck" "$ours")"

step "do the two answers agree? (largest relative difference per column, over every day and CDN)"
"$DUCKDB" -c "
WITH ours AS (SELECT * FROM '$work/report-month/cdn_daily.parquet'), theirs AS (SELECT * FROM '$work/duck-report.parquet')
SELECT count(*) AS day_cdn_rows,
  max(abs(o.plays - t.plays)) AS plays_diff,
  max(abs(o.failure_pct - t.failure_pct) / greatest(abs(t.failure_pct), 1e-9)) AS failure_pct,
  max(abs(o.ebvs_pct - t.ebvs_pct) / greatest(abs(t.ebvs_pct), 1e-9)) AS ebvs_pct,
  max(abs(o.first_frame_p90_ms - t.first_frame_p90_ms) / t.first_frame_p90_ms) AS first_frame_p90,
  max(abs(o.stall_ratio - t.stall_ratio) / greatest(t.stall_ratio, 1e-12)) AS stall_ratio,
  max(abs(o.latency_p90_ms - t.latency_p90_ms) / t.latency_p90_ms) AS latency_p90,
  max(abs(o.joins - t.joins)) AS joins_diff, max(abs(o.leaves - t.leaves)) AS leaves_diff,
  max(abs(o.bounce_rate - t.bounce_rate)) AS bounce_rate_diff,
  max(abs(o.peak_concurrent - t.peak_concurrent)) AS peak_diff
FROM ours o JOIN theirs t USING (day, cdn);"
du -sh "$work/wh-month" "$work/duck-month.parquet"
echo "work directory: $work"
