#!/usr/bin/env bash
# Stream benchmark end to end from Kafka (BENCHMARKS.md). In one run, on one tansu 0.6.0 broker (or the
# broker in KAFKA_BROKERS): the simulator's beacons go through `qoe collector` into a fresh topic of 4
# partitions (what the stream job reads in production: enriched records, keyed by room); then
# `qoe stream --input kafka` (a new consumer group each run, reading from the start, exiting after 2 s
# without records) against `qoe stream --input file:` over the simulator's file of the same beacons.
# Three interleaved runs each; beacons per second of wall time (the Kafka run's minus its 2 s of idle
# wait) and per CPU-second of the job's process (user + system: "per core"), medians. The broker's
# CPU during the Kafka runs is reported when this script started it.
# Usage: scripts/bench-stream-kafka.sh [BEACONS] (default 1000000).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
beacons="${1:-1000000}"
work="${BENCH_WORK:-$(mktemp -d)}"
mkdir -p "$work"
run_id="$(date +%s)"
topic="bench.stream.$run_id"
idle=2

release_qoe

if [ -z "${KAFKA_BROKERS:-}" ]; then step "broker"; start_tansu; fi
broker_pid="${TANSU_PID:-}"

sim_args=(--seed 7 --start=-20m --duration 15m --rooms 200 --viewers 20000 --max-beacons "$beacons")
step "$beacons beacons from the simulator"
"$qoe" simulate --target "file:$work/beacons.ndjson" "${sim_args[@]}" >/dev/null
ls -l "$work/beacons.ndjson"

step "into Kafka through the collector (topic $topic, 4 partitions)"
"$qoe" topics create --brokers "$KAFKA_BROKERS" --partitions 4 --replication 1 --topic "$topic" \
  --topic "$topic.dlq" --log warn
port="$(free_port)"
secret="bench-secret-0001"
"$qoe" collector --listen "127.0.0.1:$port" --brokers "$KAFKA_BROKERS" --write-key "bench:$secret" \
  --rate-limit 0 --topic "$topic" --dlq-topic "$topic.dlq" --log warn &
collector_pid=$!
trap 'kill "$collector_pid" 2>/dev/null || true; kill "${TANSU_PID:-0}" 2>/dev/null || true' EXIT
wait_for_port "$port"
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
"$qoe" simulate --target "http://127.0.0.1:$port" --write-key "$secret" "${sim_args[@]}" \
  --pregenerate --batch-size 100 --concurrency 64 --report-json "$work/load.json" >/dev/null
python3 -c "import json; r = json.load(open('$work/load.json')); print('accepted', r['accepted'], 'of', r['sent'])" ||
  cat "$work/load.json"
kill "$collector_pid"; wait "$collector_pid" 2>/dev/null || true

measure() { /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" >/dev/null; cat "$work/time"; }
broker_ticks() { if [ -n "$broker_pid" ]; then awk '{print $14 + $15}' "/proc/$broker_pid/stat"; else echo 0; fi; }
tick="$(getconf CLK_TCK)"
kafka_wall=(); kafka_cpu=(); kafka_rss=(); file_wall=(); file_cpu=(); file_rss=(); broker_cpu=()
for run in 1 2 3; do
  rm -rf "$work/kafka-rollups" "$work/file-rollups"
  before="$(broker_ticks)"
  read -r wall user sys rss < <(measure "$qoe" stream --input kafka --brokers "$KAFKA_BROKERS" --topic "$topic" \
    --group-id "bench-stream-$run_id-$run" --exit-when-idle-secs "$idle" --output "ndjson:$work/kafka-rollups" \
    --report-json "$work/kafka-report.json" --log warn)
  after="$(broker_ticks)"
  kafka_wall+=("$(python3 -c "print($wall - $idle)")"); kafka_cpu+=("$(python3 -c "print($user + $sys)")"); kafka_rss+=("$rss")
  broker_cpu+=("$(python3 -c "print(($after - $before) / $tick)")")
  read -r wall user sys rss < <(measure "$qoe" stream --input "file:$work/beacons.ndjson" --output "ndjson:$work/file-rollups" --log warn)
  file_wall+=("$wall"); file_cpu+=("$(python3 -c "print($user + $sys)")"); file_rss+=("$rss")
  echo "run $run: kafka ${kafka_wall[-1]} s wall (idle wait excluded), ${kafka_cpu[-1]} CPU-s, peak RSS $((kafka_rss[-1] / 1024)) MB, broker ${broker_cpu[-1]} CPU-s; file ${file_wall[-1]} s wall, ${file_cpu[-1]} CPU-s, peak RSS $((file_rss[-1] / 1024)) MB"
done
counted="$(python3 -c "import json; print(json.load(open('$work/kafka-report.json'))['counted'])")"
median() { python3 -c "import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
python3 - "$beacons" "$counted" "$(median "${kafka_wall[@]}")" "$(median "${kafka_cpu[@]}")" "$(median "${file_wall[@]}")" "$(median "${file_cpu[@]}")" "$(median "${broker_cpu[@]}")" <<'PY'
import sys
n, counted = int(sys.argv[1]), int(sys.argv[2])
kw, kc, fw, fc, bc = map(float, sys.argv[3:])
print(f"kafka: {kw:.2f} s wall ({n / kw:,.0f} beacons/s), {kc:.2f} CPU-s ({n / kc:,.0f} beacons per CPU-second); broker {bc:.2f} CPU-s; {counted} counted")
print(f"file:  {fw:.2f} s wall ({n / fw:,.0f} beacons/s), {fc:.2f} CPU-s ({n / fc:,.0f} beacons per CPU-second)")
print(f"ratio kafka / file: per core {(n / kc) / (n / fc):.2f}; wall-clock {(n / kw) / (n / fw):.2f}")
PY
echo "peak RSS (median): kafka $(( $(median "${kafka_rss[@]}" | cut -d. -f1) / 1024 )) MB, file $(( $(median "${file_rss[@]}" | cut -d. -f1) / 1024 )) MB"
echo "documents: $(cat "$work"/kafka-rollups/*.ndjson | wc -l) from kafka, $(cat "$work"/file-rollups/*.ndjson | wc -l) from the file"
echo "work directory: $work"
