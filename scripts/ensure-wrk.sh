#!/usr/bin/env bash
# Makes sure wrk is installed: the benchmark harness measures single sends with it, as
# issue #5 specifies (wrk, 64 connections, 10 s). Idempotent.
#
# Exit status: 0 when wrk is found afterwards, 1 otherwise (the harness then falls back to
# its built-in client and says so in its table).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! have wrk; then
    info "installing wrk (HTTP load generator)"
    apt_install wrk || warn "apt could not install wrk"
fi
have wrk || { warn "wrk is not available; the benchmark uses its built-in client"; exit 1; }
note "wrk: $(command -v wrk)"
