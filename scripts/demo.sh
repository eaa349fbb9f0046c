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

umask 077
. scripts/lib/softhsm-tokens.sh

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
# The bastion's own receipts and parameters records, for this run only.
export BYOK_STATE_DIR="$work/bastion-state"
exports="$(scripts/localstack/start.sh)"
eval "$exports"
trap 'scripts/localstack/stop.sh >/dev/null 2>&1 || true' EXIT

sign() { # custodian dir
  on_token "$work/card-$1" "$airgap" ceremony sign "$2" --token-label "card-$1" \
    --pin-file "$work/card-$1/user.pin" --custodian "$1" --key-label "custodian-$1" --yes
}

module="${BYOK_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
draft() { # file ceremony-id keys-json -> a draft ceremony file (no fingerprints yet)
  python3 - "$@" "$module" <<'PY'
import json, sys
out, cid, keys, module = sys.argv[1:]
json.dump({"format": "byok-ceremony/ceremony/v1", "ceremony_id": cid,
           "purpose": "byok-ceremony demo on SoftHSM2 and LocalStack",
           "hsm": {"module": module, "token_label": "demo-ceremony"},
           "policy": "policy.json", "keys": json.loads(keys)}, open(out, "w"), indent=2)
PY
}
run_ceremony() { # prepared-ceremony-file out-dir
  say "Air gap: check the ceremony file and print the custodians' runbook"
  "$airgap" ceremony plan "$1" --runbook "$2.runbook.md" >/dev/null
  say "Bastion: the parameters digest (custodians carry it on paper, not on the media)"
  digest="$("$bastion" params-digest --ceremony "$1")"
  say "Air gap: confirm the wrapping keys with the bastion's digest, generate every key in the HSM and wrap it there"
  on_token "$work/hsm" "$airgap" ceremony run "$1" --out "$2" --pin-file "$work/hsm/user.pin" \
    --non-interactive --expect-parameters-digest "$digest"
  say "Custodians alice and bob sign the transcript (2 of 3)"
  sign alice "$2"
  sign bob "$2"
  "$airgap" ceremony verify "$2" --policy "$work/policy.json"
}

say "Bastion: prepare a two-Region ceremony from a draft (creating the EXTERNAL keys)"
draft "$work/draft.json" demo-2026-11 '[
  {"label": "demo-s3-2026-11", "key_spec": "SYMMETRIC_DEFAULT", "source": "generate", "targets": [
    {"name": "us-east-1", "region": "us-east-1", "params": "params/s3-us-east-1.json", "wrapping_algorithm": "RSAES_OAEP_SHA_1"},
    {"name": "eu-west-1", "region": "eu-west-1", "params": "params/s3-eu-west-1.json", "wrapping_algorithm": "RSAES_OAEP_SHA_1"}]},
  {"label": "demo-webhooks-2026-11", "key_spec": "HMAC_256", "source": "generate", "targets": [
    {"name": "us-east-1", "region": "us-east-1", "params": "params/webhooks-us-east-1.json", "wrapping_algorithm": "RSAES_OAEP_SHA_1"}]}]'
"$bastion" prepare --ceremony "$work/draft.json" --out "$work/ceremony.json" --create-missing

run_ceremony "$work/ceremony.json" "$work/out-2026-11"

say "Bastion: verify the signatures with its own policy, then import every bundle"
"$bastion" import "$work/out-2026-11" --policy "$work/policy.json" --params-dir "$work/params" --no-expiry
say "Bastion: prove KMS holds the HSM's keys"
"$bastion" verify "$work/out-2026-11" --policy "$work/policy.json"

say "Rotation: new material for the S3 key in both Regions (NEW_KEY_MATERIAL), then made current"
targets="$(python3 - "$work/ceremony.json" <<'PY'
import json, sys
key = json.load(open(sys.argv[1]))["keys"][0]
print(json.dumps([{"name": t["name"], "kms_key": t["kms_key"], "params": "params/rotation-" + t["name"] + ".json",
                   "wrapping_algorithm": "RSAES_OAEP_SHA_1"} for t in key["targets"]]))
PY
)"
draft "$work/draft-rotation.json" demo-2026-12 "[{\"label\": \"demo-s3-2026-12\", \"key_spec\": \"SYMMETRIC_DEFAULT\", \"source\": \"generate\", \"targets\": $targets}]"
"$bastion" prepare --ceremony "$work/draft-rotation.json" --out "$work/rotation.json"
run_ceremony "$work/rotation.json" "$work/out-2026-12"
"$bastion" import "$work/out-2026-12" --policy "$work/policy.json" --params-dir "$work/params" --no-expiry --new-key-material
"$bastion" rotate "$work/out-2026-12" --policy "$work/policy.json"
"$bastion" verify "$work/out-2026-12" --policy "$work/policy.json"

say "Rotation status of every imported key in both Regions"
"$bastion" status --regions us-east-1,eu-west-1

say "Done. Ceremony files, outputs, transcripts, attestations and receipts are in $work"
