#!/usr/bin/env bash
# Benchmarks the commerce resource server's token paths (issue 14) with wrk:
# a protected GET (/v1/me: answered from the verified token alone) after
#   cached        one token, verified once, then served from the verified-token cache
#   uncached      1,000 distinct tokens in turn, token cache of 1 entry: every
#                 request checks an ES256 signature
#   introspect    commerce.introspection = all with no introspection cache: every
#                 request also asks the IdP (RFC 7662) over HTTP
#   introspect10  the same with the default 10 s introspection cache
#   idp-down      the IdP stopped: cached tokens (and, with introspection = all,
#                 the circuit breaker open and the `local` fallback)
# and, for scale, a protected GET that also reads the database (/v1/sellers/{id}).
# Commerce runs on CPU 0 with one HTTP worker; wrk and the IdP share CPU 1.
# Fresh SQLite databases in a temporary directory (BENCH_COMMERCE_DATABASE_URL
# selects another for commerce, e.g. an empty PostgreSQL database).
#   bench/commerce.sh [seconds-per-scenario] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-10}
CONNECTIONS=${2:-64}
IDP_PORT=${BENCH_PORT:-18180}
SHOP_PORT=$((IDP_PORT + 1))
WORK=$(mktemp -d)
trap 'kill "${IDP:-0}" "${SHOP:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
command -v wrk >/dev/null || { echo "wrk is needed (Debian package wrk)" >&2; exit 2; }

# the same target set as bench/run.sh, so the dependencies are built with the same features once
cargo build --release --bin oxidp --example loadgen
BIN=$PWD/target/release/oxidp
IDP_URL="http://localhost:$IDP_PORT"
AUD="http://localhost:$SHOP_PORT"
export OXIDP_DATA_DIR="$WORK" OXIDP_BIND="127.0.0.1:$IDP_PORT" OXIDP_ISSUER="$IDP_URL" OXIDP_LOG__LEVEL=warn
export OXIDP_COMMERCE__BIND="127.0.0.1:$SHOP_PORT" OXIDP_COMMERCE__PUBLIC_URL="$AUD"
[ -n "${BENCH_COMMERCE_DATABASE_URL:-}" ] && export OXIDP_COMMERCE__DATABASE_URL="$BENCH_COMMERCE_DATABASE_URL"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

$BIN role create bench-admin >/dev/null
$BIN role grant bench-admin commerce:sellers:admin --audience "$AUD" >/dev/null
CLIENT=$($BIN client create --name "Bench back office" --grant-type client_credentials \
  --scopes api:read --audience "$AUD" --json)
CLIENT_ID=$(echo "$CLIENT" | json client_id)
CLIENT_SECRET=$(echo "$CLIENT" | json client_secret)
$BIN role assign bench-admin --client "$CLIENT_ID" >/dev/null
INTRO=$($BIN client create --name "Bench introspection" --grant-type client_credentials \
  --scopes api:read --audience "$AUD" --json)
export OXIDP_COMMERCE__INTROSPECTION_CLIENT_ID=$(echo "$INTRO" | json client_id)
export OXIDP_COMMERCE__INTROSPECTION_CLIENT_SECRET=$(echo "$INTRO" | json client_secret)

wait_up() { for _ in $(seq 1 100); do curl -fsS "$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done; echo "not ready: $1" >&2; exit 1; }
start_idp() { OXIDP_HTTP__WORKERS=1 taskset -c 1 $BIN serve & IDP=$!; wait_up "http://127.0.0.1:$IDP_PORT"; }
start_shop() { # env overrides as arguments
  env "$@" OXIDP_HTTP__WORKERS=1 taskset -c 0 $BIN commerce & SHOP=$!; wait_up "http://127.0.0.1:$SHOP_PORT"; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
token() { curl -fsS -u "$CLIENT_ID:$CLIENT_SECRET" -d grant_type=client_credentials "http://127.0.0.1:$IDP_PORT/token" | json access_token; }

start_idp
$BIN commerce migrate >/dev/null
start_shop
TOKEN=$(token)
SELLER=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"Bench","kind":"INTERNAL","contact":{"email":"ops@bench.example"}}' \
  "http://127.0.0.1:$SHOP_PORT/v1/sellers" | json id)
ME="http://127.0.0.1:$SHOP_PORT/v1/me"
SELLER_URL="http://127.0.0.1:$SHOP_PORT/v1/sellers/$SELLER"
URL=$ME
stop "$SHOP"
echo "minting 1,000 tokens for the uncached scenario…" >&2
for _ in $(seq 1 1000); do token; done >"$WORK/tokens.txt"

cat >"$WORK/rotate.lua" <<'LUA'
local tokens, i = {}, 0
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
request = function()
  i = i % #tokens + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
LUA
cat >"$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %.0f %.2f %.2f %d %d\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors, summary.requests))
end
LUA
cat "$WORK/report.lua" >>"$WORK/rotate.lua"

ROWS=()
run() { # name, wrk arguments…
  local name=$1; shift
  curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$URL" # warm (key set, caches)
  local line
  line=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_PER}s" --latency "$@" "$URL" | grep '^RESULT')
  read -r _ rps p50 p99 errors total <<<"$line"
  ROWS+=("| $name | $rps | $p50 | $p99 | $errors / $total |")
  echo "$name: $rps req/s, p50 $p50 ms, p99 $p99 ms, errors $errors of $total" >&2
}
AUTH=(-H "Authorization: Bearer $TOKEN" -s "$WORK/report.lua")

start_shop
run cached "${AUTH[@]}"
URL=$SELLER_URL run "cached, plus a database read (/v1/sellers/{id})" "${AUTH[@]}"
stop "$SHOP"
start_shop OXIDP_COMMERCE__TOKEN_CACHE_CAPACITY=1
BENCH_TOKENS="$WORK/tokens.txt" run uncached -s "$WORK/rotate.lua"
stop "$SHOP"
start_shop OXIDP_COMMERCE__INTROSPECTION=all OXIDP_COMMERCE__INTROSPECTION_CACHE_SECS=0
run introspect "${AUTH[@]}"
stop "$SHOP"
start_shop OXIDP_COMMERCE__INTROSPECTION=all
run introspect10 "${AUTH[@]}"
stop "$SHOP"

stop "$IDP"
start_shop
run "idp-down (cached)" "${AUTH[@]}"
stop "$SHOP"
start_shop OXIDP_COMMERCE__INTROSPECTION=all OXIDP_COMMERCE__INTROSPECTION_CACHE_SECS=0
run "idp-down (introspection = all, breaker open, local fallback)" "${AUTH[@]}"
stop "$SHOP"

echo
echo "| scenario ($CONNECTIONS connections, ${SECONDS_PER} s) | requests/s | p50 ms | p99 ms | non-2xx or socket errors / requests |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "yardstick (openssl speed, CPU 0): $(taskset -c 0 openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256/ {print $(NF-1) " ES256 signatures/s, " $NF " verifications/s"}')"
