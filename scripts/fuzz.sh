#!/usr/bin/env bash
# Fuzzes the beacon decoder (fuzz/fuzz_targets/beacon_decoder.rs) for N seconds (default 60).
# cargo-fuzz is installed once into ~/.cache/qoe. libFuzzer's instrumentation needs unstable rustc
# flags; RUSTC_BOOTSTRAP=1 lets the pinned stable toolchain accept them, so no nightly is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
seconds="${1:-60}"
CARGO_FUZZ="$QOE_CACHE/cargo-fuzz/bin/cargo-fuzz"
if [ ! -x "$CARGO_FUZZ" ]; then
  step "installing cargo-fuzz into $QOE_CACHE (once per machine)"
  CARGO_TARGET_DIR="$QOE_CACHE/cargo-fuzz-build" cargo install --locked cargo-fuzz --root "$QOE_CACHE/cargo-fuzz"
fi
corpus="$QOE_CACHE/fuzz-corpus/beacon_decoder"
mkdir -p "$corpus"
export CARGO_TARGET_DIR="$QOE_CACHE/fuzz-target"
RUSTC_BOOTSTRAP=1 "$CARGO_FUZZ" fuzz run --fuzz-dir fuzz beacon_decoder "$corpus" fuzz/seeds/beacon_decoder -- \
  -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1
echo "fuzz: beacon_decoder ran ${seconds} s without a failure"
