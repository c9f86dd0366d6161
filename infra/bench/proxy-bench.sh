#!/usr/bin/env bash
# livegate-proxy against the nginx-lua baseline (infra/nginx/), all in front of the same nginx
# origin on loopback, with a valid play token on every request. Four targets:
#   nginx-lua        infra/nginx/nginx.conf: token gate, no cache
#   nginx-lua-cache  infra/nginx/nginx.cached.conf: the same plus proxy_cache/proxy_cache_lock
#   livegate-nocache livegate-proxy with [cache] enabled = false
#   livegate         livegate-proxy with its defaults (HLS cache on)
# and, in the throughput mode, a floor that gates nothing:
#   nginx-static     nginx serving the origin's files itself (sendfile, tcp_nopush, no log):
#                    the least a server on this kernel spends on the same response, so that a
#                    goal below it is seen to be out of any server's reach
#
# Modes (first argument, default `throughput`):
#   throughput  wrk against every target for (a) a small HLS playlist (rewritten per viewer; the
#               caches hold the origin's bytes) and (b) a 1 MiB segment, once per worker count
#               in BENCH_WORKERS. Prints requests/s, latency percentiles, CPU per request (of
#               the target, and of the client itself: on a small machine the client may be
#               what limits requests/s), and the ratios livegate/nginx-lua-cache and
#               livegate-nocache/nginx-lua. Segments are fetched by discard-client.py (beside
#               this script), which drops each body in the kernel: wrk copies every byte out
#               through 8 KiB reads, 300-800 us of CPU per 1 MiB here, more than the targets
#               spend, so with wrk it is the client that bounds requests/s.
#   coalesce    BENCH_COALESCE_CLIENTS concurrent requests, each with its own valid token, for
#               one segment nobody has asked for yet, which the origin sends slowly (limit_rate)
#               so that every request arrives while the first one is being filled. Prints how
#               many requests reached the origin (its own access log) and how many clients got
#               200 with the whole body.
#   all         both.
#
# Usage: infra/bench/proxy-bench.sh [throughput|coalesce|all]
# Environment (defaults in brackets):
#   BENCH_WORKERS ["1 2"]     nginx worker_processes and livegate [server] threads; each count
#                             is a separate pass with all four targets restarted
#   BENCH_DURATION [6s]       run length per case, target and round (seconds, with "s")
#   BENCH_ROUNDS [3]          rounds; the targets take turns, and the round with the median
#                             requests/s is reported (other work on the machine adds noise)
#   BENCH_WARMUP [1s]         unmeasured wrk run before each measured one (it also fills the
#                             caches)
#   BENCH_CONNECTIONS [50]    wrk connections
#   BENCH_WRK_THREADS [2]     wrk threads (and discard-client processes)
#   BENCH_SEGMENT_CLIENT [discard]  the segment case's client: discard or wrk
#   BENCH_ORIGIN_WORKERS [1]  origin nginx worker_processes
#   BENCH_SEGMENT_BYTES [1048576]
#   BENCH_COALESCE_CLIENTS [1000]
#   BENCH_COALESCE_RATE [1500k]  origin limit_rate for the coalesced segment (1 MiB: ~0.7 s)
#   BENCH_COALESCE_WORKERS [2]   workers for the coalescing pass
#   CARGO_TARGET_DIR [<workspace>/target]
#   LIVEGATE_PROXY_BIN        run this proxy binary instead of building the workspace's
# Needs: cargo, nginx with libnginx-mod-http-lua, ffmpeg, wrk, curl, python3.
# With the defaults, `throughput` takes about 8 minutes and `coalesce` under one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=${1:-throughput}
case "$MODE" in
    throughput | coalesce | all) ;;
    *) echo "usage: $0 [throughput|coalesce|all]" >&2; exit 2 ;;
esac
DURATION=${BENCH_DURATION:-6s}
WARMUP=${BENCH_WARMUP:-1s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-50}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
SEGMENT_CLIENT=${BENCH_SEGMENT_CLIENT:-discard}
case "$SEGMENT_CLIENT" in
    discard | wrk) ;;
    *) echo "BENCH_SEGMENT_CLIENT must be discard or wrk, not $SEGMENT_CLIENT" >&2; exit 2 ;;
esac
WORKER_COUNTS=${BENCH_WORKERS:-1 2}
ORIGIN_WORKERS=${BENCH_ORIGIN_WORKERS:-1}
SEGMENT_BYTES=${BENCH_SEGMENT_BYTES:-1048576}
COALESCE_CLIENTS=${BENCH_COALESCE_CLIENTS:-1000}
COALESCE_RATE=${BENCH_COALESCE_RATE:-1500k}
COALESCE_WORKERS=${BENCH_COALESCE_WORKERS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KEY=livegate-bench-key
ROOM=42
TARGETS=(nginx-lua nginx-lua-cache livegate-nocache livegate)
FLOOR=nginx-static
MEASURED=("${TARGETS[@]}" "$FLOOR")

BENCH_NAME=proxy-bench
. "$ROOT/infra/bench/lib.sh"
require_tools cargo nginx ffmpeg wrk curl python3

chmod 755 "$WORK" # nginx workers run unprivileged and read the media from here
# Every coalescing client holds a descriptor here and at each proxy, two for nginx.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$MODE" != throughput ] && [ "$(ulimit -n)" != unlimited ] \
    && [ "$(ulimit -n)" -lt $((2 * COALESCE_CLIENTS + 256)) ]; then
    log "ulimit -n is $(ulimit -n), too low for $COALESCE_CLIENTS coalescing clients"
    exit 1
fi

# nginx-lua-cache keeps its cache on tmpfs when there is one, so that the disk is not measured.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    CACHE_BASE=$(mktemp -d /dev/shm/livegate-proxy-bench.XXXXXX)
    SCRATCH+=("$CACHE_BASE")
else
    CACHE_BASE=$WORK/cache
    mkdir -p "$CACHE_BASE"
fi
chmod 755 "$CACHE_BASE"

# --- build -----------------------------------------------------------------------------------
if [ -n "${LIVEGATE_PROXY_BIN:-}" ]; then
    PROXY_BIN=$LIVEGATE_PROXY_BIN
else
    log "building livegate-proxy (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet -p livegate-proxy)
    PROXY_BIN=$CARGO_TARGET_DIR/release/livegate-proxy
fi

# --- media -----------------------------------------------------------------------------------
# Served from $WWW/live/ by the origin's root.
WWW=$WORK/www
MEDIA=$WWW/live
mkdir -p "$MEDIA"
log "making media with ffmpeg"
ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
    -t 10 -c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p -c:a aac -b:a 64k \
    -f hls -hls_time 2 -hls_list_size 0 -hls_segment_filename "$MEDIA/$ROOM-%d.ts" \
    "$MEDIA/$ROOM.m3u8"
# A stand-in segment of pseudo-random bytes (incompressible, like media).
head -c "$SEGMENT_BYTES" /dev/urandom >"$MEDIA/$ROOM-big.ts"
# One never-requested name per coalescing target, all the same bytes.
for i in "${!TARGETS[@]}"; do
    ln "$MEDIA/$ROOM-big.ts" "$MEDIA/$ROOM-slow$i.ts"
done
chmod -R a+rX "$WWW"
PLAYLIST_BYTES=$(wc -c <"$MEDIA/$ROOM.m3u8")

# --- ports -----------------------------------------------------------------------------------
free_ports() { # count
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
}

# --- origin ----------------------------------------------------------------------------------
# The `-slowN.ts` names are the coalescing bench's: sent at a limited rate and logged, so the
# origin's own log counts the requests that reached it.
read -r ORIGIN_PORT < <(free_ports 1)
mkdir -p "$WORK/origin/logs" "$WORK/origin/tmp"
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
    types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
    log_format fill '\$request_time "\$request" \$status \$body_bytes_sent';
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        root $WWW;
        add_header Cache-Control no-cache;
        location /live/ {
        }
        location ~ "^/live/[^/]+-slow[0-9]+\.ts\$" {
            limit_rate $COALESCE_RATE;
            # limit_rate lets a whole sendfile chunk go at once and then waits; small chunks
            # make the pace steady.
            sendfile_max_chunk 16k;
            access_log $WORK/origin/logs/slow.log fill;
        }
    }
}
CONF
nginx -p "$WORK/origin" -c "$WORK/origin/nginx.conf" -e "$WORK/origin/logs/error.log" \
    >/dev/null 2>&1 &
PIDS+=($!)

# --- tokens ----------------------------------------------------------------------------------
mint_tokens() { # count: one valid token per line, each with its own expiry (so all differ)
    python3 - "$KEY" "$ROOM" "$1" <<'PY'
import base64, hmac, sys, time
key, room, count = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
exp = int(time.time()) + 3600
for i in range(count):
    message = f"{room}|{exp + i}"
    sig = hmac.new(key, message.encode(), "sha256").hexdigest()
    print(base64.urlsafe_b64encode(f"{message}|{sig}".encode()).rstrip(b"=").decode())
PY
}
mint_tokens 2 >"$WORK/tokens.check"
TOKEN=$(sed -n 1p "$WORK/tokens.check")
TOKEN2=$(sed -n 2p "$WORK/tokens.check")
PLAYLIST_PATH="/live/$ROOM.m3u8?token=$TOKEN"
SEGMENT_PATH="/live/$ROOM-big.ts?token=$TOKEN"

# --- targets ---------------------------------------------------------------------------------
declare -A PORT PID
start_nginx() { # name template workers port
    local dir=$WORK/$1
    rm -rf "$dir" "$CACHE_BASE/$1"
    mkdir -p "$dir/logs" "$dir/tmp"
    sed -e "s#@PREFIX@#$dir#g" \
        -e "s#@LUA_DIR@#$ROOT/infra/nginx/lua#g" \
        -e "s#@LISTEN@#127.0.0.1:$4#g" \
        -e "s#@ORIGIN@#127.0.0.1:$ORIGIN_PORT#g" \
        -e "s#@WORKERS@#$3#g" \
        -e "s#@CACHE_DIR@#$CACHE_BASE/$1#g" \
        "$ROOT/infra/nginx/$2" >"$dir/nginx.conf"
    LIVEGATE_TOKEN_KEYS=$KEY nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" \
        >/dev/null 2>&1 &
    PID[$1]=$!
    PIDS+=($!)
}
start_static() { # name workers port: the origin's static serving, with its own worker count
    local dir=$WORK/$1
    rm -rf "$dir"
    mkdir -p "$dir/logs" "$dir/tmp"
    sed -e "s#^worker_processes .*#worker_processes $2;#" \
        -e "s#$WORK/origin/#$dir/#g" \
        -e "s#listen 127.0.0.1:$ORIGIN_PORT #listen 127.0.0.1:$3 #" \
        "$WORK/origin/nginx.conf" >"$dir/nginx.conf"
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/logs/error.log" >/dev/null 2>&1 &
    PID[$1]=$!
    PIDS+=($!)
}
start_livegate() { # name workers port admin_port cache_enabled
    local dir=$WORK/$1
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/livegate.toml" <<CONF
[server]
listen = ["127.0.0.1:$3"]
threads = $2
# Nothing to drain when the bench ends.
grace_period_s = 1
shutdown_timeout_s = 1
pid_file = "$dir/livegate.pid"
upgrade_sock = "$dir/livegate-upgrade.sock"

[admin]
listen = "127.0.0.1:$4"

[origin]
addresses = ["127.0.0.1:$ORIGIN_PORT"]

[token]
keys = ["$KEY"]

[cache]
enabled = $5

[log]
filter = "warn"
CONF
    "$PROXY_BIN" --config "$dir/livegate.toml" >"$dir/livegate.log" 2>&1 &
    PID[$1]=$!
    PIDS+=($!)
}
start_targets() { # workers
    local ports
    read -r -a ports < <(free_ports 7)
    PORT[nginx-lua]=${ports[0]}
    PORT[nginx-lua-cache]=${ports[1]}
    PORT[livegate-nocache]=${ports[2]}
    PORT[livegate]=${ports[3]}
    start_nginx nginx-lua nginx.conf "$1" "${PORT[nginx-lua]}"
    start_nginx nginx-lua-cache nginx.cached.conf "$1" "${PORT[nginx-lua-cache]}"
    start_livegate livegate-nocache "$1" "${PORT[livegate-nocache]}" "${ports[4]}" false
    start_livegate livegate "$1" "${PORT[livegate]}" "${ports[5]}" true
    PORT[$FLOOR]=${ports[6]}
    start_static "$FLOOR" "$1" "${PORT[$FLOOR]}"
    check_targets
    wait_ok "$FLOOR" "${PORT[$FLOOR]}" "$SEGMENT_PATH"
}
stop_targets() {
    local name
    for name in "${MEASURED[@]}"; do
        kill -TERM "${PID[$name]}" 2>/dev/null || true
    done
    for name in "${MEASURED[@]}"; do
        wait "${PID[$name]}" 2>/dev/null || true
    done
}

target_logs() {
    local name
    for name in "${MEASURED[@]}"; do
        cat "$WORK/$name/livegate.log" "$WORK/$name/logs/error.log" 2>/dev/null || true
    done
    cat "$WORK/origin/logs/error.log" >&2
}
wait_ok() { # name port path
    local i
    for i in $(seq 1 100); do
        if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$2$3")" = 200 ]; then
            return 0
        fi
        sleep 0.1
    done
    log "$1 did not answer 200 on $3"
    target_logs >&2
    exit 1
}
# Every target: 200 with a token and 403 without, whole segments, and the same rewritten
# playlist; the caching ones also rewrite a cached playlist for a second viewer's token.
check_targets() {
    local name port code size
    for name in "${TARGETS[@]}"; do
        port=${PORT[$name]}
        wait_ok "$name" "$port" "$PLAYLIST_PATH"
        wait_ok "$name" "$port" "$SEGMENT_PATH"
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/live/$ROOM.m3u8")
        [ "$code" = 403 ] || { log "$name answered $code without a token"; exit 1; }
        curl -s "http://127.0.0.1:$port$PLAYLIST_PATH" >"$WORK/playlist.$name"
        curl -s -D "$WORK/headers.$name" "http://127.0.0.1:$port/live/$ROOM.m3u8?token=$TOKEN2" \
            >"$WORK/playlist2.$name"
        size=$(curl -s -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port$SEGMENT_PATH")
        [ "$size" = "$SEGMENT_BYTES" ] || { log "$name sent $size segment bytes"; exit 1; }
        grep -q "$ROOM-0.ts?token=$TOKEN" "$WORK/playlist.$name" \
            || { log "$name: playlist not rewritten"; exit 1; }
        grep -q "$ROOM-0.ts?token=$TOKEN2" "$WORK/playlist2.$name" \
            || { log "$name: playlist not rewritten for a second viewer"; exit 1; }
        cmp -s "$WORK/playlist.nginx-lua" "$WORK/playlist.$name" || {
            log "nginx-lua and $name rewrite the playlist differently"
            diff "$WORK/playlist.nginx-lua" "$WORK/playlist.$name" >&2
            exit 1
        }
        case $name in
            *-cache | livegate)
                grep -qi '^x-cache: *\(HIT\|COALESCED\)' "$WORK/headers.$name" || {
                    log "$name: a second playlist request within its TTL was not a cache hit"
                    cat "$WORK/headers.$name" >&2
                    exit 1
                }
                ;;
        esac
    done
}

# --- throughput ------------------------------------------------------------------------------
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
target_pids() { # name: livegate is one process; nginx a master and its workers
    case $1 in
        livegate*) echo "${PID[$1]}" ;;
        *) echo "${PID[$1]}" $(ps -o pid= --ppid "${PID[$1]}") ;;
    esac
}

# One client run against url for a duration, printing wrk's summary: wrk, or for the segment
# case (unless BENCH_SEGMENT_CLIENT=wrk) discard-client.py.
load_client() { # case url duration
    if [ "$1" = segment ] && [ "$SEGMENT_CLIENT" = discard ]; then
        python3 "$ROOT/infra/bench/discard-client.py" --processes "$WRK_THREADS" \
            -c "$CONNECTIONS" -d "${3%s}" "$2"
    else
        wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "$3" --latency "$2"
    fi
}
client_name() { # case
    if [ "$1" = segment ] && [ "$SEGMENT_CLIENT" = discard ]; then
        echo "discard-client.py ($WRK_THREADS processes)"
    else
        echo "wrk -t$WRK_THREADS"
    fi
}

# Prints "rps p50_ms p90_ms p99_ms errors requests cpu_user_s cpu_sys_s wrk_wall_s wrk_user_s
# wrk_sys_s load1" for one run. The client shares the machine's CPUs with the target: its own
# CPU time (bash's `time`, from the rusage of the client and all its threads and processes)
# shows when the client, not the target, is what limits requests/s.
run_wrk() { # name path case
    local url="http://127.0.0.1:${PORT[$1]}$2" before after pids TIMEFORMAT='%R %U %S'
    load_client "$3" "$url" "$WARMUP" >/dev/null
    pids=$(target_pids "$1")
    before=$(cpu_ticks $pids)
    { time load_client "$3" "$url" "$DURATION" >"$WORK/wrk.out"; } 2>"$WORK/wrk.time"
    after=$(cpu_ticks $pids)
    awk -v before="$before" -v after="$after" -v hz="$(getconf CLK_TCK)" \
        -v wrk="$(tail -n 1 "$WORK/wrk.time")" -v la="$(cut -d' ' -f1 /proc/loadavg)" '
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
            split(before, b, " "); split(after, a, " "); split(wrk, t, " ")
            printf "%s %.3f %.3f %.3f %d %d %.2f %.2f %.3f %.3f %.3f %s\n", rps, p50, p90, p99,
                errors, requests, (a[1] - b[1]) / hz, (a[2] - b[2]) / hz, t[1], t[2], t[3], la
        }' "$WORK/wrk.out"
}

declare -A RESULT ALL_RPS
throughput_pass() { # workers
    local w=$1 case path round name
    for case in playlist segment; do
        if [ "$case" = playlist ]; then path=$PLAYLIST_PATH; else path=$SEGMENT_PATH; fi
        for round in $(seq 1 "$ROUNDS"); do
            for name in "${MEASURED[@]}"; do
                log "$(client_name "$case"): $w workers, $case via $name, round $round/$ROUNDS ($DURATION, $CONNECTIONS connections)"
                run_wrk "$name" "$path" "$case" >>"$WORK/runs.$w.$case.$name"
            done
        done
        for name in "${MEASURED[@]}"; do
            # The median round by requests/s (the upper one of two).
            RESULT[$w.$case.$name]=$(sort -g -k1,1 "$WORK/runs.$w.$case.$name" \
                | sed -n "$((ROUNDS / 2 + 1))p")
            ALL_RPS[$w.$case.$name]=$(awk '{printf "%s%.0f", (NR > 1 ? " " : ""), $1}' \
                "$WORK/runs.$w.$case.$name")
        done
    done
}

# The CPUs wrk can keep busy: one per thread, at most the machine's.
client_cpus() {
    local n
    n=$(nproc)
    echo $((WRK_THREADS < n ? WRK_THREADS : n))
}

# One line of ratios: a over b for requests/s, p99 and CPU per request.
ratio_line() { # label result_a result_b
    read -r a_rps _ _ a_p99 _ a_n a_u a_k _ <<<"$2"
    read -r b_rps _ _ b_p99 _ b_n b_u b_k _ <<<"$3"
    awk -v l="$1" -v ar="$a_rps" -v br="$b_rps" -v ap="$a_p99" -v bp="$b_p99" \
        -v an="$a_n" -v ac="$(awk -v u="$a_u" -v k="$a_k" 'BEGIN{print u + k}')" \
        -v bn="$b_n" -v bc="$(awk -v u="$b_u" -v k="$b_k" 'BEGIN{print u + k}')" 'BEGIN {
        cpu = (an > 0 && bn > 0 && bc > 0) ? (ac / an) / (bc / bn) : 0
        printf "%-38s %10.2f %10.2f %12.2f\n", l, ar / br, (bp > 0 ? ap / bp : 0), cpu }'
}

throughput_report() {
    local w case name
    echo
    echo "HLS throughput: -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $(nproc) CPUs, median of $ROUNDS rounds;" \
        "playlists by $(client_name playlist), segments by $(client_name segment)"
    echo "playlist: $PLAYLIST_BYTES bytes at the origin, rewritten per request; segment: $SEGMENT_BYTES bytes"
    echo "CPU: the target's own processes during the measured run; load: 1-minute load average after it"
    echo "CPUs: CPU seconds over the run's length, of the target and of the client (wrk or"
    echo "      discard-client: user + system of all its threads); wrk us/req: the client's CPU per request."
    echo "      * the client had >= 90% of its $(client_cpus) CPU(s) busy: it, not the target, bounds requests/s"
    echo "      + target and client together kept >= 90% of the $(nproc) CPUs busy: they compete for them"
    printf '%-3s %-9s %-17s %11s %8s %8s %8s %6s %7s %7s %9s %5s %10s %8s %5s\n' \
        w case target "requests/s" "p50 ms" "p90 ms" "p99 ms" errors "usr s" "sys s" "CPU us/req" \
        CPUs "wrk us/req" "wrk CPUs" load
    for w in $WORKER_COUNTS; do
        for case in playlist segment; do
            for name in "${MEASURED[@]}"; do
                read -r rps p50 p90 p99 errors requests usr sys wall wu wk load \
                    <<<"${RESULT[$w.$case.$name]}"
                awk -v w="$w" -v c="$case" -v p="$name" -v rps="$rps" -v p50="$p50" -v p90="$p90" \
                    -v p99="$p99" -v e="$errors" -v n="$requests" -v u="$usr" -v k="$sys" \
                    -v wall="$wall" -v wu="$wu" -v wk="$wk" -v cpus="$(client_cpus)" \
                    -v ncpu="$(nproc)" -v la="$load" 'BEGIN {
                    busy = (wall > 0 ? (wu + wk) / wall : 0)
                    target = (wall > 0 ? (u + k) / wall : 0)
                    mark = (busy >= 0.9 * cpus ? "*" : "") (busy + target >= 0.9 * ncpu ? "+" : "")
                    printf "%-3s %-9s %-17s %11.1f %8.3f %8.3f %8.3f %6d %7.2f %7.2f %9.1f %5.2f %10.1f %6.2f%-2s %5s\n",
                        w, c, p, rps, p50, p90, p99, e, u, k, (n > 0 ? (u + k) * 1e6 / n : 0),
                        target, (n > 0 ? (wu + wk) * 1e6 / n : 0), busy, mark, la }'
            done
        done
    done
    echo
    for w in $WORKER_COUNTS; do
        for case in playlist segment; do
            for name in "${MEASURED[@]}"; do
                printf '%-3s %-9s %-17s requests/s by round: %s\n' "$w" "$case" "$name" \
                    "${ALL_RPS[$w.$case.$name]}"
            done
        done
    done
    echo
    echo "goals: livegate/nginx-lua-cache req/s >= 1.5 and CPU/req <= 0.67; livegate-nocache/nginx-lua CPU/req <= 1"
    printf '%-38s %10s %10s %12s\n' "workers case ratio" "req/s" "p99" "CPU/req"
    for w in $WORKER_COUNTS; do
        for case in playlist segment; do
            ratio_line "$w $case livegate/nginx-lua-cache" \
                "${RESULT[$w.$case.livegate]}" "${RESULT[$w.$case.nginx-lua-cache]}"
            ratio_line "$w $case livegate-nocache/nginx-lua" \
                "${RESULT[$w.$case.livegate-nocache]}" "${RESULT[$w.$case.nginx-lua]}"
        done
    done
    echo
    echo "the floor: $FLOOR gates nothing and sends the origin's own files; where its ratio to"
    echo "nginx-lua-cache is above a goal, that goal is below what any server spends here"
    printf '%-38s %10s %10s %12s\n' "workers case ratio" "req/s" "p99" "CPU/req"
    for w in $WORKER_COUNTS; do
        for case in playlist segment; do
            ratio_line "$w $case $FLOOR/nginx-lua-cache" \
                "${RESULT[$w.$case.$FLOOR]}" "${RESULT[$w.$case.nginx-lua-cache]}"
            ratio_line "$w $case livegate/$FLOOR" \
                "${RESULT[$w.$case.livegate]}" "${RESULT[$w.$case.$FLOOR]}"
        done
    done
}

# --- coalescing ------------------------------------------------------------------------------
coalesce_pass() {
    local i name path
    mint_tokens "$COALESCE_CLIENTS" >"$WORK/tokens.coalesce"
    echo
    echo "coalescing: $COALESCE_CLIENTS concurrent requests (each with its own valid token) for one uncached $SEGMENT_BYTES-byte segment, origin limit_rate $COALESCE_RATE, $COALESCE_WORKERS workers"
    echo "origin fill: the longest origin request for the segment (the origin's \$request_time);"
    echo "sent: when the last request had left the client; seconds: until the last body was read"
    printf '%-17s %8s %8s %6s %6s %8s %8s %-32s %5s\n' \
        target "origin" "fill s" "200" "full" "sent ms" "seconds" "x-cache" load
    for i in "${!TARGETS[@]}"; do
        name=${TARGETS[$i]}
        path="/live/$ROOM-slow$i.ts"
        python3 "$ROOT/infra/bench/coalesce.py" --port "${PORT[$name]}" --path "$path" \
            --tokens "$WORK/tokens.coalesce" --expect "$MEDIA/$ROOM-big.ts" >"$WORK/coalesce.$name"
        # Late log lines (a fill the waiters gave up on) still count.
        sleep 1
        grep "GET $path[ ?]" "$WORK/origin/logs/slow.log" >"$WORK/slow.$name" 2>/dev/null || true
        awk -v t="$name" -v o="$(wc -l <"$WORK/slow.$name")" \
            -v fill="$(awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }' "$WORK/slow.$name")" \
            -v la="$(cut -d' ' -f1 /proc/loadavg)" '/^RESULT/ {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
            printf "%-17s %8d %8.3f %6s %6s %8s %8s %-32s %5s\n", t, o, fill, r["ok"], r["full"],
                r["sent_ms"], r["seconds"], r["x_cache"], la }' "$WORK/coalesce.$name"
    done
    for name in "${TARGETS[@]}"; do
        echo "$name: $(grep '^all requests' "$WORK/coalesce.$name")"
    done
    echo "goal: livegate 1 origin request, every client 200 with the whole body"
}

# --- run -------------------------------------------------------------------------------------
if [ "$MODE" != coalesce ]; then
    for w in $WORKER_COUNTS; do
        log "starting the four targets with $w worker(s) each"
        start_targets "$w"
        log "all targets answer 200 with a valid token and 403 without; playlists rewritten alike"
        throughput_pass "$w"
        stop_targets
    done
fi
if [ "$MODE" != throughput ]; then
    log "starting the four targets with $COALESCE_WORKERS worker(s) each for coalescing"
    start_targets "$COALESCE_WORKERS"
    coalesce_pass >"$WORK/coalesce.report"
    stop_targets
fi
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$MODE" != coalesce ]; then
    throughput_report
fi
if [ "$MODE" != throughput ]; then
    cat "$WORK/coalesce.report"
fi
