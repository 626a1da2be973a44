#!/usr/bin/env bash
# Soak benchmark: all five load scenarios at once (client_credentials, userinfo,
# introspection, refresh rotation, code flow) against one release server for a
# long time, sampling every 10 s: requests/s and p99 per scenario, RSS, WAL size,
# database size and rows per table. Prints a table, writes CSVs, ends with a
# verdict line against issue 17's targets:
#   WAL <= 64 MB at every sample; RSS at the end within 15 % of RSS at 5 min;
#   p99 over the last minute's requests within 25 % of p99 over the 5th minute's
#   (loadgen's p99_60s_ms; the worst 10-s p99 of each minute is printed beside it);
#   zero errors.
#   bench/soak.sh [minutes] [database-url]
# database-url: default a fresh SQLite file; a postgres:// URL must name an EMPTY
# database the script may fill (e.g. `createdb oxidp_soak`).
# Server on CPU 0 (one HTTP worker), load generator on CPU 1 (BENCH_SERVER_CPU and
# BENCH_LOAD_CPU move them, e.g. both to 0 to leave a core free). Not part of `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
DB_URL=${2:-}
CONCURRENCY=${BENCH_CONCURRENCY:-60}
PORT=${BENCH_PORT:-18090}
OUT=${BENCH_OUT:-target/soak-$(date +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d)
mkdir -p "$OUT"
trap 'kill "${SERVER:-0}" "${LOADGEN:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --bin oxidp --example loadgen
BIN=target/release/oxidp
export OXIDP_DATA_DIR="$WORK" OXIDP_BIND="127.0.0.1:$PORT" OXIDP_ISSUER="http://localhost:$PORT" OXIDP_LOG__LEVEL=warn
export OXIDP_METRICS__BIND="127.0.0.1:$((PORT + 1))"
# The load comes from one address and one user: sign-in limits would only measure themselves.
export OXIDP_LOGIN__IP_PER_MINUTE=1000000 OXIDP_LOGIN__IP_BURST=1000000
export OXIDP_LOGIN__ACCOUNT_PER_MINUTE=1000000 OXIDP_LOGIN__ACCOUNT_BURST=1000000
if [ -n "$DB_URL" ]; then export OXIDP_DATABASE_URL="$DB_URL"; else DB_URL="sqlite://$WORK/oxidp.db"; fi
PASSWORD="soak pass phrase $(date +%s%N)"
echo "$PASSWORD" | $BIN user create --username bench --email bench@example.com --password-stdin >/dev/null
CLIENT=$($BIN client create --name Soak --redirect-uri https://bench.example/cb \
  --grant-type authorization_code --grant-type refresh_token --grant-type client_credentials \
  --scopes "openid profile email offline_access" --json)
CLIENT_ID=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
CLIENT_SECRET=$(echo "$CLIENT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')

SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
yardstick() {
  taskset -c "$SERVER_CPU" openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/nistp256/ {print $(NF-1) " ES256 signatures/s"}'
}
# The yardstick before and after: a machine that slowed down meanwhile shows in both.
if command -v openssl >/dev/null 2>&1; then YARDSTICK_BEFORE=$(yardstick); fi
OXIDP_HTTP__WORKERS=1 taskset -c "$SERVER_CPU" $BIN serve &
SERVER=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

taskset -c "$LOAD_CPU" target/release/examples/loadgen --url "http://127.0.0.1:$PORT" --client-id "$CLIENT_ID" \
  --client-secret "$CLIENT_SECRET" --username bench --password "$PASSWORD" --mixed \
  --seconds $((MINUTES * 60)) --concurrency "$CONCURRENCY" --report-every 10 >"$OUT/load.csv" 2>"$OUT/load.err" &
LOADGEN=$!

# Resource samples every 10 s while the load runs.
echo "elapsed_s,rss_kb,anon_kb,threads,sqlite_bytes,wal_bytes,db_bytes,steal_pct,rows" >"$OUT/samples.csv"
START=$(date +%s)
# CPU time the hypervisor gave to other guests since the last sample (/proc/stat
# "steal"): a slowdown of the whole machine shows here, not in oxidp.
measure_steal() { # sets STEAL (per cent); not in a subshell, it keeps the previous reading
  local u n sy id io irq sirq st total
  read -r _ u n sy id io irq sirq st _ </proc/stat
  total=$((u + n + sy + id + io + irq + sirq + st))
  STEAL=$(((st - PREV_STEAL) * 100 / (total - PREV_TOTAL > 0 ? total - PREV_TOTAL : 1)))
  PREV_TOTAL=$total PREV_STEAL=$st
}
PREV_TOTAL=0 PREV_STEAL=0
measure_steal # the baseline for the first sample
sample() {
  local rss anon threads sqlite wal=0 db rows
  measure_steal
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || echo 0)
  anon=$(awk '/RssAnon/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || echo 0)
  threads=$(awk '/^Threads/ {print $2}' "/proc/$SERVER/status" 2>/dev/null || echo 0)
  # SQLite's own allocator (page caches of every connection): its share of the RSS.
  sqlite=$(curl -fsS "http://127.0.0.1:$((PORT + 1))/metrics" 2>/dev/null | awk '/^oxidp_sqlite_memory_bytes/ {print $2}')
  if [[ "$DB_URL" == sqlite://* ]]; then
    local path=${DB_URL#sqlite://}
    wal=$(stat -c %s "$path-wal" 2>/dev/null || echo 0)
    db=$(stat -c %s "$path" 2>/dev/null || echo 0)
    rows=$(python3 - "$path" <<'PY'
import sqlite3, sys
c = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=5)
tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE '%migrations%' AND name NOT LIKE 'sqlite_%'")]
print(" ".join(f"{t}={c.execute(f'SELECT COUNT(*) FROM {t}').fetchone()[0]}" for t in sorted(tables)))
PY
)
  else
    db=$(psql -qtAX "$DB_URL" -c "SELECT pg_database_size(current_database())")
    rows=$(psql -qtAX "$DB_URL" -c "SELECT string_agg(relname || '=' || n_live_tup, ' ' ORDER BY relname) FROM pg_stat_user_tables WHERE relname NOT LIKE '%migrations%'")
  fi
  echo "$(( $(date +%s) - START )),$rss,$anon,$threads,${sqlite:-0},$wal,$db,$STEAL,\"$rows\"" >>"$OUT/samples.csv"
}
while kill -0 "$LOADGEN" 2>/dev/null; do
  sample
  sleep 10
done
wait "$LOADGEN" || true
sample
kill "$SERVER" 2>/dev/null || true
wait "$SERVER" 2>/dev/null || true

python3 - "$OUT" "$MINUTES" <<'PY'
import csv, sys
out, minutes = sys.argv[1], int(sys.argv[2])
load = [r for r in csv.DictReader(l for l in open(f"{out}/load.csv") if l.count(",") == 7)]
samples = list(csv.DictReader(open(f"{out}/samples.csv")))
scenarios = sorted({r["scenario"] for r in load})
by_t = {}
for r in load:
    by_t.setdefault(int(r["elapsed_s"]), {})[r["scenario"]] = r
def nearest(rows, t, key="elapsed_s"):
    return min(rows, key=lambda r: abs(int(r[key]) - t))
print(f"\n| t (s) | " + " | ".join(f"{s} req/s (p99 ms)" for s in scenarios) + " | RSS MB | SQLite MB | WAL MB | DB MB |")
print("|---:|" + "---:|" * len(scenarios) + "---:|---:|---:|---:|")
for t in sorted(by_t)[::6] + [max(by_t)]:
    s = nearest(samples, t)
    cells = [f"{float(by_t[t][n]['requests_per_s']):.0f} ({by_t[t][n]['p99_ms']})" if n in by_t[t] else "-" for n in scenarios]
    print(f"| {t} | " + " | ".join(cells) + f" | {int(s['rss_kb'])/1024:.1f} | {int(s['sqlite_bytes'])/2**20:.1f} | {int(s['wal_bytes'])/2**20:.1f} | {int(s['db_bytes'])/2**20:.1f} |")
errors = sum(int(r["errors"]) for r in load)
ops = sum(int(r["requests"]) for r in load)
wal_max = max(int(s["wal_bytes"]) for s in samples)
tend = max(by_t)
t5 = min(by_t, key=lambda t: abs(t - min(300, tend)))  # the report nearest 5 min
rss5, rss_end = int(nearest(samples, t5)["rss_kb"]), int(samples[-1]["rss_kb"])
def p99_at(t):
    # each scenario's p99 over every request of the minute ending at t
    return {n: float(by_t[t][n]["p99_60s_ms"]) for n in scenarios if n in by_t[t]}
def worst_interval_p99(t):
    # for comparison: the highest 10-s p99 within that minute
    window = [r for r in load if t - 60 < int(r["elapsed_s"]) <= t]
    return {n: max(float(r["p99_ms"]) for r in window if r["scenario"] == n) for n in scenarios}
p5, pend = p99_at(t5), p99_at(tend)
db_growth = int(samples[-1]["db_bytes"]) - int(samples[0]["db_bytes"])
checks = {
    "WAL <= 64 MB at every sample": wal_max <= 64 * 2**20,
    "RSS at end within 15 % of RSS at 5 min": rss_end <= rss5 * 1.15,
    "p99 over the last minute within 25 % of p99 over the 5th": all(pend[n] <= p5[n] * 1.25 for n in scenarios),
    "zero errors": errors == 0,
}
print(f"\nrequests: {ops:,}  errors: {errors}  max WAL: {wal_max/2**20:.1f} MB  RSS at {t5} s: {rss5/1024:.1f} MB, at end: {rss_end/1024:.1f} MB")
print("p99 over the minute to 5 min / to the end (ms): " + ", ".join(f"{n} {p5[n]:.1f}/{pend[n]:.1f}" for n in scenarios))
w5, wend = worst_interval_p99(t5), worst_interval_p99(tend)
print("worst 10-s p99 in those minutes (ms): " + ", ".join(f"{n} {w5[n]:.1f}/{wend[n]:.1f}" for n in scenarios))
sq5, sq_end = int(nearest(samples, t5)["sqlite_bytes"]), int(samples[-1]["sqlite_bytes"])
th5, th_end = nearest(samples, t5).get("threads", "?"), samples[-1].get("threads", "?")
print(f"threads at {t5} s: {th5}, at end: {th_end}")
print(f"RSS growth from {t5} s to the end: {(rss_end - rss5)/1024:+.1f} MB, of which SQLite's allocator: {(sq_end - sq5)/2**20:+.1f} MB (SQLite holds {sq_end/2**20:.1f} MB at the end)")
print(f"storage: {db_growth/2**20:.1f} MB for {ops:,} operations = {db_growth/max(ops,1)*1e6/2**20:.1f} MB per million operations")
print(f"rows at end: {samples[-1]['rows']}")
steal = [(int(r["elapsed_s"]), int(r.get("steal_pct") or 0)) for r in samples]
last_minute = [v for t, v in steal if t > tend - 60]
print(f"CPU steal (other guests of the host): max {max(v for _, v in steal)} %, in the last minute max {max(last_minute, default=0)} %")
causes = [l.strip() for l in open(f"{out}/load.err") if l.strip()]
if causes:
    print(f"first failures ({len(causes)} described, in {out}/load.err):")
    for line in causes[:5]:
        print(f"  {line}")
for name, ok in checks.items():
    print(f"  {'PASS' if ok else 'FAIL'}  {name}")
print(f"verdict: {'PASS' if all(checks.values()) else 'FAIL'} ({minutes} min; CSVs in {out})")
PY
if command -v openssl >/dev/null 2>&1; then
  echo "yardstick (openssl speed, CPU $SERVER_CPU): before $YARDSTICK_BEFORE, after $(yardstick)"
fi
