#!/usr/bin/env bash
# A local oxidp cluster on this machine: three `oxidp serve` and two `oxidp commerce`
# instances on one PostgreSQL (a fresh database each `up`), with HAProxy in front of
# each group (deploy/haproxy/haproxy.cfg, the file docker-compose.yml mounts too).
#
#   deploy/cluster.sh up       build (release), start everything, print URLs
#   deploy/cluster.sh down     stop everything (SIGTERM, then wait)
#   deploy/cluster.sh status   what runs, and the balancer's view
#   deploy/cluster.sh restart-idp N | restart-commerce N   one instance, gracefully
#
# Environment: CLUSTER_PG (postgres://root@127.0.0.1:5432), CLUSTER_DB (oxidp_cluster),
# CLUSTER_PORT_BASE (18000: IdP balancer +80, commerce balancer +81, stats +82,
# instances +91.. and +101..), CLUSTER_BIN (target/release/oxidp, built if missing),
# CLUSTER_DIR (deploy/.run: logs, pids, secrets), HAPROXY_SERVED_BY (1: answers name the
# instance in X-Served-By; 0 turns it off), CLUSTER_REDIS (e.g. redis://127.0.0.1:6379:
# the IdP instances share their sign-in limits there; empty, the default: per instance).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=${CLUSTER_DIR:-$ROOT/deploy/.run}
PG=${CLUSTER_PG:-postgres://root@127.0.0.1:5432}
DB=${CLUSTER_DB:-oxidp_cluster}
BASE=${CLUSTER_PORT_BASE:-18000}
# The binary: CLUSTER_BIN, else the one the last `up` used, else the release build.
BIN=${CLUSTER_BIN:-$(cat "$RUN/bin" 2>/dev/null || echo "$ROOT/target/release/oxidp")}
IDP_URL="http://localhost:$((BASE + 80))"
COMMERCE_URL="http://localhost:$((BASE + 81))"

idp_port() { echo $((BASE + 90 + $1)); }
commerce_port() { echo $((BASE + 100 + $1)); }

log() { printf '%s\n' "$*" >&2; }

wait_ready() { # url, seconds
  for _ in $(seq 1 $(($2 * 10))); do
    if curl -fsS -o /dev/null "$1/readyz" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "not ready after $2 s: $1"
  return 1
}

psql_admin() { psql "$PG/postgres" -v ON_ERROR_STOP=1 -qAt "$@"; }

secrets() {
  if [ ! -f "$RUN/secrets.env" ]; then
    umask 077
    {
      echo "export OXIDP_PEPPER=$(openssl rand -hex 32)"
      echo "export OXIDP_KEY_ENCRYPTION_SECRET=$(openssl rand -hex 32)"
      echo "export OXIDP_ADMIN__INITIAL_PASSWORD=$(openssl rand -base64 18 | tr -d '/+=')"
    } >"$RUN/secrets.env"
  fi
  # shellcheck disable=SC1091
  . "$RUN/secrets.env"
}

# The settings every IdP instance shares (what differs is the listener and metrics port).
idp_env() {
  export OXIDP_ISSUER="$IDP_URL"
  export OXIDP_DATABASE_URL="$PG/$DB"
  export OXIDP_LOGIN__TRUSTED_PROXIES=127.0.0.1
  export OXIDP_LOG__FORMAT=json OXIDP_HTTP__DRAIN_SECS=2
  if [ -n "${CLUSTER_REDIS:-}" ]; then export OXIDP_REDIS_URL="$CLUSTER_REDIS"; fi
}

start_idp() { # n
  local n=$1 port
  port=$(idp_port "$n")
  mkdir -p "$RUN/idp$n"
  (
    idp_env
    export OXIDP_BIND="127.0.0.1:$port" OXIDP_DATA_DIR="$RUN/idp$n" \
      OXIDP_METRICS__BIND="127.0.0.1:$((port + 1000))"
    exec "$BIN" serve >>"$RUN/idp$n.log" 2>&1
  ) &
  echo $! >"$RUN/idp$n.pid"
  wait_ready "http://127.0.0.1:$port" 60
}

start_commerce() { # n
  local n=$1 port
  port=$(commerce_port "$n")
  mkdir -p "$RUN/commerce$n"
  (
    # shellcheck disable=SC1091
    . "$RUN/introspection.env"
    export OXIDP_ISSUER="$IDP_URL" OXIDP_DATA_DIR="$RUN/commerce$n" OXIDP_LOG__FORMAT=json \
      OXIDP_COMMERCE__BIND="127.0.0.1:$port" OXIDP_COMMERCE__PUBLIC_URL="$COMMERCE_URL" \
      OXIDP_COMMERCE__DATABASE_URL="$PG/${DB}_commerce" OXIDP_METRICS__BIND=off OXIDP_HTTP__DRAIN_SECS=2
    exec "$BIN" commerce serve >>"$RUN/commerce$n.log" 2>&1
  ) &
  echo $! >"$RUN/commerce$n.pid"
  wait_ready "http://127.0.0.1:$port" 60
}

start_haproxy() {
  IDP_FRONT="127.0.0.1:$((BASE + 80))" COMMERCE_FRONT="127.0.0.1:$((BASE + 81))" \
    STATS_FRONT="127.0.0.1:$((BASE + 82))" HAPROXY_ERRORS="$ROOT/deploy/haproxy" \
    HAPROXY_SERVED_BY="${HAPROXY_SERVED_BY:-1}" \
    IDP1="127.0.0.1:$(idp_port 1)" IDP2="127.0.0.1:$(idp_port 2)" IDP3="127.0.0.1:$(idp_port 3)" \
    COMMERCE1="127.0.0.1:$(commerce_port 1)" COMMERCE2="127.0.0.1:$(commerce_port 2)" \
    haproxy -D -f "$ROOT/deploy/haproxy/haproxy.cfg" -p "$RUN/haproxy.pid"
}

stop_pid() { # pidfile
  [ -f "$1" ] || return 0
  local pid
  pid=$(cat "$1")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

up() {
  command -v haproxy >/dev/null || { log "haproxy is missing: apt-get install haproxy"; exit 1; }
  [ -x "$BIN" ] || (cd "$ROOT" && cargo build --release --bin oxidp)
  mkdir -p "$RUN"
  down 2>/dev/null || true
  echo "$BIN" >"$RUN/bin"
  secrets
  psql_admin -c "DROP DATABASE IF EXISTS $DB" -c "DROP DATABASE IF EXISTS ${DB}_commerce" \
    -c "CREATE DATABASE $DB" -c "CREATE DATABASE ${DB}_commerce"
  # The first instance migrates and creates the administrator; the others join it.
  start_idp 1
  # (wait for these two starters only: a bare `wait` would wait for the servers too)
  start_idp 2 & local s2=$!
  start_idp 3 & local s3=$!
  wait "$s2" "$s3"
  # The client the commerce instances introspect as.
  local created id secret
  created=$(idp_env && "$BIN" client create --name "Commerce introspection" \
    --grant-type client_credentials --scopes api:read --audience "$COMMERCE_URL" --json)
  id=$(sed -n 's/.*"client_id": "\([^"]*\)".*/\1/p' <<<"$created")
  secret=$(sed -n 's/.*"client_secret": "\([^"]*\)".*/\1/p' <<<"$created")
  (umask 077 && printf 'export OXIDP_COMMERCE__INTROSPECTION_CLIENT_ID=%s\nexport OXIDP_COMMERCE__INTROSPECTION_CLIENT_SECRET=%s\n' \
    "$id" "$secret" >"$RUN/introspection.env")
  start_haproxy
  wait_ready "$IDP_URL" 30
  start_commerce 1
  start_commerce 2
  wait_ready "$COMMERCE_URL" 30
  cat <<INFO
oxidp cluster up (logs and pids in $RUN)
  IdP (3 instances):       $IDP_URL     instances :$(idp_port 1) :$(idp_port 2) :$(idp_port 3)
  commerce (2 instances):  $COMMERCE_URL     instances :$(commerce_port 1) :$(commerce_port 2)
  HAProxy stats:           http://localhost:$((BASE + 82))/
  PostgreSQL:              $PG/$DB and $PG/${DB}_commerce
  admin:                   admin / \$OXIDP_ADMIN__INITIAL_PASSWORD in $RUN/secrets.env
  stop:                    deploy/cluster.sh down
INFO
}

down() {
  for f in "$RUN"/commerce*.pid "$RUN"/idp*.pid; do [ -e "$f" ] && stop_pid "$f"; done
  stop_pid "$RUN/haproxy.pid"
}

status() {
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    local name pid
    name=$(basename "$f" .pid)
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then echo "$name running (pid $pid)"; else echo "$name stopped"; fi
  done
  curl -fsS "http://127.0.0.1:$((BASE + 82))/;csv" 2>/dev/null | cut -d, -f1,2,18 | grep -v '^#' || true
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  status) status ;;
  restart-idp) secrets; stop_pid "$RUN/idp$2.pid"; start_idp "$2" ;;
  restart-commerce) stop_pid "$RUN/commerce$2.pid"; start_commerce "$2" ;;
  *) log "usage: deploy/cluster.sh up|down|status|restart-idp N|restart-commerce N"; exit 2 ;;
esac
