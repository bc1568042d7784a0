#!/usr/bin/env bash
# Restores a dump made by backup.sh into a database, normally a fresh, empty one.
#
#   createdb -h db -U postgres smsgate_restored
#   DATABASE_URL=postgres://…/smsgate_restored deploy/backup/restore.sh backups/smsgate-….dump
#
# Environment:
#   DATABASE_URL     the database to restore into (required; it must exist)
#   RESTORE_FORCE=1  restore into a database that already has tables, dropping what the
#                    dump contains first (pg_restore --clean); refused otherwise
#   RESTORE_REQUEUE  1 (default) puts every restored recipient still `pending` back in the
#                    release queue, so none is lost; 0 leaves the release queue as dumped
#   RESTORE_SEQUENCE_GAP  how far every id sequence jumps ahead (default 1000000), so that
#                    ids handed out after the dump are never reused (see below)
#
# What a restore means for work in flight is in docs/operations.md, "Backups and restores".
set -euo pipefail

dump=${1:?usage: restore.sh DUMP_FILE}
: "${DATABASE_URL:?set DATABASE_URL to the database to restore into}"
here=$(cd "$(dirname "$0")" && pwd)

if [[ -f "$dump.sha256" ]]; then
    (cd "$(dirname "$dump")" && sha256sum --check --quiet "$(basename "$dump").sha256") \
        || { echo "restore.sh: $dump does not match its checksum; refusing" >&2; exit 1; }
else
    echo "restore.sh: no $dump.sha256 beside the dump; restoring unchecked" >&2
fi

psql_q() { psql --no-psqlrc --quiet --tuples-only --no-align -v ON_ERROR_STOP=1 --dbname="$DATABASE_URL" "$@"; }

tables=$(psql_q -c "SELECT count(*) FROM pg_tables
                    WHERE schemaname NOT IN ('pg_catalog', 'information_schema')")
clean=()
if [[ "$tables" != 0 ]]; then
    if [[ "${RESTORE_FORCE:-0}" != 1 ]]; then
        echo "restore.sh: the target database has $tables table(s); restore into a fresh database, or set RESTORE_FORCE=1 to overwrite it" >&2
        exit 1
    fi
    clean=(--clean --if-exists)
fi

# One transaction: a restore that fails half-way leaves the database as it was.
pg_restore --no-owner --no-privileges --exit-on-error --single-transaction "${clean[@]}" \
    --dbname="$DATABASE_URL" "$dump"

# Ids handed out between the dump and the loss may still be in flight: jobs in RabbitMQ
# carry recipient ids, tokens carry user ids. Jumping every sequence ahead means such an
# id finds no row (the dispatcher skips the job) instead of a new, unrelated one.
gap=${RESTORE_SEQUENCE_GAP:-1000000}
psql_q -v gap="$gap" >/dev/null <<'SQL'
SELECT setval(format('%I.%I', schemaname, sequencename),
              least(coalesce(last_value, start_value) + :gap, max_value))
FROM pg_sequences
WHERE schemaname NOT IN ('pg_catalog', 'information_schema');
SQL

if [[ "${RESTORE_REQUEUE:-1}" == 1 ]]; then
    requeued=$(psql_q -f "$here/requeue-pending.sql" | tail -n 1)
    echo "restore.sh: $requeued message(s) with pending recipients put back in the release queue" >&2
fi
psql_q -c "ANALYZE" >/dev/null
echo "restore.sh: restored $dump" >&2
