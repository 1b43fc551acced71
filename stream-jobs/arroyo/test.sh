#!/usr/bin/env bash
# The Arroyo path's test set (stream-jobs/arroyo/README.md, "Tests"): format and lint of this workspace,
# a release build of the four UDF libraries as Arroyo builds them (cdylib exporting `__run`), and the
# tests: UDF definitions as arroyo-udf-host reads them, the built libraries called through the host's
# FFI, pipeline.sql through sqlparser 0.55, and the golden beacons against the embedded engine.
# Installs nothing but cargo dependencies. Its own target dir keeps the main build's artifacts apart.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${QOE_ARROYO_TARGET_DIR:-$HOME/.cache/qoe/target-arroyo}"
udfs=(qoe_sketch qoe_stats qoe_es_hist qoe_json_string)
started=$SECONDS
step() { printf '\n== arroyo: %s (%ds)\n' "$1" "$((SECONDS - started))"; }

packages=(qoe-arroyo-udfs qoe-arroyo-checks "${udfs[@]}")

step "format"
# Only this workspace's packages: --all would also check the path dependencies (../sketch, ...).
cargo fmt $(printf -- '-p %s ' "${packages[@]}") -- --check

step "lint"
cargo clippy $(printf -- '-p %s ' "${packages[@]}") --all-targets --locked --release -- -D warnings

step "build the UDF libraries (release cdylibs)"
cargo build --release --locked $(printf -- '-p %s ' "${udfs[@]}")

step "the libraries export __run"
for udf in "${udfs[@]}"; do
  library="$CARGO_TARGET_DIR/release/lib$udf.so"
  if ! nm -D --defined-only "$library" | grep -qE ' T __run$'; then
    echo "error: $library does not export __run" >&2
    exit 1
  fi
  echo "$library: __run"
done

step "tests"
log="$(mktemp)"
QOE_ARROYO_REQUIRE_UDFS=1 cargo test --release --locked -p qoe-arroyo-udfs -p qoe-arroyo-checks 2>&1 | tee "$log"
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "\narroyo: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
rm -f "$log"
step "done"
