#!/usr/bin/env bash
# Build the AWS Config rule's Lambda package: `byok-config-rule` (cargo
# feature `config-rule`), release profile, renamed `bootstrap` (what the
# provided.al2023 runtime runs) and zipped.
#
#   scripts/build-config-rule.sh [OUT.zip]          # default: target/lambda/byok-config-rule.zip
#   CARGO_BUILD_TARGET=aarch64-unknown-linux-gnu scripts/build-config-rule.sh
#   PROFILE=dev scripts/build-config-rule.sh        # a debug build (to try the packaging)
#
# The binary is built for the host unless CARGO_BUILD_TARGET names another
# target: Lambda runs x86_64 or arm64 Linux (Amazon Linux 2023, glibc 2.34),
# so build on (or cross-compile for) the architecture the stack's
# `Architecture` parameter names; docs/monitoring.md shows both. Needs cargo
# and python3 (for the zip; no zip tool needed).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$here/target}"
out="${1:-$target_dir/lambda/byok-config-rule.zip}"

cd "$here"
profile="${PROFILE:-release}"
case "$profile" in
release) profile_dir=release ;;
dev) profile_dir=debug ;;
*) echo "build-config-rule: PROFILE is release or dev, not $profile" >&2; exit 2 ;;
esac
cargo build --locked --profile "$profile" --features config-rule --bin byok-config-rule >&2
bin="$target_dir/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}$profile_dir/byok-config-rule"
[[ -x "$bin" ]] || { echo "build-config-rule: no binary at $bin" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
python3 - "$bin" "$out" <<'PY'
import os, sys, zipfile
binary, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16  # a regular file, executable
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(binary, "rb") as f:
        z.writestr(info, f.read())
os.replace(out + ".tmp", out)
PY
sha256sum "$out" >&2
echo "$out"
