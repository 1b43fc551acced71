#!/usr/bin/env bash
# Stream benchmark (BENCHMARKS.md). In one run, on this machine, against the real DuckDB CLI from PyPI:
# `qoe stream --input file:` (decode, validation, de-duplication, windows, sketches, NDJSON documents)
# against DuckDB computing the same per-minute rollups of every grain (scripts/rollups-duckdb.sql, the
# SQL the cross-check test holds to our documents, with each sample list swapped for avg, count and
# quantile_disc) from the same NDJSON, written to a JSON file. Three interleaved runs each; beacons per
# second of wall time and per CPU-second (user + system: "per core"), medians.
# Usage: scripts/bench-stream.sh [BEACONS] (default 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
beacons="${1:-1000000}"
work="${BENCH_WORK:-$(mktemp -d)}"
mkdir -p "$work"

step "build (release)"
cargo build --release --locked -p qoe-cli
qoe="$CARGO_TARGET_DIR/release/qoe"
ensure_duckdb

if [ ! -s "$work/stream.ndjson" ] || [ "$(wc -l <"$work/stream.ndjson")" -ne "$beacons" ]; then
  step "$beacons beacons from the simulator"
  "$qoe" simulate --target "file:$work/stream.ndjson" --seed 7 --start=-20m --duration 15m --rooms 200 \
    --viewers 20000 --max-beacons "$beacons" >/dev/null
fi
ls -l "$work/stream.ndjson"
python3 - "$work" <<'PY'
import re, sys
work = sys.argv[1]
sql = open("scripts/rollups-duckdb.sql").read()
sql = sql.replace("INPUT", f"{work}/stream.ndjson").replace("MIN_VIEWERS", "20")
def stats(match):
    x = match.group(1)
    return (f"avg({x}) AS {x}_avg, sum({x}) AS {x}_sum, count({x}) AS {x}_count, quantile_disc({x}, 0.5) AS {x}_p50, "
            f"quantile_disc({x}, 0.9) AS {x}_p90, quantile_disc({x}, 0.99) AS {x}_p99")
sql, swapped = re.subn(r"list\((\w+)\) FILTER \(\w+ IS NOT NULL\) AS \w+", stats, sql)
assert swapped == 13, swapped
select = sql.index("SELECT strftime")
sql = sql[:select] + "COPY (" + sql[select:].rstrip().rstrip(";") + f") TO '{work}/duck-rollups.json' (FORMAT json);\n"
open(f"{work}/bench-rollups.sql", "w").write("SET threads = 2;\n" + sql)
PY

measure() { /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >/dev/null; cat "$work/time"; }
ours_wall=(); ours_cpu=(); ours_rss=(); duck_wall=(); duck_cpu=()
for run in 1 2 3; do
  rm -rf "$work/rollups"
  read -r wall user sys rss < <(measure "$qoe" stream --input "file:$work/stream.ndjson" --output "ndjson:$work/rollups" --log warn)
  ours_wall+=("$wall"); ours_cpu+=("$(python3 -c "print($user + $sys)")"); ours_rss+=("$rss")
  read -r wall user sys _ < <(measure "$DUCKDB" -f "$work/bench-rollups.sql")
  duck_wall+=("$wall"); duck_cpu+=("$(python3 -c "print($user + $sys)")")
  echo "run $run: qoe stream ${ours_wall[-1]} s wall, ${ours_cpu[-1]} s CPU, peak RSS $((rss / 1024)) MB; duckdb ${duck_wall[-1]} s wall, ${duck_cpu[-1]} s CPU"
done
median() { python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
python3 - "$beacons" "$(median "${ours_wall[@]}")" "$(median "${ours_cpu[@]}")" "$(median "${duck_wall[@]}")" "$(median "${duck_cpu[@]}")" <<'PY'
import sys
n, ow, oc, dw, dc = int(sys.argv[1]), *map(float, sys.argv[2:])
print(f"qoe stream: {ow:.2f} s wall ({n / ow:,.0f} beacons/s), {oc:.2f} CPU-s ({n / oc:,.0f} beacons per CPU-second)")
print(f"duckdb:     {dw:.2f} s wall ({n / dw:,.0f} beacons/s), {dc:.2f} CPU-s ({n / dc:,.0f} beacons per CPU-second)")
print(f"ratio per core (qoe / duckdb, beacons per CPU-second): {(n / oc) / (n / dc):.2f}; wall-clock ratio: {(n / ow) / (n / dw):.2f}")
PY
echo "qoe stream peak RSS (median): $(( $(median "${ours_rss[@]}" | cut -d. -f1) / 1024 )) MB"
echo "documents: $(cat "$work"/rollups/*.ndjson | wc -l) ours, $(wc -l <"$work/duck-rollups.json") DuckDB rows"
echo "work directory: $work"
