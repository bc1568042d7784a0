#!/usr/bin/env bash
# The query macros' offline data (.sqlx/ at the workspace root, committed): `sqlx::query!`
# and friends are checked against it at compile time, so builds need no database
# (.cargo/config.toml makes SQLX_OFFLINE=true the default).
#
#   scripts/sqlx-prepare.sh           rewrite .sqlx/ after adding or changing a query
#                                     (`make sqlx-prepare`); commit the result
#   scripts/sqlx-prepare.sh --check   fail when .sqlx/ is out of date with the queries or
#                                     the migrations (`make test` runs this)
#
#   1. sqlx-cli of the sqlx version in Cargo.lock is installed with `cargo install --locked`
#      when missing (postgres and rustls only);
#   2. a scratch database smsgate_test_sqlx_<pid> is created on the test server and migrated
#      with `sqlx migrate run --source migrations` (its name is one clean-test-dbs.sh drops,
#      should this run be killed before it drops it itself);
#   3. `cargo sqlx prepare --workspace` checks every query of the workspace against it
#      (`cargo check` with SQLX_OFFLINE=false, which overrides the config's default).
#
# Environment:
#   TEST_DATABASE_URL  server the scratch database is created on
#                      (default postgres://postgres@127.0.0.1:5432/postgres)
# Extra arguments go to `cargo check`, after `--`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

readonly URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

# The CLI writes and reads the offline data the macros of the same sqlx version read and
# write, so it follows Cargo.lock instead of a version of its own.
sqlx_version() {
    awk '$0 == "name = \"sqlx\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

ensure_sqlx_cli() {
    local version=$1
    if sqlx --version 2>/dev/null | grep -qx "sqlx-cli $version"; then
        return
    fi
    info "installing sqlx-cli $version (cargo install --locked; a few minutes, once)"
    cargo install sqlx-cli --version "$version" --locked \
        --no-default-features --features postgres,rustls
}

main() {
    local check=() version base server scratch
    if [[ ${1:-} == --check ]]; then
        check=(--check)
        shift
    fi
    version=$(sqlx_version)
    [[ -n $version ]] || die "no sqlx package in Cargo.lock"
    ensure_sqlx_cli "$version"

    base=${URL%%\?*}
    server=${base%/*}
    scratch="$server/smsgate_test_sqlx_$$"
    info "scratch database smsgate_test_sqlx_$$ (migrations/)"
    sqlx database create --no-dotenv -D "$scratch"
    # shellcheck disable=SC2064 # the URL is fixed now
    trap "sqlx database drop --no-dotenv -y -f -D '$scratch' >/dev/null || warn 'could not drop smsgate_test_sqlx_$$'" EXIT
    sqlx migrate run --no-dotenv --source migrations -D "$scratch"

    info "cargo sqlx prepare --workspace ${check[*]}"
    cargo sqlx prepare --workspace --no-dotenv -D "$scratch" "${check[@]}" -- --locked "$@"
}

main "$@"
