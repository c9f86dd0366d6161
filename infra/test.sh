#!/usr/bin/env bash
# Runs every test of the workspace against real components. MariaDB and Redis are found (or
# started on loopback) by infra/ci/services.sh unless LIVEGATE_TEST_MYSQL_URL and
# LIVEGATE_TEST_REDIS_URL are already set.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in nginx ffmpeg ffprobe; do
  command -v "$tool" >/dev/null || {
    echo "infra/test.sh: '$tool' is missing; on Debian: apt-get install nginx libnginx-mod-rtmp ffmpeg" >&2
    exit 1
  }
done
if [ -z "${LIVEGATE_TEST_MYSQL_URL:-}" ] || [ -z "${LIVEGATE_TEST_REDIS_URL:-}" ]; then
  eval "$(infra/ci/services.sh)"
fi
# The CDN edge verifier (infra/cdn) is JavaScript, tested with Node's own runner. Files, not the
# directory: Node 21 and later no longer search a directory given to --test.
command -v node >/dev/null || {
  echo "infra/test.sh: 'node' is missing (Node >= 18 runs infra/cdn's tests); on Debian: apt-get install nodejs" >&2
  exit 1
}
node --test infra/cdn/test/*.test.mjs
# The console is built with npm (api/build.rs) and tested in Debian's Chromium
# (livegate/tests/console.rs).
command -v npm >/dev/null || {
  echo "infra/test.sh: 'npm' is missing (it builds the console); on Debian: apt-get install npm" >&2
  exit 1
}
[ -x "${LIVEGATE_CHROMIUM:-/usr/bin/chromium}" ] || {
  echo "infra/test.sh: Chromium is missing (the console's browser tests); on Debian: apt-get install chromium chromium-driver" >&2
  exit 1
}
# The deployment kit: compose and Kubernetes schemas, Prometheus rules (offline validators in a
# cached virtualenv).
infra/deploy/check.sh
# The room API's contract test (api/tests/it/contract.rs) runs schemathesis from a cached
# virtualenv: made here, so that an install failure shows before the tests.
infra/contract/schemathesis.sh --install
exec cargo test --workspace --locked "$@"
