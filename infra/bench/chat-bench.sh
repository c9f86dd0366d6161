#!/usr/bin/env bash
# Room chat fan-out: two livegate-api instances (release) on one Redis and one SQLite file,
# CHAT_CLIENTS WebSocket readers of one room spread over both, and publishers (the room's
# owner, through both instances) at CHAT_RATE messages per second in total for
# CHAT_SECONDS, then a burst of CHAT_BURST messages back to back. The load generator
# (chat-load, tests/src/bin/chat-load.rs) runs on the same machine. Prints end-to-end
# delivery latency (p50/p99, goal p99 <= 200 ms), deliveries per second (paced: what
# arrived over the phase, at most the offered rate x readers; burst: the fan-out's
# capacity), lost and duplicated deliveries (goal: none), each instance's memory per idle
# connection (RSS above its idle size once the readers are connected, goal <= 20 KB), the
# instances' CPU per delivered message, and the load average.
#
# Usage: infra/bench/chat-bench.sh
#   10,000 readers (the default):  infra/bench/chat-bench.sh
#   1,000 readers:                 CHAT_CLIENTS=1000 infra/bench/chat-bench.sh
# Environment (defaults in brackets):
#   CHAT_CLIENTS [10000]    readers, half on each instance
#   CHAT_RATE [5]           messages per second, all publishers together
#   CHAT_SECONDS [30]       length of the paced phase
#   CHAT_BURST [200]        messages sent back to back afterwards (0: no burst)
#   CHAT_PUBLISHERS [8]     publisher connections, spread over the instances (the burst
#                           goes through all of them at once: each handles its frames in turn)
#   CHAT_WORKERS [2]        runtime worker threads of each instance (TOKIO_WORKER_THREADS)
#   CHAT_PERF [0]           1: record the first instance with `perf record -g` during the
#                           paced phase and print where its CPU goes
#   BENCH_REDIS_URL [$LIVEGATE_TEST_REDIS_URL or redis://127.0.0.1:6379]  a key prefix of
#                           the run's own is used and removed afterwards
#   CARGO_TARGET_DIR [<workspace>/target]
#   LIVEGATE_BENCH_BIN_DIR  take livegate-api and chat-load from this directory instead of
#                           building them
# Needs: cargo, curl, python3; redis-cli to remove the run's keys; perf for CHAT_PERF=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLIENTS=${CHAT_CLIENTS:-10000}
RATE=${CHAT_RATE:-5}
SECONDS_PACED=${CHAT_SECONDS:-30}
BURST=${CHAT_BURST:-200}
PUBLISHERS=${CHAT_PUBLISHERS:-8}
WORKERS=${CHAT_WORKERS:-2}
PERF=${CHAT_PERF:-0}
REDIS_URL=${BENCH_REDIS_URL:-${LIVEGATE_TEST_REDIS_URL:-redis://127.0.0.1:6379}}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

BENCH_NAME=chat-bench
. "$ROOT/infra/bench/lib.sh"
require_tools cargo curl python3

# Each reader is a descriptor in chat-load and one in an instance.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CLIENTS + 1024)) ]; then
    log "ulimit -n is $(ulimit -n), too low for $CLIENTS readers"
    exit 1
fi

if [ -n "${LIVEGATE_BENCH_BIN_DIR:-}" ]; then
    BIN=$LIVEGATE_BENCH_BIN_DIR
else
    log "building livegate-api and chat-load (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet -p livegate-api -p livegate-tests \
        --bin livegate-api --bin chat-load)
    BIN=$CARGO_TARGET_DIR/release
fi

read -r -a PORTS < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
PREFIX="chatbench:$$:$(date +%s%N)"
remove_keys() {
    command -v redis-cli >/dev/null || return 0
    redis-cli -u "$REDIS_URL" --scan --pattern "$PREFIX:*" | xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null || true
}
trap 'cleanup; remove_keys' EXIT

write_config() { # name port admin_port
    cat >"$WORK/$1.toml" <<CONF
[server]
listen = "127.0.0.1:$2"
admin_listen = "127.0.0.1:$3"
shutdown_grace_ms = 1000
[database]
url = "sqlite:$WORK/api.db"
[bus]
url = "$REDIS_URL"
key_prefix = "$PREFIX"
[auth]
jwt_keys = ["chat-bench-jwt-key-0123456789abcdef0123456789"]
[play_token]
keys = ["chat-bench-play-key"]
# Every reader comes from one address here.
per_address_per_minute = 0
[log]
filter = "warn"
CONF
}

API_PIDS=()
start_instance() { # name port admin_port
    write_config "$@"
    TOKIO_WORKER_THREADS=$WORKERS "$BIN/livegate-api" --config "$WORK/$1.toml" >"$WORK/$1.log" 2>&1 &
    API_PIDS+=($!)
    PIDS+=($!)
    for _ in $(seq 1 200); do
        curl -sf "http://127.0.0.1:$3/readyz" >/dev/null && return 0
        sleep 0.1
    done
    log "$1 did not become ready"
    cat "$WORK/$1.log" >&2
    exit 1
}

# One after the other: the first applies the migrations.
start_instance a "${PORTS[0]}" "${PORTS[1]}"
start_instance b "${PORTS[2]}" "${PORTS[3]}"
API="http://127.0.0.1:${PORTS[0]}/api/v1"
PASSWORD="chat bench password"
json_field() { python3 -c "import json,sys; v=json.load(sys.stdin); print(eval('v' + sys.argv[1]))" "$1"; }
curl -sf "$API/users" -H 'content-type: application/json' \
    -d "{\"username\":\"owner\",\"password\":\"$PASSWORD\",\"role\":\"streamer\"}" >/dev/null
ACCESS=$(curl -sf "$API/sessions" -H 'content-type: application/json' \
    -d "{\"username\":\"owner\",\"password\":\"$PASSWORD\"}" | json_field '["access_token"]')
ROOM=$(curl -sf "$API/rooms" -H 'content-type: application/json' -H "authorization: Bearer $ACCESS" \
    -d '{"title":"chat bench"}' | json_field '["room"]["id"]')
PLAY=$(curl -sf "$API/rooms/$ROOM/play-token" | json_field '["token"]')

PERF_PID=
if [ "$PERF" = 1 ]; then
    require_tools perf
    # Started once the readers are connected (chat-load says so), for the paced phase.
    (
        while ! grep -q '^connected ' "$WORK/load.out" 2>/dev/null; do sleep 0.2; done
        exec perf record -F 199 -g -o "$WORK/perf.data" -p "${API_PIDS[0]}" -- sleep "$SECONDS_PACED"
    ) >"$WORK/perf.log" 2>&1 &
    PERF_PID=$!
fi

log "$CLIENTS readers on room $ROOM over two instances, $PUBLISHERS publishers at $RATE msg/s for $SECONDS_PACED s, then a burst of $BURST"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
"$BIN/chat-load" --url "ws://127.0.0.1:${PORTS[0]}/ws" --url "ws://127.0.0.1:${PORTS[2]}/ws" \
    --room "$ROOM" --reader-token "$PLAY" --publisher-token "$ACCESS" --clients "$CLIENTS" \
    --publishers "$PUBLISHERS" --rate "$RATE" --seconds "$SECONDS_PACED" --burst "$BURST" \
    --api-pid "${API_PIDS[0]}" --api-pid "${API_PIDS[1]}" >"$WORK/load.out" 2>"$WORK/load.err" \
    || { cat "$WORK/load.out" "$WORK/load.err" >&2; log "chat-load failed"; exit 1; }
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "livegate-api chat: $CLIENTS readers of one room on 2 instances (one Redis, $WORKERS worker threads each), $PUBLISHERS publishers at $RATE msg/s for $SECONDS_PACED s, burst of $BURST; chat-load on the same machine; $(nproc) CPUs"
echo "load average before: $LOAD_BEFORE; after: $LOAD_AFTER"
grep -v '^RESULT' "$WORK/load.out"
[ -s "$WORK/load.err" ] && { echo "chat-load said:"; head -n 20 "$WORK/load.err"; }
awk '/^RESULT/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
    printf "goals: p99 %s ms (<= 200) %s; deliveries/s paced %s, burst %s (>= 50000) %s; RSS per idle connection %s KiB (<= 20 KB) %s; lost %s duplicated %s (0) %s\n",
        r["p99_ms"], (r["p99_ms"] <= 200 ? "met" : "MISSED"),
        r["paced_rate"], r["burst_rate"], (r["burst_rate"] >= 50000 || r["paced_rate"] >= 50000 ? "met" : "MISSED"),
        r["kib_per_connection"], (r["kib_per_connection"] * 1024 <= 20000 ? "met" : "MISSED"),
        r["lost"], r["duplicated"], (r["lost"] + r["duplicated"] == 0 ? "met" : "MISSED") }' "$WORK/load.out"
for name in a b; do
    if grep -qE 'WARN|ERROR' "$WORK/$name.log"; then
        echo "instance $name logged (count, level, target, message):"
        sed -nE 's/^[^ ]+ +(WARN|ERROR) ([^ ]+) ([^=]*[^= ]) [a-z_.]+=.*/\1 \2 \3/p; t; s/^[^ ]+ +(WARN|ERROR) (.*)/\1 \2/p' "$WORK/$name.log" \
            | sort | uniq -c | sort -rn | head -n 8
    fi
done
if [ -n "$PERF_PID" ]; then
    wait "$PERF_PID" || true
    echo
    echo "where instance a's CPU went during the paced phase (perf, self time, top 25):"
    perf report -i "$WORK/perf.data" --stdio --no-children --sort symbol 2>/dev/null \
        | grep -E '^ +[0-9]' | head -n 25
fi
