#!/usr/bin/env bash
# `make test` (and CI through .ci/run): prepares the machine, then runs the
# whole workspace's tests with plain `cargo test`.
#
#   1. PostgreSQL, RabbitMQ and the toolchain (scripts/ensure-services.sh);
#   2. Chromium + ChromeDriver when browser tests are enabled;
#   3. drops leftover smsgate_test_* databases of earlier runs;
#   4. the supply-chain check: cargo deny (scripts/deny.sh);
#   5. the query macros' offline data (.sqlx/) is up to date with the queries and the
#      migrations: cargo sqlx prepare --check against a scratch database
#      (scripts/sqlx-prepare.sh, which installs sqlx-cli when missing);
#   6. cargo test --workspace --locked;
#   7. a smoke run of the benchmark harness (wrk installed for it when missing).
#
# Environment (passed through to the tests):
#   TEST_DATABASE_URL      server the tests create their databases on
#                          (default postgres://postgres@127.0.0.1:5432/postgres)
#   TEST_AMQP_URL          broker the tests declare their prefixed queues on
#                          (default amqp://guest:guest@127.0.0.1:5672/%2f)
#   SMSGATE_BROWSER_TESTS  1 (default) or 0, see below
#   TEST_RUST_LOG          log filter for the tests (default warn)
# Extra arguments go to cargo test, e.g. `scripts/test.sh -p smsgate-shared`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export TEST_AMQP_URL=${TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}

# Browser tests of the web panel (headless Chromium driven through ChromeDriver,
# tests/tests/browser/) are ON by default: the browser is installed when missing, and a
# browser that cannot be installed fails the run, so that they are never skipped
# silently. SMSGATE_BROWSER_TESTS=0 skips them (the tests read it too).
export SMSGATE_BROWSER_TESTS=${SMSGATE_BROWSER_TESTS:-1}

# Quiet logs: test output is read by people and by CI, not by log collectors.
export RUST_LOG=${TEST_RUST_LOG:-warn,lapin=off}

header() {
    info "smsgate tests"
    note "database server: $TEST_DATABASE_URL"
    note "broker:          $TEST_AMQP_URL"
    note "browser tests:   $([[ $SMSGATE_BROWSER_TESTS == 0 ]] && echo off || echo on) (SMSGATE_BROWSER_TESTS=$SMSGATE_BROWSER_TESTS)"
    note "CI:              ${CI:-false}"
}

main() {
    header
    "$REPO_ROOT/scripts/ensure-services.sh"
    if [[ $SMSGATE_BROWSER_TESTS != 0 ]]; then
        "$REPO_ROOT/scripts/ensure-browser.sh" ||
            die "browser tests are enabled (SMSGATE_BROWSER_TESTS=$SMSGATE_BROWSER_TESTS) but Chromium/ChromeDriver are missing"
    fi
    "$REPO_ROOT/scripts/clean-test-dbs.sh"
    # --locked: the tests build exactly the dependency versions in Cargo.lock.
    [[ -f Cargo.lock ]] || die "Cargo.lock is missing: run 'cargo generate-lockfile' and commit it"
    "$REPO_ROOT/scripts/deny.sh"
    "$REPO_ROOT/scripts/check-deploy.sh"
    "$REPO_ROOT/scripts/sqlx-prepare.sh" --check
    "$REPO_ROOT/scripts/check-observability.sh" # also installs the prometheus the tests run
    SCHEMATHESIS_BIN=$("$REPO_ROOT/scripts/ensure-schemathesis.sh") && export SCHEMATHESIS_BIN
    info "cargo test --workspace --locked $*"
    cargo test --workspace --locked "$@"
    "$REPO_ROOT/scripts/fuzz-smoke.sh"
    # The benchmark harness is not run for its figures here (those come from `make bench`
    # on a quiet machine); a tiny smoke run keeps it working.
    info "benchmark harness smoke run"
    "$REPO_ROOT/scripts/ensure-wrk.sh" || true
    cargo build --workspace --bins --locked
    cargo run --locked -p smsgate-bench --bin bench -- --smoke
}

main "$@"
