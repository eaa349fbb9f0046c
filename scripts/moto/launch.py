"""Run moto's standalone server (``moto.server.main``) with two gaps filled.

Why this launcher exists
------------------------
moto 5.1.22 (and moto's main branch as of 2026) ignores ``SSESpecification``
in DynamoDB ``UpdateTable``: ``DynamoHandler.update_table`` never reads it, so
the table keeps the key it was created with and ``DescribeTable`` reports the
old ``SSEDescription``. AWS applies it: with ``Enabled: true`` and
``SSEType: KMS`` the table moves to ``KMSMasterKeyId`` (the AWS-managed
``alias/aws/dynamodb`` key when none is given), with ``Enabled: false`` back to
the AWS-owned key; ``KMSMasterKeyId`` without ``SSEType: KMS`` is a
ValidationException. ``byok-bastion repoint`` sends exactly that request, so its
test needs a peer that honours it.

This launcher wraps ``update_table`` to apply ``SSESpecification`` to the table
as described above (after moto's own handling of the other fields).

moto 5.1.22 also gives every RDS DB instance the same ``DbiResourceId``
(``db-M5ENSHXFPU6XHZ4G4ZEI5QIO2U``, a constant in ``DBInstance.__init__``).
AWS gives each instance its own, and AWS Config names DB instances by it (the
configuration item's ``resourceId``), so the Config rule's test needs them
distinct. The launcher gives each new instance a random ``db-`` ID of the same
shape (as moto already does for ``DbClusterResourceId``).

Then it runs moto's server unchanged. Nothing else is patched.

Usage: ``python launch.py -H 127.0.0.1 -p PORT`` (moto_server's arguments).
"""

import sys


def _patch_dynamodb_update_table_sse() -> None:
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.models.utilities import dynamo_json_dump
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.update_table

    def update_table(self):  # type: ignore[no-untyped-def]
        spec = self.body.get("SSESpecification")
        if spec is not None:
            enabled = spec.get("Enabled")
            key = spec.get("KMSMasterKeyId")
            sse_type = spec.get("SSEType")
            if key is not None and sse_type != "KMS":
                raise MockValidationException(
                    "KMSMasterKeyId can only be specified when SSEType is KMS"
                )
            if sse_type not in (None, "KMS", "AES256"):
                raise MockValidationException(f"Invalid SSEType {sse_type!r}")
        result = original(self)
        if spec is not None:
            table = self.dynamodb_backend.get_table(self.body["TableName"])
            if enabled is True and sse_type == "KMS":
                if key is None:
                    key = table._get_default_encryption_key(
                        table.account_id, table.region_name
                    )
                table.sse_specification = {
                    "Enabled": True,
                    "SSEType": "KMS",
                    "KMSMasterKeyId": key,
                }
            elif enabled is False:
                table.sse_specification = None
            result = dynamo_json_dump(table.describe())
        return result

    DynamoHandler.update_table = update_table


def _patch_rds_distinct_dbi_resource_ids() -> None:
    import random
    import string

    from moto.rds.models import DBInstance

    original = DBInstance.__init__

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original(self, *args, **kwargs)
        self.dbi_resource_id = "db-" + "".join(
            random.choice(string.ascii_uppercase + string.digits) for _ in range(26)
        )

    DBInstance.__init__ = __init__


def main() -> None:
    _patch_dynamodb_update_table_sse()
    _patch_rds_distinct_dbi_resource_ids()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
