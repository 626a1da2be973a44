#!/usr/bin/env bash
# Memory under a sign-in burst (issue 12 item 11): starts a release server on a
# fresh SQLite database, measures its idle RSS, fires N parallel password sign-ins
# (curl: GET /login for the CSRF token, then POST; half right, half wrong
# passwords), samples the peak RSS every 20 ms, then the RSS 30 s later, and
# prints them against the target:
#   peak  <= idle + argon2.max_concurrent x argon2.memory_kib x 1.25
#   after <= idle + 20 MB (30 s after the burst)
#   bench/login_burst.sh [parallel-sign-ins (200)]
# OXIDP_ARGON2__MAX_CONCURRENT / OXIDP_ARGON2__MEMORY_KIB select other settings.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
PORT=${BENCH_PORT:-18081}
WORK=$(mktemp -d)
trap 'kill "${SAMPLER:-0}" "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --bin oxidp
BIN=${CARGO_TARGET_DIR:-target}/release/oxidp
MAX_CONCURRENT=${OXIDP_ARGON2__MAX_CONCURRENT:-$(( $(nproc) * 2 ))}
MEMORY_KIB=${OXIDP_ARGON2__MEMORY_KIB:-19456}
export OXIDP_DATA_DIR="$WORK" OXIDP_BIND="127.0.0.1:$PORT" OXIDP_ISSUER="http://localhost:$PORT" \
  OXIDP_LOG__LEVEL=warn OXIDP_ADMIN__BOOTSTRAP=false \
  OXIDP_ARGON2__MAX_CONCURRENT="$MAX_CONCURRENT" OXIDP_ARGON2__MEMORY_KIB="$MEMORY_KIB" \
  OXIDP_LOGIN__IP_PER_MINUTE=1000000 OXIDP_LOGIN__IP_BURST=1000000 \
  OXIDP_LOGIN__ACCOUNT_PER_MINUTE=1000000 OXIDP_LOGIN__ACCOUNT_BURST=1000000 \
  OXIDP_LOGIN__DELAY_AFTER=100 OXIDP_LOGIN__STUFFING_USERNAMES=1000000 OXIDP_LOGIN__DENY_SCORE=1000000
PASSWORD="burst pass phrase $(date +%s%N)"
echo "$PASSWORD" | $BIN user create --username burst --email burst@example.com --password-stdin >/dev/null

$BIN serve &
SERVER=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status"; }   # KiB

# Idle: after one sign-in page view, once the server has settled.
curl -fsS "http://127.0.0.1:$PORT/login" >/dev/null
sleep 3
IDLE=$(rss)

( peak=0; while kill -0 "$SERVER" 2>/dev/null; do r=$(rss); [ "$r" -gt "$peak" ] && peak=$r && echo "$peak" >"$WORK/peak"; sleep 0.02; done ) &
SAMPLER=$!

sign_in() {
  local jar="$WORK/jar.$1" password="$PASSWORD" csrf
  [ $(( $1 % 2 )) -eq 1 ] && password="a wrong password"
  csrf=$(curl -fsS -c "$jar" "http://127.0.0.1:$PORT/login" | sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
  curl -sS -o /dev/null -w '%{http_code}\n' -b "$jar" -c "$jar" \
    --data-urlencode "csrf_token=$csrf" --data-urlencode "username=burst" --data-urlencode "password=$password" \
    "http://127.0.0.1:$PORT/login"
}
STARTED=$(date +%s.%N)
for i in $(seq 1 "$N"); do sign_in "$i" >"$WORK/status.$i" & done
wait $(jobs -p | grep -v "^$SAMPLER\$" | grep -v "^$SERVER\$") 2>/dev/null || true
ELAPSED=$(echo "$(date +%s.%N) - $STARTED" | bc)
sleep 0.5
kill "$SAMPLER" 2>/dev/null || true
PEAK=$(cat "$WORK/peak" 2>/dev/null || rss)
OK=$(cat "$WORK"/status.* | grep -c '^303$' || true)
FAILED=$(cat "$WORK"/status.* | grep -c '^200$' || true)
sleep 30
AFTER=$(rss)

LIMIT=$(( IDLE + MAX_CONCURRENT * MEMORY_KIB * 125 / 100 ))
mb() { echo "scale=1; $1 / 1024" | bc; }
verdict() { if [ "$1" -le "$2" ]; then echo ok; else echo MISSED; fi; }
echo
echo "| measure (max_concurrent=$MAX_CONCURRENT, memory_kib=$MEMORY_KIB, $N parallel sign-ins: $OK ok, $FAILED refused, ${ELAPSED}s) | RSS | target | |"
echo "|---|---|---|---|"
echo "| idle | $(mb "$IDLE") MB | | |"
echo "| peak during the burst | $(mb "$PEAK") MB | <= $(mb "$LIMIT") MB | $(verdict "$PEAK" "$LIMIT") |"
echo "| 30 s after the burst | $(mb "$AFTER") MB | <= $(mb $(( IDLE + 20480 ))) MB | $(verdict "$AFTER" $(( IDLE + 20480 ))) |"
