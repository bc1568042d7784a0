#!/usr/bin/env bash
# Dumps the smsgate database in pg_dump's custom format, with a SHA-256 checksum beside it.
#
#   DATABASE_URL=postgres://smsgate:…@db:5432/smsgate deploy/backup/backup.sh
#
# Environment:
#   DATABASE_URL      the database to dump (required; the processes' own setting)
#   BACKUP_DIR        where dumps go (default: ./backups)
#   BACKUP_KEEP_DAYS  delete this script's dumps older than N days after a good dump
#                     (default: unset, keep everything; retention is the operator's call,
#                     see docs/operations.md "Backups and restores")
#
# Prints the dump's path on stdout. The dump is written under a temporary name and renamed
# only once pg_dump succeeded and pg_restore can read its table of contents, so a file
# named smsgate-*.dump is always a complete dump.
set -euo pipefail

: "${DATABASE_URL:?set DATABASE_URL to the database to back up}"
BACKUP_DIR=${BACKUP_DIR:-./backups}
mkdir -p "$BACKUP_DIR"

stamp=$(date -u +%Y%m%dT%H%M%SZ)
name="smsgate-$stamp.dump"
partial="$BACKUP_DIR/.$name.partial"
trap 'rm -f "$partial"' EXIT

# Custom format: compressed, and pg_restore can restore it selectively or in parallel.
# --no-owner/--no-privileges: a restore runs as whichever role owns the new database, so
# the dump must not name the roles of the server it came from.
pg_dump --format=custom --no-owner --no-privileges --file="$partial" --dbname="$DATABASE_URL"
pg_restore --list "$partial" >/dev/null

mv "$partial" "$BACKUP_DIR/$name"
(cd "$BACKUP_DIR" && sha256sum "$name" >"$name.sha256")

if [[ -n "${BACKUP_KEEP_DAYS:-}" ]]; then
    find "$BACKUP_DIR" -maxdepth 1 -name 'smsgate-*.dump*' -mtime "+$BACKUP_KEEP_DAYS" -delete
fi

echo "$BACKUP_DIR/$name"
