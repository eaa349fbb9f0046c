#!/usr/bin/env bash
# Start LocalStack (KMS; more services with BYOK_LOCALSTACK_SERVICES) as a plain process on 127.0.0.1 -- no Docker.
#
#   eval "$(scripts/localstack/start.sh)"    # installs on first use, then starts
#   python3 scripts/localstack/kms_peer.py create-key --key-spec SYMMETRIC_DEFAULT
#   scripts/localstack/stop.sh
#
# stdout carries only `export ...` lines (AWS_ENDPOINT_URL_KMS, dummy credentials,
# region, BYOK_LOCALSTACK_PYTHON); all progress goes to stderr. Running it again
# while the instance is healthy reuses it and prints the same lines. Exit status is
# non-zero on failure, but `eval "$(...)"` hides it: where that matters use
#   ls_env="$(scripts/localstack/start.sh)" && eval "$ls_env"
#
# Files: venv in $BYOK_CACHE_DIR/localstack-4.13.1 (re-created when the sha256 of
# requirements.lock changes; stamp .byok-lock-sha256), and in the state dir
# localstack.pid, localstack.port, localstack.log plus LocalStack's own fs/, tmp/.
# Needs: python3.11 with venv (Debian: python3-venv), PyPI via pip, flock, setsid.
#
# Environment (all optional):
#   BYOK_CACHE_DIR          cache root (default: $HOME/.cache/byok-ceremony)
#                           venv: $BYOK_CACHE_DIR/localstack-4.13.1
#   BYOK_LOCALSTACK_STATE   state dir: pid, port, log, LocalStack's own files
#                           (default: $BYOK_CACHE_DIR/localstack-state). Use a
#                           different one per instance to run several at once.
#   BYOK_PYTHON             interpreter for the venv (default: python3; must be 3.11,
#                           which the lock was resolved for)
#   LOCALSTACK_PORT         port to listen on (default: a free loopback port)
#   LOCALSTACK_START_TIMEOUT  seconds to wait for health (default: 90)
#   BYOK_LOCALSTACK_DEBUG=1 start LocalStack with DEBUG=1 (more log output)
#   BYOK_LOCALSTACK_SERVICES  comma-separated services (default: kms; kms is always
#                           included). `byok-bastion audit` tests use kms,s3 (they
#                           also get AWS_ENDPOINT_URL_S3 / _DYNAMODB exported).
set -euo pipefail

readonly LS_VERSION=4.13.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock_file="$here/requirements.lock"
launcher="$here/launch.py"
cache_dir="${BYOK_CACHE_DIR:-$HOME/.cache/byok-ceremony}"
venv="$cache_dir/localstack-$LS_VERSION"
state="${BYOK_LOCALSTACK_STATE:-$cache_dir/localstack-state}"
base_python="${BYOK_PYTHON:-python3}"
timeout="${LOCALSTACK_START_TIMEOUT:-90}"
services="${BYOK_LOCALSTACK_SERVICES:-kms}"

pid_file="$state/localstack.pid"
port_file="$state/localstack.port"
log_file="$state/localstack.log"
stamp_file="$venv/.byok-lock-sha256"

log() { printf 'localstack: %s\n' "$*" >&2; }
die() {
    printf 'localstack: error: %s\n' "$*" >&2
    exit 1
}

# True if $1 is the pid of a LocalStack started by launch.py.
is_our_process() {
    local pid="$1"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmd" == *launch.py* ]]
}

# Healthy = /_localstack/health answers and reports kms as available/running, and
# the socket listening on the port belongs to process pid. (LocalStack logs
# "Ready." and keeps running even when it could not bind its port, so a health
# answer alone may come from some other server.)
# Args: port pid [timeout]. Also fails as soon as that process dies.
wait_healthy() {
    "$venv/bin/python" - "$@" <<'PY'
import json, os, sys, time, urllib.request

port = int(sys.argv[1])
pid = int(sys.argv[2])
deadline = time.monotonic() + (float(sys.argv[3]) if len(sys.argv) > 3 else 0)
url = f"http://127.0.0.1:{port}/_localstack/health"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore http_proxy


def owns_listener() -> bool:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            col = row.split()
            if col[3] == "0A" and int(col[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(col[9])
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


last = "no answer"
while True:
    try:
        with opener.open(url, timeout=2) as resp:
            state = json.load(resp).get("services", {}).get("kms")
            if state not in ("available", "running"):
                last = f"kms is {state!r}"
            elif owns_listener():
                sys.exit(0)
            else:
                print(f"port {port} answers, but not from pid {pid} (port taken?)", file=sys.stderr)
                sys.exit(4)
    except Exception as e:  # connection refused while starting, etc.
        last = str(e)
    try:  # gone, or a zombie not yet reaped by start.sh
        with open(f"/proc/{pid}/stat") as f:
            dead = f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        dead = True
    if dead:
        print(f"process {pid} exited ({last})", file=sys.stderr)
        sys.exit(3)
    if time.monotonic() >= deadline:
        print(last, file=sys.stderr)
        sys.exit(1)
    time.sleep(0.25)
PY
}

print_exports() {
    local port="$1"
    printf 'export AWS_ENDPOINT_URL_KMS=%q\n' "http://127.0.0.1:$port"
    if [[ ",$services," == *,s3,* ]]; then
        printf 'export AWS_ENDPOINT_URL_S3=%q\n' "http://127.0.0.1:$port"
    fi
    if [[ ",$services," == *,dynamodb,* ]]; then
        printf 'export AWS_ENDPOINT_URL_DYNAMODB=%q\n' "http://127.0.0.1:$port"
    fi
    printf 'export AWS_ACCESS_KEY_ID=test\n'
    printf 'export AWS_SECRET_ACCESS_KEY=test\n'
    printf 'export AWS_DEFAULT_REGION=us-east-1\n'
    printf 'export AWS_REGION=us-east-1\n'
    printf 'export BYOK_LOCALSTACK_PYTHON=%q\n' "$venv/bin/python"
}

[[ -f "$lock_file" ]] || die "missing $lock_file"
[[ "$services" =~ ^[a-z0-9,-]+$ ]] ||
    die "BYOK_LOCALSTACK_SERVICES must be a comma-separated list of service names"
[[ ",$services," == *,kms,* ]] || services="kms,$services"
[[ -f "$launcher" ]] || die "missing $launcher"
mkdir -p "$cache_dir" "$state"

# ---------------------------------------------------------------- install ----
install_venv() {
    local want have pyver
    want="$(sha256sum "$lock_file" | cut -d' ' -f1)"
    have="$(cat "$stamp_file" 2>/dev/null || true)"
    if [[ "$want" == "$have" && -x "$venv/bin/python" ]]; then
        return 0
    fi
    command -v "$base_python" >/dev/null 2>&1 ||
        die "$base_python not found (set BYOK_PYTHON to a Python 3.11 interpreter)"
    pyver="$("$base_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [[ "$pyver" == "3.11" ]] ||
        die "$base_python is Python $pyver; requirements.lock is resolved for 3.11 (set BYOK_PYTHON)"

    if [[ -n "$have" ]]; then
        log "requirements.lock changed; re-creating $venv"
    else
        log "creating venv $venv"
    fi
    local f cmd
    for f in /proc/[0-9]*/cmdline; do
        cmd="$(tr '\0' ' ' <"$f" 2>/dev/null || true)"
        if [[ "$cmd" == *"$venv/bin/python"* ]]; then
            die "a process still runs from $venv (${f%/cmdline}); run stop.sh first"
        fi
    done
    local t0=$SECONDS
    rm -rf "$venv"
    "$base_python" -m venv "$venv" >&2 ||
        die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    log "installing localstack-core $LS_VERSION from requirements.lock (about a minute)"
    # --no-compile: ~10 s faster; the few modules LocalStack imports get their .pyc
    # on first start instead (~3 s once).
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-compile \
        --no-deps --require-hashes -r "$lock_file" >&2 ||
        die "pip install from $lock_file failed"
    printf '%s\n' "$want" >"$stamp_file"
    log "venv ready in $((SECONDS - t0)) s"
}

# Serialise installs (and starts) of concurrent callers sharing the cache/state.
exec 9>"$cache_dir/localstack-$LS_VERSION.lock"
flock 9
install_venv
exec 8>"$state/.start.lock"
flock 8
exec 9>&-

# ------------------------------------------------------------ reuse check ----
if [[ -f "$pid_file" ]]; then
    old_pid="$(cat "$pid_file" 2>/dev/null || true)"
    old_port="$(cat "$port_file" 2>/dev/null || true)"
    if is_our_process "$old_pid" && [[ "$old_port" =~ ^[0-9]+$ ]] &&
        wait_healthy "$old_port" "$old_pid" 2>/dev/null; then
        if [[ -n "${LOCALSTACK_PORT:-}" && "$LOCALSTACK_PORT" != "$old_port" ]]; then
            die "already running on port $old_port (pid $old_pid), LOCALSTACK_PORT=$LOCALSTACK_PORT; run stop.sh first"
        fi
        old_services="$(cat "$state/localstack.services" 2>/dev/null || echo kms)"
        if [[ "$old_services" != "$services" ]]; then
            die "already running with services $old_services, not $services; run stop.sh first"
        fi
        log "already running (pid $old_pid, port $old_port); reusing it"
        print_exports "$old_port"
        exit 0
    fi
    if is_our_process "$old_pid"; then
        log "stale instance pid $old_pid is not healthy; stopping it"
        kill -TERM "$old_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$old_pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$old_pid" 2>/dev/null || true
    fi
    rm -f "$pid_file" "$port_file"
fi

# ------------------------------------------------------------------ start ----
if [[ -n "${LOCALSTACK_PORT:-}" ]]; then
    [[ "$LOCALSTACK_PORT" =~ ^[0-9]+$ ]] || die "LOCALSTACK_PORT must be a number"
    port="$LOCALSTACK_PORT"
    "$venv/bin/python" -c '
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.close()' "$port" 2>/dev/null || die "127.0.0.1:$port is already in use (LOCALSTACK_PORT)"
else
    port="$("$venv/bin/python" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')"
fi

# Listen on loopback only: GATEWAY_SERVER=hypercorn, because LocalStack's default
# (twisted) server ignores the host in GATEWAY_LISTEN for IPv4 and binds 0.0.0.0.
# Everything LocalStack writes stays under $state (HOME too: plux's entry-point cache):
#   OVERRIDE_IN_DOCKER=0  host directory layout even inside a container (otherwise
#                         it detects /.dockerenv and uses /var/lib/localstack, /tmp)
#   FILESYSTEM_ROOT       root of its host-mode directories (else: site-packages)
#   TMPDIR                its tmp folder is $TMPDIR/localstack
#   LOCALSTACK_VOLUME_DIR, CONFIG_DIR (else ~/.localstack, whose *.env it would load)
# No network beyond the loopback listener:
#   DNS_ADDRESS=0 (no DNS server on :53), SKIP_SSL_CERT_DOWNLOAD=1 (no certificate
#   download; it makes a self-signed one, offline that try costs up to 2 x 5 s), DISABLE_EVENTS=1 (no
#   analytics). LocalStack logs a harmless "TMPDIR is deprecated" warning: it is
#   still what Python's tempfile (and so LocalStack's tmp folder) uses.
# The environment is otherwise emptied so a caller's AWS_*/DEBUG/... cannot leak in.
mkdir -p "$state/tmp" "$state/fs" "$state/volume" "$state/config"
: >"$log_file"
debug="${BYOK_LOCALSTACK_DEBUG:-0}"
log "starting LocalStack $LS_VERSION ($services) on 127.0.0.1:$port; log: $log_file"
start_t0=$SECONDS
env -i \
    PATH="/usr/local/bin:/usr/bin:/bin" \
    HOME="$state" \
    LANG=C.UTF-8 \
    TZ=UTC \
    PYTHONUNBUFFERED=1 \
    TMPDIR="$state/tmp" \
    SERVICES="$services" \
    GATEWAY_SERVER=hypercorn \
    EAGER_SERVICE_LOADING=1 \
    GATEWAY_LISTEN="127.0.0.1:$port" \
    LOCALSTACK_HOST="127.0.0.1:$port" \
    OVERRIDE_IN_DOCKER=0 \
    FILESYSTEM_ROOT="$state/fs" \
    LOCALSTACK_VOLUME_DIR="$state/volume" \
    CONFIG_DIR="$state/config" \
    PERSISTENCE=0 \
    DNS_ADDRESS=0 \
    SKIP_SSL_CERT_DOWNLOAD=1 \
    DISABLE_EVENTS=1 \
    DEBUG="$debug" \
    setsid "$venv/bin/python" "$launcher" </dev/null >>"$log_file" 2>&1 8>&- &
pid=$!
printf '%s\n' "$pid" >"$pid_file"
printf '%s\n' "$port" >"$port_file"
printf '%s\n' "$services" >"$state/localstack.services"

if ! err="$(wait_healthy "$port" "$pid" "$timeout" 2>&1)"; then
    log "LocalStack failed to start (timeout ${timeout} s): $err"
    log "last lines of $log_file:"
    tail -n 40 "$log_file" >&2 || true
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        sleep 2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file" "$port_file"
    exit 1
fi
log "ready in $((SECONDS - start_t0)) s (pid $pid)"
print_exports "$port"
