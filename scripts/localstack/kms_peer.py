#!/usr/bin/env python3
"""Stand-in "bastion" for byok-ceremony tests: the KMS side of a key import, via boto3.

Talks to the KMS endpoint in AWS_ENDPOINT_URL_KMS (or --endpoint-url), normally the
LocalStack started by start.sh:

    eval "$(scripts/localstack/start.sh)"
    scripts/localstack/kms_peer.py create-key --key-spec SYMMETRIC_DEFAULT
    scripts/localstack/kms_peer.py get-params --key-id ID \\
        --wrapping-algorithm RSAES_OAEP_SHA_256 --wrapping-key-spec RSA_2048 --out params.json
    ...  (wrap the key material with the PublicKey in params.json) ...
    scripts/localstack/kms_peer.py import --key-id ID --params params.json \\
        --encrypted-key-material wrapped.bin --import-type NEW_KEY_MATERIAL --no-expiry
    scripts/localstack/kms_peer.py encrypt-decrypt --key-id ID

It needs boto3: it re-executes itself with $BYOK_LOCALSTACK_PYTHON (exported by
start.sh) when that is set, else uses the running interpreter's boto3, else falls
back to the venv start.sh creates.

Output: results on stdout (KeyId, hex, base64 or JSON); errors on stderr as
"CODE: message" with exit status 2 (AWS errors, bad input, unreachable endpoint);
encrypt-decrypt exits 1 on a round-trip mismatch.
"""

import argparse
import base64
import datetime as dt
import json
import os
import sys
import urllib.parse

LS_VERSION = "4.13.1"


def _reexec_with_venv_python() -> None:
    """Re-run this script with the LocalStack venv's python if boto3 is missing here."""
    candidates = []
    if os.environ.get("BYOK_LOCALSTACK_PYTHON"):
        candidates.append(os.environ["BYOK_LOCALSTACK_PYTHON"])
    cache = os.environ.get("BYOK_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "byok-ceremony"
    )
    candidates.append(os.path.join(cache, f"localstack-{LS_VERSION}", "bin", "python"))
    for py in candidates:
        if (
            os.path.isfile(py)
            and os.access(py, os.X_OK)
            # compare directories: a venv's bin/python is a symlink to the base python
            and os.path.realpath(os.path.dirname(py))
            != os.path.realpath(os.path.dirname(sys.executable))
            and not os.environ.get("_BYOK_KMS_PEER_REEXEC")
        ):
            os.environ["_BYOK_KMS_PEER_REEXEC"] = "1"
            os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])
    print(
        "NoBoto3: boto3 is not importable and no LocalStack venv was found; "
        "run scripts/localstack/start.sh first or set BYOK_LOCALSTACK_PYTHON",
        file=sys.stderr,
    )
    sys.exit(2)


# Prefer the venv start.sh exported (its pinned boto3), whatever python3 runs this.
_venv_py = os.environ.get("BYOK_LOCALSTACK_PYTHON")
if (
    _venv_py
    and os.path.isfile(_venv_py)
    and os.path.realpath(os.path.dirname(_venv_py))
    != os.path.realpath(os.path.dirname(sys.executable))
    and not os.environ.get("_BYOK_KMS_PEER_REEXEC")
):
    os.environ["_BYOK_KMS_PEER_REEXEC"] = "1"
    os.execv(_venv_py, [_venv_py, os.path.abspath(__file__), *sys.argv[1:]])

try:
    import boto3
    import botocore.exceptions
    from botocore.config import Config
except ImportError:
    _reexec_with_venv_python()


class PeerError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def kms_client(args):
    endpoint = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_KMS")
    if not endpoint:
        raise PeerError(
            "NoEndpoint",
            'AWS_ENDPOINT_URL_KMS is not set (eval "$(scripts/localstack/start.sh)" first)',
        )
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    if host in ("127.0.0.1", "localhost", "::1"):
        # never send the loopback peer's traffic through an http(s)_proxy from the env
        for var in ("NO_PROXY", "no_proxy"):
            os.environ[var] = ",".join(
                filter(None, [os.environ.get(var), "127.0.0.1,localhost,::1"])
            )
    region = (
        args.region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    return boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name=region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
    )


def _iso(value) -> str:
    """Timestamp as the AWS CLI (v2, iso8601 format) prints it, normalised to UTC."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value.isoformat()
    return str(value)


def _json_default(value):
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=4, default=_json_default))


def _strip_meta(resp: dict) -> dict:
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise PeerError("FileError", f"{path}: {e.strerror}") from e


def _hex(value: str, what: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError as e:
        raise PeerError("BadInput", f"{what} is not valid hex") from e


# ---------------------------------------------------------------- commands ----


def cmd_create_key(args, kms):
    usage = args.key_usage
    if usage is None:
        spec = args.key_spec
        usage = (
            "GENERATE_VERIFY_MAC"
            if spec.startswith("HMAC_")
            else "SIGN_VERIFY"
            if spec.startswith(("ECC_", "RSA_"))
            else "ENCRYPT_DECRYPT"
        )
    params = {"KeySpec": args.key_spec, "KeyUsage": usage, "Origin": "EXTERNAL"}
    if args.description:
        params["Description"] = args.description
    resp = kms.create_key(**params)
    print(resp["KeyMetadata"]["KeyId"])


def cmd_get_params(args, kms):
    resp = kms.get_parameters_for_import(
        KeyId=args.key_id,
        WrappingAlgorithm=args.wrapping_algorithm,
        WrappingKeySpec=args.wrapping_key_spec,
    )
    # Same keys, order and encodings as `aws kms get-parameters-for-import` prints.
    out = {
        "KeyId": resp["KeyId"],
        "ImportToken": base64.b64encode(resp["ImportToken"]).decode("ascii"),
        "PublicKey": base64.b64encode(resp["PublicKey"]).decode("ascii"),
        "ParametersValidTo": _iso(resp["ParametersValidTo"]),
    }
    text = json.dumps(out, indent=4) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
        return
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise PeerError("FileError", f"{args.out}: {e.strerror}") from e
    print(resp["KeyId"])


def cmd_import(args, kms):
    try:
        params = json.loads(_read_file(args.params))
        token = base64.b64decode(params["ImportToken"], validate=True)
    except (ValueError, KeyError, TypeError) as e:
        raise PeerError("BadInput", f"{args.params}: no valid ImportToken ({e})") from e
    material = _read_file(args.encrypted_key_material)
    if args.b64:
        try:
            material = base64.b64decode(b"".join(material.split()), validate=True)
        except ValueError as e:
            raise PeerError("BadInput", f"{args.encrypted_key_material}: not base64") from e
    req = {
        "KeyId": args.key_id,
        "ImportToken": token,
        "EncryptedKeyMaterial": material,
    }
    if args.no_expiry:
        req["ExpirationModel"] = "KEY_MATERIAL_DOES_NOT_EXPIRE"
    else:
        req["ExpirationModel"] = "KEY_MATERIAL_EXPIRES"
        req["ValidTo"] = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=args.valid_days)
    if args.import_type:
        req["ImportType"] = args.import_type
    if args.key_material_description:
        req["KeyMaterialDescription"] = args.key_material_description
    resp = kms.import_key_material(**req)
    _print_json(_strip_meta(resp))


def cmd_generate_mac(args, kms):
    resp = kms.generate_mac(
        KeyId=args.key_id,
        MacAlgorithm=args.algorithm,
        Message=_hex(args.message_hex, "--message-hex"),
    )
    print(resp["Mac"].hex())


def cmd_get_public_key(args, kms):
    resp = kms.get_public_key(KeyId=args.key_id)
    if not resp.get("PublicKey"):  # LocalStack answers a symmetric key without one
        raise PeerError("UnsupportedOperationException", f"{args.key_id} has no public key")
    print(base64.b64encode(resp["PublicKey"]).decode("ascii"))


def cmd_describe(args, kms):
    resp = kms.describe_key(KeyId=args.key_id)
    _print_json(resp["KeyMetadata"])


def cmd_list_tags(args, kms):
    tags = {}
    for page in kms.get_paginator("list_resource_tags").paginate(KeyId=args.key_id):
        for t in page.get("Tags", []):
            tags[t["TagKey"]] = t["TagValue"]
    print(json.dumps(tags, indent=2, sort_keys=True))


def cmd_encrypt_decrypt(args, kms):
    plaintext = (
        _hex(args.plaintext_hex, "--plaintext-hex") if args.plaintext_hex else os.urandom(32)
    )
    enc = kms.encrypt(KeyId=args.key_id, Plaintext=plaintext)
    blob = enc["CiphertextBlob"]
    if args.ciphertext_out:
        with open(args.ciphertext_out, "wb") as f:
            f.write(blob)
    dec = kms.decrypt(CiphertextBlob=blob, KeyId=args.key_id)
    if dec["Plaintext"] != plaintext:
        print("Mismatch: decrypt(encrypt(x)) != x", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {len(plaintext)} bytes round-tripped ({len(blob)}-byte ciphertext)")


def cmd_decrypt(args, kms):
    dec = kms.decrypt(CiphertextBlob=_read_file(args.ciphertext), KeyId=args.key_id)
    print(dec["Plaintext"].hex())


def cmd_rotate(args, kms):
    resp = kms.rotate_key_on_demand(KeyId=args.key_id)
    meta = kms.describe_key(KeyId=args.key_id)["KeyMetadata"]
    _print_json(
        {
            "KeyId": resp.get("KeyId", meta["KeyId"]),
            "CurrentKeyMaterialId": meta.get("CurrentKeyMaterialId"),
        }
    )


# -------------------------------------------------------------------- main ----


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kms_peer.py",
        description="KMS side of a BYOK import (test stand-in for the bastion).",
    )
    p.add_argument("--endpoint-url", help="default: $AWS_ENDPOINT_URL_KMS")
    p.add_argument("--region", help="default: $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("create-key", help="create a key with Origin EXTERNAL; prints KeyId")
    s.add_argument(
        "--key-spec", required=True, help="SYMMETRIC_DEFAULT, HMAC_256, ECC_NIST_P256, ..."
    )
    s.add_argument(
        "--key-usage",
        help="default: ENCRYPT_DECRYPT (symmetric), GENERATE_VERIFY_MAC (HMAC), SIGN_VERIFY (RSA/ECC)",
    )
    s.add_argument("--description")
    s.set_defaults(func=cmd_create_key)

    s = sub.add_parser(
        "get-params",
        help="GetParametersForImport; writes the JSON `aws kms get-parameters-for-import` prints",
    )
    s.add_argument("--key-id", required=True)
    s.add_argument("--wrapping-algorithm", required=True, help="e.g. RSAES_OAEP_SHA_256")
    s.add_argument("--wrapping-key-spec", required=True, help="RSA_2048, RSA_3072, RSA_4096")
    s.add_argument("--out", required=True, help="output file ('-' for stdout); prints the key ARN")
    s.set_defaults(func=cmd_get_params)

    s = sub.add_parser("import", help="ImportKeyMaterial; prints the response as JSON")
    s.add_argument("--key-id", required=True)
    s.add_argument("--params", required=True, help="JSON from get-params (its ImportToken is used)")
    s.add_argument(
        "--encrypted-key-material",
        required=True,
        help="file with the wrapped key material (raw bytes)",
    )
    s.add_argument(
        "--b64", action="store_true", help="the encrypted key material file is base64 text"
    )
    s.add_argument("--import-type", choices=["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"])
    s.add_argument("--key-material-description")
    s.add_argument(
        "--no-expiry", action="store_true", help="KEY_MATERIAL_DOES_NOT_EXPIRE (default: expires)"
    )
    s.add_argument(
        "--valid-days",
        type=int,
        default=364,
        help="ValidTo = now + N days when expiring (default 364)",
    )
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("generate-mac", help="GenerateMac; prints the MAC as hex")
    s.add_argument("--key-id", required=True)
    s.add_argument("--algorithm", required=True, help="HMAC_SHA_224/256/384/512")
    s.add_argument("--message-hex", required=True)
    s.set_defaults(func=cmd_generate_mac)

    s = sub.add_parser(
        "get-public-key", help="GetPublicKey; prints base64 DER SubjectPublicKeyInfo"
    )
    s.add_argument("--key-id", required=True)
    s.set_defaults(func=cmd_get_public_key)

    s = sub.add_parser("describe", help="DescribeKey; prints KeyMetadata as JSON")
    s.add_argument("--key-id", required=True)
    s.set_defaults(func=cmd_describe)

    s = sub.add_parser("list-tags", help="ListResourceTags; prints {TagKey: TagValue} as JSON")
    s.add_argument("--key-id", required=True)
    s.set_defaults(func=cmd_list_tags)

    s = sub.add_parser(
        "encrypt-decrypt", help="Encrypt then Decrypt; exit 1 unless the plaintext comes back"
    )
    s.add_argument("--key-id", required=True)
    s.add_argument("--plaintext-hex", help="default: 32 random bytes")
    s.add_argument(
        "--ciphertext-out", help="also save the ciphertext blob here (for later decrypt)"
    )
    s.set_defaults(func=cmd_encrypt_decrypt)

    s = sub.add_parser("decrypt", help="Decrypt a saved ciphertext blob; prints plaintext hex")
    s.add_argument("--key-id", required=True)
    s.add_argument("--ciphertext", required=True)
    s.set_defaults(func=cmd_decrypt)

    s = sub.add_parser(
        "rotate", help="RotateKeyOnDemand; prints KeyId and the new CurrentKeyMaterialId"
    )
    s.add_argument("--key-id", required=True)
    s.set_defaults(func=cmd_rotate)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        kms = kms_client(args)
        args.func(args, kms)
    except PeerError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return 2
    except botocore.exceptions.ClientError as e:
        err = e.response.get("Error", {})
        code = err.get("Code", "ClientError")
        message = err.get("Message", str(e))
        print(f"{code}: {message}", file=sys.stderr)
        return 2
    except botocore.exceptions.BotoCoreError as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"FileError: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
