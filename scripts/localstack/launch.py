"""Run the LocalStack runtime (``python -m localstack.runtime.main``) on Python 3.11.

Why this launcher exists
------------------------
localstack-core 4.13.1 computes a KMS key's ``KeyMaterialId`` with
``uuid.uuid5(self._internal_key_id, key_material)`` where ``key_material`` is
``bytes`` (services/kms/models.py, reached from ImportKeyMaterial and from
creating keys with key material). Python 3.12 changed ``uuid.uuid5`` /
``uuid.uuid3`` to accept ``bytes`` names and hash them as-is; Python 3.11 only
accepts ``str`` and always does ``bytes(name, "utf-8")``, so the call raises
``TypeError: encoding without a string argument`` and LocalStack answers
ImportKeyMaterial with an internal error.

LocalStack releases that officially support 3.12+ (2026.x) cannot run on the
Python 3.11 we have, so on Python < 3.12 we install the 3.12 behaviour for
``uuid5`` (and ``uuid3`` for symmetry) before running the runtime module as
``__main__`` via :mod:`runpy`. ``str`` names keep the exact old behaviour, so
nothing else changes. On Python >= 3.12 this is a plain pass-through.

Usage: ``python launch.py`` with the LocalStack environment variables set
(SERVICES, GATEWAY_LISTEN, ...; see start.sh). Extra arguments are passed on.
"""

import runpy
import sys
import uuid


def _patch_uuid_bytes_names() -> None:
    if sys.version_info >= (3, 12):
        return

    from hashlib import md5, sha1

    orig_uuid3 = uuid.uuid3
    orig_uuid5 = uuid.uuid5

    def uuid5(namespace, name):
        """uuid5 with Python 3.12 semantics: bytes-like names are hashed as-is."""
        if isinstance(name, (bytes, bytearray, memoryview)):
            digest = sha1(namespace.bytes + bytes(name)).digest()
            return uuid.UUID(bytes=digest[:16], version=5)
        return orig_uuid5(namespace, name)

    def uuid3(namespace, name):
        """uuid3 with Python 3.12 semantics: bytes-like names are hashed as-is."""
        if isinstance(name, (bytes, bytearray, memoryview)):
            digest = md5(namespace.bytes + bytes(name)).digest()
            return uuid.UUID(bytes=digest[:16], version=3)
        return orig_uuid3(namespace, name)

    uuid5.__doc__ = (orig_uuid5.__doc__ or "") + " (bytes names accepted, as in 3.12)"
    uuid3.__doc__ = (orig_uuid3.__doc__ or "") + " (bytes names accepted, as in 3.12)"
    uuid.uuid5 = uuid5
    uuid.uuid3 = uuid3


def main() -> None:
    _patch_uuid_bytes_names()
    # Make the runtime see the same argv as `python -m localstack.runtime.main ARGS`.
    sys.argv = ["localstack.runtime.main", *sys.argv[1:]]
    runpy.run_module("localstack.runtime.main", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
