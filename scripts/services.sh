#!/usr/bin/env bash
# Start (or stop) the real servers the integration tests talk to: PostgreSQL, Redis and NATS
# (nats-server -js: JetStream) from Debian packages, on private loopback ports with throw-away
# data directories.
#
#   scripts/services.sh start   # installs the packages if missing, starts them, prints env lines
#   scripts/services.sh stop
#   scripts/services.sh env     # the environment variables the tests read
#   scripts/services.sh status  # exit 0 when every server answers
#
# Tests read MODELPORT_TEST_POSTGRES_URL, MODELPORT_TEST_REDIS_URL and MODELPORT_TEST_NATS_URL.
set -euo pipefail

STATE="${MODELPORT_SERVICES_DIR:-/tmp/modelport-services}"
PG_PORT="${MODELPORT_PG_PORT:-55432}"
REDIS_PORT="${MODELPORT_REDIS_PORT:-56379}"
NATS_PORT="${MODELPORT_NATS_PORT:-54222}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  echo "$d"
}

install_packages() {
  local need=()
  [ -n "$(pg_bin)" ] || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  nats_bin >/dev/null || need+=(nats-server)
  # tests/export/test_container.py builds and runs an image (podman with runc) on a debootstrap base
  command -v podman >/dev/null 2>&1 || need+=(podman runc uidmap)
  command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
  # tests/monitor/test_dashboard.py drives Debian's headless chromium with Playwright (no browser download)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} (Debian packages)" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  fi
}

nats_bin() {
  # Debian installs it in /usr/sbin, which is not on every user's PATH
  command -v nats-server 2>/dev/null || { [ -x /usr/sbin/nats-server ] && echo /usr/sbin/nats-server; }
}

as_pg_user() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_pg() {
  local bin; bin=$(pg_bin)
  local data="$STATE/pg"
  mkdir -p "$STATE"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$STATE" 2>/dev/null || true; chmod 777 "$STATE"; fi
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg_user "$bin/initdb" -D "$data" -U modelport --auth=trust -E UTF8 >/dev/null
  fi
  if ! as_pg_user "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    rm -f "$data/postmaster.pid"  # left behind by a killed server; pg_ctl said none runs
    as_pg_user "$bin/pg_ctl" -D "$data" -l "$STATE/pg.log" -w \
      -o "-p $PG_PORT -k $STATE -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
  fi
  for _ in $(seq 50); do
    "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1 && break
    sleep 0.2
  done
  "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U modelport -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='modelport_test'" | grep -q 1 ||
    "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U modelport modelport_test
}

start_redis() {
  mkdir -p "$STATE/redis"
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$STATE/redis" --daemonize yes --logfile "$STATE/redis.log" >/dev/null
  fi
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
}

nats_up() {
  # a NATS server greets every new connection with an INFO line
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NATS_PORT && head -c 4 <&3 | grep -q INFO" 2>/dev/null
}

start_nats() {
  if nats_up; then return; fi
  local bin; bin=$(nats_bin)
  # a throw-away JetStream store: streams never outlive the server that made them
  rm -rf "$STATE/nats"
  mkdir -p "$STATE/nats"
  nohup "$bin" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$STATE/nats" -P "$STATE/nats.pid" \
    -l "$STATE/nats.log" >/dev/null 2>&1 &
  for _ in $(seq 50); do
    nats_up && return
    sleep 0.1
  done
  echo "nats-server did not start; see $STATE/nats.log" >&2
  return 1
}

stop_nats() {
  local pid
  pid=$(cat "$STATE/nats.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
  fi
  rm -rf "$STATE/nats" "$STATE/nats.pid"
}

print_env() {
  echo "export MODELPORT_TEST_POSTGRES_URL=postgresql://modelport@127.0.0.1:$PG_PORT/modelport_test"
  echo "export MODELPORT_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
  echo "export MODELPORT_TEST_NATS_URL=nats://127.0.0.1:$NATS_PORT"
}

case "${1:-start}" in
  start)
    install_packages
    start_pg
    start_redis
    start_nats
    print_env
    ;;
  stop)
    bin=$(pg_bin)
    [ -n "$bin" ] && as_pg_user "$bin/pg_ctl" -D "$STATE/pg" stop -m fast >/dev/null 2>&1 || true
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    stop_nats
    ;;
  env) print_env ;;
  status)
    bin=$(pg_bin)
    [ -n "$bin" ] && "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1 &&
      redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && nats_up
    ;;
  *) echo "usage: $0 start|stop|env|status" >&2; exit 2 ;;
esac
