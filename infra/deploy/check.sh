#!/usr/bin/env bash
# Validates the deployment kit offline: the compose file against the Compose specification,
# the Kubernetes manifests against the API schemas of a pinned Kubernetes version, the
# Prometheus configuration and alert rules, and that every YAML and JSON file of the kit
# parses. Nothing here needs Docker or a cluster.
#
#   infra/deploy/check.sh
#
# The validators are pinned PyPI packages in a virtualenv under the user's cache (made on
# the first run, reused afterwards; LIVEGATE_DEPLOY_VENV moves it). The Kubernetes schemas
# ship inside kubernetes-validate, so validation needs no network once it is installed.
# tests/tests/deploy_kit.rs checks what these cannot: that the configurations load with the
# services' own loaders and agree with each other, and that the metrics exist.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

check_jsonschema_version=0.39.0
kubernetes_validate_version=1.37.0
pyyaml_version=6.0.4
# The oldest Kubernetes release the manifests promise to work on.
kubernetes_version=1.34.0

venv="${LIVEGATE_DEPLOY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/livegate-deploy-venv}"
stamp="$venv/.livegate-pins"
pins="check-jsonschema==$check_jsonschema_version kubernetes-validate==$kubernetes_validate_version PyYAML==$pyyaml_version"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$pins" ]]; then
    echo "== installing validators into $venv"
    python3 -m venv "$venv"
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet $pins
    echo "$pins" >"$stamp"
fi
py="$venv/bin/python"

failed=0
step() { echo "== $*"; }
run() {
    if ! "$@"; then
        echo "FAILED: $*" >&2
        failed=1
    fi
}

step "compose file against the Compose specification"
run "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec infra/docker/docker-compose.yml

step "Kubernetes manifests against Kubernetes $kubernetes_version (strict: unknown fields fail)"
manifests=()
for file in infra/k8s/*.yaml; do
    # kustomization.yaml configures kubectl, it is not an API object.
    [[ "$(basename "$file")" == kustomization.yaml ]] || manifests+=("$file")
done
echo "${manifests[*]}"
run "$venv/bin/kubernetes-validate" --kubernetes-version "$kubernetes_version" --strict --quiet "${manifests[@]}"

step "Prometheus configuration and alert rules"
if command -v promtool >/dev/null; then
    run promtool check rules infra/prometheus/rules/*.yml
    # The compose configuration only: the Kubernetes one needs in-cluster credentials.
    run promtool check config --syntax-only infra/prometheus/prometheus.yml
else
    echo "promtool not found (Debian: apt-get install prometheus); checking the rules' structure instead"
    run "$py" - infra/prometheus/rules/*.yml <<'PY'
import sys, yaml
ok = True
for path in sys.argv[1:]:
    doc = yaml.safe_load(open(path))
    names = set()
    for group in doc["groups"]:
        assert group["name"] not in names, f"{path}: group {group['name']} twice"
        names.add(group["name"])
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            if not name or not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                print(f"{path}: {group['name']}: a rule without a name or an expression: {rule}")
                ok = False
            if "alert" in rule and "runbook" not in rule.get("annotations", {}):
                print(f"{path}: {name} names no runbook section")
                ok = False
            if rule.get("expr", "").count("(") != rule.get("expr", "").count(")"):
                print(f"{path}: {name}: unbalanced parentheses")
                ok = False
sys.exit(0 if ok else 1)
PY
fi

step "every YAML and JSON file of the kit parses"
run "$py" - <<'PY'
import glob, json, sys, yaml
ok = True
for path in sorted(glob.glob("infra/docker/*.yml") + glob.glob("infra/k8s/*.yaml")
                   + glob.glob("infra/prometheus/**/*.yml", recursive=True)
                   + glob.glob("infra/grafana/**/*.yml", recursive=True)
                   + glob.glob("infra/logging/*.yaml")):
    try:
        list(yaml.safe_load_all(open(path)))
    except yaml.YAMLError as err:
        print(f"{path}: {err}")
        ok = False
for path in sorted(glob.glob("infra/grafana/**/*.json", recursive=True)):
    try:
        dashboard = json.load(open(path))
        ids = [p["id"] for p in dashboard["panels"]]
        if len(ids) != len(set(ids)):
            print(f"{path}: panel ids repeat")
            ok = False
    except (ValueError, KeyError) as err:
        print(f"{path}: {err}")
        ok = False
sys.exit(0 if ok else 1)
PY

if command -v vector >/dev/null; then
    step "Vector configurations"
    run vector validate --no-environment infra/logging/source-docker.yaml infra/logging/pipeline.yaml
    run vector validate --no-environment infra/logging/source-kubernetes.yaml infra/logging/pipeline.yaml
else
    echo "== vector not found: its configurations were only parsed as YAML"
fi

if [[ $failed -ne 0 ]]; then
    echo "deployment kit: FAILED" >&2
    exit 1
fi
echo "deployment kit: ok"
