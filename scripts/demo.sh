#!/usr/bin/env bash
# A whole bring-your-own-key ceremony on this machine's embedded default:
# SoftHSM2 as the HSM (and as each custodian's card), LocalStack as KMS.
# Installs what it needs.
#
# It plays every role in one script; in real life the parameters and bundles
# travel on removable media, custodians read fingerprints aloud and sign on
# their own cards. Nothing here is for production: SoftHSM2 is not an HSM.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
bash scripts/install-deps.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

work="${BYOK_DEMO_DIR:-$(mktemp -d -t byok-demo.XXXXXX)}"
mkdir -p "$work"
say "Working in $work"

say "Building byok-airgap (offline) and byok-bastion (online)"
cargo build --locked --quiet --features bastion --bins
airgap="$root/target/debug/byok-airgap"
bastion="$root/target/debug/byok-bastion"

# One SoftHSM2 configuration per "machine" or card.
umask 077
new_token() { # dir label -> creates the token; PINs in files only this user can read
  local dir="$1" label="$2"
  mkdir -p "$dir/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$dir/tokens" >"$dir/softhsm2.conf"
  head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/user.pin"
  head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/so.pin"
  SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --init-token --free --label "$label" \
    --so-pin "$(cat "$dir/so.pin")" --pin "$(cat "$dir/user.pin")" >/dev/null
}
on_token() { # dir cmd... -> runs cmd with that token's configuration
  local dir="$1"; shift
  SOFTHSM2_CONF="$dir/softhsm2.conf" "$@"
}

say "The HSM on the air-gapped workstation (see SoftHSM.md)"
new_token "$work/hsm" demo-ceremony
hsm=(--token-label demo-ceremony --pin-file "$work/hsm/user.pin")
on_token "$work/hsm" "$airgap" mechanisms "${hsm[@]}" --key-spec SYMMETRIC_DEFAULT --key-spec HMAC_256 \
  --wrapping-algorithm RSAES_OAEP_SHA_1 --wrapping-algorithm RSAES_OAEP_SHA_256

say "Three custodians create signing keys on their own cards; the policy needs 2 of 3"
entries=()
for c in alice bob carol; do
  new_token "$work/card-$c" "card-$c"
  on_token "$work/card-$c" "$airgap" custodian init --token-label "card-$c" --pin-file "$work/card-$c/user.pin" \
    --name "$c" --key-label "custodian-$c" --json >"$work/card-$c/entry.json"
  entries+=("$work/card-$c/entry.json")
done
python3 - "$work/policy.json" "${entries[@]}" <<'PY'
import json, sys
out, *files = sys.argv[1:]
json.dump({"format": "byok-ceremony/custodian-policy/v1", "threshold": 2,
           "custodians": [json.load(open(f))["entry"] for f in files]}, open(out, "w"), indent=2)
PY
echo "policy: $work/policy.json"

say "Starting LocalStack KMS on loopback"
export BYOK_LOCALSTACK_STATE="$work/localstack"
exports="$(scripts/localstack/start.sh)"
eval "$exports"
trap 'scripts/localstack/stop.sh >/dev/null 2>&1 || true' EXIT

sign() { # custodian dir
  on_token "$work/card-$1" "$airgap" ceremony sign "$2" --token-label "card-$1" \
    --pin-file "$work/card-$1/user.pin" --custodian "$1" --key-label "custodian-$1" --yes
}

ceremony() { # spec label [extra import args]
  local spec="$1" label="$2"; shift 2
  say "$spec: bastion fetches import parameters"
  "$bastion" prepare --key "$key_arn" --wrapping-algorithm RSAES_OAEP_SHA_1 --out-dir "$work/params-$label" --json >"$work/params-$label.json"
  local params fp
  params="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["params_file"])' "$work/params-$label.json")"
  fp="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["wrapping_key_sha256"])' "$work/params-$label.json")"

  say "$spec: air gap generates the key in the HSM and wraps it there (fingerprint confirmed)"
  on_token "$work/hsm" "$airgap" wrap "${hsm[@]}" --params "$params" --key-spec "$spec" \
    --label "$label" --expect-wrapping-key-sha256 "$fp" --out "$work/$label"

  say "$spec: custodians alice and bob sign the transcript"
  sign alice "$work/$label"
  sign bob "$work/$label"
  "$airgap" ceremony verify "$work/$label" --policy "$work/policy.json"

  say "$spec: bastion verifies the signatures with its own policy, then imports"
  "$bastion" import "$work/$label" --policy "$work/policy.json" --params "$params" --no-expiry "$@"

  say "$spec: prove KMS holds the HSM's key"
  "$bastion" verify "$work/$label" --policy "$work/policy.json"
}

say "Bastion creates EXTERNAL KMS keys"
"$bastion" prepare --create SYMMETRIC_DEFAULT --wrapping-algorithm RSAES_OAEP_SHA_1 --out-dir "$work/created-aes" --json >"$work/created-aes.json"
aes_arn="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["key_arn"])' "$work/created-aes.json")"
"$bastion" prepare --create HMAC_256 --wrapping-algorithm RSAES_OAEP_SHA_1 --out-dir "$work/created-hmac" --json >"$work/created-hmac.json"
hmac_arn="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["key_arn"])' "$work/created-hmac.json")"

key_arn="$aes_arn" ceremony SYMMETRIC_DEFAULT demo-s3-2026-11
key_arn="$hmac_arn" ceremony HMAC_256 demo-webhooks-2026-11

say "Rotation: new material for the S3 key, imported as NEW_KEY_MATERIAL, then made current"
key_arn="$aes_arn" ceremony SYMMETRIC_DEFAULT demo-s3-2026-12 --new-key-material
"$bastion" rotate "$work/demo-s3-2026-12"

say "Done. Outputs, transcripts and attestations are in $work"
