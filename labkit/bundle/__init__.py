"""The bundle format: the typed manifest contract, strict reading, verification, atomic
writing, store.

Standard library only (NumPy for golden ``.npz`` files). The normative spec is
``docs/bundle-format.md``; the types here are its code.
"""

from labkit.bundle.checks import JUDGED_ON, EngineCheck, ExcludedLayer, Quantization
from labkit.bundle.integrity import VerifiedBundle, read_manifest, verify
from labkit.bundle.manifest import MANIFEST_NAME, NAME_RE, SCHEMA_VERSION, Manifest
from labkit.bundle.parts import (
    Change,
    Exporter,
    FileEntry,
    Fingerprint,
    Golden,
    Provenance,
    Source,
    Variant,
)
from labkit.bundle.speed import Baseline, DefaultRule
from labkit.bundle.store import Plan, Store, default_store
from labkit.bundle.tensors import Signature, TensorSpec
from labkit.bundle.tolerance import Tolerance, metric_for_task
from labkit.bundle.writer import write_bundle

__all__ = [
    "JUDGED_ON",
    "MANIFEST_NAME",
    "NAME_RE",
    "SCHEMA_VERSION",
    "Baseline",
    "Change",
    "DefaultRule",
    "EngineCheck",
    "ExcludedLayer",
    "Exporter",
    "FileEntry",
    "Fingerprint",
    "Golden",
    "Manifest",
    "Plan",
    "Provenance",
    "Quantization",
    "Signature",
    "Source",
    "Store",
    "TensorSpec",
    "Tolerance",
    "VerifiedBundle",
    "Variant",
    "default_store",
    "metric_for_task",
    "read_manifest",
    "verify",
    "write_bundle",
]
