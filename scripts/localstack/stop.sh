#!/usr/bin/env bash
# Stop the LocalStack started by start.sh (same BYOK_CACHE_DIR / BYOK_LOCALSTACK_STATE).
# SIGTERM first (LocalStack shuts down cleanly), SIGKILL after LOCALSTACK_STOP_TIMEOUT
# seconds (default 20). Exits 0 if nothing was running. Messages go to stderr.
set -euo pipefail

cache_dir="${BYOK_CACHE_DIR:-$HOME/.cache/byok-ceremony}"
state="${BYOK_LOCALSTACK_STATE:-$cache_dir/localstack-state}"
timeout="${LOCALSTACK_STOP_TIMEOUT:-20}"
pid_file="$state/localstack.pid"
port_file="$state/localstack.port"

log() { printf 'localstack: %s\n' "$*" >&2; }

# Alive and not a zombie (an orphan may stay a zombie if PID 1 does not reap).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local st
    st="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null || true)"
    [[ "$st" != Z ]]
}

if [[ ! -f "$pid_file" ]]; then
    log "not running (no $pid_file)"
    exit 0
fi
pid="$(cat "$pid_file" 2>/dev/null || true)"

# Only signal the process if it is still the LocalStack we started (pid reuse).
cmd=""
if [[ "$pid" =~ ^[0-9]+$ ]]; then
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
fi
if [[ "$cmd" != *launch.py* ]] || ! alive "$pid"; then
    log "not running (stale pid file); cleaning up"
    rm -f "$pid_file" "$port_file"
    exit 0
fi

log "stopping pid $pid"
kill -TERM "$pid" 2>/dev/null || true
deadline=$((SECONDS + timeout))
while alive "$pid" && ((SECONDS < deadline)); do
    sleep 0.2
done
if alive "$pid"; then
    log "still running after ${timeout} s; sending SIGKILL"
    # start.sh runs it under setsid, so its process group id is its pid.
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$pid_file" "$port_file"
log "stopped"
