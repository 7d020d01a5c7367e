"""The bundle format: manifest schema, strict reading, verification, atomic writing, store.

Standard library only (NumPy for golden ``.npz`` files). The normative spec is
``docs/bundle-format.md``.
"""

from labkit.bundle.integrity import VerifiedBundle, read_manifest, verify
from labkit.bundle.manifest import MANIFEST_NAME, SCHEMA_VERSION
from labkit.bundle.store import Change, Store, default_store
from labkit.bundle.writer import write_bundle

__all__ = [
    "MANIFEST_NAME",
    "SCHEMA_VERSION",
    "Change",
    "Store",
    "VerifiedBundle",
    "default_store",
    "read_manifest",
    "verify",
    "write_bundle",
]
