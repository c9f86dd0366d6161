#!/usr/bin/env bash
# livegate-recorder against a plain pipeline, and under SIGKILL, on s3s-fs on loopback.
#
#   throughput  A one-hour-equivalent recording (about 1.3 GB of FLV at 3 Mbit/s: a minute
#               encoded once, looped with -stream_loop and -c copy, cached) and a half-hour
#               one. Per file: the recorder's wall time from start to "cleaned" (remux,
#               checksum, poster, multipart upload, confirmation) against
#               `ffmpeg -c copy -movflags +faststart` plus a plain `curl` PUT of its result to
#               the same server (goal: at most 1.2x), and the recorder's peak RSS (VmHWM;
#               goal: at most 64 MiB + 2 parts, flat in the file size). Also the CPU seconds of
#               each side (ffmpeg and curl; the recorder with its ffmpeg; s3s-fs during each),
#               where the recorder's time went, and the load average before and after.
#   kill        BENCH_TRIALS recordings of about 500 MB, each with the recorder killed with
#               SIGKILL at a random moment of its clean run time and restarted: every
#               recording must end exactly once in the bucket, byte-identical to a clean run,
#               with no multipart upload left, and the killed recorder's ffmpeg must die with
#               it. Prints the tally.
#   all         both (the default).
#
# Usage: infra/bench/recorder-bench.sh [throughput|kill|all]
# Environment (defaults in brackets):
#   BENCH_CACHE [/var/tmp/livegate-bench-cache/recorder]  where generated recordings are kept
#   BENCH_TRIALS [50]          SIGKILL trials
#   BENCH_PART_MIB [16]        multipart part size
#   BENCH_PARTS_IN_FLIGHT [2]  parts of one upload sent at once (storage.s3.parts_in_flight)
#   LIVEGATE_TEST_S3S_BIN [/var/tmp/s3s/bin/s3s-fs]
#   CARGO_TARGET_DIR [<workspace>/target]
# Needs: cargo, ffmpeg, ffprobe, curl (with --aws-sigv4), sqlite3 or python3, sha256sum.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=${1:-all}
CACHE=${BENCH_CACHE:-/var/tmp/livegate-bench-cache/recorder}
TRIALS=${BENCH_TRIALS:-50}
PART_MIB=${BENCH_PART_MIB:-16}
PARTS_IN_FLIGHT=${BENCH_PARTS_IN_FLIGHT:-2}
S3S_BIN=${LIVEGATE_TEST_S3S_BIN:-/var/tmp/s3s/bin/s3s-fs}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

BENCH_NAME=recorder-bench
. "$ROOT/infra/bench/lib.sh"
require_tools cargo ffmpeg ffprobe curl python3 sha256sum
[ -x "$S3S_BIN" ] || { log "s3s-fs is required at $S3S_BIN (LIVEGATE_TEST_S3S_BIN)"; exit 1; }

ACCESS=AKIDLIVEGATEBENCH
SECRET=livegate-bench-secret-0123456789
BUCKET=recordings

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

log "building livegate-recorder (release) in $CARGO_TARGET_DIR"
(cd "$ROOT" && cargo build --release --quiet -p livegate-recorder)
RECORDER=$CARGO_TARGET_DIR/release/livegate-recorder

# --- recordings, generated once --------------------------------------------------------------
mkdir -p "$CACHE"
minute=$CACHE/minute-3mbit.flv
if [ ! -s "$minute" ]; then
    log "encoding one minute of test pattern at 3 Mbit/s (once)"
    ffmpeg -hide_banner -loglevel error -nostdin -y \
        -f lavfi -i testsrc2=size=1280x720:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
        -t 60 -c:v libx264 -preset ultrafast -g 50 -pix_fmt yuv420p \
        -b:v 2900k -minrate 2900k -maxrate 2900k -bufsize 5800k -c:a aac -b:a 96k \
        -f flv "$minute.part" && mv "$minute.part" "$minute"
fi
looped() { # minutes -> path
    local path=$CACHE/looped-$1min.flv
    if [ ! -s "$path" ]; then
        log "looping the minute into $1 minutes (once)"
        ffmpeg -hide_banner -loglevel error -nostdin -y -stream_loop $(($1 - 1)) -i "$minute" \
            -c copy -f flv "$path.part" && mv "$path.part" "$path"
    fi
    echo "$path"
}

# --- s3s-fs ----------------------------------------------------------------------------------
S3_DIR=$WORK/s3
S3_PORT=$(free_port)
mkdir -p "$S3_DIR"
"$S3S_BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key "$ACCESS" --secret-key "$SECRET" \
    "$S3_DIR" >"$WORK/s3s.log" 2>&1 &
S3S_PID=$!
PIDS+=("$S3S_PID")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && break; sleep 0.1; done
s3() { # METHOD PATH [curl args...]
    local method=$1 path=$2
    shift 2
    curl -sf -X "$method" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS:$SECRET" \
        "http://127.0.0.1:$S3_PORT/$path" "$@"
}
s3 PUT "$BUCKET" -o /dev/null
open_uploads() { find "$S3_DIR" -maxdepth 1 -name '.upload-*.json' | wc -l; }

# --- the recorder ----------------------------------------------------------------------------
# recorder_config DIR ADMIN_PORT: a configuration watching DIR/rec.
recorder_config() {
    local dir=$1 admin=$2
    mkdir -p "$dir/rec" "$dir/work" "$dir/failed"
    cat >"$dir/recorder.toml" <<EOF
[server]
admin_listen = "127.0.0.1:$admin"
shutdown_grace_ms = 2000
[database]
url = "sqlite:$dir/recorder.db"
[watch]
dirs = ["$dir/rec"]
quiet_period_ms = 200
abandoned_after_ms = 600000
check_interval_ms = 50
[jobs]
workers = 1
lease_ms = 3000
poll_interval_ms = 50
retry_initial_ms = 100
retry_max_ms = 1000
instance = "bench"
[remux]
work_dir = "$dir/work"
failed_dir = "$dir/failed"
[storage]
kind = "s3"
[storage.s3]
endpoint = "http://127.0.0.1:$S3_PORT"
bucket = "$BUCKET"
access_key = "$ACCESS"
secret_key = "$SECRET"
part_size_bytes = $((PART_MIB * 1024 * 1024))
parts_in_flight = $PARTS_IN_FLIGHT
key_prefix = "$(basename "$dir")/"
[pictures.snapshots]
enabled = false
[log]
format = "json"
filter = "info"
EOF
}

cleaned_count() { # ADMIN_PORT
    curl -s "http://127.0.0.1:$1/metrics" 2>/dev/null |
        awk '/^livegate_recorder_attempts_total\{outcome="cleaned"\}/ {print $2; found=1} END {if (!found) print 0}'
}

# run_recorder DIR -> starts it, sets REC_PID
run_recorder() {
    "$RECORDER" --config "$1/recorder.toml" >>"$1/recorder.log" 2>&1 &
    REC_PID=$!
    PIDS+=("$REC_PID")
}

now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
# CPU seconds a process has used, with the children it has waited for (the recorder's ffmpeg).
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"; }
sub() { python3 -c "print(f'{$1 - $2:.2f}')"; }

# timed CMD...: runs CMD and prints "WALL CPU" (seconds; CPU of CMD and its children).
timed() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys, time
before = resource.getrusage(resource.RUSAGE_CHILDREN)
started = time.monotonic()
subprocess.run(sys.argv[1:], check=True)
wall = time.monotonic() - started
after = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(f"{wall:.2f} {cpu:.2f}")
PY
}

# phases DIR STARTED: where the recorder's time went, from its log and metrics.
phases() {
    python3 - "$1/recorder.log" "$1/metrics.txt" "$2" <<'PY'
import datetime, json, sys
log, metrics, started = sys.argv[1], sys.argv[2], float(sys.argv[3])
at = {}
for line in open(log):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    message = entry.get("message") or entry.get("fields", {}).get("message", "")
    stamp = datetime.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
    at.setdefault(message, stamp)
sums = {}
for line in open(metrics):
    if line.startswith("livegate_recorder_") and "_seconds_sum" in line:
        name, value = line.split()
        sums[name.split("_seconds_sum")[0].removeprefix("livegate_recorder_")] = float(value)
def span(a, b):
    return f"{at[b] - at[a]:.2f}s" if a in at and b in at else "?"
start = "livegate-recorder started"
print(f"  recorder phases: start-up {at.get(start, started) - started:.2f}s,"
      f" found to remuxed {span('recording discovered', 'remuxed')}"
      f" (probe + ffmpeg + validation {sums.get('remux_duration', 0):.2f}s, the rest the checksum pass),"
      f" remuxed to stored {span('remuxed', 'stored and confirmed')}"
      f" (upload {sums.get('upload_duration', 0):.2f}s, poster alongside),"
      f" then recorded and cleaned")
PY
}

throughput_one() { # MINUTES
    local source dir admin size started rec_s base base_s base_cpu up up_s up_cpu hwm ratio \
        load_before server_cpu base_server up_server rec_server rec_cpu
    source=$(looped "$1")
    size=$(stat -c %s "$source")
    dir=$WORK/tp-$1
    admin=$(free_port)
    recorder_config "$dir" "$admin"
    load_before=$(loadavg)

    # The plain pipeline: ffmpeg, then one PUT of its result.
    sync
    server_cpu=$(cpu_of "$S3S_PID")
    base=$(timed ffmpeg -hide_banner -loglevel error -nostdin -y -i "$source" -map 0:v? -map 0:a? \
        -c copy -movflags +faststart -f mp4 "$dir/plain.mp4")
    read -r base_s base_cpu <<<"$base"
    base_server=$(sub "$(cpu_of "$S3S_PID")" "$server_cpu")
    server_cpu=$(cpu_of "$S3S_PID")
    up=$(timed curl -sf -X PUT -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS:$SECRET" \
        "http://127.0.0.1:$S3_PORT/$BUCKET/plain-$1.mp4" -T "$dir/plain.mp4" -o /dev/null)
    read -r up_s up_cpu <<<"$up"
    up_server=$(sub "$(cpu_of "$S3S_PID")" "$server_cpu")
    rm -f "$dir/plain.mp4"

    # The recorder: the file appears in its watched directory (a hard link, so the cache
    # stays), from start-up to the job cleaned.
    ln "$source" "$dir/rec/42-1733000000.flv"
    sync
    server_cpu=$(cpu_of "$S3S_PID")
    started=$(now)
    run_recorder "$dir"
    until [ "$(cleaned_count "$admin")" = "1" ]; do
        kill -0 "$REC_PID" 2>/dev/null || { log "the recorder exited; see $dir/recorder.log"; tail -20 "$dir/recorder.log" >&2; exit 1; }
        sleep 0.05
    done
    rec_s=$(elapsed "$started" "$(now)")
    rec_server=$(sub "$(cpu_of "$S3S_PID")" "$server_cpu")
    rec_cpu=$(cpu_of "$REC_PID")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$REC_PID/status")
    curl -s "http://127.0.0.1:$admin/metrics" >"$dir/metrics.txt"
    kill -TERM "$REC_PID"; wait "$REC_PID" 2>/dev/null || true
    ratio=$(python3 -c "print(f'{$rec_s / ($base_s + $up_s):.2f}')")
    printf '%-6s %5.0f MB  ffmpeg %6ss + PUT %6ss = %6.2fs   recorder %6ss   ratio %sx (goal <= 1.2)   peak RSS %5.1f MiB (goal <= %d)\n' \
        "${1}min" "$(python3 -c "print($size/1e6)")" "$base_s" "$up_s" \
        "$(python3 -c "print($base_s + $up_s)")" "$rec_s" "$ratio" \
        "$(python3 -c "print($hwm/1024)")" $((64 + 2 * PART_MIB))
    printf '  CPU: ffmpeg %ss, curl %ss, s3s-fs %ss + %ss = %.2fs; recorder with its ffmpeg %ss, s3s-fs %ss = %.2fs\n' \
        "$base_cpu" "$up_cpu" "$base_server" "$up_server" \
        "$(python3 -c "print($base_cpu + $up_cpu + $base_server + $up_server)")" \
        "$rec_cpu" "$rec_server" "$(python3 -c "print($rec_cpu + $rec_server)")"
    phases "$dir" "$started"
    echo "  load average: before $load_before, after $(loadavg) ($(nproc) CPUs)"
}

throughput() {
    log "throughput: part size $PART_MIB MiB, $PARTS_IN_FLIGHT parts in flight, load average $(loadavg)"
    throughput_one 30
    throughput_one 60
}

# --- SIGKILL trials --------------------------------------------------------------------------
db_state() { # DIR -> state of the one job
    python3 - "$1/recorder.db" <<'PY'
import sqlite3, sys
try:
    rows = sqlite3.connect(sys.argv[1]).execute("SELECT state FROM recording_jobs").fetchall()
    print(rows[0][0] if rows else "none")
except sqlite3.Error:
    print("none")
PY
}

kill_trials() {
    local source dir admin started clean_s kill_at state key sha reference ok=0 once=0 identical=0 \
        orphans=0 ffmpeg_survived=0 stages=""
    source=$(looped 23)
    log "kill: $TRIALS trials over $(($(stat -c %s "$source") / 1000000)) MB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
    # The clean run: its time bounds the kill moments, its object is the reference.
    dir=$WORK/clean
    admin=$(free_port)
    recorder_config "$dir" "$admin"
    ln "$source" "$dir/rec/42-1733000000.flv"
    started=$(now)
    run_recorder "$dir"
    until [ "$(cleaned_count "$admin")" = "1" ]; do sleep 0.05; done
    clean_s=$(elapsed "$started" "$(now)")
    kill -TERM "$REC_PID"; wait "$REC_PID" 2>/dev/null || true
    reference=$(s3 GET "$BUCKET/clean/42/1733000000000-42-1733000000.mp4" | sha256sum | cut -d' ' -f1)
    log "clean run ${clean_s}s, object sha256 $reference"

    for trial in $(seq 1 "$TRIALS"); do
        dir=$WORK/trial-$trial
        admin=$(free_port)
        recorder_config "$dir" "$admin"
        ln "$source" "$dir/rec/42-1733000000.flv"
        kill_at=$(python3 -c "import random; print(f'{random.uniform(0.2, $clean_s):.2f}')")
        run_recorder "$dir"
        sleep "$kill_at"
        state=$(db_state "$dir")
        local children
        children=$(pgrep -P "$REC_PID" || true)
        kill -KILL "$REC_PID"; wait "$REC_PID" 2>/dev/null || true
        for child in $children; do
            for _ in $(seq 50); do kill -0 "$child" 2>/dev/null || break; sleep 0.02; done
            if kill -0 "$child" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$child/status" 2>/dev/null; then
                ffmpeg_survived=$((ffmpeg_survived + 1))
                kill -KILL "$child" 2>/dev/null || true
            fi
        done
        stages="$stages $state"
        run_recorder "$dir"
        until [ "$(db_state "$dir")" = "cleaned" ]; do
            kill -0 "$REC_PID" 2>/dev/null || { log "trial $trial: the recorder exited"; break; }
            sleep 0.1
        done
        kill -TERM "$REC_PID"; wait "$REC_PID" 2>/dev/null || true
        key="trial-$trial/42/1733000000000-42-1733000000.mp4"
        local keys
        # s3s-fs keeps each object as a file under its key: what the bucket holds, exactly.
        keys=$(find "$S3_DIR/$BUCKET/trial-$trial" -name '*.mp4' 2>/dev/null | wc -l)
        sha=$( (s3 GET "$BUCKET/$key" || true) | sha256sum | cut -d' ' -f1)
        [ "$(db_state "$dir")" = "cleaned" ] && ok=$((ok + 1))
        [ "$keys" = "1" ] && once=$((once + 1))
        [ "$sha" = "$reference" ] && identical=$((identical + 1))
        printf 'trial %2d: killed at %5ss while %-10s -> %s, %s object(s), %s, %s multipart upload(s) open\n' \
            "$trial" "$kill_at" "$state" "$(db_state "$dir")" "$keys" \
            "$([ "$sha" = "$reference" ] && echo identical || echo DIFFERENT)" "$(open_uploads)"
        # The object is checked; its bytes are not needed any more.
        s3 DELETE "$BUCKET/$key" -o /dev/null || true
    done
    orphans=$(open_uploads)
    echo "SIGKILL trials: $TRIALS; cleaned $ok; exactly one object $once; byte-identical $identical;" \
        "orphan multipart uploads $orphans; ffmpeg outliving its recorder $ffmpeg_survived"
    echo "killed while:$(echo "$stages" | tr ' ' '\n' | sort | uniq -c | awk 'NF == 2 {printf " %s %s", $2, $1}')"
    [ "$ok" = "$TRIALS" ] && [ "$once" = "$TRIALS" ] && [ "$identical" = "$TRIALS" ] &&
        [ "$orphans" = "0" ] && [ "$ffmpeg_survived" = "0" ]
}

case $MODE in
    throughput) throughput ;;
    kill) kill_trials ;;
    all) throughput; kill_trials ;;
    *) log "unknown mode $MODE (throughput, kill or all)"; exit 2 ;;
esac
