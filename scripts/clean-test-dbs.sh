#!/usr/bin/env bash
# Drops the databases that test runs leave behind. Every integration test
# creates a fresh database named smsgate_test_<something>; a test that panics
# or a run that is killed leaves its database behind, so `make test` drops all
# of them before it starts (no run can be going on beside it on a dev box or CI
# machine). WITH (FORCE) also ends connections a killed run left open.
#
# Connects with TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
readonly BROKER_ADMIN=${TEST_BROKER_ADMIN_URL:-http://guest:guest@127.0.0.1:15672}

# Each test SIM gets a broker user named <test prefix>.sim.<id> (test prefixes are
# t + 16 hex digits); they would pile up run after run.
drop_test_sim_users() {
    have curl || { note "curl missing: leftover test SIM broker users are kept"; return 0; }
    local users user deleted=0
    users=$(curl -sf "$BROKER_ADMIN/api/users?columns=name" 2>/dev/null |
        grep -oE '"name":"t[0-9a-f]{16}\.sim\.[0-9]+"' | cut -d'"' -f4) || return 0
    while read -r user; do
        [[ -n $user ]] || continue
        curl -sf -X DELETE "$BROKER_ADMIN/api/users/$user" >/dev/null && deleted=$((deleted + 1))
    done <<<"$users"
    info "deleted $deleted leftover test SIM broker user(s)"
}

main() {
    local names name dropped=0
    names=$(psql "$URL" -XtAc "SELECT datname FROM pg_database WHERE datname LIKE 'smsgate\_test\_%' ORDER BY 1")
    while read -r name; do
        [[ -n $name ]] || continue
        # The names come from the server, but they are spliced into SQL: stay strict.
        if [[ ! $name =~ ^smsgate_test_[A-Za-z0-9_]+$ ]]; then
            warn "skipping oddly named database $name"
            continue
        fi
        psql "$URL" -Xqc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)"
        dropped=$((dropped + 1))
    done <<<"$names"
    info "dropped $dropped leftover test database(s)"
    drop_test_sim_users
}

main "$@"
