#!/usr/bin/env bash
# Runs schemathesis, pinned, from a virtualenv under the user's cache (made on the first run,
# reused afterwards; LIVEGATE_CONTRACT_VENV moves it), with the room API's contract settings
# (schemathesis.toml) and hooks (hooks.py) beside this script.
#
#   infra/contract/schemathesis.sh --install     # only make sure it is installed
#   infra/contract/schemathesis.sh run http://127.0.0.1:8090/api/v1/openapi.json \
#       -H "Authorization: Bearer $access"
#
# api/tests/it/contract.rs starts a seeded livegate-api and runs it; see docs/api.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
schemathesis_version=4.32.5

venv="${LIVEGATE_CONTRACT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/livegate-contract-venv}"
stamp="$venv/.livegate-pins"
pins="schemathesis==$schemathesis_version"
if [[ ! -x "$venv/bin/schemathesis" || "$(cat "$stamp" 2>/dev/null)" != "$pins" ]]; then
    command -v python3 >/dev/null || {
        echo "schemathesis.sh: python3 is missing; on Debian: apt-get install python3-venv" >&2
        exit 69
    }
    echo "== installing $pins into $venv" >&2
    python3 -m venv "$venv" >&2 || {
        echo "schemathesis.sh: could not make a virtualenv; on Debian: apt-get install python3-venv" >&2
        exit 69
    }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$pins" >&2 || exit 69
    echo "$pins" >"$stamp"
fi
if [[ "${1:-}" == "--install" ]]; then
    exit 0
fi
export SCHEMATHESIS_HOOKS="${SCHEMATHESIS_HOOKS:-$here/hooks.py}"
exec "$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" "$@"
