#!/usr/bin/env bash
# The project's test command (see README): installs what it needs into ~/.cache/qoe (tansu, cargo-fuzz,
# PyPI's duckdb-cli and PyYAML) and Debian's chromium if missing, then runs the format and lint checks, every test
# suite (the broker suites against a real tansu process, or against the broker in KAFKA_BROKERS if set;
# the DuckDB and Chromium suites against the installed tools; the Elasticsearch live suite only when
# ES_URL is set), the Arroyo path's own workspace (stream-jobs/arroyo/test.sh), and a short fuzzing run
# of the beacon decoder.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "disk: old test executables"
prune_test_binaries

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings
python3 scripts/check-import-cycles.py

step "tools for the batch suites and the deploy checks"
ensure_duckdb
ensure_chromium
ensure_pyyaml

if [ -z "${KAFKA_BROKERS:-}" ]; then
  step "broker"
  start_tansu
fi

# The Elasticsearch live suite needs a real cluster: it runs only when ES_URL names one.
skipped=(--skip live_es_)
if [ -n "${ES_URL:-}" ]; then
  skipped=()
fi
step "tests (KAFKA_BROKERS=$KAFKA_BROKERS)"
test_log="$(mktemp)"
cargo test --workspace --locked -- --include-ignored "${skipped[@]}" 2>&1 | tee "$test_log"
if [ -z "${ES_URL:-}" ]; then
  echo "elasticsearch live suite: not run (ES_URL is not set; no cluster can be installed here)"
fi

step "the Arroyo path (stream-jobs/arroyo: own workspace and target dir)"
bash stream-jobs/arroyo/test.sh 2>&1 | tee -a "$test_log"

step "fuzz smoke run"
bash scripts/fuzz.sh "${QOE_FUZZ_SECONDS:-60}"

# One closing line for the whole run (cargo test prints one per test binary).
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "\nall suites: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$test_log"
