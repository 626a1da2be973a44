#!/usr/bin/env bash
# Benchmarks the commerce write paths (issue 15) with examples/commerce_load.rs:
#   reserve   POST /v1/reservations: accepted/s (202), then decided/s (the queue
#             workers turning PENDING into CONFIRMED/FAILED, from the commerce
#             /metrics counters, first request to last decision)
#   claim     coupon claims by distinct subjects (client_credentials service
#             accounts made through the admin API before the clock starts)
#   order     order created → payment.succeeded event → PAID, end to end
# with one and then two `oxidp commerce` instances on one database (a fresh
# commerce database for each), against a release build. Nothing is pinned to a
# core: the load average before each configuration is printed beside it.
#
# Backend: fresh SQLite files in a temporary directory, or PostgreSQL with
# BENCH_POSTGRES=postgres://root@127.0.0.1:5432 (the script creates fresh
# databases there for the IdP and each commerce configuration, and drops them).
#   bench/commerce_ops.sh [seconds-per-scenario] [concurrency]
# BENCH_INSTANCES="1 2" (default) picks the configurations, BENCH_CLAIMANTS the
# distinct claimants (default 12000), BENCH_ONLY="reserve claim order" the scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-10}
CONCURRENCY=${2:-32}
IDP_PORT=${BENCH_PORT:-18280}
SHOP_PORTS=($((IDP_PORT + 1)) $((IDP_PORT + 2)))
INSTANCES=${BENCH_INSTANCES:-1 2}
CLAIMANTS=${BENCH_CLAIMANTS:-12000}
WORK=$(mktemp -d)
DBS=()
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  for db in "${DBS[@]}"; do dropdb --if-exists -h 127.0.0.1 -U root "$db" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# the same target set as bench/run.sh plus this generator
cargo build --release --bin oxidp --example loadgen --example commerce_load
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$TARGET/release/oxidp
LOAD=$TARGET/release/examples/commerce_load
IDP_URL="http://localhost:$IDP_PORT"
AUD="http://localhost:${SHOP_PORTS[0]}"
export OXIDP_DATA_DIR="$WORK" OXIDP_BIND="127.0.0.1:$IDP_PORT" OXIDP_ISSUER="$IDP_URL" OXIDP_LOG__LEVEL=warn
export OXIDP_COMMERCE__PUBLIC_URL="$AUD"
fresh_db() { # name → a URL for an empty database
  if [ -n "${BENCH_POSTGRES:-}" ]; then
    local db="bench_$1_$$"
    createdb -h 127.0.0.1 -U root "$db"
    DBS+=("$db")
    echo "${BENCH_POSTGRES%/}/$db"
  else
    echo "sqlite://$WORK/$1.db"
  fi
}
BACKEND=SQLite
[ -n "${BENCH_POSTGRES:-}" ] && BACKEND=PostgreSQL
OXIDP_DATABASE_URL=$(fresh_db idp)
export OXIDP_DATABASE_URL
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

client() { # role name, permissions… → client_id:client_secret of a new service account holding them
  local role=$1; shift
  $BIN role create "$role" >/dev/null
  for permission in "$@"; do $BIN role grant "$role" "$permission" --audience "$AUD" >/dev/null; done
  local created id
  created=$($BIN client create --name "Bench $role" --grant-type client_credentials \
    --scopes api:read --audience "$AUD" --json)
  id=$(echo "$created" | json client_id)
  $BIN role assign "$role" --client "$id" >/dev/null
  echo "$id:$(echo "$created" | json client_secret)"
}
OPERATOR=$(client bench-operator commerce:sellers:admin commerce:products:approve commerce:coupons:write)
MERCHANT=$(client bench-merchant commerce:products:write commerce:inventory:write)
PSP=$(client bench-psp commerce:payments:write)
# the IdP's own administrator (the built-in admin role; oxidp's own audience): creates the claimants
ADMIN=$($BIN client create --name "Bench IdP admin" --grant-type client_credentials --scopes api:read --json)
ADMIN_ID=$(echo "$ADMIN" | json client_id)
$BIN role assign admin --client "$ADMIN_ID" >/dev/null
ADMIN="$ADMIN_ID:$(echo "$ADMIN" | json client_secret)"
INTRO=$($BIN client create --name "Bench introspection" --grant-type client_credentials \
  --scopes api:read --audience "$AUD" --json)
export OXIDP_COMMERCE__INTROSPECTION_CLIENT_ID=$(echo "$INTRO" | json client_id)
export OXIDP_COMMERCE__INTROSPECTION_CLIENT_SECRET=$(echo "$INTRO" | json client_secret)

wait_up() { for _ in $(seq 1 300); do curl -fsS "$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
$BIN serve & PIDS+=($!)
wait_up "http://127.0.0.1:$IDP_PORT"

ONLY=()
for s in ${BENCH_ONLY:-}; do ONLY+=(--only "$s"); done
ROWS=()
for n in $INSTANCES; do
  OXIDP_COMMERCE__DATABASE_URL=$(fresh_db "shop$n")
  export OXIDP_COMMERCE__DATABASE_URL
  $BIN commerce migrate >/dev/null
  URLS=()
  SHOPS=()
  for i in $(seq 0 $((n - 1))); do
    OXIDP_COMMERCE__BIND="127.0.0.1:${SHOP_PORTS[$i]}" $BIN commerce & PIDS+=($!); SHOPS+=($!)
    URLS+=(--url "http://127.0.0.1:${SHOP_PORTS[$i]}")
  done
  for i in $(seq 0 $((n - 1))); do wait_up "http://127.0.0.1:${SHOP_PORTS[$i]}"; done
  LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
  label="$BACKEND, $n instance$([ "$n" = 1 ] || echo s) (load $LOADAVG)"
  echo "== $label" >&2
  while IFS= read -r row; do ROWS+=("$row"); echo "$row" >&2; done < <(
    $LOAD --idp "http://127.0.0.1:$IDP_PORT" "${URLS[@]}" --audience "$AUD" \
      --operator "$OPERATOR" --merchant "$MERCHANT" --psp "$PSP" --idp-admin "$ADMIN" \
      --seconds "$SECONDS_PER" --concurrency "$CONCURRENCY" --claimants "$CLAIMANTS" \
      --label "$label" "${ONLY[@]}")
  for pid in "${SHOPS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
done

echo
echo "| configuration (load average 1/5/15 min before it) | scenario ($CONCURRENCY in flight, ${SECONDS_PER} s) | per second | p50 ms | p99 ms | errors / requests | notes |"
echo "|---|---|---:|---:|---:|---:|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "yardstick (openssl speed ecdsap256, one core): $(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256/ {print $(NF-1) " ES256 signatures/s, " $NF " verifications/s"}')"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
