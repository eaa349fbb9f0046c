#!/usr/bin/env bash
# Run the whole test suite: installs what it needs (SoftHSM2, NSS softoken,
# Python for LocalStack), builds SoftHSM 2.7.0 once (cached; scripts/softhsm27.sh),
# then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"
# A CI run builds once: incremental caches would only take disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

# The third PKCS#11 implementation: its tests fail (never skip) without it.
echo "== SoftHSM 2.7.0 (scripts/softhsm27.sh)" >&2
BYOK_TEST_SOFTHSM27_MODULE="$(bash scripts/softhsm27.sh)"
export BYOK_TEST_SOFTHSM27_MODULE

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy (all targets, all features)" >&2
cargo clippy --locked --all-targets --all-features -- -D warnings
echo "== cargo test (all features)" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --all-features 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
