#!/usr/bin/env bash
# Install what byok-ceremony needs on a Debian machine: SoftHSM2, NSS softoken
# and its tools (the second PKCS#11 implementation the tests use), the tools to
# build SoftHSM 2.7.0 from source (the third; scripts/softhsm27.sh), Python for
# LocalStack, and a Rust toolchain if none is present. Safe to run repeatedly.
set -euo pipefail

need=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need+=(softhsm2)
command -v softhsm2-util >/dev/null || need+=(softhsm2)
ls /usr/lib/*/libsoftokn3.so >/dev/null 2>&1 || need+=(libnss3)
command -v certutil >/dev/null || need+=(libnss3-tools)
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v curl >/dev/null || need+=(curl)
# Building SoftHSM 2.7.0 (scripts/softhsm27.sh): autotools, a C++ compiler, OpenSSL headers.
command -v autoreconf >/dev/null || need+=(autoconf)
command -v automake >/dev/null || need+=(automake)
command -v libtoolize >/dev/null || need+=(libtool)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
[ -e /usr/include/openssl/evp.h ] || need+=(libssl-dev)

sudo_() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ${#need[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need[*]}" >&2
  sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  elif apt-cache show rustup >/dev/null 2>&1; then
    echo "installing rustup from Debian and the stable toolchain" >&2
    DEBIAN_FRONTEND=noninteractive sudo_ apt-get install -y -qq rustup >/dev/null
    rustup default stable >&2
  else
    echo "error: no Rust toolchain (cargo) found and this Debian release has no rustup package." >&2
    echo "Install Rust 1.85 or newer with rustup (see the Rust project's installation page), then re-run." >&2
    exit 1
  fi
fi
echo "dependencies present: softhsm2, NSS softoken, SoftHSM 2.7.0 build tools, python3, cargo $(cargo --version | cut -d' ' -f2)" >&2
