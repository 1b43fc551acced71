#!/usr/bin/env bash
# The project's test command (see README): installs what it needs into ~/.cache/qoe, then runs the
# format and lint checks, every test suite (the broker suites against a real tansu process, or against
# the broker in KAFKA_BROKERS if set), and a short fuzzing run of the beacon decoder.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

step "format"
cargo fmt --all -- --check

step "lint"
cargo clippy --workspace --all-targets --locked -- -D warnings

if [ -z "${KAFKA_BROKERS:-}" ]; then
  step "broker"
  start_tansu
fi

step "tests (KAFKA_BROKERS=$KAFKA_BROKERS)"
cargo test --workspace --locked -- --include-ignored

step "fuzz smoke run"
bash scripts/fuzz.sh "${QOE_FUZZ_SECONDS:-60}"
