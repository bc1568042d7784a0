#!/usr/bin/env bash
# A bounded run of the modem agent's coverage-guided fuzz targets (modem-agent/fuzz/,
# cargo-fuzz + libFuzzer), failing on any crash, hang or memory blow-up. `make test` runs
# it after the tests; longer runs are for people (docs/edge-gateway.md, "Hostile radio
# input").
#
#   1. cargo-fuzz $CARGO_FUZZ_VERSION is installed with `cargo install --locked` when
#      missing;
#   2. the targets are built on the STABLE toolchain: `-s none` (no sanitizer) makes
#      cargo-fuzz pass only stable flags (-Cpasses=sancov-module and the
#      -Cllvm-args=-sanitizer-coverage-* options), so the coverage instrumentation that
#      guides libFuzzer needs no nightly. Overflow checks and debug assertions stay on;
#   3. each target runs for FUZZ_SECONDS (and at most FUZZ_RUNS inputs), starting from the
#      committed seed corpus (modem-agent/fuzz/corpus/<target>/). What it discovers goes
#      to a scratch directory, so the committed corpus is left alone.
#
# Environment:
#   FUZZ_SECONDS  per target, default 20 (make test stays under 20 minutes)
#   FUZZ_RUNS     per target, default 20000000
#   FUZZ_TARGETS  default "pdu reassembly at"
# A crashing input is saved in modem-agent/fuzz/artifacts/<target>/; reproduce it with
#   (cd modem-agent && cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT/modem-agent"

readonly CARGO_FUZZ_VERSION=0.13.2
readonly SECONDS_EACH=${FUZZ_SECONDS:-20}
readonly RUNS_EACH=${FUZZ_RUNS:-20000000}
read -r -a TARGETS <<<"${FUZZ_TARGETS:-pdu reassembly at}"

ensure_cargo_fuzz() {
    if cargo fuzz --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
        return
    fi
    info "installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install --locked; a minute, once)"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
}

main() {
    ensure_cargo_fuzz
    # libfuzzer-sys compiles libFuzzer's C++ sources.
    have c++ || as_root apt-get install -y g++
    # cargo-fuzz has no --locked: fetching with it first fails on a stale fuzz/Cargo.lock.
    cargo fetch --locked --manifest-path fuzz/Cargo.toml
    info "cargo fuzz build -s none (stable toolchain, SanitizerCoverage, no sanitizer)"
    cargo fuzz build -s none
    local target status=0
    SCRATCH=$(mktemp -d)
    trap 'rm -rf "$SCRATCH"' EXIT
    for target in "${TARGETS[@]}"; do
        info "fuzzing $target for ${SECONDS_EACH}s (at most $RUNS_EACH inputs)"
        mkdir -p "$SCRATCH/$target"
        if ! cargo fuzz run -s none "$target" "$SCRATCH/$target" "fuzz/corpus/$target" -- \
            -max_total_time="$SECONDS_EACH" -runs="$RUNS_EACH" \
            -timeout=10 -rss_limit_mb=1024 -print_final_stats=1 \
            >"$SCRATCH/$target.log" 2>&1; then
            tail -n 60 "$SCRATCH/$target.log" >&2
            warn "fuzz target $target failed: see modem-agent/fuzz/artifacts/$target/"
            status=1
            continue
        fi
        note "$(grep -E '^#[0-9]+[[:space:]]+DONE' "$SCRATCH/$target.log" | tail -n 1)"
    done
    return "$status"
}

main "$@"
