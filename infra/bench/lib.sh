# Shared by the bench scripts: a private work directory, processes that are stopped on exit,
# and prefixed log lines. Usage, after `set -euo pipefail`:
#   BENCH_NAME=flv-bench; . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   require_tools cargo ffmpeg; some_server & PIDS+=($!)
# Directories made outside WORK (on /dev/shm, say) go in SCRATCH to be removed on exit too.

WORK=$(mktemp -d "${TMPDIR:-/tmp}/livegate-$BENCH_NAME.XXXXXX")
PIDS=()
SCRATCH=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK" "${SCRATCH[@]}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "$BENCH_NAME: $*" >&2; }

require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { log "$tool is required"; exit 1; }
    done
}
