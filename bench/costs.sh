#!/usr/bin/env bash
# What each operation costs (issue 16's capacity model, docs/SCALING.md): for each
# loadgen scenario run alone against one release server on PostgreSQL, per request:
#   server CPU ms (utime+stime of the oxidp process), PostgreSQL CPU ms (all its
#   processes), transactions committed, rows read (tup_returned + tup_fetched),
#   rows inserted / updated / deleted (by table), and database bytes grown.
# CPU time is what the process consumed, not wall time, so the figures hold on a
# busy machine too (caches and frequency aside). PostgreSQL CPU is that of the
# backends connected to this run's database only (other databases on the same
# server are not counted; neither are the shared WAL writer, checkpointer and
# autovacuum). What loadgen does before the clock starts (a sign-in and
# concurrency+1 code flows to prepare tokens), the 11 s statistics waits and the
# snapshot queries are measured once on their own (`--seconds 0`) and subtracted.
# Then the same for the commerce server (`oxidp commerce`, its own database, one HTTP
# worker) with wrk (Debian package `wrk`; skipped when absent): a protected GET
# answered from the token alone (/v1/me) and one that reads the database
# (/v1/sellers/{id}), both with a cached verified token; then the writes, driven by
# bench/commerce_ops.py (python3, standard library): BENCH_COMMERCE_OPS (default
# 2000) reservations, counted until the queue is drained (the workers' confirmations
# included), and as many orders paid end to end (POST /v1/orders, the saga to
# PENDING_PAYMENT, a payment.succeeded event → PAID). The commerce server polls its
# database while idle (queue workers, saga runner, hold sweeper), so its overhead
# is measured over an idle window and subtracted in proportion to each run's
# duration: the figures are the cost added by the operations.
#   bench/costs.sh [seconds-per-scenario] [postgres-admin-url]
# BENCH_SCENARIOS: the loadgen scenarios to run (default all; empty: none, only
# the commerce rows).
# Creates and drops databases `oxidp_costs_<pid>` and `oxidp_costs_<pid>_commerce`
# through the admin URL (default postgres://root@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-10}
ADMIN=${2:-postgres://root@127.0.0.1:5432/postgres}
DBNAME="oxidp_costs_$$"
DB_URL="${ADMIN%/*}/$DBNAME"
SHOP_DB_URL="${DB_URL}_commerce"
PORT=${BENCH_PORT:-18280}
CONCURRENCY=${BENCH_CONCURRENCY:-16}
SCENARIOS=${BENCH_SCENARIOS-client-credentials userinfo introspection refresh code sign-in}
COMMERCE_OPS=${BENCH_COMMERCE_OPS:-2000}
OUT=${BENCH_OUT:-target/costs-$(date +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d)
mkdir -p "$OUT"
cleanup() {
  kill "${SERVER:-0}" "${SHOP_PID:-0}" 2>/dev/null || true
  wait "${SERVER:-0}" "${SHOP_PID:-0}" 2>/dev/null || true
  psql -qX "$ADMIN" -c "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1 || true
  psql -qX "$ADMIN" -c "DROP DATABASE IF EXISTS ${DBNAME}_commerce WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql -qX "$ADMIN" -c "CREATE DATABASE $DBNAME" >/dev/null
psql -qX "$ADMIN" -c "CREATE DATABASE ${DBNAME}_commerce" >/dev/null

cargo build --release --bin oxidp --example loadgen
BIN=target/release/oxidp
export OXIDP_DATA_DIR="$WORK" OXIDP_BIND="127.0.0.1:$PORT" OXIDP_ISSUER="http://localhost:$PORT" OXIDP_LOG__LEVEL=warn
export OXIDP_DATABASE_URL="$DB_URL" OXIDP_METRICS__BIND=off
export OXIDP_LOGIN__IP_PER_MINUTE=1000000 OXIDP_LOGIN__IP_BURST=1000000
export OXIDP_LOGIN__ACCOUNT_PER_MINUTE=1000000 OXIDP_LOGIN__ACCOUNT_BURST=1000000
PASSWORD="costs pass phrase $(date +%s%N)"
echo "$PASSWORD" | $BIN user create --username bench --email bench@example.com --password-stdin >/dev/null
CLIENT=$($BIN client create --name Costs --redirect-uri https://bench.example/cb \
  --grant-type authorization_code --grant-type refresh_token --grant-type client_credentials \
  --scopes "openid profile email offline_access" --json)
CLIENT_ID=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
CLIENT_SECRET=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')

OXIDP_HTTP__WORKERS=1 $BIN serve &
SERVER=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU of each backend connected to the measured database (the pool keeps its
# connections for 5 minutes idle, so the same backends serve the whole run).
# SNAP_PID and SNAP_DB: the process and database measured (the IdP's by default).
pg_ticks() {
  local p
  for p in $(psql -qtAX "${SNAP_DB:-$DB_URL}" -c "SELECT pid FROM pg_stat_activity
      WHERE datname = current_database() AND pid <> pg_backend_pid()"); do
    [ -r "/proc/$p/stat" ] && echo "pg.$p=$(awk '{print $14 + $15}' "/proc/$p/stat")"
  done
  return 0
}
# Idle backends flush their statistics within 10 s (PostgreSQL 15).
snapshot() { # file
  sleep 11
  {
    echo "t=$(date +%s%3N)"
    echo "server_ticks=$(ticks "${SNAP_PID:-$SERVER}")"
    pg_ticks
    psql -qtAX "${SNAP_DB:-$DB_URL}" -F= -c "SELECT 'db_bytes', pg_database_size(current_database())
      UNION ALL SELECT 'xact', xact_commit FROM pg_stat_database WHERE datname = current_database()
      UNION ALL SELECT 'rows_read', tup_returned + tup_fetched FROM pg_stat_database WHERE datname = current_database()
      UNION ALL SELECT 'ins.' || relname, n_tup_ins FROM pg_stat_user_tables
      UNION ALL SELECT 'upd.' || relname, n_tup_upd FROM pg_stat_user_tables
      UNION ALL SELECT 'del.' || relname, n_tup_del FROM pg_stat_user_tables"
  } >"$1"
}

HZ=$(getconf CLK_TCK)
# name requests errors [by-time]: one table row from $WORK/{before,after}, less the
# overhead $WORK/{base0,base1} (scaled by the two windows' durations with by-time)
report() {
  python3 - "$WORK/before" "$WORK/after" "$1" "$2" "$3" "$HZ" "$WORK/base0" "$WORK/base1" "${4:-}" <<'PY' | tee -a "$OUT/costs.txt"
import sys
def load(path):
    d = {}
    for line in open(path):
        k, _, v = line.strip().partition("=")
        if k: d[k] = int(v or 0)
    return d
def delta(b, a):
    # pg.<pid>: a backend that appeared since `b` counts from 0; summed into pg_ticks
    d = {k: a[k] - b.get(k, 0) for k in a if not k.startswith("pg.")}
    d["pg_ticks"] = sum(a[k] - b.get(k, 0) for k in a if k.startswith("pg."))
    return d
b, a = load(sys.argv[1]), load(sys.argv[2])
name, n, errors, hz = sys.argv[3], float(sys.argv[4]), sys.argv[5], int(sys.argv[6])
measured = delta(b, a)
overhead = delta(load(sys.argv[7]), load(sys.argv[8]))
scale = measured["t"] / overhead["t"] if sys.argv[9] == "by-time" else 1
# db_bytes grows in pages: not an overhead to subtract.
diff = {k: v - (overhead.get(k, 0) * scale if k != "db_bytes" else 0) for k, v in measured.items()}
per = lambda k: diff.get(k, 0) / n
writes = {k: v / n for k, v in diff.items() if k.split(".")[0] in ("ins", "upd", "del") and v > 0}
wtxt = ", ".join(f"{k} {v:.2f}" for k, v in sorted(writes.items(), key=lambda kv: -kv[1]) if v >= 0.01) or "none"
print(f"| {name} | {n:,.0f} | {errors} | {per('server_ticks') * 1000 / hz:.3f} | {per('pg_ticks') * 1000 / hz:.3f} | "
      f"{per('xact'):.2f} | {per('rows_read'):.1f} | {wtxt} | {per('db_bytes'):.0f} |")
PY
}
loadgen() { # scenario seconds concurrency
  target/release/examples/loadgen --url "http://127.0.0.1:$PORT" --client-id "$CLIENT_ID" \
    --client-secret "$CLIENT_SECRET" --username bench --password "$PASSWORD" --only "$1" \
    --seconds "$2" --concurrency "$3" >"$WORK/load.txt"
}
# The overhead: loadgen's preparation (the same for every scenario) with no requests.
if [ -n "$SCENARIOS" ]; then
  snapshot "$WORK/base0"
  loadgen client-credentials 0 "$CONCURRENCY"
  snapshot "$WORK/base1"
fi
for scenario in $SCENARIOS; do
  # A sign-in waits for an argon2 slot (argon2.max_concurrent): more clients only queue,
  # and the requests still in flight at the deadline would blur the count.
  c=$CONCURRENCY; [ "$scenario" = sign-in ] && c=4
  snapshot "$WORK/before"
  loadgen "$scenario" "$SECONDS_PER" "$c"
  REQUESTS=$(awk -F'|' '/^\| [a-z]/ && $3 ~ /[0-9]/ {gsub(/ /, "", $3); print $3}' "$WORK/load.txt" | head -1)
  ERRORS=$(awk -F'|' '/^\| [a-z]/ && $3 ~ /[0-9]/ {gsub(/ /, "", $6); print $6}' "$WORK/load.txt" | head -1)
  snapshot "$WORK/after"
  # loadgen prints requests/s; the run lasted SECONDS_PER s (plus the requests in flight at the end,
  # which this count leaves out).
  N=$(python3 -c "print($REQUESTS * $SECONDS_PER)")
  report "$scenario" "$N" "$ERRORS"
done
# The commerce server: its own process and database, tokens from the IdP above.
SHOP_PORT=$((PORT + 1))
SHOP="http://127.0.0.1:$SHOP_PORT"
AUD="http://localhost:$SHOP_PORT"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }
# A client_credentials client of the commerce audience with role $2 (none when empty),
# holding permissions $3...; prints "client_id client_secret".
shop_client() { # name role permission...
  local name=$1 role=$2 created
  shift 2
  created=$($BIN client create --name "$name" --grant-type client_credentials --scopes api:read \
    --audience "$AUD" --access-token-ttl 7200 --json)
  if [ -n "$role" ]; then
    $BIN role create "$role" >/dev/null
    for permission in "$@"; do $BIN role grant "$role" "$permission" --audience "$AUD" >/dev/null; done
    $BIN role assign "$role" --client "$(echo "$created" | json client_id)" >/dev/null
  fi
  echo "$(echo "$created" | json client_id) $(echo "$created" | json client_secret)"
}
shop_token() { # client_id client_secret
  curl -fsS -u "$1:$2" -d grant_type=client_credentials "http://127.0.0.1:$PORT/token" | json access_token
}
read -r ADMIN_ID ADMIN_SECRET < <(shop_client "Costs back office" costs-admin commerce:sellers:admin)
read -r DEV_ID DEV_SECRET < <(shop_client "Costs seller" costs-dev commerce:products:write commerce:inventory:write)
read -r REVIEWER_ID REVIEWER_SECRET < <(shop_client "Costs reviewer" costs-reviewer commerce:products:approve)
read -r PSP_ID PSP_SECRET < <(shop_client "Costs payments" costs-psp commerce:payments:write)
read -r BUYER_ID BUYER_SECRET < <(shop_client "Costs buyer" "")
read -r INTRO_ID INTRO_SECRET < <(shop_client "Costs introspection" "")
export OXIDP_COMMERCE__INTROSPECTION_CLIENT_ID=$INTRO_ID OXIDP_COMMERCE__INTROSPECTION_CLIENT_SECRET=$INTRO_SECRET
export OXIDP_COMMERCE__BIND="127.0.0.1:$SHOP_PORT" OXIDP_COMMERCE__PUBLIC_URL="$AUD"
export OXIDP_COMMERCE__DATABASE_URL="$SHOP_DB_URL"
# No hold expires during the run: expiries would be counted against the orders.
export OXIDP_COMMERCE__HOLD_SECS=86400
$BIN commerce migrate >/dev/null
OXIDP_HTTP__WORKERS=1 $BIN commerce &
SHOP_PID=$!
for _ in $(seq 1 100); do curl -fsS "$SHOP/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN=$(shop_token "$ADMIN_ID" "$ADMIN_SECRET")
DEV_TOKEN=$(shop_token "$DEV_ID" "$DEV_SECRET")
SELLER=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name":"Costs","kind":"INTERNAL","contact":{"email":"ops@costs.example"}}' "$SHOP/v1/sellers" | json id)
curl -fsS -o /dev/null -X PUT -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{}' \
  "$SHOP/v1/sellers/$SELLER/members/$DEV_ID"
# The reviewer is not a member of the seller (four-eyes).
read -r PRODUCT COMBINATION < <(python3 bench/commerce_ops.py setup "$SHOP" "$SELLER" "$DEV_TOKEN" \
  "$(shop_token "$REVIEWER_ID" "$REVIEWER_SECRET")" 1000000000)
BUYER_TOKEN=$(shop_token "$BUYER_ID" "$BUYER_SECRET")
PSP_TOKEN=$(shop_token "$PSP_ID" "$PSP_SECRET")
SNAP_PID=$SHOP_PID SNAP_DB=$SHOP_DB_URL
# Idle costs (the statistics waits, the snapshot queries, the background pollers) over
# 30 s, subtracted in proportion to each run's duration ("by-time").
snapshot "$WORK/base0"
sleep 19
snapshot "$WORK/base1"
if command -v wrk >/dev/null; then
  cat >"$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %d %d\n", summary.requests, errors))
end
LUA
  for path in /v1/me "/v1/sellers/$SELLER"; do
    curl -fsS -o /dev/null -H "Authorization: Bearer $TOKEN" "$SHOP$path" # warm
    snapshot "$WORK/before"
    read -r _ N ERRORS < <(wrk -t1 -c"$CONCURRENCY" -d"${SECONDS_PER}s" -H "Authorization: Bearer $TOKEN" \
      -s "$WORK/report.lua" "$SHOP$path" | grep '^RESULT')
    snapshot "$WORK/after"
    name="commerce GET /v1/me (token only)"
    [ "$path" = /v1/me ] || name="commerce GET /v1/sellers/{id} (one read)"
    report "$name" "$N" "$ERRORS" by-time
  done
else
  echo "wrk not found (Debian package wrk): commerce GET rows skipped" >&2
fi
# Polls (one short transaction a second, index scans) until the query answers 0;
# counted in the run it ends.
wait_zero() { # sql
  local n
  for _ in $(seq 1 600); do
    n=$(psql -qtAX "$SHOP_DB_URL" -c "$1")
    [ "$n" = 0 ] && return 0
    sleep 1
  done
  echo "still $n after 600 s: $1" >&2
  return 1
}
# Reservations, until every one is decided and the queue is empty.
snapshot "$WORK/before"
STARTED=$(date +%s)
read -r _ N ERRORS < <(python3 bench/commerce_ops.py reserve "$SHOP" "$BUYER_TOKEN" "$PRODUCT" "$COMBINATION" \
  "$COMMERCE_OPS" "$CONCURRENCY" | grep '^RESULT')
wait_zero "SELECT (SELECT count(*) FROM reservations WHERE status = 'PENDING') + (SELECT count(*) FROM outbox)"
snapshot "$WORK/after"
report "commerce POST /v1/reservations (202, then the worker confirms)" "$N" "$ERRORS" by-time
CONFIRMED=$(psql -qtAX "$SHOP_DB_URL" -c "SELECT count(*) FROM reservations WHERE status = 'CONFIRMED'")
echo "reservations confirmed: $CONFIRMED of $N in $(($(date +%s) - STARTED - 11)) s;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/notes.txt"
# Orders paid end to end: all placed, the saga reserves their stock (PENDING_PAYMENT),
# then one payment.succeeded each (PAID).
snapshot "$WORK/before"
STARTED=$(date +%s)
read -r _ N ERRORS < <(python3 bench/commerce_ops.py order "$SHOP" "$BUYER_TOKEN" "$PRODUCT" "$COMBINATION" \
  "$COMMERCE_OPS" "$CONCURRENCY" "$WORK/orders" | grep '^RESULT')
wait_zero "SELECT count(*) FROM orders WHERE saga = 'PLACING'"
read -r _ _ PAY_ERRORS < <(python3 bench/commerce_ops.py pay "$SHOP" "$PSP_TOKEN" "$WORK/orders" "$CONCURRENCY" \
  | grep '^RESULT')
snapshot "$WORK/after"
report "commerce order paid end to end (POST /v1/orders, saga, payment.succeeded)" "$N" "$((ERRORS + PAY_ERRORS))" by-time
PAID=$(psql -qtAX "$SHOP_DB_URL" -c "SELECT count(*) FROM orders WHERE status = 'PAID'")
echo "orders paid: $PAID of $N in $(($(date +%s) - STARTED - 11)) s;" \
  "load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/notes.txt"
unset SNAP_PID SNAP_DB

echo
echo "| operation | requests | errors | server CPU ms/req | PostgreSQL CPU ms/req | transactions/req | rows read/req | rows written/req (table) | DB bytes/req |"
echo "|---|---:|---:|---:|---:|---:|---:|---|---:|"
cat "$OUT/costs.txt"
[ -f "$OUT/notes.txt" ] && cat "$OUT/notes.txt"
storage() { # database-url: rows, bytes (heap + indexes + TOAST, all partitions) and bytes per row
  psql -qtAX "$1" -F' | ' -c "
    SELECT '| ' || relname, n, bytes, CASE WHEN n > 0 THEN bytes / n END, avg_row || ' |'
    FROM (SELECT c.relname,
        (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', c.relname), false, true, '')))[1]::text::bigint AS n,
        coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree(c.oid) WHERE c.relkind = 'p'),
          pg_total_relation_size(c.oid))::bigint AS bytes,
        coalesce((xpath('/row/a/text()', query_to_xml(format('SELECT round(avg(pg_column_size(t.*))) AS a FROM %I t', c.relname), false, true, '')))[1]::text, '') AS avg_row
      FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
      WHERE s.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND c.relname NOT LIKE '\\_\\_%') t
    WHERE n > 0 ORDER BY bytes DESC"
}
echo
echo "Stored after the run (IdP database; bytes include indexes and TOAST, and the pages' free space):"
echo "| table | rows | bytes | bytes/row | avg row data (pg_column_size) |"
echo "|---|---:|---:|---:|---:|"
storage "$DB_URL"
if [ -n "${SHOP_PID:-}" ]; then
  echo
  echo "Commerce database:"
  echo "| table | rows | bytes | bytes/row | avg row data (pg_column_size) |"
  echo "|---|---:|---:|---:|---:|"
  storage "$SHOP_DB_URL"
fi
echo
echo "yardstick (openssl speed): $(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256/ {print $(NF-1) " ES256 signatures/s"}')"
