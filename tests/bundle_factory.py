"""A small valid manifest built from the contract types, for tests of readers that need a
bundle on disk but not a model (the listed model file holds placeholder bytes)."""

from __future__ import annotations

import hashlib

from labkit.bundle import (
    Change,
    Exporter,
    Fingerprint,
    Golden,
    Manifest,
    Provenance,
    Signature,
    TensorSpec,
    Tolerance,
    Variant,
)


def small_manifest(name: str, *, speedup: float | None = None,
                   model: bytes = b"not an onnx model") -> tuple[Manifest, dict[str, bytes]]:
    files = {"models/fp32.onnx": model, "golden/inputs.npz": b"i", "golden/expected.npz": b"e"}
    bench = {"p50_ms": 0.1, "speedup": {"p50": speedup, "throughput": speedup}} \
        if speedup is not None else None
    variant = Variant("fp32", "models/fp32.onnx", hashlib.sha256(model).hexdigest(), "fp32",
                      Tolerance(1e-4, "cosine", 0.9999),
                      parity={"passed": True, "max_rel": 1e-7}, benchmark=bench)
    m = Manifest(
        name=name, version="0.0.0", created="2026-01-01T00:00:00+00:00", task=None,
        labels=None,
        signature=Signature((TensorSpec("x", "float32", ("batch", 3)),),
                            (TensorSpec("y", "float32", ("batch", 2)),)),
        variants=(variant,), default_variant="fp32",
        fingerprint=Fingerprint("sha256:a", "sha256:w", "sha256:s", "sha256:m"),
        golden=Golden("golden/inputs.npz", "golden/expected.npz", 1),
        change=Change("first", None, "first handoff of this model"),
        provenance=Provenance(None, Exporter("dynamo", 18, None), {"python": "3.11"}, {}))
    return m, files
