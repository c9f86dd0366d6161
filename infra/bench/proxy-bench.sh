#!/usr/bin/env bash
# Throughput of livegate-proxy against the nginx-lua baseline (infra/nginx/), both in front of
# the same nginx origin on loopback, with the same number of workers and a valid play token on
# every request. Cases: (a) a small HLS playlist (fetched, rewritten per viewer), (b) a ~1 MB
# segment (streamed through). Prints requests/s, latency percentiles and livegate/nginx-lua.
#
# Usage: infra/bench/proxy-bench.sh
# Environment (defaults in brackets):
#   BENCH_DURATION [10s]      wrk run length per case, proxy and round
#   BENCH_ROUNDS [3]          rounds; the proxies take turns, and the round with the median
#                             requests/s is reported (other work on the machine adds noise)
#   BENCH_WARMUP [2s]         unmeasured wrk run before each measured one
#   BENCH_CONNECTIONS [50]    wrk connections
#   BENCH_WRK_THREADS [2]     wrk threads
#   BENCH_WORKERS [2]         nginx-lua worker_processes and livegate [server] threads
#   BENCH_ORIGIN_WORKERS [1]  origin nginx worker_processes
#   BENCH_SEGMENT_BYTES [1048576]
#   CARGO_TARGET_DIR [<workspace>/target]
#   LIVEGATE_PROXY_BIN        run this proxy binary instead of building the workspace's
# Needs: cargo, nginx with libnginx-mod-http-lua, ffmpeg, wrk, curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-50}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
WORKERS=${BENCH_WORKERS:-2}
ORIGIN_WORKERS=${BENCH_ORIGIN_WORKERS:-1}
SEGMENT_BYTES=${BENCH_SEGMENT_BYTES:-1048576}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KEY=livegate-bench-key
ROOM=42

BENCH_NAME=proxy-bench
. "$ROOT/infra/bench/lib.sh"
require_tools cargo nginx ffmpeg wrk curl python3

chmod 755 "$WORK" # nginx workers run unprivileged and read the media from here

# --- build -----------------------------------------------------------------------------------
if [ -n "${LIVEGATE_PROXY_BIN:-}" ]; then
    PROXY_BIN=$LIVEGATE_PROXY_BIN
else
    log "building livegate-proxy (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet -p livegate-proxy)
    PROXY_BIN=$CARGO_TARGET_DIR/release/livegate-proxy
fi

# --- media -----------------------------------------------------------------------------------
MEDIA=$WORK/media
mkdir -p "$MEDIA"
log "making media with ffmpeg"
ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 10 -c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p -c:a aac -b:a 64k \
    -f hls -hls_time 2 -hls_list_size 0 -hls_segment_filename "$MEDIA/$ROOM-%d.ts" \
    "$MEDIA/$ROOM.m3u8"
# A stand-in segment of pseudo-random bytes (incompressible, like media).
head -c "$SEGMENT_BYTES" /dev/urandom >"$MEDIA/$ROOM-big.ts"
chmod -R a+rX "$MEDIA"
PLAYLIST_BYTES=$(wc -c <"$MEDIA/$ROOM.m3u8")

# --- ports -----------------------------------------------------------------------------------
read -r ORIGIN_PORT LUA_PORT LG_PORT ADMIN_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)

# --- origin ----------------------------------------------------------------------------------
mkdir -p "$WORK/origin/logs" "$WORK/origin/tmp" "$WORK/lua/logs" "$WORK/lua/tmp"
cat >"$WORK/origin/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes $ORIGIN_WORKERS;
pid $WORK/origin/nginx.pid;
error_log $WORK/origin/logs/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $WORK/origin/tmp/client_body;
    proxy_temp_path $WORK/origin/tmp/proxy;
    fastcgi_temp_path $WORK/origin/tmp/fastcgi;
    uwsgi_temp_path $WORK/origin/tmp/uwsgi;
    scgi_temp_path $WORK/origin/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        location /live/ {
            alias $MEDIA/;
            types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
            add_header Cache-Control no-cache;
        }
    }
}
CONF
nginx -p "$WORK/origin" -c "$WORK/origin/nginx.conf" -e "$WORK/origin/logs/error.log" \
    >/dev/null 2>&1 &
PIDS+=($!)

# --- nginx-lua -------------------------------------------------------------------------------
sed -e "s#@PREFIX@#$WORK/lua#g" \
    -e "s#@LUA_DIR@#$ROOT/infra/nginx/lua#g" \
    -e "s#@LISTEN@#127.0.0.1:$LUA_PORT#g" \
    -e "s#@ORIGIN@#127.0.0.1:$ORIGIN_PORT#g" \
    -e "s#@WORKERS@#$WORKERS#g" \
    "$ROOT/infra/nginx/nginx.conf" >"$WORK/lua/nginx.conf"
LIVEGATE_TOKEN_KEYS=$KEY nginx -p "$WORK/lua" -c "$WORK/lua/nginx.conf" \
    -e "$WORK/lua/logs/error.log" >/dev/null 2>&1 &
LUA_PID=$!
PIDS+=($LUA_PID)

# --- livegate-proxy --------------------------------------------------------------------------
cat >"$WORK/livegate.toml" <<CONF
[server]
listen = ["127.0.0.1:$LG_PORT"]
threads = $WORKERS
# Nothing to drain when the bench ends.
grace_period_s = 1
shutdown_timeout_s = 1
pid_file = "$WORK/livegate.pid"
upgrade_sock = "$WORK/livegate-upgrade.sock"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[origin]
addresses = ["127.0.0.1:$ORIGIN_PORT"]

[token]
keys = ["$KEY"]

[log]
filter = "warn"
CONF
"$PROXY_BIN" --config "$WORK/livegate.toml" >"$WORK/livegate.log" 2>&1 &
LG_PID=$!
PIDS+=($LG_PID)

# --- token and readiness ---------------------------------------------------------------------
TOKEN=$(python3 - "$KEY" "$ROOM" <<'PY'
import base64, hmac, sys, time
key, room = sys.argv[1].encode(), sys.argv[2]
message = f"{room}|{int(time.time()) + 3600}"
sig = hmac.new(key, message.encode(), "sha256").hexdigest()
print(base64.urlsafe_b64encode(f"{message}|{sig}".encode()).rstrip(b"=").decode())
PY
)
PLAYLIST_PATH="/live/$ROOM.m3u8?token=$TOKEN"
SEGMENT_PATH="/live/$ROOM-big.ts?token=$TOKEN"

wait_ok() { # name port path
    local i
    for i in $(seq 1 100); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2$3")" = 200 ]; then
            return 0
        fi
        sleep 0.1
    done
    log "$1 did not answer 200 on $3"
    cat "$WORK/livegate.log" "$WORK/lua/logs/error.log" "$WORK/origin/logs/error.log" >&2
    exit 1
}
for target in "nginx-lua $LUA_PORT" "livegate $LG_PORT"; do
    set -- $target
    wait_ok "$1" "$2" "$PLAYLIST_PATH"
    wait_ok "$1" "$2" "$SEGMENT_PATH"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2/live/$ROOM.m3u8")
    [ "$code" = 403 ] || { log "$1 answered $code without a token"; exit 1; }
    curl -s "http://127.0.0.1:$2$PLAYLIST_PATH" >"$WORK/playlist.$1"
    size=$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$2$SEGMENT_PATH")
    [ "$size" = "$SEGMENT_BYTES" ] || { log "$1 sent $size segment bytes"; exit 1; }
done
grep -q "$ROOM-0.ts?token=$TOKEN" "$WORK/playlist.livegate" || { log "livegate playlist not rewritten"; exit 1; }
cmp -s "$WORK/playlist.nginx-lua" "$WORK/playlist.livegate" \
    || { log "the two proxies rewrite the playlist differently"; diff "$WORK/playlist.nginx-lua" "$WORK/playlist.livegate" >&2; exit 1; }
log "both proxies answer 200 with a valid token and 403 without; playlists rewritten alike"

# --- wrk -------------------------------------------------------------------------------------
# CPU ticks (user and system) used so far by the given processes and their children's threads.
cpu_ticks() { # pid...
    local pid u=0 k=0 fields
    for pid in "$@"; do
        fields=$(awk '{print $14, $15}' "/proc/$pid/stat" 2>/dev/null) || continue
        u=$((u + ${fields% *}))
        k=$((k + ${fields#* }))
    done
    echo "$u $k"
}
proxy_pids() { # name
    if [ "$1" = livegate ]; then
        echo "$LG_PID"
    else
        echo "$LUA_PID" $(ps -o pid= --ppid "$LUA_PID")
    fi
}

# Prints "rps p50_ms p90_ms p99_ms errors requests cpu_user_s cpu_sys_s" for one measured run.
run_wrk() { # name port path
    local url="http://127.0.0.1:$2$3" before after pids
    wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "$WARMUP" "$url" >/dev/null
    pids=$(proxy_pids "$1")
    before=$(cpu_ticks $pids)
    wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency "$url" >"$WORK/wrk.out"
    after=$(cpu_ticks $pids)
    awk -v before="$before" -v after="$after" -v hz="$(getconf CLK_TCK)" '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v
        }
        /^ *50%/ { p50 = ms($2) }
        /^ *90%/ { p90 = ms($2) }
        /^ *99%/ { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        / requests in / { requests = $1 }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ { gsub(/,/, ""); errors += $4 + $6 + $8 + $10 }
        END {
            split(before, b, " "); split(after, a, " ")
            printf "%s %.3f %.3f %.3f %d %d %.2f %.2f\n", rps, p50, p90, p99, errors, requests,
                (a[1] - b[1]) / hz, (a[2] - b[2]) / hz
        }' "$WORK/wrk.out"
}

declare -A RESULT ALL_RPS
for case in playlist segment; do
    if [ "$case" = playlist ]; then path=$PLAYLIST_PATH; else path=$SEGMENT_PATH; fi
    for round in $(seq 1 "$ROUNDS"); do
        for target in "nginx-lua $LUA_PORT" "livegate $LG_PORT"; do
            set -- $target
            log "wrk: $case via $1, round $round/$ROUNDS ($DURATION, $CONNECTIONS connections)"
            run_wrk "$1" "$2" "$path" >>"$WORK/runs.$case.$1"
        done
    done
    for proxy in nginx-lua livegate; do
        # The median round by requests/s (the upper one of two).
        RESULT[$case.$proxy]=$(sort -g -k1,1 "$WORK/runs.$case.$proxy" | sed -n "$((ROUNDS / 2 + 1))p")
        ALL_RPS[$case.$proxy]=$(awk '{printf "%s%.0f", (NR > 1 ? " " : ""), $1}' "$WORK/runs.$case.$proxy")
    done
done

# --- report ----------------------------------------------------------------------------------
# CPU columns: the proxy's own processes during the measured run (user, system) and per request;
# the per-request figure is the steadier one when other work shares the machine.
echo
echo "livegate-proxy vs nginx-lua: $WORKERS workers each, wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, $(nproc) CPUs, median of $ROUNDS rounds"
echo "playlist: $PLAYLIST_BYTES bytes at the origin, rewritten per request; segment: $SEGMENT_BYTES bytes"
printf '%-9s %-10s %11s %8s %8s %8s %6s %7s %7s %9s\n' \
    case proxy "requests/s" "p50 ms" "p90 ms" "p99 ms" errors "usr s" "sys s" "CPU us/req"
for case in playlist segment; do
    for proxy in nginx-lua livegate; do
        read -r rps p50 p90 p99 errors requests usr sys <<<"${RESULT[$case.$proxy]}"
        awk -v c="$case" -v p="$proxy" -v rps="$rps" -v p50="$p50" -v p90="$p90" -v p99="$p99" \
            -v e="$errors" -v n="$requests" -v u="$usr" -v k="$sys" 'BEGIN {
            printf "%-9s %-10s %11.1f %8.3f %8.3f %8.3f %6d %7.2f %7.2f %9.1f\n",
                c, p, rps, p50, p90, p99, e, u, k, (n > 0 ? (u + k) * 1e6 / n : 0) }'
    done
done
echo
for case in playlist segment; do
    for proxy in nginx-lua livegate; do
        printf '%-9s %-10s requests/s by round: %s\n' "$case" "$proxy" "${ALL_RPS[$case.$proxy]}"
    done
done
echo
printf '%-9s %24s %20s %22s\n' case "livegate/nginx-lua req/s" "p99 livegate/nginx" "CPU/req livegate/nginx"
for case in playlist segment; do
    read -r lua_rps _ _ lua_p99 _ lua_n lua_u lua_k <<<"${RESULT[$case.nginx-lua]}"
    read -r lg_rps _ _ lg_p99 _ lg_n lg_u lg_k <<<"${RESULT[$case.livegate]}"
    awk -v c="$case" -v a="$lg_rps" -v b="$lua_rps" -v x="$lg_p99" -v y="$lua_p99" \
        -v ln="$lg_n" -v lc="$(awk -v u="$lg_u" -v k="$lg_k" 'BEGIN{print u + k}')" \
        -v nn="$lua_n" -v nc="$(awk -v u="$lua_u" -v k="$lua_k" 'BEGIN{print u + k}')" 'BEGIN {
        cpu = (ln > 0 && nn > 0 && nc > 0) ? (lc / ln) / (nc / nn) : 0
        printf "%-9s %24.2f %20.2f %22.2f\n", c, a / b, (y > 0 ? x / y : 0), cpu }'
done
