#!/usr/bin/env bash
# Benchmarks oxidp's hot paths: a release server pinned to CPU 0, the load
# generator (examples/loadgen.rs) pinned to CPU 1. Prints a Markdown table,
# then the openssl ES256 signing rate on CPU 0 as a yardstick for the VM.
#   bench/run.sh [seconds-per-scenario] [concurrency]
# Uses a fresh SQLite database in a temporary directory (BENCH_DATABASE_URL
# selects another, e.g. a PostgreSQL URL).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-10}
CONCURRENCY=${2:-64}
PORT=${BENCH_PORT:-18080}
WORK=$(mktemp -d)
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --bin oxidp --example loadgen
BIN=target/release/oxidp
export OXIDP_DATA_DIR="$WORK" OXIDP_BIND="127.0.0.1:$PORT" OXIDP_ISSUER="http://localhost:$PORT" OXIDP_LOG__LEVEL=warn
[ -n "${BENCH_DATABASE_URL:-}" ] && export OXIDP_DATABASE_URL="$BENCH_DATABASE_URL"
PASSWORD="bench pass phrase $(date +%s%N)"
echo "$PASSWORD" | $BIN user create --username bench --email bench@example.com --password-stdin >/dev/null
CLIENT=$($BIN client create --name Bench --redirect-uri https://bench.example/cb \
  --grant-type authorization_code --grant-type refresh_token --grant-type client_credentials \
  --scopes "openid profile email offline_access" --json)
CLIENT_ID=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
CLIENT_SECRET=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')

OXIDP_HTTP__WORKERS=1 taskset -c 0 $BIN serve &
SERVER=$!
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

taskset -c 1 target/release/examples/loadgen --url "http://127.0.0.1:$PORT" --client-id "$CLIENT_ID" \
  --client-secret "$CLIENT_SECRET" --username bench --password "$PASSWORD" \
  --seconds "$SECONDS_PER" --concurrency "$CONCURRENCY"

# The VM's speed varies from day to day: the bare ES256 signature rate on the
# server's core is the yardstick to compare runs by.
kill "$SERVER" 2>/dev/null || true
wait "$SERVER" 2>/dev/null || true
if command -v openssl >/dev/null 2>&1; then
  echo
  echo "yardstick (openssl speed, CPU 0): $(taskset -c 0 openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256/ {print $(NF-1) " ES256 signatures/s"}')"
fi
