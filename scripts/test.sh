#!/usr/bin/env bash
# Run the whole test suite: installs what it needs (SoftHSM2, NSS softoken,
# Python for LocalStack), then formatting, lints and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy (all targets, all features)" >&2
cargo clippy --locked --all-targets --all-features -- -D warnings
echo "== cargo test (all features)" >&2
cargo test --locked --all-features
