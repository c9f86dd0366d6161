#!/usr/bin/env bash
# Play tokens issued per second by livegate-api (release, SQLite, in-process bus) under
# `wrk -c64`, with one runtime worker and with two, beside the API's own cheapest answer
# (`/healthz` on the admin port, the same process and framework) as the baseline: the ratio
# says how much a token costs over an empty request. Prints requests/s, p99 and the API's CPU
# per request.
#
# Usage: infra/bench/api-bench.sh
# Environment (defaults in brackets):
#   BENCH_DURATION [10s]      wrk run length per case
#   BENCH_CONNECTIONS [64]    wrk connections
#   BENCH_WRK_THREADS [2]     wrk threads
#   BENCH_WORKERS ["1 2"]     the API's runtime worker threads (TOKIO_WORKER_THREADS)
#   CARGO_TARGET_DIR [<workspace>/target]
# Needs: cargo, wrk, curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DURATION=${BENCH_DURATION:-10s}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-2}
WORKERS_LIST=${BENCH_WORKERS:-"1 2"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

BENCH_NAME=api-bench
. "$ROOT/infra/bench/lib.sh"
require_tools cargo wrk curl python3

log "building livegate-api (release) in $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release --quiet -p livegate-api)
API_BIN=$CARGO_TARGET_DIR/release/livegate-api

read -r API_PORT ADMIN_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
cat >"$WORK/api.toml" <<CONF
[server]
listen = "127.0.0.1:$API_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
[database]
url = "sqlite:$WORK/api.db"
[auth]
jwt_keys = ["api-bench-jwt-key-0123456789abcdef0123456789"]
[play_token]
keys = ["api-bench-play-key"]
# Every request comes from one address here: the per-address limit would measure itself.
per_address_per_minute = 0
[log]
filter = "warn"
CONF
PASSWORD="api bench password"
echo "$PASSWORD" | "$API_BIN" --config "$WORK/api.toml" admin create --username bench >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Prints "rps p99_ms requests cpu_s" for one wrk run against the running API.
run_wrk() { # pid url
    local before after
    wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d 2s "$2" >/dev/null
    before=$(cpu_ticks "$1")
    wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "$DURATION" --latency "$2" >"$WORK/wrk.out"
    after=$(cpu_ticks "$1")
    awk -v b="$before" -v a="$after" -v hz="$(getconf CLK_TCK)" '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v
        }
        /^ *99%/ { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 }
        / requests in / { n = $1 }
        /Non-2xx or 3xx responses:/ { bad += $NF }
        END { printf "%s %.2f %d %.2f %d\n", rps, p99, n, (a - b) / hz, bad }' "$WORK/wrk.out"
}

declare -A RESULT
for workers in $WORKERS_LIST; do
    TOKIO_WORKER_THREADS=$workers "$API_BIN" --config "$WORK/api.toml" >"$WORK/api.$workers.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null && break
        sleep 0.1
    done
    access=$(curl -sf "http://127.0.0.1:$API_PORT/api/v1/sessions" -H 'content-type: application/json' \
        -d "{\"username\":\"bench\",\"password\":\"$PASSWORD\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    room=$(curl -sf "http://127.0.0.1:$API_PORT/api/v1/rooms" -H 'content-type: application/json' \
        -H "authorization: Bearer $access" -d '{"title":"bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["room"]["id"])')
    token_url="http://127.0.0.1:$API_PORT/api/v1/rooms/$room/play-token"
    curl -sf "$token_url" | grep -q '"token"' || { log "no token from $token_url"; cat "$WORK/api.$workers.log" >&2; exit 1; }
    log "wrk: play tokens, $workers worker(s)"
    RESULT[token.$workers]=$(run_wrk "$pid" "$token_url")
    log "wrk: /healthz, $workers worker(s)"
    RESULT[health.$workers]=$(run_wrk "$pid" "http://127.0.0.1:$ADMIN_PORT/healthz")
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null || true
done

echo
echo "livegate-api play tokens: wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %-10s %11s %8s %7s %11s\n' workers case "requests/s" "p99 ms" "non-2xx" "CPU us/req"
for workers in $WORKERS_LIST; do
    for case in token health; do
        read -r rps p99 n cpu bad <<<"${RESULT[$case.$workers]}"
        awk -v w="$workers" -v c="$case" -v r="$rps" -v p="$p99" -v n="$n" -v cpu="$cpu" -v bad="$bad" 'BEGIN {
            printf "%-8s %-10s %11.0f %8.2f %7d %11.1f\n", w, c, r, p, bad, (n > 0 ? cpu * 1e6 / n : 0) }'
    done
    read -r token_rps _ <<<"${RESULT[token.$workers]}"
    read -r health_rps _ <<<"${RESULT[health.$workers]}"
    awk -v w="$workers" -v t="$token_rps" -v h="$health_rps" 'BEGIN {
        printf "%-8s tokens/s over /healthz req/s: %.2f   (goal: >= 10000 tokens/s)\n", w, t / h }'
done
