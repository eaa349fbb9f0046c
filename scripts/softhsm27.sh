#!/usr/bin/env bash
# Build SoftHSM 2.7.0 from its vendored source tarball (once; cached outside
# the repository) and print the path of its PKCS#11 module on stdout.
#
#   export BYOK_TEST_SOFTHSM27_MODULE="$(scripts/softhsm27.sh)"
#
# SoftHSM 2.7.0 is the only token the tests can run that offers the native
# CKM_RSA_AES_KEY_WRAP mechanism (Debian ships 2.6.1, which does not). The
# tarball is the upstream 2.7.0 tag (BSD-2-Clause); its SHA-256 is checked
# before anything is extracted. stdout carries only the module path; progress
# goes to stderr and the build log to BUILD_DIR.log next to the install.
#
# Files: the install in $cache/softhsm-2.7.0-<first 12 hex of the SHA-256>/
# (lib/softhsm/libsofthsm2.so, bin/softhsm2-util), published by one rename
# only after `make install` succeeded, so a half-built tree is never used.
# Concurrent runs wait on a lock and reuse the first one's build.
#
# Environment (all optional):
#   BYOK_CACHE_DIR           cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/byok-ceremony)
#   BYOK_SOFTHSM27_TARBALL   the source tarball (default: ../shared/vendor/softhsm-2.7.0.tar.gz
#                            relative to the repository root); its hash is checked all the same
#   BYOK_SOFTHSM27_JOBS      make -j value (default: 2)
# Needs: autoconf, automake, libtool, pkg-config, g++, make, libssl-dev, flock
# (scripts/install-deps.sh installs them).
set -euo pipefail

readonly VERSION=2.7.0
readonly SHA256=1af07e0f1aebfa6afab4f67a41129aa7051f0192bebbc15cc01d13178fa7ecc4

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tarball="${BYOK_SOFTHSM27_TARBALL:-$root/../shared/vendor/softhsm-$VERSION.tar.gz}"
cache_dir="${BYOK_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/byok-ceremony}"
prefix="$cache_dir/softhsm-$VERSION-${SHA256:0:12}"
module="$prefix/lib/softhsm/libsofthsm2.so"
util="$prefix/bin/softhsm2-util"
jobs="${BYOK_SOFTHSM27_JOBS:-2}"

log() { printf 'softhsm27: %s\n' "$*" >&2; }
die() {
    printf 'softhsm27: error: %s\n' "$*" >&2
    exit 1
}

built() { [ -f "$module" ] && [ -x "$util" ] && [ "$(cat "$prefix/.byok-source-sha256" 2>/dev/null)" = "$SHA256" ]; }

if built; then
    printf '%s\n' "$module"
    exit 0
fi

[ -f "$tarball" ] || die "the SoftHSM $VERSION source is not at $tarball: put softhsm-$VERSION.tar.gz (upstream tag $VERSION) there or set BYOK_SOFTHSM27_TARBALL"
for tool in autoreconf automake libtoolize pkg-config g++ make flock sha256sum; do
    command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh"
done

mkdir -p "$cache_dir"
exec 9>"$cache_dir/.softhsm-$VERSION.lock"
flock 9
if built; then # another run built it while we waited
    printf '%s\n' "$module"
    exit 0
fi

actual="$(sha256sum "$tarball" | cut -d' ' -f1)"
[ "$actual" = "$SHA256" ] || die "$tarball has SHA-256 $actual, not $SHA256 (the upstream $VERSION tag): refusing to build it; fetch the release again and compare"

work="$(mktemp -d "$cache_dir/.softhsm-$VERSION-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
build_log="$prefix.log"
log "building SoftHSM $VERSION into $prefix (log: $build_log)"
start=$SECONDS
tar -xzf "$tarball" -C "$work"
src="$work/softhsm-$VERSION"
[ -f "$src/autogen.sh" ] || die "$tarball does not contain softhsm-$VERSION/autogen.sh"
if ! (
    cd "$src"
    sh autogen.sh
    ./configure --with-crypto-backend=openssl --disable-gost --disable-p11-kit --prefix="$prefix"
    make -j"$jobs"
    make install DESTDIR="$work/stage"
) >"$build_log" 2>&1; then
    tail -n 30 "$build_log" >&2
    die "the SoftHSM $VERSION build failed (full log: $build_log)"
fi
[ -f "$work/stage$module" ] || die "make install did not produce $module (log: $build_log)"
printf '%s\n' "$SHA256" >"$work/stage$prefix/.byok-source-sha256"
rm -rf "$prefix"
mv "$work/stage$prefix" "$prefix"
log "built in $((SECONDS - start)) s"
built || die "the install at $prefix is incomplete"
printf '%s\n' "$module"
