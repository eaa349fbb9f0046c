#!/usr/bin/env bash
# A whole bring-your-own-key run on this machine's embedded default:
# SoftHSM2 as the HSM and LocalStack as KMS. Installs what it needs.
#
# It plays both sides of the air gap in one script; in real life the
# parameters and bundles travel on removable media and a custodian reads the
# fingerprint aloud. Nothing here is for production: SoftHSM2 is not an HSM.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
bash scripts/install-deps.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

work="${BYOK_DEMO_DIR:-$(mktemp -d -t byok-demo.XXXXXX)}"
mkdir -p "$work"
say "Working in $work"

say "Building byok-airgap"
cargo build --locked --quiet --bin byok-airgap
airgap="$root/target/debug/byok-airgap"

say "Creating a SoftHSM2 token (see SoftHSM.md)"
mkdir -p "$work/tokens"
export SOFTHSM2_CONF="$work/softhsm2.conf"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$work/tokens" >"$SOFTHSM2_CONF"
umask 077
# Demo PINs, random, in files only this user can read (never on a command line of ours).
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/user.pin"
head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/so.pin"
softhsm2-util --init-token --free --label demo-ceremony \
  --so-pin "$(cat "$work/so.pin")" --pin "$(cat "$work/user.pin")" >/dev/null
hsm=(--token-label demo-ceremony --pin-file "$work/user.pin")

say "Starting LocalStack KMS on loopback"
export BYOK_LOCALSTACK_STATE="$work/localstack"
exports="$(scripts/localstack/start.sh)"
eval "$exports"
trap 'scripts/localstack/stop.sh >/dev/null 2>&1 || true' EXIT
peer=("${BYOK_LOCALSTACK_PYTHON:-python3}" scripts/localstack/kms_peer.py)

say "What this token can do (known-answer self-test)"
"$airgap" mechanisms "${hsm[@]}" --key-spec SYMMETRIC_DEFAULT --key-spec HMAC_256 \
  --wrapping-algorithm RSAES_OAEP_SHA_1 --wrapping-algorithm RSAES_OAEP_SHA_256

run_key() {
  local spec="$1" label="$2" alg=RSAES_OAEP_SHA_1
  say "$spec: bastion creates an EXTERNAL KMS key and fetches import parameters"
  local key_id
  key_id="$("${peer[@]}" create-key --key-spec "$spec" --description "byok-ceremony demo $label")"
  "${peer[@]}" get-params --key-id "$key_id" --wrapping-algorithm "$alg" \
    --wrapping-key-spec RSA_2048 --out "$work/$label.params.json"
  local fp
  fp="$(python3 -c 'import base64,hashlib,json,sys; print(hashlib.sha256(base64.b64decode(json.load(open(sys.argv[1]))["PublicKey"])).hexdigest())' "$work/$label.params.json")"
  echo "bastion reads aloud the wrapping key fingerprint: $fp"

  say "$spec: air gap generates the key in the HSM and wraps it there"
  "$airgap" inspect --params "$work/$label.params.json"
  "$airgap" wrap "${hsm[@]}" --params "$work/$label.params.json" --wrapping-algorithm "$alg" \
    --key-spec "$spec" --label "$label" --expect-wrapping-key-sha256 "$fp" --out "$work/$label"

  say "$spec: bastion imports (stand-in: scripts/localstack/kms_peer.py until byok-bastion import lands)"
  "${peer[@]}" import --key-id "$key_id" --params "$work/$label.params.json" \
    --encrypted-key-material "$work/$label/EncryptedKeyMaterial.bin" --no-expiry >/dev/null

  say "$spec: prove KMS holds the HSM's key"
  case "$spec" in
    SYMMETRIC_DEFAULT)
      "${peer[@]}" encrypt-decrypt --key-id "$key_id"
      echo "KMS encrypts and decrypts with the imported key; HSM key check value: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kcv"])' "$work/$label/manifest.json")"
      ;;
    HMAC_*)
      local msg want got
      msg="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hmac_check"]["message_hex"])' "$work/$label/manifest.json")"
      want="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hmac_check"]["mac_hex"])' "$work/$label/manifest.json")"
      got="$("${peer[@]}" generate-mac --key-id "$key_id" --algorithm HMAC_SHA_256 --message-hex "$msg")"
      echo "HSM HMAC: $want"
      echo "KMS HMAC: $got"
      [ "$want" = "$got" ] || { echo "MISMATCH: KMS does not hold the HSM's key" >&2; exit 1; }
      echo "equal: KMS holds the HSM's key"
      ;;
  esac
}

run_key SYMMETRIC_DEFAULT demo-s3-prod
run_key HMAC_256 demo-webhooks-prod

say "Done. Outputs are in $work"
