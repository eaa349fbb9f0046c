#!/usr/bin/env bash
# The whole measured round in one run, as docs/performance.md reports it:
#   1. scripts/bench-ceremony.sh: `ceremony run` of N keys against the PKCS#11
#      floor on the same token (N = 10, 100, 200, 1000 unless --keys is given),
#      where the tool's time goes, and `ceremony verify` of the 1000-key result;
#   2. scripts/bench-batch.sh: the bastion's import and verify with `--jobs 1`
#      against `--jobs JOBS` through the latency proxy (N=48 JOBS=16 unless set).
#
#   scripts/bench.sh                    # everything
#   scripts/bench.sh --keys 200,1000    # passed to bench-ceremony.sh
#
# Not a test: nothing here asserts. Run it on a machine doing nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
echo "== $(date -u +%FT%TZ) $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== ceremony run against the floor (scripts/bench-ceremony.sh)"
BYOK_SKIP_DEPS=1 bash scripts/bench-ceremony.sh "$@"
echo "== the bastion's batches (scripts/bench-batch.sh)"
BYOK_SKIP_DEPS=1 N="${N:-48}" JOBS="${JOBS:-16}" bash scripts/bench-batch.sh
echo "== done $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
