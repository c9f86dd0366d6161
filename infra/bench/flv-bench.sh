#!/usr/bin/env bash
# HTTP-FLV through livegate-proxy: a paced origin (flv-origin) loops an ffmpeg-made FLV in real
# time and the proxy (release) sits in front of it, fanning one origin pull out to every viewer.
#
# Modes (first argument, default `load`):
#   load  flv-load pulls the stream with many clients at once. Prints the origin's own count of
#         connections (at most one at a time is the goal: one pull per stream), the proxy's peak
#         memory (VmHWM, and the largest VmRSS sampled) in total and per viewer above its idle
#         size, its CPU time, and the share of clients that received every byte the origin
#         paced out to them, one GOP excepted (see tests/src/bin/flv-load.rs for the exact
#         definition).
#   join  with the origin in live mode (each connection joins the running stream mid-GOP, as at
#         a live origin without a GOP cache) and one viewer already pulling, flv-join connects
#         FLV_JOINS viewers one at a time at random moments and measures the time to the first
#         keyframe tag (sequence header included) and to the first coded keyframe, through the
#         proxy and, as the baseline, at the origin directly.
#   all   both.
#
# With LIVEGATE_PROXY_BASELINE_BIN set, each mode runs twice in the same invocation — first that
# proxy binary (the baseline, say the build before a change), then the one under test — each
# with a fresh origin and proxy, and ends with the two side by side and their ratios.
#
# Usage: infra/bench/flv-bench.sh [load|join|all]
#   1,000 viewers of ~2 Mbit/s (the default):   infra/bench/flv-bench.sh
#   10,000 viewers of ~500 kbit/s:              FLV_CLIENTS=10000 FLV_VIDEO_KBPS=436 FLV_RAMP_MS=5000 infra/bench/flv-bench.sh
# Environment (defaults in brackets):
#   FLV_CLIENTS [1000]      concurrent viewers
#   FLV_SECONDS [60]        how long each viewer pulls
#   FLV_RAMP_MS [1000]      viewers start spread over this long
#   FLV_VIDEO_KBPS [1936]   video bitrate of the generated stream (plus 64 kbit/s audio)
#   FLV_WORKERS [2]         livegate [server] threads
#   FLV_FORWARD_TOKEN [true]  livegate [token] forward_to_origin, the proxy's default (the pull
#                           then carries a token of the proxy's own; flv-origin checks none)
#   FLV_JOINS [20]          joins per target in `join` mode
#   FLV_JOIN_PAUSE_MS [2500] longest random pause before each join (at least a GOP: 2 s)
#   CARGO_TARGET_DIR [<workspace>/target]
#   LIVEGATE_PROXY_BIN        run this proxy binary instead of building the workspace's
#   LIVEGATE_PROXY_BASELINE_BIN  also run this proxy binary, first, as the baseline
#   LIVEGATE_BENCH_BIN_DIR    take flv-origin, flv-load and flv-join from this directory
#                             instead of building them (with LIVEGATE_PROXY_BIN: no build)
#   FLV_ROUNDS [1]          with a baseline: baseline and candidate runs, alternating, this many
#                           times each (machines shared with other work drift between runs)
#   FLV_SAMPLE_S [2]        seconds between samples of the sockets' queues (ss) during `load`
# Needs: cargo, ffmpeg, curl, python3, ss (iproute2).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=${1:-load}
case "$MODE" in
    load | join | all) ;;
    *) echo "usage: $0 [load|join|all]" >&2; exit 2 ;;
esac
CLIENTS=${FLV_CLIENTS:-1000}
SECONDS_PER_CLIENT=${FLV_SECONDS:-60}
RAMP_MS=${FLV_RAMP_MS:-1000}
VIDEO_KBPS=${FLV_VIDEO_KBPS:-1936}
WORKERS=${FLV_WORKERS:-2}
FORWARD_TOKEN=${FLV_FORWARD_TOKEN:-true}
JOINS=${FLV_JOINS:-20}
JOIN_PAUSE_MS=${FLV_JOIN_PAUSE_MS:-2500}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
KEY=livegate-bench-key
ROOM=42

BENCH_NAME=flv-bench
. "$ROOT/infra/bench/lib.sh"
require_tools cargo ffmpeg curl python3 ss
SAMPLE_S=${FLV_SAMPLE_S:-2}
ROUNDS=${FLV_ROUNDS:-1}
BASELINE_BIN=${LIVEGATE_PROXY_BASELINE_BIN:-}

# Every viewer costs the proxy one descriptor (the origin pull is one for all of them) and the
# load tool one; each process has the limit to itself.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CLIENTS + 256)) ]; then
    echo "flv-bench: ulimit -n is $(ulimit -n), too low for $CLIENTS clients" >&2
    exit 1
fi

BIN=${LIVEGATE_BENCH_BIN_DIR:-$CARGO_TARGET_DIR/release}
if [ -n "${LIVEGATE_PROXY_BIN:-}" ] && [ -n "${LIVEGATE_BENCH_BIN_DIR:-}" ]; then
    PROXY_BIN=$LIVEGATE_PROXY_BIN
elif [ -n "${LIVEGATE_PROXY_BIN:-}" ]; then
    log "building flv-origin, flv-load and flv-join (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet -p livegate-tests --bin flv-origin --bin flv-load \
        --bin flv-join)
    PROXY_BIN=$LIVEGATE_PROXY_BIN
else
    log "building livegate-proxy, flv-origin, flv-load and flv-join (release) in $CARGO_TARGET_DIR"
    (cd "$ROOT" && cargo build --release --quiet -p livegate-proxy -p livegate-tests \
        --bin livegate-proxy --bin flv-origin --bin flv-load --bin flv-join)
    PROXY_BIN=$BIN/livegate-proxy
fi

# --- origin and proxy ------------------------------------------------------------------------
ORIGIN_PID=
PROXY_PID=
start_origin() { # [--live]
    log "starting the paced origin $*"
    "$BIN/flv-origin" --file "$WORK/stream.flv" --video-kbps "$VIDEO_KBPS" "$@" \
        >"$WORK/origin.out" 2>"$WORK/origin.err" &
    ORIGIN_PID=$!
    PIDS+=($!)
    ORIGIN_ADDR=
    # The first start makes the stream with ffmpeg, which takes a while.
    for _ in $(seq 1 1200); do
        ORIGIN_ADDR=$(awk '/^listening /{print $2}' "$WORK/origin.out")
        [ -n "$ORIGIN_ADDR" ] && break
        sleep 0.1
    done
    [ -n "$ORIGIN_ADDR" ] || { log "origin did not start"; cat "$WORK/origin.err" >&2; exit 1; }
}

# The origin's own count of FLV responses (pulls), "open peak total", asked for with SIGUSR1.
# (Its TCP connection count also has the proxy's health checks, which connect and leave.)
origin_connections() {
    local lines
    lines=$(grep -c '^connections ' "$WORK/origin.out" || true)
    kill -USR1 "$ORIGIN_PID"
    for _ in $(seq 1 50); do
        [ "$(grep -c '^connections ' "$WORK/origin.out" || true)" -gt "$lines" ] && break
        sleep 0.1
    done
    grep '^connections ' "$WORK/origin.out" | tail -n 1 \
        | sed -E 's/.* streams_open=([0-9]+) streams_peak=([0-9]+) streams=([0-9]+).*/\1 \2 \3/'
}

start_proxy() { # binary
    local bin=$1 ports code=000
    read -r -a ports < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
PY
)
    LG_PORT=${ports[0]}
    ADMIN_PORT=${ports[1]}
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
listen = "127.0.0.1:${ports[1]}"

[origin]
addresses = ["$ORIGIN_ADDR"]

[token]
keys = ["$KEY"]
forward_to_origin = $FORWARD_TOKEN

[log]
filter = "warn"
CONF
    "$bin" --config "$WORK/livegate.toml" >"$WORK/livegate.log" 2>&1 &
    PROXY_PID=$!
    PIDS+=($PROXY_PID)
    URL="http://127.0.0.1:$LG_PORT/live/$ROOM.flv?token=$TOKEN"
    ORIGIN_URL="http://$ORIGIN_ADDR/live/$ROOM.flv"
    for _ in $(seq 1 100); do
        code=$(curl -s -m 1 -o /dev/null -w '%{http_code}' "$URL" || true)
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || { log "proxy answered $code"; cat "$WORK/livegate.log" >&2; exit 1; }
}

stop_all() {
    kill -TERM "$PROXY_PID" "$ORIGIN_PID" 2>/dev/null || true
    wait "$PROXY_PID" "$ORIGIN_PID" 2>/dev/null || true
}

TOKEN=$(python3 - "$KEY" "$ROOM" "$SECONDS_PER_CLIENT" <<'PY'
import base64, hmac, sys, time
key, room, seconds = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3])
message = f"{room}|{int(time.time()) + seconds + 3600}"
sig = hmac.new(key, message.encode(), "sha256").hexdigest()
print(base64.urlsafe_b64encode(f"{message}|{sig}".encode()).rstrip(b"=").decode())
PY
)
TICKS=$(getconf CLK_TCK)
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
system_ticks() { awk '{print $15}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# Busy and total jiffies of the whole machine (all CPUs), for the share other work took.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }

# Once every SAMPLE_S seconds until the proxy ends, the most bytes waiting in the kernel: unread
# by the clients (their sockets' receive queues), not yet taken by the clients (the proxy's send
# queues towards them) and unread by the proxy at its origin pull. A proxy that falls behind
# leaves the pull unread; clients that fall behind leave their own sockets full.
sample_queues() { # out-file
    local out=$1 client_recv proxy_send pull_recv
    local max_client=0 max_send=0 max_pull=0
    while kill -0 "$PROXY_PID" 2>/dev/null; do
        client_recv=$(ss -tnH state established "( dport = :$LG_PORT )" 2>/dev/null \
            | awk '{s += $1} END {print s + 0}')
        proxy_send=$(ss -tnH state established "( sport = :$LG_PORT )" 2>/dev/null \
            | awk '{s += $2} END {print s + 0}')
        pull_recv=$(ss -tnH state established "( dport = :${ORIGIN_ADDR##*:} )" 2>/dev/null \
            | awk '{s += $1} END {print s + 0}')
        [ "$client_recv" -gt "$max_client" ] && max_client=$client_recv
        [ "$proxy_send" -gt "$max_send" ] && max_send=$proxy_send
        [ "$pull_recv" -gt "$max_pull" ] && max_pull=$pull_recv
        echo "$max_client $max_send $max_pull" >"$out"
        sleep "$SAMPLE_S"
    done
}

# --- load ------------------------------------------------------------------------------------
# One load run against proxy binary $2, labelled $1; its summary goes to stdout and its figures
# to $WORK/result.$1 (for the comparison).
load_mode() { # label binary
    local label=$1 bin=$2
    local idle_kb hwm_kb end_kb peak_kb cpu_before cpu_after origin_before origin_after
    local wall_before wall_after load_before sampler queues mid load_pid load_hwm_kb load_cpu
    local machine_before machine_after sample sys_before sys_after
    start_origin
    start_proxy "$bin"
    idle_kb=$(status_kb "$PROXY_PID" VmRSS)
    (
        peak=0
        while kill -0 "$PROXY_PID" 2>/dev/null; do
            rss=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$PROXY_PID/status" 2>/dev/null || echo 0)
            [ "${rss:-0}" -gt "$peak" ] && peak=$rss && echo "$peak" >"$WORK/peak_rss"
            sleep 0.2
        done
    ) &
    sampler=$!
    PIDS+=($sampler)
    rm -f "$WORK/peak_rss" "$WORK/queues"
    sample_queues "$WORK/queues" &
    queues=$!
    PIDS+=($queues)

    log "$label ($bin): pulling with $CLIENTS clients for $SECONDS_PER_CLIENT s (origin $ORIGIN_ADDR, proxy 127.0.0.1:$LG_PORT, $WORKERS threads)"
    load_before=$(load_avg)
    cpu_before=$(cpu_ticks "$PROXY_PID")
    sys_before=$(system_ticks "$PROXY_PID")
    origin_before=$(cpu_ticks "$ORIGIN_PID")
    read -r -a machine_before < <(machine_ticks)
    wall_before=$(date +%s.%N)
    # Half-way through, the origin says how many connections it has open at that moment.
    (sleep $((SECONDS_PER_CLIENT / 2 + 1)) && origin_connections >"$WORK/origin_mid") &
    mid=$!
    "$BIN/flv-load" --url "$URL" --file "$WORK/stream.flv" --clients "$CLIENTS" \
        --seconds "$SECONDS_PER_CLIENT" --ramp-ms "$RAMP_MS" >"$WORK/load.out" 2>&1 &
    load_pid=$!
    # The load tool's own footprint, sampled until it ends (it shares the machine).
    load_hwm_kb=0
    load_cpu=0
    while kill -0 "$load_pid" 2>/dev/null; do
        # A sample taken as the tool exits reads nothing: keep the last good one.
        sample=$(status_kb "$load_pid" VmHWM 2>/dev/null || true)
        [ -n "$sample" ] && load_hwm_kb=$sample
        sample=$(cpu_ticks "$load_pid" 2>/dev/null || true)
        [ -n "$sample" ] && load_cpu=$sample
        sleep 1
    done
    wait "$load_pid" || { cat "$WORK/load.out" >&2; log "flv-load failed"; exit 1; }
    wall_after=$(date +%s.%N)
    cpu_after=$(cpu_ticks "$PROXY_PID")
    sys_after=$(system_ticks "$PROXY_PID")
    origin_after=$(cpu_ticks "$ORIGIN_PID")
    read -r -a machine_after < <(machine_ticks)
    local load_after
    load_after=$(load_avg)
    wait "$mid" || true
    hwm_kb=$(status_kb "$PROXY_PID" VmHWM)
    end_kb=$(status_kb "$PROXY_PID" VmRSS)
    peak_kb=$(cat "$WORK/peak_rss" 2>/dev/null || echo 0)
    kill "$sampler" 2>/dev/null || true
    # The proxy's own view: tags it dropped for viewers that fell behind, viewers it cut.
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" \
        | grep -E '^[a-z_]*flv_(tags_dropped|viewers_cut|pulls_active)' >"$WORK/metrics" || true
    local connections mid_open result share complete clients open peak accepted late_max late_total
    local q_client q_send q_pull
    connections=$(origin_connections)
    mid_open=$(cut -d' ' -f1 "$WORK/origin_mid" 2>/dev/null || echo '?')
    read -r q_client q_send q_pull <"$WORK/queues" 2>/dev/null || true
    cat "$WORK/load.out"
    result=$(grep '^RESULT' "$WORK/load.out")
    share=$(sed -E 's/.*share_pct=([0-9.]+).*/\1/' <<<"$result")
    complete=$(sed -E 's/.*complete=([0-9]+).*/\1/' <<<"$result")
    clients=$(sed -E 's/.*clients=([0-9]+).*/\1/' <<<"$result")
    late_max=$(sed -E 's/.*late_max_ms=([0-9]+).*/\1/' <<<"$result")
    late_total=$(sed -E 's/.*late_total_ms=([0-9]+).*/\1/' <<<"$result")
    read -r open peak accepted <<<"$connections"

    echo
    echo "[$label] livegate-proxy $bin"
    echo "[$label] $CLIENTS FLV viewers x ${SECONDS_PER_CLIENT} s of $(awk '/^bitrate_bps/{printf "%.2f", $2 / 1e6}' "$WORK/origin.out") Mbit/s, ramp $RAMP_MS ms, $WORKERS threads, forward_to_origin = $FORWARD_TOKEN, $(nproc) CPUs"
    echo "[$label] load average before: $load_before; after: $load_after"
    echo "[$label] origin pulls (FLV responses, the origin's own count): $mid_open open half-way, $open at the end, at most $peak at once, $accepted in all (goal: 1)"
    awk -v hwm="$hwm_kb" -v peak="$peak_kb" -v idle="$idle_kb" -v end="$end_kb" -v n="$CLIENTS" -v l="$label" \
        'BEGIN { printf "[%s] proxy memory: peak (VmHWM) %.1f MB, largest sampled VmRSS %.1f MB, idle %.1f MB, after the load %.1f MB\n", l, hwm/1024, peak/1024, idle/1024, end/1024
                 printf "[%s] proxy memory per viewer: %.1f KB (VmHWM above idle; goal < 30 KB), %.1f KB (all of VmHWM)\n", l, (hwm - idle) / n, hwm / n }'
    local other_pct
    other_pct=$(awk -v a="$cpu_before" -v b="$cpu_after" -v oa="$origin_before" -v ob="$origin_after" \
        -v lc="$load_cpu" -v t="$TICKS" -v w0="$wall_before" -v w1="$wall_after" \
        -v mb0="${machine_before[0]}" -v mb1="${machine_after[0]}" \
        'BEGIN { printf "%.0f", 100 * ((mb1 - mb0) - (b - a) - (ob - oa) - lc) / t / (w1 - w0) }')
    awk -v a="$cpu_before" -v b="$cpu_after" -v sa="$sys_before" -v sb="$sys_after" \
        -v oa="$origin_before" -v ob="$origin_after" \
        -v lc="$load_cpu" -v lm="$load_hwm_kb" -v t="$TICKS" -v w0="$wall_before" -v w1="$wall_after" \
        -v mb0="${machine_before[0]}" -v mt0="${machine_before[1]}" -v mb1="${machine_after[0]}" \
        -v mt1="${machine_after[1]}" -v cpus="$(nproc)" -v l="$label" \
        'BEGIN { cpu = (b - a) / t; w = w1 - w0; origin = (ob - oa) / t; load = lc / t
                 busy = (mb1 - mb0) / t; total = (mt1 - mt0) / t
                 printf "[%s] proxy CPU: %.1f s over %.1f s (%.0f%% of one core; %.1f s of it in the kernel)\n", l, cpu, w, 100 * cpu / w, (sb - sa) / t
                 printf "[%s] on the same machine: origin CPU %.1f s; flv-load CPU %.1f s (%.0f%% of one core), peak memory %.1f MB\n", l, origin, load, 100 * load / w, lm / 1024
                 printf "[%s] machine: %.0f%% of its %d cores busy; other work (not proxy, origin, flv-load) %.1f s (%.0f%% of one core)\n", l, 100 * busy / total, cpus, busy - cpu - origin - load, 100 * (busy - cpu - origin - load) / w }'
    echo "[$label] flv-load lateness: latest wake ${late_max} ms late, ${late_total} ms more than 50 ms late in all"
    echo "[$label] bytes waiting in the kernel, most of the samples every ${SAMPLE_S} s: unread by the clients ${q_client:-?}, in the proxy's send queues ${q_send:-?}, unread by the proxy at its pull ${q_pull:-?}"
    echo "[$label] complete clients: $complete/$clients ($share%)"
    echo "[$label] proxy metrics: $(tr '\n' ' ' <"$WORK/metrics")"
    # For the comparison: KB per viewer, peak MB, proxy CPU %, flv-load CPU %, complete clients,
    # other work's CPU %, flv-load's time more than 50 ms late (s) | load before | load after.
    awk -v hwm="$hwm_kb" -v idle="$idle_kb" -v n="$CLIENTS" -v a="$cpu_before" -v b="$cpu_after" \
        -v t="$TICKS" -v w0="$wall_before" -v w1="$wall_after" -v lc="$load_cpu" \
        -v c="$complete" -v other="$other_pct" -v late="$late_total" \
        'BEGIN { printf "%.1f %.1f %.1f %.1f %s %s %.1f", (hwm - idle) / n, hwm / 1024,
                 100 * (b - a) / t / (w1 - w0), 100 * lc / t / (w1 - w0), c, other, late / 1000 }' \
        >"$WORK/result.$label"
    echo "|$load_before|$load_after" >>"$WORK/result.$label"
    stop_all
    kill "$queues" 2>/dev/null || true
}

# The runs side by side: memory per viewer, peak, proxy CPU, flv-load CPU, completeness; the
# ratio row compares the candidate's means with the baseline's.
compare_load() {
    local file row
    echo
    echo "baseline vs candidate, $CLIENTS viewers x ${SECONDS_PER_CLIENT} s, $ROUNDS round(s) alternating (the ratio row: candidate / baseline, means):"
    printf '%-12s %8s %8s %10s %10s %12s %9s %9s  %s\n' run "KB/view" "peak MB" "proxy CPU%" "load CPU%" "complete" "other %" "late s" "load average before | after"
    for file in "$WORK"/result.*; do
        read -r -a row < <(cut -d'|' -f1 "$file")
        printf '%-12s %8s %8s %10s %10s %12s %9s %9s  %s | %s\n' "${file##*/result.}" "${row[0]}" \
            "${row[1]}" "${row[2]}" "${row[3]}" "${row[4]}/$CLIENTS" "${row[5]}" "${row[6]}" \
            "$(cut -d'|' -f2 "$file")" "$(cut -d'|' -f3 "$file")"
    done
    (cd "$WORK" && for file in result.*; do echo "$file $(cut -d'|' -f1 "$file")"; done) | awk '
        { label = $1; sub(/^result\./, "", label); sub(/-[0-9]+$/, "", label)
          n[label]++; for (i = 2; i <= 6; i++) sum[label, i] += $i }
        function r(i) { b = sum["baseline", i] / n["baseline"]; c = sum["candidate", i] / n["candidate"]
                        return b > 0 ? sprintf("%.2fx", c / b) : "-" }
        END { if (n["baseline"] && n["candidate"])
                  printf "%-12s %8s %8s %10s %10s %12s\n", "ratio", r(2), r(3), r(4), r(5), r(6) }'
}

# --- join latency ----------------------------------------------------------------------------
join_mode() { # label binary
    local run=$1 bin=$2 label url
    start_origin --live
    start_proxy "$bin"
    for label in origin livegate; do
        if [ "$label" = origin ]; then url=$ORIGIN_URL; else url=$URL; fi
        log "$JOINS joins at $label, one at a time, each after a random pause of up to $JOIN_PAUSE_MS ms"
        "$BIN/flv-join" --url "$url" --joins "$JOINS" --max-pause-ms "$JOIN_PAUSE_MS" \
            --label "$label" >"$WORK/join.$label" 2>&1 || { cat "$WORK/join.$label" >&2; exit 1; }
        load_avg >"$WORK/join-load.$label"
        origin_connections >"$WORK/join-origin.$label"
    done
    for label in origin livegate; do
        grep -q 'failures=0' "$WORK/join.$label" \
            || { log "$label: some joins failed"; cat "$WORK/join.$label" >&2; }
    done
    echo
    echo "[$run] livegate-proxy $bin"
    echo "join to keyframe: $JOINS joins per target while one viewer pulls, random pauses up to $JOIN_PAUSE_MS ms, $WORKERS proxy threads, forward_to_origin = $FORWARD_TOKEN, $(nproc) CPUs"
    echo "origin: flv-origin --live (joins the running stream mid-GOP: header, metadata and sequence headers at once, then frames from now on, no GOP cache)"
    echo "ms from sending the request to the first byte of: the body, the first video keyframe tag (AVC sequence header included), the first coded keyframe"
    printf '%-9s %5s %9s %9s %12s %9s %13s %9s  %s\n' target joins "body md" "p95" \
        "keyframe md" "p95" "coded kf md" "p95" "load after"
    for label in origin livegate; do
        awk -v la="$(cat "$WORK/join-load.$label")" '/^RESULT/ {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] }
            printf "%-9s %5s %9s %9s %12s %9s %13s %9s  %s\n", r["label"], r["joins"],
                r["first_byte_median_ms"], r["first_byte_p95_ms"], r["keyframe_median_ms"],
                r["keyframe_p95_ms"], r["coded_keyframe_median_ms"], r["coded_keyframe_p95_ms"],
                la }' "$WORK/join.$label"
    done
    read -r _ peak accepted <"$WORK/join-origin.origin"
    read -r _ peak2 accepted2 <"$WORK/join-origin.livegate"
    echo "origin pulls (FLV responses, its own count): $accepted after the direct joins (the holder, $JOINS joins and the start-up check through the proxy), $((accepted2 - accepted)) more during the joins through livegate (goal: 1, the holder's), at most $peak2 at once in all"
    echo "goal: livegate's first coded keyframe < 50 ms"
    stop_all
}

# Each mode against the baseline first (when given), then the proxy under test.
run_mode() { # load|join
    local round
    if [ -n "$BASELINE_BIN" ]; then
        rm -f "$WORK"/result.*
        for round in $(seq 1 "$ROUNDS"); do
            "$1_mode" "baseline-$round" "$BASELINE_BIN"
            "$1_mode" "candidate-$round" "$PROXY_BIN"
        done
        [ "$1" = load ] && compare_load
    else
        "$1_mode" candidate "$PROXY_BIN"
    fi
    return 0
}

case "$MODE" in
    load) run_mode load ;;
    join) run_mode join ;;
    all) run_mode load; run_mode join ;;
esac
