#!/usr/bin/env bash
# Benchmark of a batch rotation on this machine's embedded default (SoftHSM2 +
# LocalStack KMS): how long preparing, wrapping and importing N keys spread over
# four Regions takes, and what bounded concurrency buys for import and verify.
#
#   scripts/bench-batch.sh            # N=24 keys per ceremony, 60 ms added per request
#   N=60 JOBS=8 LATENCY_MS=100 scripts/bench-batch.sh
#
# LocalStack answers in a few milliseconds; a KMS Region across a network takes
# tens. The bastion therefore talks to LocalStack through scripts/latency-proxy.py,
# which delays every request by LATENCY_MS (0 to talk to LocalStack directly).
# Prints one line per phase and the speedup ratios. Not a test: nothing here asserts.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
if [ -z "${BYOK_SKIP_DEPS:-}" ]; then bash scripts/install-deps.sh; fi
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

n="${N:-24}"
jobs="${JOBS:-8}"
latency="${LATENCY_MS:-60}"
regions=(us-east-1 eu-west-1 us-west-2 ap-southeast-2)
work="$(mktemp -d -t byok-bench.XXXXXX)"
cargo build --locked --quiet --features bastion --bins
airgap="$root/target/debug/byok-airgap"
bastion="$root/target/debug/byok-bastion"
module="${BYOK_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}"
. scripts/lib/softhsm-tokens.sh

now() { date +%s.%N; }
since() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.2f}")' "$1" "$(now)"; }
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$1" "$2"; }

new_token "$work/hsm" bench
new_token "$work/card" card
on_token "$work/card" "$airgap" custodian init --token-label card --pin-file "$work/card/user.pin" \
  --name alice --key-label sig --json >"$work/alice.json"
python3 - "$work/policy.json" "$work/alice.json" <<'PY'
import json, sys
json.dump({"format": "byok-ceremony/custodian-policy/v1", "threshold": 1,
           "custodians": [json.load(open(sys.argv[2]))["entry"]]}, open(sys.argv[1], "w"))
PY

export BYOK_LOCALSTACK_STATE="$work/localstack"
# The bastion's own receipts and parameters records, for this run only.
export BYOK_STATE_DIR="$work/bastion-state"
eval "$(scripts/localstack/start.sh)"
trap 'scripts/localstack/stop.sh >/dev/null 2>&1 || true' EXIT
if [ "$latency" != 0 ]; then
  ls_port="${AWS_ENDPOINT_URL_KMS##*:}"
  coproc PROXY { exec python3 scripts/latency-proxy.py --target-port "$ls_port" --delay-ms "$latency"; }
  read -r proxy_port <&"${PROXY[0]}"
  trap 'kill "$PROXY_PID" 2>/dev/null || true; scripts/localstack/stop.sh >/dev/null 2>&1 || true' EXIT
  export AWS_ENDPOINT_URL_KMS="http://127.0.0.1:$proxy_port"
fi

draft() { # file ceremony-id: N AES keys, one target each, Regions round-robin
  python3 - "$1" "$2" "$n" "$module" "${regions[@]}" <<'PY'
import json, sys
out, cid, n, module, *regions = sys.argv[1:]
keys = []
for i in range(int(n)):
    r = regions[i % len(regions)]
    keys.append({"label": f"{cid}-k{i:03}", "key_spec": "SYMMETRIC_DEFAULT", "source": "generate",
                 "targets": [{"name": r, "region": r, "params": f"params/{cid}-k{i:03}.json",
                              "wrapping_algorithm": "RSAES_OAEP_SHA_1"}]})
json.dump({"format": "byok-ceremony/ceremony/v1", "ceremony_id": cid, "purpose": "benchmark",
           "hsm": {"module": module, "token_label": "bench"}, "policy": "policy.json",
           "keys": keys}, open(out, "w"))
PY
}

declare -A took
for c in seq par; do
  draft "$work/draft-$c.json" "bench-$c"
  t=$(now)
  "$bastion" prepare --ceremony "$work/draft-$c.json" --out "$work/ceremony-$c.json" --create-missing 2>/dev/null
  took[prepare-$c]=$(since "$t")
  digest="$("$bastion" params-digest --ceremony "$work/ceremony-$c.json" 2>/dev/null)"
  t=$(now)
  on_token "$work/hsm" "$airgap" ceremony run "$work/ceremony-$c.json" --out "$work/out-$c" \
    --pin-file "$work/hsm/user.pin" --non-interactive --expect-parameters-digest "$digest" >/dev/null 2>&1
  took[wrap-$c]=$(since "$t")
  on_token "$work/card" "$airgap" ceremony sign "$work/out-$c" --token-label card \
    --pin-file "$work/card/user.pin" --custodian alice --key-label sig --yes >/dev/null 2>&1
done

t=$(now)
"$bastion" import "$work/out-seq" --policy "$work/policy.json" --params-dir "$work/params" --no-expiry --jobs 1 2>/dev/null
took[import-1]=$(since "$t")
t=$(now)
"$bastion" import "$work/out-par" --policy "$work/policy.json" --params-dir "$work/params" --no-expiry --jobs "$jobs" 2>/dev/null
took[import-j]=$(since "$t")
t=$(now)
"$bastion" verify "$work/out-seq" --policy "$work/policy.json" --jobs 1 2>/dev/null
took[verify-1]=$(since "$t")
t=$(now)
"$bastion" verify "$work/out-par" --policy "$work/policy.json" --jobs "$jobs" 2>/dev/null
took[verify-j]=$(since "$t")
t=$(now)
"$bastion" import "$work/out-par" --policy "$work/policy.json" --params-dir "$work/params" --no-expiry 2>/dev/null
took[reimport]=$(since "$t")

paced=$(python3 -c "import math; print(f'{1.1 * (math.ceil($n / ${#regions[@]}) - 1):.1f}')")
cat <<EOF
byok-ceremony batch benchmark: $n AES keys per ceremony over ${#regions[@]} Regions (SoftHSM2, LocalStack + ${latency} ms per request)
prepare --ceremony (create key + GetParametersForImport): ${took[prepare-seq]} s, ${took[prepare-par]} s  (pacing floor ${paced} s per run: 1.1 s per call per Region)
ceremony run (generate + self-test + wrap in the HSM):    ${took[wrap-seq]} s, ${took[wrap-par]} s
import --jobs 1:       ${took[import-1]} s
import --jobs $jobs:       ${took[import-j]} s   speedup $(ratio "${took[import-1]}" "${took[import-j]}")x
verify --jobs 1:       ${took[verify-1]} s
verify --jobs $jobs:       ${took[verify-j]} s   speedup $(ratio "${took[verify-1]}" "${took[verify-j]}")x
re-run import (all receipts, nothing sent): ${took[reimport]} s
EOF
