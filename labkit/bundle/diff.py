"""What changed between two bundles, in the store's versioning terms."""

from __future__ import annotations

from typing import Any

from labkit.bundle.manifest import tensor_text
from labkit.bundle.semver import Version
from labkit.bundle.store import explain

_VERDICT = {
    "major": "not drop-in compatible: callers must be checked against the new signature",
    "minor": "weights-only update: drop-in compatible",
    "patch": "metadata-only update: drop-in compatible",
    "none": "identical: same architecture, signature, weights and metadata",
}


def _tensors(sig: dict[str, Any], side: str) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in sig[side]}


def _text(t: dict[str, Any]) -> str:
    return tensor_text(t["dtype"], t["shape"])


def _signature_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    changes = []
    for side in ("inputs", "outputs"):
        ta, tb = _tensors(a, side), _tensors(b, side)
        for n in sorted(set(ta) - set(tb)):
            changes.append(f"{side[:-1]} {n!r} removed")
        for n in sorted(set(tb) - set(ta)):
            changes.append(f"{side[:-1]} {n!r} added ({_text(tb[n])})")
        for n in sorted(set(ta) & set(tb)):
            if (ta[n]["dtype"], ta[n]["shape"]) != (tb[n]["dtype"], tb[n]["shape"]):
                changes.append(f"{side[:-1]} {n!r}: {_text(ta[n])} → {_text(tb[n])}")
    return changes


def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Compare manifests ``a`` (older) and ``b`` (newer).

    When ``b`` is an older version of the same model, ``downgrade`` is true: ``change`` then
    still says what the update from ``b`` to ``a`` was, and the reading is reversed.
    """
    kind, reason = explain(a, b)
    fa, fb = a["fingerprint"], b["fingerprint"]
    meta = [k for k in ("task", "labels") if a.get(k) != b.get(k)]
    va = {v["name"]: v for v in a["variants"]}
    vb = {v["name"]: v for v in b["variants"]}
    return {
        "from": f"{a['name']} {a['version']}",
        "to": f"{b['name']} {b['version']}",
        "change": kind,
        "reason": reason,
        "verdict": _VERDICT[kind],
        "same_name": a["name"] == b["name"],
        "downgrade": a["name"] == b["name"]
        and Version.parse(b["version"]) < Version.parse(a["version"]),
        "architecture_changed": fa["architecture"] != fb["architecture"],
        "signature_changed": fa["signature"] != fb["signature"],
        "weights_changed": fa["weights"] != fb["weights"],
        "metadata_changed": fa["metadata"] != fb["metadata"],
        "metadata_fields": meta,
        "signature_changes": _signature_changes(a["signature"], b["signature"]),
        "variants_added": sorted(set(vb) - set(va)),
        "variants_removed": sorted(set(va) - set(vb)),
        "default_variant": [a["default_variant"], b["default_variant"]],
    }
