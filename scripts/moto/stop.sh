#!/usr/bin/env bash
# Stop the moto_server started by start.sh (same BYOK_CACHE_DIR / BYOK_MOTO_STATE).
set -euo pipefail
cache_dir="${BYOK_CACHE_DIR:-$HOME/.cache/byok-ceremony}"
state="${BYOK_MOTO_STATE:-$cache_dir/moto-state}"
pid="$(cat "$state/moto.pid" 2>/dev/null || true)"
if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq "moto_server|moto/launch\.py"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    printf 'moto: stopped pid %s\n' "$pid" >&2
fi
rm -f "$state/moto.pid" "$state/moto.port"
