#!/usr/bin/env bash
# Stream benchmark: freshness on a live run (BENCHMARKS.md). The simulator posts live traffic (event
# times = now, each beacon held until the wall clock reaches it, batches of at most 1 s) to
# `qoe collector`, which produces to a fresh topic of 4 partitions on tansu 0.6.0 (or the broker in
# KAFKA_BROKERS). Two `qoe stream --input kafka --early-every-secs 5` jobs read it at once, in groups
# of their own: one with the default allowed lateness (5 s), one with --allowed-lateness-secs 10.
# Five seconds after the simulator ends both get SIGTERM (windows still open are left, so that only
# windows closed by the watermark are measured, not by the idle timeout). Their run reports give the
# freshness percentiles over counted beacons:
#   early: from a beacon's event time to the first document including it (early or final) written;
#   final: from a beacon's event time to its window's final documents written.
# Usage: scripts/bench-stream-freshness.sh [MINUTES] (default 6) [VIEWERS] (default 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
minutes="${1:-6}"
viewers="${2:-2000}"
work="${BENCH_WORK:-$(mktemp -d)}"
mkdir -p "$work"
run_id="$(date +%s)"
topic="bench.fresh.$run_id"

release_qoe

if [ -z "${KAFKA_BROKERS:-}" ]; then step "broker"; start_tansu; fi

step "topic $topic (4 partitions), collector"
"$qoe" topics create --brokers "$KAFKA_BROKERS" --partitions 4 --replication 1 --topic "$topic" \
  --topic "$topic.dlq" --log warn
port="$(free_port)"
secret="bench-secret-0001"
"$qoe" collector --listen "127.0.0.1:$port" --brokers "$KAFKA_BROKERS" --write-key "bench:$secret" \
  --topic "$topic" --dlq-topic "$topic.dlq" --log warn &
collector_pid=$!
pids=("$collector_pid")
trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; kill "${TANSU_PID:-0}" 2>/dev/null || true' EXIT
wait_for_port "$port"
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done

step "two stream jobs (allowed lateness: the default 5 s, and 10 s; early results every 5 s)"
jobs=()
for lateness in default 10; do
  rm -rf "$work/rollups-$lateness"
  flags=()
  if [ "$lateness" != default ]; then flags=(--allowed-lateness-secs "$lateness"); fi
  "$qoe" stream --input kafka --brokers "$KAFKA_BROKERS" --topic "$topic" --group-id "bench-fresh-$run_id-$lateness" \
    "${flags[@]}" --early-every-secs 5 --output "ndjson:$work/rollups-$lateness" \
    --report-json "$work/report-$lateness.json" --log warn >"$work/stream-$lateness.log" 2>&1 &
  jobs+=("$!")
  pids+=("$!")
done
sleep 3

step "simulator: $minutes minutes live, $viewers viewers in 50 rooms"
"$qoe" simulate --target "http://127.0.0.1:$port" --write-key "$secret" --seed 7 --start now \
  --duration "${minutes}m" --rooms 50 --viewers "$viewers" --report-json "$work/sim.json" >/dev/null
python3 -c "import json; r = json.load(open('$work/sim.json')); print(f\"sent {r['sent']}, accepted {r['accepted']}, {r['accepted'] / r['elapsed_secs']:.0f} beacons/s over {r['elapsed_secs']:.0f} s\")"
sleep 5
for pid in "${jobs[@]}"; do kill -TERM "$pid"; done
for pid in "${jobs[@]}"; do wait "$pid" || true; done
kill "$collector_pid"; wait "$collector_pid" 2>/dev/null || true

for lateness in default 10; do
  python3 - "$work/report-$lateness.json" "$lateness" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"allowed lateness {sys.argv[2]}: {r['counted']} counted, {r['late']} late, {r['windows']} windows final; "
      f"freshness early p50 {r['freshness_early_p50_s']} s, p99 {r['freshness_early_p99_s']} s; "
      f"final p50 {r['freshness_final_p50_s']} s, p99 {r['freshness_final_p99_s']} s")
PY
done
echo "work directory: $work"
