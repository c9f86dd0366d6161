#!/usr/bin/env bash
# livegate-recorder against a plain pipeline, and under SIGKILL, on an S3 server on loopback:
# s3s-fs (the default) or a single-node Garage (BENCH_S3=garage).
#
#   throughput  A one-hour-equivalent recording (about 1.3 GB of FLV at 3 Mbit/s: a minute
#               encoded once, looped with -stream_loop and -c copy, cached) and a half-hour
#               one. Per file: the recorder's wall time from start to "cleaned" (remux,
#               checksum, poster, multipart upload, confirmation) against
#               `ffmpeg -c copy -movflags +faststart` plus a plain `curl` PUT of its result to
#               the same server (goal: at most 1.2x), and the recorder's peak RSS (VmHWM;
#               goal: at most 64 MiB + 2 parts, flat in the file size). Also the CPU seconds of
#               each side (ffmpeg and curl; the recorder with its ffmpeg; the S3 server during
#               each), where the recorder's time went, and the load average before and after.
#   kill        BENCH_TRIALS recordings of about 500 MB, each with the recorder killed with
#               SIGKILL at a random moment of its clean run time and restarted: every
#               recording must end exactly once in the bucket, byte-identical to a clean run,
#               with no multipart upload left, and the killed recorder's ffmpeg must die with
#               it. Prints the tally.
#   all         both (the default).
#
# The S3 servers. Neither fsyncs what it stores, so neither side of the comparison waits for
# the disk:
#   s3s-fs  a test server keeping each object as a file; CompleteMultipartUpload re-reads,
#           re-hashes and copies every part, which real servers do not. Objects and open
#           multipart uploads are counted from its files.
#   garage  Garage as a production-grade server whose multipart completion only links the
#           parts' blocks: one node, replication factor 1, LMDB metadata and data under the
#           work dir, metadata_fsync and data_fsync off, its defaults otherwise (1 MiB blocks,
#           zstd level 1). Region "garage", path-style, the recorder with
#           checksum = "when_required". Objects and open multipart uploads are counted with
#           ListObjectsV2 and ListMultipartUploads.
#
# Usage: [BENCH_S3=s3s-fs|garage] infra/bench/recorder-bench.sh [throughput|kill|all]
# Environment (defaults in brackets):
#   BENCH_S3 [s3s-fs]          the S3 server: s3s-fs or garage
#   BENCH_CACHE [/var/tmp/livegate-bench-cache/recorder]  where generated recordings are kept
#   BENCH_TRIALS [50]          SIGKILL trials
#   BENCH_PART_MIB [16]        multipart part size
#   BENCH_PARTS_IN_FLIGHT [2]  parts of one upload sent at once (storage.s3.parts_in_flight)
#   BENCH_PART_CHECKSUM [crc32c]  the checksum each part carries (storage.s3.part_checksum)
#   LIVEGATE_TEST_S3S_BIN [/var/tmp/s3s/bin/s3s-fs]
#   LIVEGATE_BENCH_GARAGE_BIN [/var/tmp/garage/bin/garage]  (garage 1.x)
#   CARGO_TARGET_DIR [<workspace>/target]
# Needs: cargo, ffmpeg, ffprobe, curl (with --aws-sigv4), python3 (with sqlite3), sha256sum.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MODE=${1:-all}
CACHE=${BENCH_CACHE:-/var/tmp/livegate-bench-cache/recorder}
TRIALS=${BENCH_TRIALS:-50}
PART_MIB=${BENCH_PART_MIB:-16}
PARTS_IN_FLIGHT=${BENCH_PARTS_IN_FLIGHT:-2}
PART_CHECKSUM=${BENCH_PART_CHECKSUM:-crc32c}
S3_KIND=${BENCH_S3:-s3s-fs}
S3S_BIN=${LIVEGATE_TEST_S3S_BIN:-/var/tmp/s3s/bin/s3s-fs}
GARAGE_BIN=${LIVEGATE_BENCH_GARAGE_BIN:-/var/tmp/garage/bin/garage}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

BENCH_NAME=recorder-bench
. "$ROOT/infra/bench/lib.sh"
require_tools cargo ffmpeg ffprobe curl python3 sha256sum
case $S3_KIND in
    s3s-fs) [ -x "$S3S_BIN" ] || { log "s3s-fs is required at $S3S_BIN (LIVEGATE_TEST_S3S_BIN)"; exit 1; } ;;
    garage) [ -x "$GARAGE_BIN" ] || { log "garage is required at $GARAGE_BIN (LIVEGATE_BENCH_GARAGE_BIN)"; exit 1; } ;;
    *) log "unknown BENCH_S3 $S3_KIND (s3s-fs or garage)"; exit 2 ;;
esac

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

# --- the S3 server ---------------------------------------------------------------------------
# start_s3s_fs / start_garage: start the server on loopback with BUCKET in it, and set S3_PID,
# S3_PORT, S3_LABEL, REGION, CHECKSUM, ACCESS and SECRET.
S3_DIR=$WORK/s3
start_s3s_fs() {
    ACCESS=AKIDLIVEGATEBENCH
    SECRET=livegate-bench-secret-0123456789
    REGION=us-east-1
    CHECKSUM=when_supported
    S3_PORT=$(free_port)
    S3_LABEL=$("$S3S_BIN" --version 2>/dev/null || echo s3s-fs)
    mkdir -p "$S3_DIR"
    "$S3S_BIN" --host 127.0.0.1 --port "$S3_PORT" --access-key "$ACCESS" --secret-key "$SECRET" \
        "$S3_DIR" >"$WORK/s3s.log" 2>&1 &
    S3_PID=$!
    PIDS+=("$S3_PID")
    wait_for_s3
    s3 PUT "$BUCKET" -o /dev/null
}

# The CLI, talking to the server over RPC. Not for the server itself: a function run with `&`
# is a subshell, whose pid would be neither killed with it nor charged with its CPU.
garage() { "$GARAGE_BIN" -c "$S3_DIR/garage.toml" "$@"; }
start_garage() {
    local rpc admin node
    # Garage takes imported keys only in its own format: GK + 12 bytes, and a 32-byte secret.
    ACCESS=GK$(python3 -c 'import secrets; print(secrets.token_hex(12))')
    SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    REGION=garage
    CHECKSUM=when_required
    S3_PORT=$(free_port)
    rpc=$(free_port)
    admin=$(free_port)
    S3_LABEL="garage $("$GARAGE_BIN" --version 2>/dev/null | awk '{sub(/^cargo:/, "", $2); print $2; exit}')"
    mkdir -p "$S3_DIR/meta" "$S3_DIR/data"
    (
        umask 077
        cat >"$S3_DIR/garage.toml" <<EOF
metadata_dir = "$S3_DIR/meta"
data_dir = "$S3_DIR/data"
db_engine = "lmdb"
replication_factor = 1
metadata_fsync = false
data_fsync = false
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$S3_PORT"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
    )
    "$GARAGE_BIN" -c "$S3_DIR/garage.toml" server >"$WORK/garage.log" 2>&1 &
    S3_PID=$!
    PIDS+=("$S3_PID")
    for _ in $(seq 100); do garage status >/dev/null 2>&1 && break; sleep 0.1; done
    garage status >/dev/null || { log "garage did not start; see its log:"; tail -20 "$WORK/garage.log" >&2; exit 1; }
    node=$(garage node id -q 2>/dev/null | cut -d@ -f1)
    garage layout assign -z bench -c 1G "$node" >/dev/null
    garage layout apply --version 1 >/dev/null
    # The node serves once it sees the layout applied: /health answers 200 then.
    for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$admin/health" && break; sleep 0.1; done
    garage key import --yes -n bench "$ACCESS" "$SECRET" >/dev/null
    garage bucket create "$BUCKET" >/dev/null
    garage bucket allow --read --write --owner "$BUCKET" --key bench >/dev/null
    wait_for_s3
}

wait_for_s3() {
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/" && return; sleep 0.1; done
    log "$S3_KIND does not answer on 127.0.0.1:$S3_PORT"
    exit 1
}
s3() { # METHOD PATH [curl args...]
    local method=$1 path=$2
    shift 2
    curl -sf -X "$method" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS:$SECRET" \
        "http://127.0.0.1:$S3_PORT/$path" "$@"
}
# The .mp4 objects under PREFIX (ending in /) and the open multipart uploads in the bucket.
if [ "$S3_KIND" = s3s-fs ]; then
    # s3s-fs keeps each object as a file under its key: what the bucket holds, exactly.
    objects_under() { { find "$S3_DIR/$BUCKET/$1" -name '*.mp4' 2>/dev/null || true; } | wc -l; }
    open_uploads() { find "$S3_DIR" -maxdepth 1 -name '.upload-*.json' | wc -l; }
else
    # Fewer than 1000 each, so one page answers. A failed listing prints "unlisted", which no
    # tally takes for a good count. `uploads=`: a bare `uploads`, signed by curl 7.88, was
    # refused.
    count_in() { # PATTERN QUERY
        local listing
        listing=$(s3 GET "$BUCKET?$2") || { echo unlisted; return; }
        grep -o "$1" <<<"$listing" | wc -l || true
    }
    objects_under() { count_in '<Key>[^<]*\.mp4</Key>' "list-type=2&prefix=${1//\//%2F}"; }
    open_uploads() { count_in '<Upload>' "uploads="; }
fi
case $S3_KIND in
    s3s-fs) start_s3s_fs ;;
    garage) start_garage ;;
esac
log "S3 server: $S3_LABEL on 127.0.0.1:$S3_PORT, region $REGION"

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
region = "$REGION"
path_style = true
checksum = "$CHECKSUM"
bucket = "$BUCKET"
access_key = "$ACCESS"
secret_key = "$SECRET"
part_size_bytes = $((PART_MIB * 1024 * 1024))
parts_in_flight = $PARTS_IN_FLIGHT
part_checksum = "$PART_CHECKSUM"
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

# A multipart upload by curl, the way any S3 client sends a large file: the same part size
# and parts in flight as the recorder, no checksums. Separates what the server spends on a
# multipart upload (s3s-fs copies every part again at completion) from what the recorder adds.
# The parts are cut from the file beforehand, untimed, so that each goes out by `curl -T` from
# a file of its own as the plain PUT does (curl reads a range of a file no other way), and
# altered so that no server has their blocks stored already. Runs as its own script so that
# `timed` charges its curls to it.
cat >"$WORK/multipart-put.sh" <<'SH'
#!/usr/bin/env bash
# multipart-put.sh PARTS_DIR URL IN_FLIGHT: PARTS_DIR holds the parts in name order
# (S3_SIGV4 and S3_USER in the environment).
set -euo pipefail
parts=$1 url=$2 in_flight=$3
s3() { curl -sf -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "$S3_SIGV4" --user "$S3_USER" "$@"; }
upload_id=$(s3 -X POST "$url?uploads=" | grep -o '<UploadId>[^<]*' | cut -d'>' -f2)
count=$(ls "$parts" | wc -l)
etags=$(mktemp -d)
send() { # NUMBER FILE: FILE as part NUMBER (from 1), its ETag into $etags/NUMBER
    s3 -T "$parts/$2" -D - -o /dev/null "$url?partNumber=$1&uploadId=$upload_id" |
        tr -d '\r' | awk -F': ' 'tolower($1) == "etag" {print $2}' >"$etags/$1"
}
export -f send s3
export parts url upload_id etags
ls "$parts" | awk '{print NR, $0}' | xargs -P "$in_flight" -L 1 bash -c 'send "$0" "$1"'
{
    echo "<CompleteMultipartUpload>"
    for n in $(seq 1 "$count"); do
        echo "<Part><PartNumber>$n</PartNumber><ETag>$(cat "$etags/$n")</ETag></Part>"
    done
    echo "</CompleteMultipartUpload>"
} | s3 -X POST --data-binary @- -H "Content-Type: application/xml" "$url?uploadId=$upload_id" -o /dev/null
rm -rf "$etags"
SH
chmod +x "$WORK/multipart-put.sh"

throughput_one() { # MINUTES
    local source dir admin size started rec_s base base_s base_cpu up up_s up_cpu hwm ratio \
        load_before server_cpu base_server up_server rec_server rec_cpu multi multi_s multi_cpu \
        multi_server
    source=$(looped "$1")
    size=$(stat -c %s "$source")
    dir=$WORK/tp-$1
    admin=$(free_port)
    recorder_config "$dir" "$admin"
    load_before=$(loadavg)

    # The plain pipeline: ffmpeg, then one PUT of its result.
    sync
    server_cpu=$(cpu_of "$S3_PID")
    base=$(timed ffmpeg -hide_banner -loglevel error -nostdin -y -i "$source" -map 0:v? -map 0:a? \
        -c copy -movflags +faststart -f mp4 "$dir/plain.mp4")
    read -r base_s base_cpu <<<"$base"
    base_server=$(sub "$(cpu_of "$S3_PID")" "$server_cpu")
    server_cpu=$(cpu_of "$S3_PID")
    up=$(timed curl -sf -X PUT -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS:$SECRET" \
        "http://127.0.0.1:$S3_PORT/$BUCKET/plain-$1.mp4" -T "$dir/plain.mp4" -o /dev/null)
    read -r up_s up_cpu <<<"$up"
    up_server=$(sub "$(cpu_of "$S3_PID")" "$server_cpu")
    mkdir "$dir/parts"
    split -b "${PART_MIB}M" -a 5 "$dir/plain.mp4" "$dir/parts/part-"
    # Garage keeps blocks by their hash: parts of the bytes the PUT has just stored would
    # cost it almost nothing. One byte changed in every MiB (Garage's block size, which the
    # parts are a multiple of) makes them new to any server.
    python3 - "$dir/parts" <<'PY'
import os, sys
for name in sorted(os.listdir(sys.argv[1])):
    with open(os.path.join(sys.argv[1], name), "r+b") as part:
        for at in range(0, os.fstat(part.fileno()).st_size, 1 << 20):
            part.seek(at)
            byte = part.read(1)[0]
            part.seek(at)
            part.write(bytes([byte ^ 0xFF]))
PY
    sync
    server_cpu=$(cpu_of "$S3_PID")
    multi=$(S3_SIGV4="aws:amz:$REGION:s3" S3_USER="$ACCESS:$SECRET" timed "$WORK/multipart-put.sh" \
        "$dir/parts" "http://127.0.0.1:$S3_PORT/$BUCKET/multipart-$1.mp4" "$PARTS_IN_FLIGHT")
    read -r multi_s multi_cpu <<<"$multi"
    multi_server=$(sub "$(cpu_of "$S3_PID")" "$server_cpu")
    rm -rf "$dir/plain.mp4" "$dir/parts"

    # The recorder: the file appears in its watched directory (a hard link, so the cache
    # stays), from start-up to the job cleaned.
    ln "$source" "$dir/rec/42-1733000000.flv"
    sync
    server_cpu=$(cpu_of "$S3_PID")
    started=$(now)
    run_recorder "$dir"
    until [ "$(cleaned_count "$admin")" = "1" ]; do
        kill -0 "$REC_PID" 2>/dev/null || { log "the recorder exited; see $dir/recorder.log"; tail -20 "$dir/recorder.log" >&2; exit 1; }
        sleep 0.05
    done
    rec_s=$(elapsed "$started" "$(now)")
    rec_server=$(sub "$(cpu_of "$S3_PID")" "$server_cpu")
    rec_cpu=$(cpu_of "$REC_PID")
    hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$REC_PID/status")
    curl -s "http://127.0.0.1:$admin/metrics" >"$dir/metrics.txt"
    kill -TERM "$REC_PID"; wait "$REC_PID" 2>/dev/null || true
    ratio=$(python3 -c "print(f'{$rec_s / ($base_s + $up_s):.2f}')")
    printf '%-6s %5.0f MB  ffmpeg %6ss + PUT %6ss = %6.2fs   recorder %6ss   ratio %sx (goal <= 1.2)   peak RSS %5.1f MiB (goal <= %d)\n' \
        "${1}min" "$(python3 -c "print($size/1e6)")" "$base_s" "$up_s" \
        "$(python3 -c "print($base_s + $up_s)")" "$rec_s" "$ratio" \
        "$(python3 -c "print($hwm/1024)")" $((64 + 2 * PART_MIB))
    printf '  CPU: ffmpeg %ss, curl %ss, %s %ss + %ss = %.2fs; recorder with its ffmpeg %ss, %s %ss = %.2fs\n' \
        "$base_cpu" "$up_cpu" "$S3_KIND" "$base_server" "$up_server" \
        "$(python3 -c "print($base_cpu + $up_cpu + $base_server + $up_server)")" \
        "$rec_cpu" "$S3_KIND" "$rec_server" "$(python3 -c "print($rec_cpu + $rec_server)")"
    printf '  against a multipart upload by curl instead of the PUT (%s MiB parts, %s in flight): ffmpeg %ss + %ss = %.2fs, ratio %sx; CPU: curl %ss, %s %ss\n' \
        "$PART_MIB" "$PARTS_IN_FLIGHT" "$base_s" "$multi_s" \
        "$(python3 -c "print($base_s + $multi_s)")" \
        "$(python3 -c "print(f'{$rec_s / ($base_s + $multi_s):.2f}')")" \
        "$multi_cpu" "$S3_KIND" "$multi_server"
    phases "$dir" "$started"
    echo "  load average: before $load_before, after $(loadavg) ($(nproc) CPUs)"
}

throughput() {
    log "throughput: part size $PART_MIB MiB, $PARTS_IN_FLIGHT parts in flight, load average $(loadavg)"
    echo "throughput on $S3_LABEL (127.0.0.1:$S3_PORT, region $REGION, checksum $CHECKSUM)," \
        "part size $PART_MIB MiB, $PARTS_IN_FLIGHT parts in flight, part checksum $PART_CHECKSUM"
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
    echo "kill on $S3_LABEL (127.0.0.1:$S3_PORT, region $REGION, checksum $CHECKSUM)"
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
            # A child killed while the disk is busy may take a moment to exit: up to 5 s.
            for _ in $(seq 250); do
                kill -0 "$child" 2>/dev/null || break
                grep -q '^State:.*Z' "/proc/$child/status" 2>/dev/null && break
                sleep 0.02
            done
            if kill -0 "$child" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$child/status" 2>/dev/null; then
                ffmpeg_survived=$((ffmpeg_survived + 1))
                log "trial $trial: a child outlived the recorder by 5 s:" \
                    "$(ps -o pid=,ppid=,stat=,etime=,args= -p "$child" | cut -c1-160)"
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
        keys=$(objects_under "trial-$trial/")
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
