#!/usr/bin/env bash
# Benchmark of `byok-airgap ceremony run` against the HSM's own floor (release
# build, SoftHSM2): for each N, a bare cryptoki loop making only the unavoidable
# PKCS#11 calls per key, then a ceremony of N keys (AES and HMAC, one
# RSAES_OAEP_SHA_1 target each) on the same fresh token, with the split of where
# the tool's time goes; then `ceremony verify` of the largest result, signed.
#
#   scripts/bench-ceremony.sh                 # N = 10, 100, 200, 1000
#   scripts/bench-ceremony.sh --keys 10,100   # pick N
#   scripts/bench-ceremony.sh --rounds 5      # rounds per N (default 3; the median round is reported)
#
# Not a test: nothing here asserts. Results go in docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BYOK_SKIP_DEPS:-}" ]; then bash scripts/install-deps.sh; fi
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
cargo build --locked --release --quiet --features bench --bin byok-bench --bin byok-airgap
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/byok-bench" "$@"
