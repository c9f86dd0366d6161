#!/usr/bin/env bash
# The README's load test: `livegate loadtest` with 1 publisher × 2,000 HTTP-FLV viewers at
# 600 kbit/s through one proxy (`livegate up`, release build) on this machine, everything on
# loopback, set up as livegate/tests/loadtest.rs sets it up:
#
#   ffmpeg publisher ──RTMP──▶ nginx-rtmp ◀──RTMP── rtmp-flv-relay ◀──HTTP── nginx (.flv)
#                                                                              ▲
#   2,000 loadtest viewers ──HTTP-FLV, a token each──▶ livegate up (proxy) ───┘ one pull
#
# nginx-rtmp has no HTTP-FLV, so its nginx hands `.flv` requests to rtmp-flv-relay (the test
# harness's relay: one `ffmpeg -c copy` RTMP play per request), which makes nginx one origin
# that serves both, like SRS. Origin pulls are counted on the origin's side three ways: the
# relay's count of FLV requests, the `.flv` lines in nginx's access log, and the most RTMP
# players nginx-rtmp's own statistics (`rtmp_stat`) showed at once, sampled every second.
# When viewers stall, origin.txt also says where the stream's bytes were waiting meanwhile:
# unread at the proxy's pull (the proxy fell behind) or unread in the viewers' sockets (the
# load generator fell behind); the summary's "load generator" line says how long it could
# not run at all.
#
# Usage: infra/bench/loadtest-readme.sh
#   the README run:     infra/bench/loadtest-readme.sh
#   a shorter look:     LOADTEST_VIEWERS=500 LOADTEST_DURATION=20s infra/bench/loadtest-readme.sh
# Environment (defaults in brackets):
#   LOADTEST_VIEWERS [2000]      HTTP-FLV viewers
#   LOADTEST_DURATION [60s]      how long every viewer watches
#   LOADTEST_RAMP [10s]          viewers start evenly over this time
#   LOADTEST_BITRATE_KBPS [600]  the publisher's total bitrate
#   LOADTEST_OUT [loadtest-readme-out]  where result.json, chart.svg, summary.txt and
#                                origin.txt are written (kept; everything else is removed)
#   CARGO_TARGET_DIR [<workspace>/target]
#   LIVEGATE_BENCH_BIN_DIR       take livegate and rtmp-flv-relay from this directory instead
#                                of building them
# Needs: cargo, ffmpeg, nginx with libnginx-mod-rtmp, curl, python3, ss (iproute2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VIEWERS=${LOADTEST_VIEWERS:-2000}
DURATION=${LOADTEST_DURATION:-60s}
RAMP=${LOADTEST_RAMP:-10s}
BITRATE=${LOADTEST_BITRATE_KBPS:-600}
OUT=$(mkdir -p "${LOADTEST_OUT:-loadtest-readme-out}" && cd "${LOADTEST_OUT:-loadtest-readme-out}" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
RTMP_MODULE=/usr/lib/nginx/modules/ngx_rtmp_module.so
ROOM=42

BENCH_NAME=loadtest-readme
. "$ROOT/infra/bench/lib.sh"
require_tools cargo ffmpeg nginx curl python3 ss
[ -e "$RTMP_MODULE" ] || { log "$RTMP_MODULE is missing: install libnginx-mod-rtmp"; exit 1; }

# A socket per viewer in the load generator and in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((VIEWERS + 256)) ]; then
    log "ulimit -n is $(ulimit -n), too low for $VIEWERS viewers"
    exit 1
fi

BIN=${LIVEGATE_BENCH_BIN_DIR:-$CARGO_TARGET_DIR/release}
if [ -z "${LIVEGATE_BENCH_BIN_DIR:-}" ]; then
    log "building livegate and rtmp-flv-relay (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet -p livegate -p livegate-tests \
        --bin livegate --bin rtmp-flv-relay)
fi

load_avg() { cut -d' ' -f1-3 /proc/loadavg; }
free_ports() { # N
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
}
wait_for() { # WHAT COMMAND...
    local what=$1
    shift
    for _ in $(seq 1 300); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "$what did not come up"
    return 1
}

# --- origin: nginx-rtmp, its HTTP side, and the FLV relay -----------------------------------
read -r RTMP_PORT HTTP_PORT < <(free_ports 2)
"$BIN/rtmp-flv-relay" --rtmp "127.0.0.1:$RTMP_PORT" >"$WORK/relay.out" 2>"$WORK/relay.err" &
RELAY_PID=$!
PIDS+=($RELAY_PID)
wait_for "rtmp-flv-relay" grep -q '^listening ' "$WORK/relay.out"
RELAY_ADDR=$(awk '/^listening /{print $2}' "$WORK/relay.out")

NGINX=$WORK/nginx
mkdir -p "$NGINX/conf" "$NGINX/logs" "$NGINX/tmp"
# Run as root, nginx's workers would switch to `nobody`, who cannot write into WORK.
USER_LINE=
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat >"$NGINX/conf/nginx.conf" <<CONF
load_module $RTMP_MODULE;
$USER_LINE
daemon off;
master_process on;
worker_processes 1;
pid $NGINX/nginx.pid;
error_log $NGINX/logs/error.log warn;
events { worker_connections 4096; }
rtmp {
    server {
        listen 127.0.0.1:$RTMP_PORT;
        chunk_size 4096;
        application live {
            live on;
        }
    }
}
http {
    access_log $NGINX/logs/access.log;
    client_body_temp_path $NGINX/tmp/client_body;
    proxy_temp_path $NGINX/tmp/proxy;
    fastcgi_temp_path $NGINX/tmp/fastcgi;
    uwsgi_temp_path $NGINX/tmp/uwsgi;
    scgi_temp_path $NGINX/tmp/scgi;
    server {
        listen 127.0.0.1:$HTTP_PORT;
        location ~ \.flv\$ { proxy_pass http://$RELAY_ADDR; proxy_buffering off; }
        location = /stat { rtmp_stat all; }
    }
}
CONF
nginx -p "$NGINX" -c conf/nginx.conf -e "$NGINX/logs/error.log" 2>"$WORK/nginx.err" &
NGINX_PID=$!
PIDS+=($NGINX_PID)
wait_for "nginx" curl -sf -o /dev/null "http://127.0.0.1:$HTTP_PORT/stat"
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n 1)

# nginx-rtmp's own view, once a second: RTMP players of the room's stream (the relay's
# ffmpegs), i.e. origin pulls running, as "unix_seconds players".
(
    while kill -0 "$NGINX_PID" 2>/dev/null; do
        players=$(curl -s -m 1 "http://127.0.0.1:$HTTP_PORT/stat" | python3 -c '
import sys, xml.etree.ElementTree as ET
try:
    root = ET.fromstring(sys.stdin.read())
except ET.ParseError:
    sys.exit()
print(sum(1 for s in root.iter("stream") if s.findtext("name") == sys.argv[1]
          for c in s.iter("client") if c.find("publishing") is None))
' "$ROOM" 2>/dev/null || true)
        [ -n "$players" ] && echo "$(date +%s) $players" >>"$WORK/rtmp-players"
        sleep 1
    done
) &
PIDS+=($!)

# --- the proxy: livegate up -----------------------------------------------------------------
OFFSET=$(python3 - <<'PY'
import socket
for offset in range(20000, 40000, 97):
    try:
        socks = []
        for base in (8080, 8085, 8090, 9180, 9185, 9190, 9195):
            s = socket.socket()
            s.bind(("127.0.0.1", base + offset))
            socks.append(s)
    except OSError:
        continue
    print(offset)
    break
PY
)
PROXY_PORT=$((8080 + OFFSET))
ADMIN_PORT=$((9180 + OFFSET))
"$BIN/livegate" up --data-dir "$WORK/data" --origin "127.0.0.1:$HTTP_PORT" \
    --port-offset "$OFFSET" </dev/null >"$WORK/up.out" 2>"$WORK/up.log" &
UP_PID=$!
PIDS+=($UP_PID)
wait_for "livegate up" curl -sf -o /dev/null "http://127.0.0.1:$ADMIN_PORT/readyz"
LIVEGATE_BENCH_TOKEN_KEY=$(sed -nE 's/^token_key = "([0-9a-f]+)"$/\1/p' "$WORK/data/secrets.toml")
export LIVEGATE_BENCH_TOKEN_KEY

# Where the stream's bytes wait, once a second, from the kernel's socket queues: received by
# the proxy's pull but not yet read by it (the pull is behind the origin), and received by the
# viewers but not yet read by the load generator (the generator is behind), as
# "unix_seconds pull_bytes viewers_bytes".
(
    while kill -0 "$UP_PID" 2>/dev/null; do
        ss -tnH state established 2>/dev/null | awk -v origin=":$HTTP_PORT" -v proxy=":$PROXY_PORT" \
            -v now="$(date +%s)" '
            $4 ~ origin "$" && $3 !~ origin "$" { pull += $1 }
            $4 ~ proxy "$" { viewers += $1 }
            END { printf "%s %d %d\n", now, pull, viewers }' >>"$WORK/queues"
        sleep 1
    done
) &
PIDS+=($!)

# --- the run --------------------------------------------------------------------------------
LOAD_BEFORE=$(load_avg)
log "load average before: $LOAD_BEFORE; $VIEWERS FLV viewers for $DURATION (ramp $RAMP)"
CMD=("$BIN/livegate" loadtest
    --url-base "http://127.0.0.1:$PROXY_PORT"
    --rtmp "rtmp://127.0.0.1:$RTMP_PORT/live"
    --room "$ROOM" --publish-key bench-key
    --token-key env:LIVEGATE_BENCH_TOKEN_KEY
    --flv-viewers "$VIEWERS" --bitrate-kbps "$BITRATE"
    --duration "$DURATION" --ramp "$RAMP"
    --watch-pid "$UP_PID" --watch-pid "$NGINX_WORKER" --watch-pid "$RELAY_PID"
    --proxy-metrics "http://127.0.0.1:$ADMIN_PORT/metrics"
    --out "$OUT")
set +e
"${CMD[@]}" >"$OUT/summary.txt" 2>"$WORK/loadtest.err"
STATUS=$?
set -e
LOAD_AFTER=$(load_avg)
tail -n 3 "$WORK/loadtest.err" >&2 || true

# The origin's side, after the proxy let go of its pull (nginx logs a request at its end).
kill -USR1 "$RELAY_PID"
kill -TERM "$UP_PID"
wait "$UP_PID" 2>/dev/null || true
for _ in $(seq 1 50); do
    grep -q '^pulls ' "$WORK/relay.out" && [ -s "$NGINX/logs/access.log" ] && break
    sleep 0.1
done
RELAY_PULLS=$(grep '^pulls ' "$WORK/relay.out" | head -n 1 | sed -E 's/.*total=([0-9]+).*/\1/')
NGINX_FLV=$(grep -c '\.flv' "$NGINX/logs/access.log" || true)
RTMP_PEAK=$(awk 'BEGIN {m = 0} $2 > m {m = $2} END {print m}' "$WORK/rtmp-players" 2>/dev/null || echo 0)
read -r PULL_QUEUE VIEWER_QUEUE < <(awk 'BEGIN {p = 0; v = 0} $2 > p {p = $2} $3 > v {v = $3}
    END {print p, v}' "$WORK/queues" 2>/dev/null || echo "0 0")
{
    echo "origin pulls, from the origin's side:"
    echo "  rtmp-flv-relay: $RELAY_PULLS FLV request(s) answered"
    echo "  nginx access log: $NGINX_FLV .flv request(s)"
    echo "  nginx-rtmp rtmp_stat: at most $RTMP_PEAK RTMP player(s) of stream $ROOM at once"
    echo "bytes waiting, sampled every second (the most):"
    echo "  at the proxy's pull, unread by the proxy: $PULL_QUEUE"
    echo "  at the viewers, unread by the load generator: $VIEWER_QUEUE (all viewers together)"
    echo "load average: before $LOAD_BEFORE, after $LOAD_AFTER ($(nproc) CPUs)"
    echo "command (exit $STATUS):"
    echo "  ${CMD[*]}"
} >"$OUT/origin.txt"
cat "$OUT/summary.txt" "$OUT/origin.txt"
[ "$STATUS" = 0 ] || { log "livegate loadtest exited $STATUS"; cat "$WORK/loadtest.err" >&2; }
exit "$STATUS"
