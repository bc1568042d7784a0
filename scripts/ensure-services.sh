#!/usr/bin/env bash
# Makes sure this machine can build and run smsgate for development and tests:
#
#   * the Rust toolchain (cargo) and the C build tools some crates need;
#   * the psql client (up.sh and test.sh create and drop databases with it);
#   * PostgreSQL accepting postgres@127.0.0.1:5432 without a password;
#   * RabbitMQ accepting connections on 127.0.0.1:5672 (guest/guest, which
#     RabbitMQ allows from localhost out of the box).
#
# Idempotent and non-interactive. Run as root, or as a user with sudo. For each
# service that does not answer yet it tries, in this order:
#   1. a Docker engine (`docker info` works): docker compose up -d <service>;
#   2. a local install that is stopped: start it (systemctl only when systemd
#      is PID 1, else pg_ctlcluster / rabbitmq-server -detached);
#   3. apt-get install it, then start it as in 2.
# Then it waits until both accept TCP connections and prints what it did.
#
# Environment: APP_ENV=production makes it refuse to loosen PostgreSQL's
# authentication; SMSGATE_PG_NO_TRUST=1 does the same on a dev box.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly PG_HOST=127.0.0.1 PG_PORT=5432
readonly MQ_HOST=127.0.0.1 MQ_PORT=5672
# RabbitMQ's management API: the API creates each SIM agent's broker user there
# (BROKER_ADMIN_URL), and the tests check what those users may do.
readonly MQ_ADMIN_PORT=15672
readonly PG_WAIT_SECS=60 MQ_WAIT_SECS=60 # RabbitMQ takes 10-30 s to boot; PG's first initdb in Docker too
readonly RUN_DIR="$REPO_ROOT/.run"
readonly START_LOG="$RUN_DIR/ensure-services.log"

# What this run found or changed, printed as a summary at the end (apt output
# in between would bury it otherwise).
ACTIONS=()
did() { ACTIONS+=("$*"); }

# --- toolchain ---------------------------------------------------------------

ensure_toolchain() {
    if have cargo; then
        did "Rust toolchain: $(cargo --version)"
        return
    fi
    cat >&2 <<'EOF'
error: cargo was not found (neither on PATH nor in ~/.cargo/bin).
Install the Rust toolchain with rustup, then run this again:

    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y
    source "$HOME/.cargo/env"

(or see https://rustup.rs). Debian's own `cargo` package is usually too old
for this workspace (rust-version in Cargo.toml).
EOF
    exit 1
}

# cc/make for crates with C parts, pkg-config for -sys crates, psql for the
# database set-up in up.sh and test.sh (also needed when PostgreSQL runs in Docker).
ensure_build_tools() {
    local missing=()
    { have cc && have make; } || missing+=(build-essential)
    have pkg-config || missing+=(pkg-config)
    have psql || missing+=(postgresql-client)
    if ((${#missing[@]} == 0)); then
        did "build tools: cc, make, pkg-config and psql present"
        return
    fi
    apt_install "${missing[@]}"
    did "installed ${missing[*]}"
}

# --- probes -------------------------------------------------------------------

pg_reachable() {
    if have pg_isready; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
    else
        tcp_open "$PG_HOST" "$PG_PORT"
    fi
}

mq_reachable() { tcp_open "$MQ_HOST" "$MQ_PORT"; }
mq_admin_reachable() { tcp_open "$MQ_HOST" "$MQ_ADMIN_PORT"; }

# The management plugin, enabled where the broker is ours to change (a local
# installation; the compose file's image has it already).
ensure_rabbitmq_management() {
    if mq_admin_reachable; then
        did "RabbitMQ's management API is reachable on $MQ_HOST:$MQ_ADMIN_PORT"
        return
    fi
    local plugins=rabbitmq-plugins
    have "$plugins" || plugins=/usr/sbin/rabbitmq-plugins
    [[ -x $(command -v "$plugins" || true) ]] ||
        die "RabbitMQ's management API is not on $MQ_HOST:$MQ_ADMIN_PORT and rabbitmq-plugins is missing: enable the rabbitmq_management plugin on the broker"
    info "enabling RabbitMQ's management plugin"
    as_root "$plugins" enable rabbitmq_management </dev/null >>"$START_LOG" 2>&1 ||
        die "could not enable rabbitmq_management; see $START_LOG"
    wait_until 60 "RabbitMQ's management API" mq_admin_reachable ||
        die "RabbitMQ's management API did not come up on $MQ_HOST:$MQ_ADMIN_PORT; see $START_LOG"
    did "enabled RabbitMQ's management plugin ($MQ_HOST:$MQ_ADMIN_PORT)"
}

# Logs in the way the app's default DATABASE_URL does: user postgres, no
# password, over TCP. PGPASSWORD and ~/.pgpass are ignored on purpose so that a
# password in the caller's environment cannot hide a setup the app would fail on.
pg_login_ok() {
    env -u PGPASSWORD PGPASSFILE=/dev/null PGCONNECT_TIMEOUT=5 \
        psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -tAc 'SELECT 1' >/dev/null 2>&1
}

# --- Docker -------------------------------------------------------------------

COMPOSE=()
docker_usable() {
    have docker || return 1
    timeout 15 docker info >/dev/null 2>&1 || return 1
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif have docker-compose; then
        COMPOSE=(docker-compose)
    else
        warn "a Docker engine runs but neither 'docker compose' nor 'docker-compose' exists"
        return 1
    fi
}

start_with_docker() {
    info "starting $* with ${COMPOSE[*]} (docker-compose.yml)"
    if (cd "$REPO_ROOT" && "${COMPOSE[@]}" up -d "$@"); then
        did "started $* in Docker"
    else
        warn "${COMPOSE[*]} up failed; falling back to a local install"
        return 1
    fi
}

# --- local PostgreSQL (Debian's postgresql-common layout) ----------------------

# Sets PG_VER and PG_NAME to the cluster configured for PG_PORT, creating the
# default cluster when the packages are installed but no cluster exists (some
# container images install postgresql with cluster creation disabled).
PG_VER='' PG_NAME=''
find_pg_cluster() {
    local ver name port rest
    if [[ -z $(pg_lsclusters --no-header 2>/dev/null) ]]; then
        ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
        [[ -n $ver ]] || die "PostgreSQL packages look broken: nothing in /usr/lib/postgresql"
        info "no PostgreSQL cluster yet: pg_createcluster $ver main"
        as_root pg_createcluster "$ver" main </dev/null >>"$START_LOG" 2>&1
        did "created PostgreSQL cluster $ver/main"
    fi
    while read -r ver name port rest; do
        if [[ $port == "$PG_PORT" ]]; then
            PG_VER=$ver PG_NAME=$name
            return
        fi
    done < <(pg_lsclusters --no-header)
    die "no PostgreSQL cluster is configured for port $PG_PORT (see pg_lsclusters)"
}

start_local_postgres() {
    find_pg_cluster
    local ver=$PG_VER name=$PG_NAME
    if pg_lsclusters --no-header | grep -qE "^$ver +$name +$PG_PORT +online"; then
        note "PostgreSQL $ver/$name is already running; waiting for it to accept connections"
        return
    fi
    info "starting PostgreSQL $ver/$name"
    # Output goes to a log file: a daemon that inherits our stdout would keep a
    # caller's pipe (CI, `| tee`) open after we exit.
    if systemd_running; then
        as_root systemctl start "postgresql@$ver-$name" </dev/null >>"$START_LOG" 2>&1
    else
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start </dev/null >>"$START_LOG" 2>&1
    fi
    did "started local PostgreSQL $ver/$name"
}

ensure_postgres_locally() {
    if ! have pg_lsclusters; then
        if [[ -d /usr/lib/postgresql ]] && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
            die "PostgreSQL is installed without Debian's postgresql-common tools; start it yourself on $PG_HOST:$PG_PORT"
        fi
        apt_install postgresql
        did "installed PostgreSQL (apt)"
    fi
    start_local_postgres
}

# --- local RabbitMQ -------------------------------------------------------------

start_local_rabbitmq() {
    # A node that is still booting has its Erlang VM running but no listener yet;
    # starting a second one would only fail on the node name.
    if id rabbitmq >/dev/null 2>&1 && pgrep -u rabbitmq -x beam.smp >/dev/null; then
        note "RabbitMQ is running (still booting?); waiting for its listener"
        return
    fi
    info "starting RabbitMQ"
    if systemd_running; then
        as_root systemctl start rabbitmq-server </dev/null >>"$START_LOG" 2>&1
    else
        # Debian's wrapper switches to the rabbitmq user when run as root.
        as_root rabbitmq-server -detached </dev/null >>"$START_LOG" 2>&1
    fi
    did "started local RabbitMQ"
}

ensure_rabbitmq_locally() {
    if ! have rabbitmq-server && [[ ! -x /usr/sbin/rabbitmq-server ]]; then
        apt_install rabbitmq-server
        did "installed RabbitMQ (apt)"
    fi
    PATH="$PATH:/usr/sbin" start_local_rabbitmq
}

# --- PostgreSQL authentication ------------------------------------------------

# A fresh Debian/Ubuntu cluster asks TCP clients for a password (scram/md5),
# but the app's default DATABASE_URL and the tests' TEST_DATABASE_URL log in as
# `postgres` over 127.0.0.1 without one. We choose to add `trust` for loopback
# only, at the top of pg_hba.conf, and reload. Why not the alternatives: a
# superuser role named after the unix user would not help URLs that say
# `postgres@`, and a password would have to be carried into every .env and CI.
# Loopback trust exposes nothing to the network, but every local user can then
# log in as any role: fine for a single-user dev box or CI machine, wrong for a
# shared or production host. Hence the APP_ENV=production / SMSGATE_PG_NO_TRUST
# guards. The original file is kept as pg_hba.conf.smsgate-backup.
readonly HBA_MARKER='# smsgate-dev: trust loopback TCP for local development'

allow_loopback_trust() {
    local app_env=${APP_ENV:-$(dotenv_get "$REPO_ROOT/.env" APP_ENV)}
    if [[ ${app_env,,} == prod* || ${SMSGATE_PG_NO_TRUST:-0} == 1 ]]; then
        die "postgres@$PG_HOST needs a password here. Set DATABASE_URL / TEST_DATABASE_URL with credentials instead (not changing pg_hba.conf: APP_ENV=$app_env, SMSGATE_PG_NO_TRUST=${SMSGATE_PG_NO_TRUST:-0})"
    fi
    have pg_lsclusters || die "postgres@$PG_HOST:$PG_PORT refuses a password-less login and this is not a local Debian cluster; fix its authentication (or DATABASE_URL) by hand"
    find_pg_cluster
    local ver=$PG_VER name=$PG_NAME hba tmp
    hba="/etc/postgresql/$ver/$name/pg_hba.conf"
    as_root test -f "$hba" || die "cannot find $hba"
    if as_root grep -qF "$HBA_MARKER" "$hba"; then
        die "$hba already trusts loopback, yet postgres@$PG_HOST is refused: check that the role 'postgres' exists"
    fi
    info "allowing password-less loopback logins in $hba (development only)"
    tmp=$(mktemp)
    {
        printf '%s (added by scripts/ensure-services.sh)\n' "$HBA_MARKER"
        printf 'host    all    all    127.0.0.1/32    trust\n'
        printf 'host    all    all    ::1/128         trust\n\n'
        as_root cat "$hba"
    } >"$tmp"
    as_root cp -n -p "$hba" "$hba.smsgate-backup" || true
    as_root cp "$tmp" "$hba" # cp onto the existing file keeps its owner and mode
    rm -f "$tmp"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload </dev/null >>"$START_LOG" 2>&1
    did "pg_hba.conf: trust for 127.0.0.1/::1 (backup: $hba.smsgate-backup)"
}

ensure_pg_login() {
    if pg_login_ok; then
        did "PostgreSQL accepts postgres@$PG_HOST without a password"
        return
    fi
    allow_loopback_trust
    wait_until 10 "password-less login as postgres@$PG_HOST" pg_login_ok ||
        die "postgres@$PG_HOST:$PG_PORT still refuses a password-less login; see $START_LOG"
    did "PostgreSQL now accepts postgres@$PG_HOST without a password"
}

# --- main ---------------------------------------------------------------------

ensure_services() {
    local pg_up=1 mq_up=1 missing=()
    pg_reachable || { pg_up=0 && missing+=(postgres); }
    mq_reachable || { mq_up=0 && missing+=(rabbitmq); }
    if ((${#missing[@]} == 0)); then
        did "PostgreSQL ($PG_HOST:$PG_PORT) and RabbitMQ ($MQ_HOST:$MQ_PORT) already reachable"
        return
    fi
    info "not reachable yet: ${missing[*]}"

    local via_docker=0
    if docker_usable && start_with_docker "${missing[@]}"; then
        via_docker=1
    fi
    if ((via_docker == 0)); then
        ((pg_up)) || ensure_postgres_locally
        ((mq_up)) || ensure_rabbitmq_locally
    fi

    if ((pg_up == 0)); then
        info "waiting for PostgreSQL on $PG_HOST:$PG_PORT (up to ${PG_WAIT_SECS}s)"
        wait_until "$PG_WAIT_SECS" "PostgreSQL" pg_reachable ||
            die "PostgreSQL did not come up; see $START_LOG and the PostgreSQL log"
        did "PostgreSQL is accepting connections on $PG_HOST:$PG_PORT"
    fi
    if ((mq_up == 0)); then
        info "waiting for RabbitMQ on $MQ_HOST:$MQ_PORT (up to ${MQ_WAIT_SECS}s)"
        wait_until "$MQ_WAIT_SECS" "RabbitMQ" mq_reachable ||
            die "RabbitMQ did not come up; see $START_LOG and /var/log/rabbitmq/"
        did "RabbitMQ is accepting connections on $MQ_HOST:$MQ_PORT"
    fi
}

main() {
    mkdir -p "$RUN_DIR"
    info "checking toolchain, PostgreSQL and RabbitMQ"
    ensure_toolchain
    ensure_build_tools
    ensure_services
    ensure_rabbitmq_management
    ensure_pg_login
    info "services ready:"
    printf '    - %s\n' "${ACTIONS[@]}" >&2
}

main "$@"
