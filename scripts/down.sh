#!/usr/bin/env bash
# `make down`: stops what scripts/up.sh started (pid files in .run/).
#
# The API stops first (no new work comes in), then the dispatchers (they finish
# or hand back their in-flight jobs), then the mock gateway they may still be
# calling. Each group gets SIGTERM, up to SMSGATE_STOP_WAIT seconds (default 15)
# to exit, then SIGKILL. Safe to run when nothing is running.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly RUN_DIR="$REPO_ROOT/.run"
readonly STOP_WAIT_SECS=${SMSGATE_STOP_WAIT:-15}

# The program a pid file's name stands for. We signal a pid only if it still
# runs that program: after a reboot the kernel may have given the number to
# something else.
expected_program() {
    case $1 in
        api) echo smsgate-api ;;
        dispatcher*) echo smsgate-dispatcher ;;
        mock-hkt) echo mock-hkt ;;
        *) echo "" ;;
    esac
}

# True while pid exists and is not a zombie waiting to be reaped.
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $state != Z* ]]
}

# True when pid runs the program (compared on argv[0], which survives a
# rebuild that replaced the binary on disk).
runs_program() {
    local pid=$1 program=$2 argv0
    [[ -r /proc/$pid/cmdline ]] || return 1
    argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" | head -n1)
    [[ ${argv0##*/} == "$program" ]]
}

# Sends a signal to the process group that up.sh's setsid created, or to the
# pid alone when it does not lead its group.
signal() {
    local sig=$1 pid=$2 pgid
    pgid=$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') || true
    if [[ $pgid == "$pid" ]]; then
        kill "-$sig" -- "-$pid" 2>/dev/null || true
    else
        kill "-$sig" "$pid" 2>/dev/null || true
    fi
}

# Stops the processes of the given pid files together and removes the files.
stop_group() {
    local file name pid program pids=() names=()
    for file in "$@"; do
        [[ -f $file ]] || continue
        name=$(basename "$file" .pid)
        pid=$(cat "$file")
        program=$(expected_program "$name")
        if [[ $pid =~ ^[0-9]+$ ]] && running "$pid" && [[ -n $program ]] && runs_program "$pid" "$program"; then
            signal TERM "$pid"
            pids+=("$pid")
            names+=("$name")
        else
            note "$name: not running (stale pid file)"
            rm -f "$file"
        fi
    done
    ((${#pids[@]})) || return 0

    local deadline=$((SECONDS + STOP_WAIT_SECS)) i left
    while :; do
        left=0
        for pid in "${pids[@]}"; do running "$pid" && left=1; done
        ((left && SECONDS < deadline)) || break
        sleep 0.2
    done
    for i in "${!pids[@]}"; do
        if running "${pids[$i]}"; then
            warn "${names[$i]} (pid ${pids[$i]}) ignored SIGTERM for ${STOP_WAIT_SECS}s: SIGKILL"
            signal KILL "${pids[$i]}"
        else
            note "stopped ${names[$i]} (pid ${pids[$i]})"
        fi
        rm -f "$RUN_DIR/${names[$i]}.pid"
    done
}

main() {
    [[ -d $RUN_DIR ]] || return 0
    shopt -s nullglob
    local any=("$RUN_DIR"/*.pid)
    if ((${#any[@]} == 0)); then
        note "nothing to stop"
        return 0
    fi
    info "stopping the stack started by make up"
    stop_group "$RUN_DIR/api.pid"
    stop_group "$RUN_DIR"/dispatcher*.pid
    stop_group "$RUN_DIR"/*.pid # the mock and anything else left
}

main "$@"
