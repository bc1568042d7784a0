#!/usr/bin/env bash
# The supply-chain check (`make test` runs it): cargo-deny's advisories, licenses, bans and
# sources checks of Cargo.lock, configured by deny.toml.
#
#   1. cargo-deny $CARGO_DENY_VERSION is installed with `cargo install --locked` when missing;
#   2. the RustSec advisory database is fetched as usual;
#   3. when it cannot be (no network beyond the package registries, as on our CI), the
#      advisories are checked against the snapshot committed in .cargo-deny/advisory-db/,
#      with a loud warning that it may be stale. Refresh it by copying the advisories of the
#      crates in Cargo.lock from https://github.com/rustsec/advisory-db (crates/<name>/*.md)
#      and updating .cargo-deny/advisory-db/SNAPSHOT_DATE.
#
# Environment:
#   SMSGATE_DENY_OFFLINE=1  skip the fetch and use the snapshot at once
# Extra arguments go to `cargo deny check`, e.g. `scripts/deny.sh licenses`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

readonly CARGO_DENY_VERSION=0.20.2
readonly SNAPSHOT=.cargo-deny/advisory-db

ensure_cargo_deny() {
    if cargo deny --version 2>/dev/null | grep -qF "$CARGO_DENY_VERSION"; then
        return
    fi
    info "installing cargo-deny $CARGO_DENY_VERSION (cargo install --locked; a few minutes, once)"
    cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
}

# Where cargo-deny looks for the default database (https://github.com/RustSec/advisory-db)
# under a db-path: the URL's last segment and its hash, as cargo-deny 0.20 names it.
readonly DEFAULT_DB_DIR=advisory-db-3157b0e258782691

# cargo-deny reads an advisory database from a git checkout it fetched, and with --offline
# from the one already at its path. The snapshot is made into one there: a scratch db-path
# (the real cache is left alone) holding a local repository of the snapshot, committed.
offline_config() {
    local scratch=$1 repo=$1/dbs/$DEFAULT_DB_DIR
    mkdir -p "$repo"
    cp -R "$SNAPSHOT/crates" "$repo/"
    git -C "$repo" init -q
    git -C "$repo" add -A
    git -C "$repo" -c user.name=smsgate -c user.email=smsgate@localhost \
        -c commit.gpgsign=false commit -qm "offline snapshot $(snapshot_date)"
    # deny.toml, with the database path pointed at the scratch one.
    sed -e "s|^\[advisories\]$|[advisories]\ndb-path = \"$scratch/dbs\"|" \
        deny.toml >"$scratch/deny.toml"
}

snapshot_date() { cat "$SNAPSHOT/SNAPSHOT_DATE"; }

loud_warning() {
    local date crates
    date=$(snapshot_date)
    crates=$(find "$SNAPSHOT/crates" -mindepth 1 -maxdepth 1 -type d | wc -l)
    cat >&2 <<EOF

###############################################################################
#  WARNING: the RustSec advisory database could not be fetched.
#  Advisories were checked against the OFFLINE SNAPSHOT committed in
#  $SNAPSHOT/, taken on $date.
#  It holds only the advisories copied then, for $crates of the crates in
#  Cargo.lock (listed in $SNAPSHOT/README.md):
#  anything published after $date, or missed, is NOT checked.
#  Run scripts/deny.sh where github.com is reachable for a complete check.
###############################################################################

EOF
}

main() {
    ensure_cargo_deny
    if [[ ${SMSGATE_DENY_OFFLINE:-0} != 1 ]]; then
        info "cargo deny fetch (the RustSec advisory database)"
        if cargo deny fetch db >/dev/null 2>&1; then
            info "cargo deny check $*"
            cargo deny check "$@"
            return
        fi
    fi
    loud_warning
    SCRATCH=$(mktemp -d)
    trap 'rm -rf "$SCRATCH"' EXIT
    offline_config "$SCRATCH"
    info "cargo deny check $* (advisories from the offline snapshot of $(snapshot_date))"
    local status=0
    cargo deny --offline --config "$SCRATCH/deny.toml" check "$@" || status=$?
    loud_warning
    return "$status"
}

main "$@"
