#!/usr/bin/env bash
# Makes sure schemathesis (the OpenAPI fuzzer, from PyPI) is installed for the contract
# test (tests/tests/it/openapi_contract.rs, docs/api.md). Idempotent: does nothing when the
# pinned version is already in the venv.
#
#   1. a Python 3 venv in .run/tools/schemathesis (git-ignored, per checkout), so the
#      system's Python packages are left alone;
#   2. schemathesis $SCHEMATHESIS_VERSION installed into it with pip (pinned: a new
#      release may add checks or change the CLI, which would change what `make test`
#      fails on without a commit here).
#
# Prints the binary's path on stdout (the test reads SCHEMATHESIS_BIN, or finds it there).
# Exit status: 0 when the pinned schemathesis runs afterwards, 1 otherwise.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly SCHEMATHESIS_VERSION=4.32.5
readonly VENV="$REPO_ROOT/.run/tools/schemathesis"
readonly BIN="$VENV/bin/schemathesis"

installed() { [[ -x $BIN ]] && "$BIN" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; }

main() {
    if ! installed; then
        have python3 || apt_install python3 python3-venv
        python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
        info "installing schemathesis $SCHEMATHESIS_VERSION into ${VENV#"$REPO_ROOT"/} (pip; once)"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    fi
    installed || die "schemathesis $SCHEMATHESIS_VERSION is not runnable at $BIN"
    note "schemathesis: $("$BIN" --version)"
    echo "$BIN"
}

main "$@"
