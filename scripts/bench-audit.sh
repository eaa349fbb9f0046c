#!/usr/bin/env bash
# Benchmark of `byok-bastion audit` over a large estate: N resources (default
# 2000) spread over three Regions in moto's server (half DynamoDB tables, 30 %
# S3 buckets, 20 % RDS instances), encrypted with 10 customer keys per Region
# (moto's KMS) or not at all, audited with --jobs 1 and --jobs JOBS (default
# 16): wall time, resources per second, the speed-up, and the KMS DescribeKey
# calls (the key cache's effect).
#
#   scripts/bench-audit.sh                       # N=2000, JOBS=16, 30 ms per request
#   N=500 JOBS=8 LATENCY_MS=60 scripts/bench-audit.sh
#
# moto answers in about a millisecond; a real AWS endpoint takes tens. The
# bastion therefore talks to moto through scripts/latency-proxy.py, which delays
# every request by LATENCY_MS (0: straight to moto). The estate is created
# directly against moto. Not a test: nothing here asserts.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
bash scripts/install-deps.sh
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

n="${N:-2000}"
jobs="${JOBS:-16}"
latency="${LATENCY_MS:-30}"
regions="us-east-1,eu-west-1,ap-southeast-2"
work="$(mktemp -d -t byok-bench-audit.XXXXXX)"
cargo build --locked --quiet --features bastion --bin byok-bastion
bastion="${CARGO_TARGET_DIR:-$root/target}/debug/byok-bastion"

now() { date +%s.%N; }
since() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.2f}")' "$1" "$(now)"; }

export BYOK_MOTO_STATE="$work/moto"
export BYOK_STATE_DIR="$work/bastion-state"
eval "$(scripts/moto/start.sh)"
trap 'scripts/moto/stop.sh >/dev/null 2>&1 || true' EXIT
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE

echo "creating $n resources over $regions in moto ..." >&2
t="$(now)"
AWS_ENDPOINT_URL="$BYOK_MOTO_ENDPOINT" "$BYOK_MOTO_PYTHON" - "$n" "$regions" <<'PY'
import sys, boto3
n, regions = int(sys.argv[1]), sys.argv[2].split(",")
schema = dict(AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
              KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
db = dict(DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="u",
          MasterUserPassword="passwordpassword", AllocatedStorage=20)
keys = {r: [boto3.client("kms", region_name=r).create_key()["KeyMetadata"]["Arn"] for _ in range(10)]
        for r in regions}
for i in range(n):
    r = regions[i % len(regions)]
    key = keys[r][i % 10] if i % 7 else None  # every 7th resource unencrypted / default
    kind = i % 10
    if kind < 5:
        sse = {"SSESpecification": {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key}} if key else {}
        boto3.client("dynamodb", region_name=r).create_table(TableName=f"t{i}", **sse, **schema)
    elif kind < 8:
        s3 = boto3.client("s3", region_name=r)
        s3.create_bucket(Bucket=f"bench-b{i}", **({} if r == "us-east-1" else
                         {"CreateBucketConfiguration": {"LocationConstraint": r}}))
        if key:
            s3.put_bucket_encryption(Bucket=f"bench-b{i}", ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}]})
    else:
        enc = {"StorageEncrypted": True, "KmsKeyId": key} if key else {}
        boto3.client("rds", region_name=r).create_db_instance(DBInstanceIdentifier=f"db{i}", **enc, **db)
PY
echo "estate created in $(since "$t") s" >&2

endpoint="$BYOK_MOTO_ENDPOINT"
if [ "$latency" != 0 ]; then
  coproc PROXY { exec python3 scripts/latency-proxy.py --target-port "${BYOK_MOTO_ENDPOINT##*:}" --delay-ms "$latency"; }
  read -r proxy_port <&"${PROXY[0]}"
  trap 'kill "$PROXY_PID" 2>/dev/null || true; scripts/moto/stop.sh >/dev/null 2>&1 || true' EXIT
  endpoint="http://127.0.0.1:$proxy_port"
fi
for s in KMS S3 DYNAMODB RDS STS SECURITYHUB ORGANIZATIONS; do
  export "AWS_ENDPOINT_URL_$s=$endpoint"
done

run() { # jobs → "seconds total describe_calls"
  local t0 out
  out="$work/audit-$1.json"
  t0="$(now)"
  "$bastion" audit --regions "$regions" --jobs "$1" --json >"$out" 2>"$work/audit-$1.err" || [ $? = 3 ]
  local secs
  secs="$(since "$t0")"
  python3 - "$out" "$secs" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
secs, jobs = float(sys.argv[2]), sys.argv[3]
s = r["summary"]
print(f"--jobs {jobs:>2}: {s['total']} resources in {secs:.1f} s = {s['total'] / secs:.0f} resources/s "
      f"({s['non_compliant']} NON_COMPLIANT, {s['unknown']} UNKNOWN, {s['compliant']} COMPLIANT; "
      f"{r['kms_describe_calls']} DescribeKey calls)")
PY
  echo "$secs" >"$work/secs-$1"
}

echo "latency $latency ms per request; Regions $regions" >&2
run 1
run "$jobs"
python3 -c 'import sys; print(f"speed-up --jobs {sys.argv[3]} over --jobs 1: {float(sys.argv[1]) / float(sys.argv[2]):.2f}x")' \
  "$(cat "$work/secs-1")" "$(cat "$work/secs-$jobs")" "$jobs"
