"""What changed between two bundles, in the store's versioning terms."""

from __future__ import annotations

from typing import Any

from labkit.bundle.changes import WORDING
from labkit.bundle.manifest import Manifest
from labkit.bundle.semver import Version
from labkit.bundle.store import explain
from labkit.bundle.tensors import Signature, TensorSpec, tensor_text


def _tensors(sig: Signature, side: str) -> dict[str, TensorSpec]:
    return {t.name: t for t in getattr(sig, side)}


def _typed(t: TensorSpec) -> str:
    return tensor_text(t.dtype, t.shape)


def _signature_changes(a: Signature, b: Signature) -> list[str]:
    changes = []
    for side in ("inputs", "outputs"):
        ta, tb = _tensors(a, side), _tensors(b, side)
        for n in sorted(set(ta) - set(tb)):
            changes.append(f"{side[:-1]} {n!r} removed")
        for n in sorted(set(tb) - set(ta)):
            changes.append(f"{side[:-1]} {n!r} added ({_typed(tb[n])})")
        for n in sorted(set(ta) & set(tb)):
            if (ta[n].dtype, ta[n].shape) != (tb[n].dtype, tb[n].shape):
                changes.append(f"{side[:-1]} {n!r}: {_typed(ta[n])} → {_typed(tb[n])}")
    return changes


def diff(a: Manifest, b: Manifest) -> dict[str, Any]:
    """Compare manifests ``a`` (older) and ``b`` (newer).

    When ``b`` is an older version of the same model, ``downgrade`` is true: ``change`` then
    still says what the update from ``b`` to ``a`` was, and the reading is reversed.
    """
    fa, fb = a.fingerprint, b.fingerprint
    kind, reason = explain(fa, fb)
    meta = [k for k in ("task", "labels") if getattr(a, k) != getattr(b, k)]
    va = {v.name for v in a.variants}
    vb = {v.name for v in b.variants}
    return {
        "from": a.title,
        "to": b.title,
        "change": kind,
        "reason": reason,
        "verdict": WORDING[kind].verdict,
        "same_name": a.name == b.name,
        "downgrade": a.name == b.name and Version.parse(b.version) < Version.parse(a.version),
        "architecture_changed": fa.architecture != fb.architecture,
        "signature_changed": fa.signature != fb.signature,
        "weights_changed": fa.weights != fb.weights,
        "metadata_changed": fa.metadata != fb.metadata,
        "metadata_fields": meta,
        "signature_changes": _signature_changes(a.signature, b.signature),
        "variants_added": sorted(vb - va),
        "variants_removed": sorted(va - vb),
        "default_variant": [a.default_variant, b.default_variant],
    }
