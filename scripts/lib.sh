# shellcheck shell=bash
# Helpers shared by the scripts in this folder. Sourced, never run on its own.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# After sourcing, REPO_ROOT is the workspace root and cargo's usual home
# (~/.cargo/bin) is on PATH, so `make` works in a shell that never sourced
# ~/.cargo/env (CI, sudo, a fresh login).

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

case ":$PATH:" in
    *":$HOME/.cargo/bin:"*) ;;
    *) [[ -d "$HOME/.cargo/bin" ]] && PATH="$PATH:$HOME/.cargo/bin" ;;
esac
export PATH

# Messages go to stderr so that stdout stays free for values a function returns.
info() { printf '==> %s\n' "$*" >&2; }
note() { printf '    %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
# sudo may ask for a password on a terminal; without one it fails, which is
# the honest outcome for a non-interactive run by an unprivileged user.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif have sudo; then
        sudo "$@"
    else
        die "need root for: $* (run as root or install sudo)"
    fi
}

# True when systemd is PID 1. Containers and sandboxes often run without it, and
# there `systemctl start` fails or hangs, so callers fall back to the tools'
# own daemon modes.
systemd_running() { [[ -d /run/systemd/system ]]; }

# apt-get update runs at most once per script run, and only when something is
# actually missing: it is slow and needs the network.
APT_UPDATED=0
apt_install() {
    have apt-get || die "apt-get not found: install $* with your package manager"
    if [[ $APT_UPDATED -eq 0 ]]; then
        info "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    info "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# True when something accepts TCP connections on host:port (bash's /dev/tcp,
# so no netcat needed). The subshell keeps the descriptor from leaking.
tcp_open() {
    local host=$1 port=$2
    timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null
}

# Waits until `check` (a command) succeeds, for at most `seconds`.
# Usage: wait_until SECONDS DESCRIPTION COMMAND [ARGS...]
wait_until() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            warn "$what: still not ready after ${seconds}s"
            return 1
        fi
        sleep 1
    done
}

# Prints the HTTP status code of a GET to url (000 when nothing answers).
# Uses curl when present, else a bare HTTP/1.0 request over /dev/tcp, because
# minimal Debian images ship without curl.
http_status() {
    local url=$1
    if have curl; then
        curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$url" || true
        return
    fi
    local rest=${url#http://} hostport path host port line
    hostport=${rest%%/*}
    path=/${rest#*/}
    [[ $rest == */* ]] || path=/
    host=${hostport%%:*}
    port=${hostport##*:}
    [[ $hostport == *:* ]] || port=80
    # shellcheck disable=SC2016 # expanded by the inner bash, on purpose
    line=$(timeout 3 bash -c '
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$3" "$1" >&3
        head -n1 <&3' _ "$host" "$port" "$path" 2>/dev/null) || true
    line=${line#HTTP/* }
    printf '%s' "${line:0:3}"
    [[ -n $line ]] || printf '000'
}

# The value of KEY in a dotenv file (last assignment wins, surrounding quotes
# removed), or empty. We read single keys instead of sourcing the file because
# dotenv syntax is not shell syntax (values with spaces, `$`, `#`).
dotenv_get() {
    local file=$1 key=$2 line value
    [[ -f $file ]] || return 0
    line=$(grep -E "^[[:space:]]*(export[[:space:]]+)?${key}=" "$file" | tail -n1) || true
    value=${line#*=}
    value=${value%$'\r'}
    if [[ $value == \"*\" || $value == \'*\' ]]; then
        value=${value:1:${#value}-2}
    fi
    printf '%s' "$value"
}

# Sets KEY=VALUE in a dotenv file, replacing an existing assignment or appending.
# VALUE must not contain `|` or newlines (we only write generated tokens here).
dotenv_set() {
    local file=$1 key=$2 value=$3
    if grep -qE "^${key}=" "$file"; then
        sed -i "s|^${key}=.*|${key}=${value}|" "$file"
    else
        printf '%s=%s\n' "$key" "$value" >>"$file"
    fi
}

# A random token of `len` characters from [A-Za-z0-9]: safe in URLs, dotenv
# files and sed replacements, and easy to type for the admin password.
random_token() {
    local len=${1:-32} out=""
    while ((${#out} < len)); do
        if have openssl; then
            out+=$(openssl rand -base64 48 | tr -dc 'A-Za-z0-9')
        else
            out+=$(head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
        fi
    done
    printf '%s' "${out:0:len}"
}
