#!/usr/bin/env bash
# Start moto's standalone server (RDS, DynamoDB, Security Hub, ... in one endpoint)
# as a plain process on 127.0.0.1, for the `byok-bastion audit` tests. It runs
# through launch.py, which fills one gap of moto (DynamoDB UpdateTable's
# SSESpecification; see there) and otherwise is moto_server.
#
#   eval "$(scripts/moto/start.sh)"     # installs on first use, then starts
#   scripts/moto/stop.sh
#
# stdout carries only `export ...` lines (AWS_ENDPOINT_URL_RDS,
# AWS_ENDPOINT_URL_DYNAMODB, _SECURITYHUB, _STS, _ORGANIZATIONS, BYOK_MOTO_ENDPOINT,
# BYOK_MOTO_PYTHON); progress goes to stderr.
#
# Files: venv in $BYOK_CACHE_DIR/moto-5.1.22 (re-created when the sha256 of
# requirements.lock changes), and in the state dir moto.pid, moto.port, moto.log.
# Needs: python3.11 with venv, PyPI via pip, flock, setsid.
#
# Environment (all optional):
#   BYOK_CACHE_DIR       cache root (default: $HOME/.cache/byok-ceremony)
#   BYOK_MOTO_STATE      state dir (default: $BYOK_CACHE_DIR/moto-state); one per instance
#   BYOK_PYTHON          interpreter for the venv (default: python3; must be 3.11)
#   MOTO_START_TIMEOUT   seconds to wait for the listener (default: 60)
set -euo pipefail

readonly MOTO_VERSION=5.1.22

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lock_file="$here/requirements.lock"
cache_dir="${BYOK_CACHE_DIR:-$HOME/.cache/byok-ceremony}"
venv="$cache_dir/moto-$MOTO_VERSION"
state="${BYOK_MOTO_STATE:-$cache_dir/moto-state}"
base_python="${BYOK_PYTHON:-python3}"
timeout="${MOTO_START_TIMEOUT:-60}"
stamp_file="$venv/.byok-lock-sha256"

log() { printf 'moto: %s\n' "$*" >&2; }
die() {
    printf 'moto: error: %s\n' "$*" >&2
    exit 1
}

[[ -f "$lock_file" ]] || die "missing $lock_file"
mkdir -p "$cache_dir" "$state"

exec 9>"$cache_dir/moto-$MOTO_VERSION.lock"
flock 9
want="$(sha256sum "$lock_file" | cut -d' ' -f1)"
have="$(cat "$stamp_file" 2>/dev/null || true)"
if [[ "$want" != "$have" || ! -x "$venv/bin/moto_server" ]]; then
    command -v "$base_python" >/dev/null 2>&1 || die "$base_python not found (set BYOK_PYTHON)"
    pyver="$("$base_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    [[ "$pyver" == "3.11" ]] || die "$base_python is Python $pyver; requirements.lock is for 3.11 (set BYOK_PYTHON)"
    log "creating venv $venv (moto $MOTO_VERSION)"
    rm -rf "$venv"
    "$base_python" -m venv "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --no-deps --require-hashes -r "$lock_file" >&2 || die "pip install from $lock_file failed"
    printf '%s\n' "$want" >"$stamp_file"
fi
exec 9>&-

port="$("$venv/bin/python" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')"
log_file="$state/moto.log"
: >"$log_file"
log "starting moto_server $MOTO_VERSION on 127.0.0.1:$port; log: $log_file"
env -i PATH="/usr/local/bin:/usr/bin:/bin" HOME="$state" LANG=C.UTF-8 TZ=UTC \
    setsid "$venv/bin/python" "$here/launch.py" -H 127.0.0.1 -p "$port" </dev/null >>"$log_file" 2>&1 &
pid=$!
printf '%s\n' "$pid" >"$state/moto.pid"
printf '%s\n' "$port" >"$state/moto.port"

# Ready when this pid answers on the port (moto's dashboard API).
if ! "$venv/bin/python" - "$port" "$pid" "$timeout" <<'PY'
import os, sys, time, urllib.request
port, pid, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        print(f"process {pid} exited", file=sys.stderr)
        sys.exit(3)
    try:
        with opener.open(f"http://127.0.0.1:{port}/moto-api/data.json", timeout=2):
            sys.exit(0)
    except Exception:
        time.sleep(0.25)
print("timed out", file=sys.stderr)
sys.exit(1)
PY
then
    log "moto_server did not start; last lines of $log_file:"
    tail -n 30 "$log_file" >&2 || true
    kill -TERM "$pid" 2>/dev/null || true
    rm -f "$state/moto.pid" "$state/moto.port"
    exit 1
fi
log "ready (pid $pid)"
printf 'export AWS_ENDPOINT_URL_RDS=%q\n' "http://127.0.0.1:$port"
printf 'export AWS_ENDPOINT_URL_DYNAMODB=%q\n' "http://127.0.0.1:$port"
printf 'export AWS_ENDPOINT_URL_SECURITYHUB=%q\n' "http://127.0.0.1:$port"
printf 'export AWS_ENDPOINT_URL_STS=%q\n' "http://127.0.0.1:$port"
printf 'export AWS_ENDPOINT_URL_ORGANIZATIONS=%q\n' "http://127.0.0.1:$port"
printf 'export BYOK_MOTO_ENDPOINT=%q\n' "http://127.0.0.1:$port"
printf 'export BYOK_MOTO_PYTHON=%q\n' "$venv/bin/python"
