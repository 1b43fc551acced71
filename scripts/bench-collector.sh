#!/usr/bin/env bash
# Collector throughput benchmark (BENCHMARKS.md). In one run, on one tansu broker:
#   1. ceiling: the same beacons produced straight to the broker by a bare rdkafka producer
#      (collector/examples/bare_producer.rs: no HTTP, no validation, same producer settings);
#   2. max:     `qoe simulate --pregenerate` over HTTP into `qoe collector` as fast as it goes,
#               with the collector's CPU time per beacon;
#   3. half:    the same at half the max rate, for the request latency percentiles.
# Usage: scripts/bench-collector.sh [BEACONS] (default 1000000). Set KAFKA_BROKERS to use another broker.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
beacons="${1:-1000000}"
batch="${BENCH_BATCH:-100}"
# Requests in flight: a collector serves many SDK clients at once; each request waits for Kafka's
# acknowledgement (linger 5 ms + broker), so few clients cannot saturate it.
concurrency="${BENCH_CONCURRENCY:-64}"
work="$(mktemp -d)"
run_id="$(date +%s)"

step "build (release)"
cargo build --release --locked -p qoe-cli
cargo build --release --locked -p qoe-collector --example bare_producer
qoe="$CARGO_TARGET_DIR/release/qoe"
bare="$CARGO_TARGET_DIR/release/examples/bare_producer"

if [ -z "${KAFKA_BROKERS:-}" ]; then step "broker"; start_tansu; fi

step "topics"
"$qoe" topics create --brokers "$KAFKA_BROKERS" --partitions 4 --replication 1 \
  --topic "bench.bare.$run_id" --topic "bench.collector.$run_id" --topic "bench.dlq.$run_id"

sim_args=(--seed 7 --start=-20m --duration 15m --rooms 200 --viewers 20000 --max-beacons "$beacons")
step "beacons: $beacons from the simulator"
"$qoe" simulate --target "file:$work/beacons.ndjson" "${sim_args[@]}" >/dev/null
ls -l "$work/beacons.ndjson"

step "ceiling: bare rdkafka producer"
"$bare" "$KAFKA_BROKERS" "bench.bare.$run_id" "$work/beacons.ndjson" | tee "$work/bare.json"

port="$(free_port)"
secret="bench-secret-0001"
"$qoe" collector --listen "127.0.0.1:$port" --brokers "$KAFKA_BROKERS" --write-key "bench:$secret" \
  --rate-limit 0 --topic "bench.collector.$run_id" --dlq-topic "bench.dlq.$run_id" --log warn &
collector_pid=$!
trap 'kill "$collector_pid" 2>/dev/null || true; kill "${TANSU_PID:-0}" 2>/dev/null || true' EXIT
wait_for_port "$port"
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$collector_pid/stat"; }

step "max: simulator over HTTP into the collector (batch $batch, concurrency $concurrency)"
before="$(cpu_ticks)"
"$qoe" simulate --target "http://127.0.0.1:$port" --write-key "$secret" "${sim_args[@]}" \
  --pregenerate --batch-size "$batch" --concurrency "$concurrency" --report-json "$work/max.json"
after="$(cpu_ticks)"

max_rate="$(python3 -c "import json; print(int(json.load(open('$work/max.json'))['beacons_per_sec']))")"
half_rate=$((max_rate / 2))
half_beacons=$((half_rate * 30))
if [ "$half_beacons" -gt "$beacons" ]; then half_beacons="$beacons"; fi
step "half: $half_rate beacons/s for about 30 s"
"$qoe" simulate --target "http://127.0.0.1:$port" --write-key "$secret" --seed 8 --start=-20m --duration 15m \
  --rooms 200 --viewers 20000 --max-beacons "$half_beacons" --rate "$half_rate" --pregenerate \
  --batch-size "$batch" --concurrency "$concurrency" --report-json "$work/half.json" >/dev/null

python3 - "$work" "$before" "$after" "$(getconf CLK_TCK)" <<'PY'
import json, sys
work, before, after, tck = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
bare = json.load(open(f"{work}/bare.json"))
top = json.load(open(f"{work}/max.json"))
half = json.load(open(f"{work}/half.json"))
cpu_us = (after - before) / tck / max(top["accepted"], 1) * 1e6
print()
print("| measure | value |")
print("|---|---|")
print(f"| ceiling: bare rdkafka producer | {bare['records_per_sec']:,.0f} records/s ({bare['records']:,} records) |")
print(f"| collector, max | {top['beacons_per_sec']:,.0f} beacons/s ({top['accepted']:,} accepted, {top['failed']} failed) |")
print(f"| ratio collector / ceiling | {top['beacons_per_sec'] / bare['records_per_sec']:.2f} |")
print(f"| collector CPU per beacon | {cpu_us:.1f} µs |")
lat = top["latency_ms"]
print(f"| request latency at max (p50 / p99) | {lat['p50']:.1f} / {lat['p99']:.1f} ms |")
lat = half["latency_ms"]
print(f"| at half rate {half['beacons_per_sec']:,.0f} beacons/s: latency p50 / p90 / p99 / max | {lat['p50']:.1f} / {lat['p90']:.1f} / {lat['p99']:.1f} / {lat['max']:.1f} ms |")
PY
