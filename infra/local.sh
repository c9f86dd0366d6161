#!/usr/bin/env bash
# Runs the livegate toolkit on this machine with its embedded defaults: the hooks service on a
# SQLite file with an in-process bus, and the proxy in front of an origin on 127.0.0.1:8081
# (SRS's HTTP server, say). No database or Redis needed. Ctrl-C stops everything.
#
#   proxy  http://127.0.0.1:8080   (admin http://127.0.0.1:9180/metrics)
#   hooks  http://127.0.0.1:8085   (admin http://127.0.0.1:9185/metrics)
#
# Data (the SQLite file) goes to $LIVEGATE_DATA_DIR, default ./.livegate.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cargo build --release -p livegate-proxy -p livegate-hooks
bin=${CARGO_TARGET_DIR:-$root/target}/release
data=${LIVEGATE_DATA_DIR:-$root/.livegate}
mkdir -p "$data"

pids=()
stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -eq 0 ] || kill -TERM "${pids[@]}" 2>/dev/null || true
  wait || true
}
trap stop EXIT INT TERM

(cd "$data" && exec "$bin/livegate-hooks" --config "$root/infra/hooks.example.toml") &
pids+=($!)
"$bin/livegate-proxy" --config "$root/infra/proxy.example.toml" &
pids+=($!)

cat >&2 <<MSG
livegate is running (Ctrl-C to stop):
  proxy  http://127.0.0.1:8080  -> origin 127.0.0.1:8081   metrics http://127.0.0.1:9180/metrics
  hooks  http://127.0.0.1:8085                              metrics http://127.0.0.1:9185/metrics
  data   $data
Point SRS, ZLMediaKit or nginx-rtmp at the hooks (configs in infra/), and mint play tokens
with the key in infra/proxy.example.toml (see README.md, "Play tokens").
MSG
# Either service exiting ends the toolkit.
wait -n
