#!/usr/bin/env bash
# Stream benchmark: memory per active key (BENCHMARKS.md). The same number of beacons, viewers and
# minutes, spread over more and more rooms, so that the open grain keys (room x CDN keys above all)
# grow while the beacons, sessions and the de-duplication table stay about the same. For each:
# `qoe stream --input file:` peak RSS (/usr/bin/time) and the most keys open at once (the run report's
# peak_open_keys, the `qoe_stream_open_keys` gauge's peak); then bytes per active key as the
# least-squares slope of peak RSS over open keys. Each file is also run with --dedup-horizon-secs 0
# (the de-duplication table emptied as each window closes) to size that table. Medians of 3 runs.
# Usage: scripts/bench-stream-memory.sh [BEACONS] (default 400000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
beacons="${1:-400000}"
work="${BENCH_WORK:-$(mktemp -d)}"
mkdir -p "$work"

release_qoe

measure() { /usr/bin/time -f "%M" -o "$work/time" "$@" >/dev/null; cat "$work/time"; }
median() { python3 -c "import statistics, sys; print(int(statistics.median(float(x) for x in sys.argv[1:])))" "$@"; }
: >"$work/memory.tsv"
for rooms in 20 500 2000 8000; do
  file="$work/rooms-$rooms.ndjson"
  if [ ! -s "$file" ]; then
    "$qoe" simulate --target "file:$file" --seed 7 --start=-20m --duration 15m --rooms "$rooms" \
      --viewers 20000 --max-beacons "$beacons" >/dev/null
  fi
  for horizon in 600 0; do
    rss=()
    for run in 1 2 3; do
      rm -rf "$work/rollups"
      rss+=("$(measure "$qoe" stream --input "file:$file" --output "ndjson:$work/rollups" \
        --dedup-horizon-secs "$horizon" --report-json "$work/report.json" --log warn)")
    done
    keys="$(python3 -c "import json; print(json.load(open('$work/report.json'))['peak_open_keys'])")"
    printf '%s\t%s\t%s\t%s\t%s\n' "$rooms" "$horizon" "$keys" "$(median "${rss[@]}")" "${rss[*]}" | tee -a "$work/memory.tsv"
  done
done
python3 - "$work/memory.tsv" "$beacons" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]).read().splitlines()]
beacons = int(sys.argv[2])
print(f"{'rooms':>6} {'dedup s':>8} {'open keys':>10} {'peak RSS MB':>12}")
for rooms, horizon, keys, rss, _ in rows:
    print(f"{rooms:>6} {horizon:>8} {int(keys):>10,} {int(rss) / 1024:>12.1f}")
for horizon in ("600", "0"):
    points = [(int(keys), int(rss) * 1024) for _, h, keys, rss, _ in rows if h == horizon]
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    print(f"dedup horizon {horizon} s: {slope:,.0f} bytes per open key (least squares over {n} points); intercept {(my - slope * mx) / 2**20:.1f} MB")
by = {(r, h): int(rss) * 1024 for r, h, _, rss, _ in rows}
for rooms in sorted({r for r, *_ in rows}, key=int):
    saved = by[(rooms, "600")] - by[(rooms, "0")]
    print(f"rooms {rooms}: de-duplication horizon 600 s vs 0 s: {saved / 2**20:.1f} MB, {saved / beacons:.0f} bytes per beacon")
PY
echo "work directory: $work"
