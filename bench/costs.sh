#!/usr/bin/env bash
# What each operation costs (issue 16's capacity model, docs/SCALING.md): for each
# loadgen scenario run alone against one release server on PostgreSQL, per request:
#   server CPU ms (utime+stime of the oxidp process), PostgreSQL CPU ms (all its
#   processes), transactions committed, rows read (tup_returned + tup_fetched),
#   rows inserted / updated / deleted (by table), and database bytes grown.
# CPU time is what the process consumed, not wall time, so the figures hold on a
# busy machine too (caches and frequency aside).
#   bench/costs.sh [seconds-per-scenario] [postgres-admin-url]
# Creates and drops a database `oxidp_costs_<pid>` through the admin URL
# (default postgres://root@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${1:-10}
ADMIN=${2:-postgres://root@127.0.0.1:5432/postgres}
DBNAME="oxidp_costs_$$"
DB_URL="${ADMIN%/*}/$DBNAME"
PORT=${BENCH_PORT:-18280}
CONCURRENCY=${BENCH_CONCURRENCY:-16}
OUT=${BENCH_OUT:-target/costs-$(date +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d)
mkdir -p "$OUT"
cleanup() {
  kill "${SERVER:-0}" 2>/dev/null || true
  wait "${SERVER:-0}" 2>/dev/null || true
  psql -qX "$ADMIN" -c "DROP DATABASE IF EXISTS $DBNAME WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql -qX "$ADMIN" -c "CREATE DATABASE $DBNAME" >/dev/null

cargo build --release --bin oxidp --example loadgen
BIN=target/release/oxidp
export OXIDP_DATA_DIR="$WORK" OXIDP_BIND="127.0.0.1:$PORT" OXIDP_ISSUER="http://localhost:$PORT" OXIDP_LOG__LEVEL=warn
export OXIDP_DATABASE_URL="$DB_URL"
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
pg_ticks() { local t=0; for p in $(pgrep -x postgres); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo $t; }
# Idle backends flush their statistics within 10 s (PostgreSQL 15).
snapshot() { # file
  sleep 11
  {
    echo "server_ticks=$(ticks "$SERVER")"
    echo "pg_ticks=$(pg_ticks)"
    psql -qtAX "$DB_URL" -F= -c "SELECT 'db_bytes', pg_database_size(current_database())
      UNION ALL SELECT 'xact', xact_commit FROM pg_stat_database WHERE datname = current_database()
      UNION ALL SELECT 'rows_read', tup_returned + tup_fetched FROM pg_stat_database WHERE datname = current_database()
      UNION ALL SELECT 'ins.' || relname, n_tup_ins FROM pg_stat_user_tables
      UNION ALL SELECT 'upd.' || relname, n_tup_upd FROM pg_stat_user_tables
      UNION ALL SELECT 'del.' || relname, n_tup_del FROM pg_stat_user_tables"
  } >"$1"
}

HZ=$(getconf CLK_TCK)
for scenario in client-credentials userinfo introspection refresh code sign-in; do
  snapshot "$WORK/before"
  target/release/examples/loadgen --url "http://127.0.0.1:$PORT" --client-id "$CLIENT_ID" \
    --client-secret "$CLIENT_SECRET" --username bench --password "$PASSWORD" --only "$scenario" \
    --seconds "$SECONDS_PER" --concurrency "$CONCURRENCY" >"$WORK/load.txt"
  REQUESTS=$(awk -F'|' '/^\| [a-z]/ && $3 ~ /[0-9]/ {gsub(/ /, "", $3); print $3}' "$WORK/load.txt" | head -1)
  ERRORS=$(awk -F'|' '/^\| [a-z]/ && $3 ~ /[0-9]/ {gsub(/ /, "", $6); print $6}' "$WORK/load.txt" | head -1)
  snapshot "$WORK/after"
  # loadgen prints requests/s; the run lasted SECONDS_PER s.
  python3 - "$WORK/before" "$WORK/after" "$scenario" "$REQUESTS" "$SECONDS_PER" "$HZ" "$ERRORS" <<'PY' | tee -a "$OUT/costs.txt"
import sys
def load(path):
    d = {}
    for line in open(path):
        k, _, v = line.strip().partition("=")
        if k: d[k] = int(v or 0)
    return d
b, a = load(sys.argv[1]), load(sys.argv[2])
name, rate, secs, hz, errors = sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
n = rate * secs
diff = {k: a.get(k, 0) - b.get(k, 0) for k in a}
per = lambda k: diff.get(k, 0) / n
writes = {k: v / n for k, v in diff.items() if k.split(".")[0] in ("ins", "upd", "del") and v > 0}
wtxt = ", ".join(f"{k} {v:.2f}" for k, v in sorted(writes.items(), key=lambda kv: -kv[1]) if v >= 0.01) or "none"
print(f"| {name} | {n:,.0f} | {errors} | {per('server_ticks') * 1000 / hz:.3f} | {per('pg_ticks') * 1000 / hz:.3f} | "
      f"{per('xact'):.2f} | {per('rows_read'):.1f} | {wtxt} | {per('db_bytes'):.0f} |")
PY
done
echo
echo "| operation | requests | errors | oxidp CPU ms/req | PostgreSQL CPU ms/req | transactions/req | rows read/req | rows written/req (table) | DB bytes/req |"
echo "|---|---:|---:|---:|---:|---:|---:|---|---:|"
cat "$OUT/costs.txt"
echo
echo "yardstick (openssl speed): $(openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256/ {print $(NF-1) " ES256 signatures/s"}')"
