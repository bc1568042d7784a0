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

# cargo-deny reads an advisory database from a git checkout it fetched. The snapshot is
# made into one: a local repository, committed, that it clones with git as it would the
# real one (no network), into a scratch db-path so the real cache is left alone.
offline_config() {
    local scratch=$1 repo=$1/advisory-db-snapshot
    mkdir -p "$repo"
    cp -R "$SNAPSHOT/crates" "$repo/"
    git -C "$repo" init -q
    git -C "$repo" add -A
    git -C "$repo" -c user.name=smsgate -c user.email=smsgate@localhost \
        -c commit.gpgsign=false commit -qm "offline snapshot $(snapshot_date)"
    git -C "$repo" branch -qM main
    # deny.toml, with the database pointed at the snapshot.
    sed -e "s|^\[advisories\]$|[advisories]\ndb-path = \"$scratch/dbs\"\ndb-urls = [\"file://$repo\"]|" \
        deny.toml >"$scratch/deny.toml"
}

snapshot_date() { cat "$SNAPSHOT/SNAPSHOT_DATE"; }

loud_warning() {
    local date
    date=$(snapshot_date)
    cat >&2 <<EOF

###############################################################################
#  WARNING: the RustSec advisory database could not be fetched.
#  Advisories were checked against the OFFLINE SNAPSHOT committed in
#  $SNAPSHOT/, taken on $date.
#  It holds only the advisories copied then for the crates in Cargo.lock:
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
    local scratch
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    offline_config "$scratch"
    info "cargo deny check $* (advisories from the offline snapshot of $(snapshot_date))"
    cargo deny --config "$scratch/deny.toml" check "$@"
    loud_warning
}

main "$@"
