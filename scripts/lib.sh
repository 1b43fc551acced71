# Shared by the project's scripts: the cache outside the clone, and the tools installed into it once.
# Sourced, not run.

QOE_CACHE="${QOE_CACHE:-$HOME/.cache/qoe}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$QOE_CACHE/target}"
TANSU_VERSION=0.6.0
# The in-memory storage engine (memory://) is behind tansu's `dynostore` feature.
TANSU_FEATURES=dynostore
TANSU_ROOT="$QOE_CACHE/tansu-$TANSU_VERSION-$TANSU_FEATURES"
TANSU_BIN="$TANSU_ROOT/bin/tansu"

step() { printf '\n==> %s\n' "$*"; }

# Sets `qoe` to the release binary: QOE_BIN if given (a binary built beforehand: the shared target
# directory's one can be rebuilt mid-run), else a release build of this checkout.
release_qoe() {
  if [ -n "${QOE_BIN:-}" ]; then
    qoe="$QOE_BIN"
  else
    step "build (release)"
    cargo build --release --locked -p qoe-cli
    qoe="$CARGO_TARGET_DIR/release/qoe"
  fi
}

# Test executables of earlier runs in the shared target directory: each run links new ones of about
# 1 GB (DataFusion with debug info), which would fill the disk after a few runs. Deleting those older
# than an hour costs a relink when their crate has not changed.
prune_test_binaries() {
  local deps="$CARGO_TARGET_DIR/debug/deps"
  [ -d "$deps" ] || return 0
  find "$deps" -maxdepth 1 -type f -perm -u+x -size +50M -mmin +60 \
    ! -name '*.so' ! -name '*.rlib' ! -name '*.rmeta' -print -delete | wc -l |
    xargs printf 'pruned %s old test executables\n'
}

# tansu, a Kafka-API broker (about 20 minutes to build on 2 cores, once per machine).
ensure_tansu() {
  if [ -x "$TANSU_BIN" ]; then return; fi
  step "installing tansu $TANSU_VERSION into $QOE_CACHE (once per machine, about 20 minutes)"
  CARGO_TARGET_DIR="$QOE_CACHE/tansu-build" cargo install --locked tansu --version "$TANSU_VERSION" \
    --features "$TANSU_FEATURES" --root "$TANSU_ROOT"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_port() {
  local port=$1 deadline=$((SECONDS + 60))
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then echo "nothing listens on 127.0.0.1:$port after 60 s" >&2; return 1; fi
    sleep 0.2
  done
}

# Starts tansu in memory on a free loopback port, exports KAFKA_BROKERS, stops it when the shell exits.
start_tansu() {
  ensure_tansu
  local port log
  port=$(free_port)
  log="$QOE_CACHE/tansu-$port.log"
  "$TANSU_BIN" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$log" 2>&1 &
  TANSU_PID=$!
  trap 'kill "$TANSU_PID" 2>/dev/null || true' EXIT
  wait_for_port "$port"
  export KAFKA_BROKERS="127.0.0.1:$port"
  echo "tansu $TANSU_VERSION (in memory) at $KAFKA_BROKERS, pid $TANSU_PID, log $log"
}

# The real DuckDB command line (PyPI's duckdb-cli) in a virtualenv under the cache; exports DUCKDB.
DUCKDB_CLI_VERSION=1.5.6
DUCKDB_VENV="$QOE_CACHE/duckdb-cli-$DUCKDB_CLI_VERSION"
ensure_duckdb() {
  if [ ! -x "$DUCKDB_VENV/bin/duckdb" ]; then
    step "installing duckdb-cli $DUCKDB_CLI_VERSION from PyPI into $DUCKDB_VENV"
    python3 -m venv "$DUCKDB_VENV"
    "$DUCKDB_VENV/bin/pip" install --quiet "duckdb-cli==$DUCKDB_CLI_VERSION"
  fi
  export DUCKDB="$DUCKDB_VENV/bin/duckdb"
  echo "duckdb: $("$DUCKDB" --version)"
}

# PyYAML from PyPI in a virtualenv under the cache, for the deploy/ checks; exports QOE_YAML_PYTHON.
PYYAML_VERSION=6.0.2
PYYAML_VENV="$QOE_CACHE/pyyaml-$PYYAML_VERSION"
ensure_pyyaml() {
  if ! "$PYYAML_VENV/bin/python" -c "import yaml" >/dev/null 2>&1; then
    step "installing PyYAML $PYYAML_VERSION from PyPI into $PYYAML_VENV"
    python3 -m venv "$PYYAML_VENV"
    "$PYYAML_VENV/bin/pip" install --quiet "PyYAML==$PYYAML_VERSION"
  fi
  export QOE_YAML_PYTHON="$PYYAML_VENV/bin/python"
  echo "pyyaml: $("$QOE_YAML_PYTHON" -c 'import yaml; print(yaml.__version__)')"
}

# Debian's Chromium, for the HTML report test; exports CHROMIUM.
ensure_chromium() {
  if ! command -v chromium >/dev/null 2>&1; then
    step "installing Debian's chromium"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
  fi
  CHROMIUM="$(command -v chromium)"
  export CHROMIUM
  echo "chromium: $("$CHROMIUM" --version 2>/dev/null)"
}
