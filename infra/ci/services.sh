#!/usr/bin/env bash
# Makes sure MariaDB and Redis are reachable on loopback for the test suites, then prints the
# variables the tests read:
#
#   eval "$(infra/ci/services.sh)"      # exports LIVEGATE_TEST_MYSQL_URL, LIVEGATE_TEST_REDIS_URL
#   infra/ci/services.sh stop           # stops what this script started (nothing else)
#
# Order of preference, for each service:
#   1. the URL already in LIVEGATE_TEST_MYSQL_URL / LIVEGATE_TEST_REDIS_URL, if it answers;
#   2. a server already listening on the standard loopback port (3306 / 6379) that accepts
#      root without a password over TCP (MariaDB) or answers PING (Redis);
#   3. a private server started here under $LIVEGATE_SERVICES_DIR (default
#      /tmp/livegate-services), installing the Debian packages first if they are missing.
#      A fresh MariaDB install lets root in only through the unix socket, so a password user
#      `livegate` is created for TCP.
#
# LIVEGATE_SERVICES_PRIVATE=1 skips 1 and 2 and always uses private servers.
#
# Everything except the final `export` lines goes to stderr. Exits non-zero if MariaDB or
# Redis cannot be made reachable.
set -euo pipefail

BASE=${LIVEGATE_SERVICES_DIR:-/tmp/livegate-services}
MYSQL_PORT=${LIVEGATE_SERVICES_MYSQL_PORT:-13306}
REDIS_PORT=${LIVEGATE_SERVICES_REDIS_PORT:-16379}
PRIVATE=${LIVEGATE_SERVICES_PRIVATE:-}
DB_USER=livegate
DB_PASS=livegate
DB_NAME=livegate_test

log() { echo "services: $*" >&2; }
die() { echo "services: ERROR: $*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for WHAT SECONDS CMD...
  local what=$1 limit=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || { log "timed out waiting for $what"; return 1; }
    sleep 0.1
  done
}

apt_install() {
  log "installing $*"
  if [ -z "${LIVEGATE_APT_UPDATED:-}" ]; then
    apt-get update -qq >&2
    LIVEGATE_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# mysql_ok URL: whether a mysql:// URL accepts a login (user[:pass]@host:port/db).
mysql_ok() {
  local rest=${1#mysql://} creds hostport user pass host port db
  creds=${rest%%@*}; rest=${rest#*@}
  hostport=${rest%%/*}; db=${rest#*/}; db=${db%%\?*}
  user=${creds%%:*}; pass=""; [ "$creds" != "$user" ] && pass=${creds#*:}
  host=${hostport%%:*}; port=3306; [ "$hostport" != "$host" ] && port=${hostport#*:}
  command -v mariadb >/dev/null 2>&1 || return 1
  MYSQL_PWD=$pass mariadb --no-defaults --protocol=TCP -h "$host" -P "$port" -u "$user" \
    ${db:+"$db"} -e 'SELECT 1' >/dev/null 2>&1
}

redis_ok() { command -v redis-cli >/dev/null 2>&1 && redis-cli -u "$1" ping 2>/dev/null | grep -q PONG; }

start_mariadb() {
  local dir=$BASE/mariadb
  command -v mariadbd >/dev/null 2>&1 || apt_install mariadb-server mariadb-client
  mkdir -p "$dir"
  if ! port_open "$MYSQL_PORT"; then
    if [ ! -d "$dir/data/mysql" ]; then
      log "initialising a private MariaDB in $dir"
      mariadb-install-db --no-defaults --user=root --datadir="$dir/data" \
        --auth-root-authentication-method=socket --skip-test-db >"$dir/install-db.log" 2>&1 \
        || die "mariadb-install-db failed, see $dir/install-db.log"
    fi
    log "starting MariaDB on 127.0.0.1:$MYSQL_PORT"
    nohup mariadbd --no-defaults --user=root --datadir="$dir/data" --socket="$dir/mysqld.sock" \
      --port="$MYSQL_PORT" --bind-address=127.0.0.1 --skip-name-resolve \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
      --pid-file="$dir/mariadbd.pid" --log-error="$dir/error.log" >/dev/null 2>&1 &
    wait_for MariaDB 60 mariadb-admin --no-defaults --socket="$dir/mysqld.sock" ping \
      || die "MariaDB did not start, see $dir/error.log"
  fi
  # Root only works through the socket as OS root: create a password user for TCP, allowed
  # to create and drop the per-test databases.
  mariadb --no-defaults --socket="$dir/mysqld.sock" -e "
    CREATE DATABASE IF NOT EXISTS $DB_NAME;
    CREATE USER IF NOT EXISTS '$DB_USER'@'%' IDENTIFIED BY '$DB_PASS';
    GRANT ALL PRIVILEGES ON *.* TO '$DB_USER'@'%';
    FLUSH PRIVILEGES;" >&2 \
    || die "cannot create the MariaDB test user through $dir/mysqld.sock"
  MYSQL_URL="mysql://$DB_USER:$DB_PASS@127.0.0.1:$MYSQL_PORT/$DB_NAME"
}

start_redis() {
  local dir=$BASE/redis
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-tools
  mkdir -p "$dir"
  if ! port_open "$REDIS_PORT"; then
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
      --save '' --appendonly no >&2
  fi
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  wait_for Redis 20 redis_ok "$REDIS_URL" || die "Redis did not start, see $dir/redis.log"
}

stop_services() {
  if [ -S "$BASE/mariadb/mysqld.sock" ]; then
    log "stopping the private MariaDB"
    mariadb-admin --no-defaults --socket="$BASE/mariadb/mysqld.sock" shutdown >&2 || true
  fi
  if [ -f "$BASE/redis/redis.pid" ] && port_open "$REDIS_PORT"; then
    log "stopping the private Redis"
    redis-cli -p "$REDIS_PORT" shutdown nosave >&2 || true
  fi
}

case ${1:-start} in
stop)
  stop_services
  exit 0
  ;;
start) ;;
*) die "usage: $0 [start|stop]" ;;
esac

# MariaDB / MySQL.
MYSQL_URL=""
if [ -n "$PRIVATE" ]; then
  start_mariadb
elif [ -n "${LIVEGATE_TEST_MYSQL_URL:-}" ] && mysql_ok "$LIVEGATE_TEST_MYSQL_URL"; then
  MYSQL_URL=$LIVEGATE_TEST_MYSQL_URL
  log "MariaDB: using the given LIVEGATE_TEST_MYSQL_URL"
elif port_open 3306 && mysql_ok "mysql://root@127.0.0.1:3306/mysql"; then
  MYSQL_URL="mysql://root@127.0.0.1:3306/mysql"
  log "MariaDB: using the server on 127.0.0.1:3306 (root over TCP)"
else
  start_mariadb
fi
mysql_ok "$MYSQL_URL" || die "MariaDB is unreachable at ${MYSQL_URL%%@*}@… — the database tests cannot run"

# Redis.
REDIS_URL=""
if [ -n "$PRIVATE" ]; then
  start_redis
elif [ -n "${LIVEGATE_TEST_REDIS_URL:-}" ] && redis_ok "$LIVEGATE_TEST_REDIS_URL"; then
  REDIS_URL=$LIVEGATE_TEST_REDIS_URL
  log "Redis: using the given LIVEGATE_TEST_REDIS_URL"
elif port_open 6379 && redis_ok "redis://127.0.0.1:6379"; then
  REDIS_URL="redis://127.0.0.1:6379"
  log "Redis: using the server on 127.0.0.1:6379"
else
  start_redis
fi
redis_ok "$REDIS_URL" || die "Redis is unreachable at $REDIS_URL"

# The hooks tests also start a throw-away redis-server of their own (Redis outage test).
command -v redis-server >/dev/null 2>&1 || apt_install redis-server redis-tools

echo "export LIVEGATE_TEST_MYSQL_URL='$MYSQL_URL'"
echo "export LIVEGATE_TEST_REDIS_URL='$REDIS_URL'"
