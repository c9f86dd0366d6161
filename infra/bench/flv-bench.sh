#!/usr/bin/env bash
# Concurrent HTTP-FLV viewers through livegate-proxy: a paced origin (flv-origin) loops an
# ffmpeg-made ~2 Mbit/s FLV in real time, the proxy (release) sits in front of it, and flv-load
# pulls the stream with many clients at once. Prints the proxy's peak memory (VmHWM, and the
# largest VmRSS sampled), its CPU time, and the share of clients that received every byte the
# origin paced out to them (see tests/src/bin/flv-load.rs for the exact definition).
#
# Usage: infra/bench/flv-bench.sh
# Environment (defaults in brackets):
#   FLV_CLIENTS [1000]      concurrent viewers
#   FLV_SECONDS [60]        how long each viewer pulls
#   FLV_RAMP_MS [1000]      viewers start spread over this long
#   FLV_VIDEO_KBPS [1936]   video bitrate of the generated stream (plus 64 kbit/s audio)
#   FLV_WORKERS [2]         livegate [server] threads
#   CARGO_TARGET_DIR [<workspace>/target]
#   LIVEGATE_PROXY_BIN        run this proxy binary instead of building the workspace's
# Needs: cargo, ffmpeg, curl, python3.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CLIENTS=${FLV_CLIENTS:-1000}
SECONDS_PER_CLIENT=${FLV_SECONDS:-60}
RAMP_MS=${FLV_RAMP_MS:-1000}
VIDEO_KBPS=${FLV_VIDEO_KBPS:-1936}
WORKERS=${FLV_WORKERS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KEY=livegate-bench-key
ROOM=42

BENCH_NAME=flv-bench
. "$ROOT/infra/bench/lib.sh"
require_tools cargo ffmpeg curl python3

# Every viewer costs the proxy two descriptors and the origin and the load tool one each.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((2 * CLIENTS + 256)) ]; then
    echo "flv-bench: ulimit -n is $(ulimit -n), too low for $CLIENTS clients" >&2
    exit 1
fi


BIN=$CARGO_TARGET_DIR/release
if [ -n "${LIVEGATE_PROXY_BIN:-}" ]; then
    log "building flv-origin and flv-load (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet -p livegate-tests --bin flv-origin --bin flv-load)
    PROXY_BIN=$LIVEGATE_PROXY_BIN
else
    log "building livegate-proxy, flv-origin and flv-load (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet -p livegate-proxy -p livegate-tests \
        --bin livegate-proxy --bin flv-origin --bin flv-load)
    PROXY_BIN=$BIN/livegate-proxy
fi

# --- origin ----------------------------------------------------------------------------------
log "making the stream and starting the paced origin"
"$BIN/flv-origin" --file "$WORK/stream.flv" --video-kbps "$VIDEO_KBPS" >"$WORK/origin.out" \
    2>"$WORK/origin.err" &
PIDS+=($!)
ORIGIN_ADDR=
for _ in $(seq 1 600); do
    ORIGIN_ADDR=$(awk '/^listening /{print $2}' "$WORK/origin.out")
    [ -n "$ORIGIN_ADDR" ] && break
    sleep 0.1
done
[ -n "$ORIGIN_ADDR" ] || { log "origin did not start"; cat "$WORK/origin.err" >&2; exit 1; }

# --- proxy -----------------------------------------------------------------------------------
read -r LG_PORT ADMIN_PORT < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
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
addresses = ["$ORIGIN_ADDR"]

[token]
keys = ["$KEY"]

[log]
filter = "warn"
CONF
"$PROXY_BIN" --config "$WORK/livegate.toml" >"$WORK/livegate.log" 2>&1 &
PROXY_PID=$!
PIDS+=($PROXY_PID)

TOKEN=$(python3 - "$KEY" "$ROOM" "$SECONDS_PER_CLIENT" <<'PY'
import base64, hmac, sys, time
key, room, seconds = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
message = f"{room}|{int(time.time()) + seconds + 3600}"
sig = hmac.new(key, message.encode(), "sha256").hexdigest()
print(base64.urlsafe_b64encode(f"{message}|{sig}".encode()).rstrip(b"=").decode())
PY
)
URL="http://127.0.0.1:$LG_PORT/live/$ROOM.flv?token=$TOKEN"
code=000
for _ in $(seq 1 100); do
    code=$(curl -s -m 1 -o /dev/null -w '%{http_code}' "$URL" || true)
    [ "$code" = 200 ] && break
    sleep 0.1
done
[ "$code" = 200 ] || { log "proxy answered $code"; cat "$WORK/livegate.log" >&2; exit 1; }

# --- load and memory sampling ----------------------------------------------------------------
status_kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$PROXY_PID/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PROXY_PID/stat"; }
IDLE_RSS_KB=$(status_kb VmRSS)
(
    peak=0
    while kill -0 "$PROXY_PID" 2>/dev/null; do
        rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$PROXY_PID/status" 2>/dev/null || echo 0)
        [ "${rss:-0}" -gt "$peak" ] && peak=$rss && echo "$peak" >"$WORK/peak_rss"
        sleep 0.2
    done
) &
PIDS+=($!)

log "pulling with $CLIENTS clients for $SECONDS_PER_CLIENT s (origin $ORIGIN_ADDR, proxy 127.0.0.1:$LG_PORT, $WORKERS threads)"
CPU_BEFORE=$(cpu_ticks)
WALL_BEFORE=$(date +%s.%N)
"$BIN/flv-load" --url "$URL" --file "$WORK/stream.flv" --clients "$CLIENTS" \
    --seconds "$SECONDS_PER_CLIENT" --ramp-ms "$RAMP_MS" | tee "$WORK/load.out"
WALL_AFTER=$(date +%s.%N)
CPU_AFTER=$(cpu_ticks)
HWM_KB=$(status_kb VmHWM)
END_RSS_KB=$(status_kb VmRSS)
PEAK_RSS_KB=$(cat "$WORK/peak_rss" 2>/dev/null || echo 0)
TICKS=$(getconf CLK_TCK)

RESULT=$(grep '^RESULT' "$WORK/load.out")
share=$(sed -E 's/.*share_pct=([0-9.]+).*/\1/' <<<"$RESULT")
complete=$(sed -E 's/.*complete=([0-9]+).*/\1/' <<<"$RESULT")
clients=$(sed -E 's/.*clients=([0-9]+).*/\1/' <<<"$RESULT")

echo
echo "livegate-proxy, $CLIENTS FLV viewers x ${SECONDS_PER_CLIENT} s, $WORKERS threads, $(nproc) CPUs"
awk -v hwm="$HWM_KB" -v peak="$PEAK_RSS_KB" -v idle="$IDLE_RSS_KB" -v end="$END_RSS_KB" \
    'BEGIN { printf "proxy memory: peak (VmHWM) %.1f MB, largest sampled VmRSS %.1f MB, idle %.1f MB, after the load %.1f MB  (goal < 100 MB)\n", hwm/1024, peak/1024, idle/1024, end/1024 }'
awk -v a="$CPU_BEFORE" -v b="$CPU_AFTER" -v t="$TICKS" -v w0="$WALL_BEFORE" -v w1="$WALL_AFTER" \
    'BEGIN { cpu = (b - a) / t; printf "proxy CPU: %.1f s over %.1f s (%.0f%% of one core)\n", cpu, w1 - w0, 100 * cpu / (w1 - w0) }'
echo "complete clients: $complete/$clients ($share%)"
