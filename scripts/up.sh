#!/usr/bin/env bash
# `make up`: runs the whole stack locally, in the background, from this checkout.
#
#   1. PostgreSQL, RabbitMQ and the toolchain (scripts/ensure-services.sh);
#   2. `.env` from `.env.example` on first run, with random secrets (and a
#      WEBHOOK_SECRET_KEYS added to an older `.env` that lacks one);
#   3. the database named in DATABASE_URL, if missing;
#   4. release build of smsgate-api, smsgate-dispatcher and mock-hkt;
#   5. `smsgate-api migrate`;
#   6. stops what a previous `make up` started (scripts/down.sh);
#   7. starts mock-hkt (only when HKT_BASE_URL points at this machine),
#      smsgate-api and smsgate-dispatcher, detached, logs and pids in .run/;
#   8. waits for /health/ready and prints the URL and the login.
#
# Environment:
#   SMSGATE_DISPATCHERS  number of dispatcher processes (default 1)
#   SMSGATE_SKIP_BUILD=1 use the binaries already in target/release
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

readonly RUN_DIR=.run
readonly ENV_FILE=.env
readonly BIN=target/release
readonly READY_WAIT_SECS=60
readonly DISPATCHERS=${SMSGATE_DISPATCHERS:-1}
ENV_CREATED=0

# A setting as the processes will see it: the real environment wins over .env,
# .env over the built-in default (the same precedence as dotenvy in the apps).
setting() {
    local key=$1 default=${2:-} value
    value=${!key:-}
    [[ -n $value ]] || value=$(dotenv_get "$ENV_FILE" "$key")
    printf '%s' "${value:-$default}"
}

# A WEBHOOK_SECRET_KEYS value: one key with a dated id, 32 random bytes in base64.
new_webhook_key() {
    printf 'k%s:%s' "$(date +%Y%m%d)" "$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
}

create_env_file() {
    if [[ -f $ENV_FILE ]]; then
        note "$ENV_FILE exists; using it as it is"
        # The API and the dispatchers refuse to start without this key (webhook secrets
        # are stored encrypted); a .env from before it gets one. Never replaced: the
        # secrets already stored would no longer open.
        if [[ -z $(setting WEBHOOK_SECRET_KEYS) ]]; then
            info "adding a random WEBHOOK_SECRET_KEYS to $ENV_FILE"
            dotenv_set "$ENV_FILE" WEBHOOK_SECRET_KEYS "$(new_webhook_key)"
        fi
        # Registering a SIM creates its agent's broker user through the management API
        # (enabled by ensure-services.sh); a .env from before that gets the local one.
        if [[ -z $(setting BROKER_ADMIN_URL) ]]; then
            info "adding BROKER_ADMIN_URL (the local broker's management API) to $ENV_FILE"
            dotenv_set "$ENV_FILE" BROKER_ADMIN_URL "http://guest:guest@127.0.0.1:15672"
        fi
        return
    fi
    [[ -f .env.example ]] || die ".env.example is missing"
    info "creating $ENV_FILE from .env.example with random secrets"
    local tmp="$ENV_FILE.tmp"
    cp .env.example "$tmp"
    chmod 600 "$tmp" # it holds secrets
    dotenv_set "$tmp" SECRET_KEY "$(random_token 64)"
    dotenv_set "$tmp" JWT_SECRET_KEY "$(random_token 64)"
    dotenv_set "$tmp" ADMIN_PASSWORD "$(random_token 20)"
    dotenv_set "$tmp" WEBHOOK_SECRET_KEYS "$(new_webhook_key)"
    # The dev stack sends to the local mock: a limit high enough never to slow it.
    dotenv_set "$tmp" HKT_RATE_LIMIT 1000
    # A developer's webhook receiver runs on this machine; production keeps the default (off).
    dotenv_set "$tmp" WEBHOOK_ALLOW_INTERNAL_TARGETS true
    mv "$tmp" "$ENV_FILE"
    ENV_CREATED=1
}

# Creates the database of DATABASE_URL through the server's `postgres`
# maintenance database, with the same credentials.
create_database() {
    local url base db server
    url=$(setting DATABASE_URL postgres://postgres@127.0.0.1:5432/smsgate)
    base=${url%%\?*}
    db=${base##*/}
    server=${base%/*}
    [[ $db =~ ^[A-Za-z0-9_]+$ ]] || die "cannot tell the database name from DATABASE_URL=$url"
    if [[ $(psql "$server/postgres" -XtAc "SELECT 1 FROM pg_database WHERE datname = '$db'") == 1 ]]; then
        note "database $db exists"
        return
    fi
    info "creating database $db"
    psql "$server/postgres" -Xqc "CREATE DATABASE \"$db\""
}

build() {
    if [[ ${SMSGATE_SKIP_BUILD:-0} == 1 ]]; then
        note "SMSGATE_SKIP_BUILD=1: not building"
        return
    fi
    info "cargo build --release (api, dispatcher, mock-hkt)"
    cargo build --release -p smsgate-api -p smsgate-dispatcher -p smsgate-mock-hkt --bins
}

# Refuses to start when something we did not start holds a port we need:
# the readiness check would otherwise talk to that other process.
require_free_port() {
    local port=$1 who=$2
    if tcp_open 127.0.0.1 "$port"; then
        die "port $port (for $who) is in use by a process that 'make down' does not know; stop it first"
    fi
}

# Starts a program detached from this shell: setsid gives it its own session
# and process group (down.sh signals the whole group), nohup and the redirects
# keep it alive and quiet when the terminal or the make process goes away.
# Because this non-interactive shell has no job control, the background child
# is not a group leader, so setsid execs in place and $! is the program's pid.
start_bg() {
    local name=$1
    shift
    local log="$RUN_DIR/$name.log"
    [[ -f $log ]] && mv -f "$log" "$log.1" # keep the previous run's log, one deep
    printf '=== %s: %s\n' "$(date -Is)" "$*" >"$log"
    # glibc malloc tuning, as in deploy/systemd: read at process start, so it cannot
    # come from .env (see docs/benchmarks.md).
    MALLOC_MMAP_THRESHOLD_=131072 MALLOC_ARENA_MAX=2 setsid nohup "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$RUN_DIR/$name.pid"
    note "started $name (pid $!, log $log)"
}

alive() { kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

# The last lines of the logs of the processes this run started.
show_logs() {
    local pidfile log
    for pidfile in "$RUN_DIR"/*.pid; do
        log=${pidfile%.pid}.log
        [[ -f $log ]] || continue
        printf '\n----- last lines of %s -----\n' "$log" >&2
        tail -n 40 "$log" >&2 || true
    done
}

fail_with_logs() {
    warn "$*"
    show_logs
    printf '\nThe processes that are still running are stopped by: make down\n' >&2
    exit 1
}

# Waits until url answers 200, while the named processes stay alive.
wait_http_ok() {
    local url=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds)) name
    while [[ $(http_status "$url") != 200 ]]; do
        for name in "$@"; do
            alive "$name" || fail_with_logs "$name exited while waiting for $url"
        done
        ((SECONDS < deadline)) || fail_with_logs "$url did not answer 200 within ${seconds}s"
        sleep 1
    done
}

# host:port of HKT_BASE_URL when it points at this machine (then the mock is
# wanted), nothing otherwise.
local_hkt_address() {
    local url rest hostport
    url=$(setting HKT_BASE_URL http://127.0.0.1:5555/gateway/gateway.jsp)
    [[ $url == http://* ]] || return 0
    rest=${url#http://}
    hostport=${rest%%/*}
    case $hostport in
        127.0.0.1:* | localhost:*) printf '127.0.0.1:%s' "${hostport##*:}" ;;
    esac
}

# host:port to reach the API at: BIND_ADDR, with a wildcard host replaced by loopback.
api_address() {
    local bind host
    bind=$(setting BIND_ADDR 0.0.0.0:3570)
    host=${bind%:*}
    case $host in "" | 0.0.0.0 | "[::]" | "::") host=127.0.0.1 ;; esac
    printf '%s:%s' "$host" "${bind##*:}"
}

start_stack() {
    local api_addr=$1 mock_addr=$2 i
    mkdir -p "$RUN_DIR"
    require_free_port "${api_addr##*:}" smsgate-api
    if [[ -n $mock_addr ]]; then
        require_free_port "${mock_addr##*:}" mock-hkt
        start_bg mock-hkt env MOCK_HKT_BIND="$mock_addr" "$BIN/mock-hkt"
        wait_http_ok "http://$mock_addr/health" 15 mock-hkt
    else
        note "HKT_BASE_URL is not local: not starting mock-hkt"
    fi

    start_bg api "$BIN/smsgate-api" serve
    info "waiting for http://$api_addr/health/ready (up to ${READY_WAIT_SECS}s)"
    wait_http_ok "http://$api_addr/health/ready" "$READY_WAIT_SECS" api

    # Each dispatcher serves /metrics on a port of its own: METRICS_BIND's, plus one per
    # dispatcher after the first (127.0.0.1:9464, :9465, ...), unless it is `off`.
    local metrics_bind metrics_port
    metrics_bind=$(setting METRICS_BIND 127.0.0.1:9464)
    for ((i = 1; i <= DISPATCHERS; i++)); do
        if [[ $metrics_bind == off ]]; then
            start_bg "dispatcher-$i" "$BIN/smsgate-dispatcher"
        else
            metrics_port=$((${metrics_bind##*:} + i - 1))
            start_bg "dispatcher-$i" env METRICS_BIND="${metrics_bind%:*}:$metrics_port" "$BIN/smsgate-dispatcher"
        fi
    done
    # A dispatcher that cannot connect or parse its config exits at once.
    sleep 2
    for ((i = 1; i <= DISPATCHERS; i++)); do
        alive "dispatcher-$i" || fail_with_logs "dispatcher-$i exited right after start"
    done
}

print_summary() {
    local api_addr=$1 password
    password=$(setting ADMIN_PASSWORD)
    cat <<EOF

smsgate is up.
  Web panel and API: http://${api_addr/127.0.0.1/localhost}
  Login:             SMSadmin / ${password:-<ADMIN_PASSWORD is not set>}
                     (ADMIN_PASSWORD is used only when the API creates the admin,
                     i.e. on its first start against an empty users table. If this
                     database already had users, their existing passwords apply.)
  Logs:              $RUN_DIR/*.log   (make logs)
  Stop:              make down
EOF
    if ((ENV_CREATED)); then
        printf '  Settings:          .env was created now, with random secrets (kept out of git)\n'
    fi
}

main() {
    [[ $DISPATCHERS =~ ^[1-9][0-9]*$ ]] || die "SMSGATE_DISPATCHERS must be a positive number"
    "$REPO_ROOT/scripts/ensure-services.sh"
    create_env_file
    create_database
    build
    info "running migrations"
    "$BIN/smsgate-api" migrate
    "$REPO_ROOT/scripts/down.sh"

    local api_addr
    api_addr=$(api_address)
    info "starting the stack"
    start_stack "$api_addr" "$(local_hkt_address)"
    print_summary "$api_addr"
}

main "$@"
