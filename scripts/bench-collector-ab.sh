#!/usr/bin/env bash
# The collector against an earlier revision of itself, in one run on one tansu broker (BENCHMARKS.md,
# "Collector: hostile-client limits"). Both revisions are built from the same harness,
# collector/examples/serve.rs (copied into the baseline's worktree), and loaded by the same client,
# simulator/examples/load.rs, so they differ only in the collector crate. For each revision, ROUNDS
# times in alternation: the max throughput (BEACONS pre-generated beacons as fast as they go, with the
# collector's CPU time per beacon), then half that rate for about 30 s (request latency percentiles).
# Usage: scripts/bench-collector-ab.sh [BASE_REV] [BEACONS] [ROUNDS]   (defaults: 6f48f2a 1000000 4)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
base_rev="${1:-6f48f2a}"
beacons="${2:-1000000}"
rounds="${3:-4}"
work="$(mktemp -d)"
run_id="$(date +%s)"
secret="bench-secret-0001"

step "build the harness and the load at HEAD (release)"
cargo build --release --locked -p qoe-collector --example serve
cargo build --release --locked -p qoe-simulator --example load
cp "$CARGO_TARGET_DIR/release/examples/serve" "$work/serve-head"
cp "$CARGO_TARGET_DIR/release/examples/load" "$work/load"

step "build the harness at $base_rev (release, same target directory)"
git worktree add --detach "$work/base" "$base_rev" >/dev/null
cp collector/examples/serve.rs "$work/base/collector/examples/serve.rs"
# The harness's allocator (jemalloc, as in the qoe binary) is a dev-dependency the baseline may lack:
# add it to the baseline's manifest. Its lock file already pins the crate (the CLI uses it), so
# nothing else changes version; --locked cannot be used because the manifest changed.
if ! grep -q '^tikv-jemallocator' "$work/base/collector/Cargo.toml"; then
  sed -i 's/^\[dev-dependencies\]$/[dev-dependencies]\ntikv-jemallocator.workspace = true/' "$work/base/collector/Cargo.toml"
fi
(cd "$work/base" && cargo build --release --offline -p qoe-collector --example serve)
cp "$CARGO_TARGET_DIR/release/examples/serve" "$work/serve-base"
git worktree remove --force "$work/base"

if [ -z "${KAFKA_BROKERS:-}" ]; then step "broker"; start_tansu; fi
collector_pid=0
trap 'kill "$collector_pid" 2>/dev/null || true; kill "${TANSU_PID:-0}" 2>/dev/null || true' EXIT

# One measurement: start revision $1's collector on fresh topics, run max then half, stop it.
measure() {
  local label="$1" round="$2" port config
  port="$(free_port)"
  config="$work/$label-$round.json"
  # Rate limits off: the benchmark measures throughput, not the per-key limits. The byte limit
  # (`bytes_per_sec`) is a key only HEAD knows.
  local rate='"beacons_per_sec": 0'
  if [ "$label" = head ]; then rate="$rate, \"bytes_per_sec\": 0"; fi
  cat > "$config" <<JSON
{"listen": "127.0.0.1:$port", "write_keys": ["bench:$secret"],
 "kafka": {"brokers": "$KAFKA_BROKERS", "topic": "bench.ab.$run_id.$label.$round", "dlq_topic": "bench.ab-dlq.$run_id.$label.$round"},
 "rate_limit": {$rate}}
JSON
  RUST_LOG=warn "$work/serve-$label" "127.0.0.1:$port" "$config" &
  collector_pid=$!
  wait_for_port "$port"
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
  local before after
  before="$(awk '{print $14 + $15}' "/proc/$collector_pid/stat")"
  "$work/load" "http://127.0.0.1:$port" "$secret" "$beacons" 7 > "$work/$label-$round-max.json"
  after="$(awk '{print $14 + $15}' "/proc/$collector_pid/stat")"
  echo "$before $after" > "$work/$label-$round-cpu.txt"
  local max_rate half_rate half_beacons
  max_rate="$(python3 -c "import json; print(int(json.load(open('$work/$label-$round-max.json'))['beacons_per_sec']))")"
  half_rate=$((max_rate / 2))
  half_beacons=$((half_rate * 30))
  if [ "$half_beacons" -gt "$beacons" ]; then half_beacons="$beacons"; fi
  "$work/load" "http://127.0.0.1:$port" "$secret" "$half_beacons" 8 "$half_rate" > "$work/$label-$round-half.json"
  kill "$collector_pid"; wait "$collector_pid" || true
  collector_pid=0
  echo "$label round $round: max $max_rate beacons/s, half at $half_rate"
}

for round in $(seq 1 "$rounds"); do
  step "round $round: $base_rev"
  measure base "$round"
  step "round $round: HEAD"
  measure head "$round"
done

python3 - "$work" "$rounds" "$(getconf CLK_TCK)" "$base_rev" "$(git rev-parse --short HEAD)" <<'PY'
import json, statistics, sys
work, rounds, tck, base_rev, head_rev = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
def load(label):
    runs = []
    for r in range(1, rounds + 1):
        top = json.load(open(f"{work}/{label}-{r}-max.json"))
        half = json.load(open(f"{work}/{label}-{r}-half.json"))
        before, after = map(float, open(f"{work}/{label}-{r}-cpu.txt").read().split())
        runs.append({
            "max": top["beacons_per_sec"],
            "failed": top["failed"] + half["failed"],
            "cpu_us": (after - before) / tck / max(top["accepted"], 1) * 1e6,
            "half_rate": half["beacons_per_sec"],
            "p50": half["latency_ms"]["p50"],
            "p99": half["latency_ms"]["p99"],
        })
    return runs
base, head = load("base"), load("head")
print()
print("| revision | round | max beacons/s | CPU / beacon | half rate beacons/s | p50 / p99 at half rate | failed |")
print("|---|---|---|---|---|---|---|")
for label, rev, runs in (("base", base_rev, base), ("head", head_rev, head)):
    for i, r in enumerate(runs, 1):
        print(f"| {rev} | {i} | {r['max']:,.0f} | {r['cpu_us']:.1f} µs | {r['half_rate']:,.0f} | {r['p50']:.1f} / {r['p99']:.1f} ms | {r['failed']} |")
med = lambda runs, key: statistics.median(r[key] for r in runs)
print()
print(f"median max throughput, {head_rev} / {base_rev}: {med(head, 'max') / med(base, 'max'):.3f}")
print(f"median CPU per beacon, {head_rev} / {base_rev}: {med(head, 'cpu_us') / med(base, 'cpu_us'):.3f}")
print(f"median p99 at half rate, {head_rev} / {base_rev}: {med(head, 'p99') / med(base, 'p99'):.3f}")
PY
