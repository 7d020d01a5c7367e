"""A small valid bundle built from the contract types (an Identity graph, real golden
files), for tests of readers that need bundles on disk but not the pipeline."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

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
from labkit.bundle.manifest import DIGEST_FIELD, MAX_VARIANTS, self_digest
from labkit.bundle.writer import write_bundle


def _identity_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def small_manifest(name: str, *, speedup: float | None = None) -> tuple[Manifest, dict[str, bytes]]:
    """A draft manifest and the files it describes, for ``write_bundle``."""
    model = _identity_model()
    golden = np.arange(6, dtype=np.float32).reshape(3, 2)
    files = {
        "models/fp32.onnx": model,
        "golden/inputs.npz": _npz(x=golden),
        "golden/expected.npz": _npz(y=golden),
    }
    bench = (
        {"p50_ms": 0.1, "speedup": {"p50": speedup, "throughput": speedup}}
        if speedup is not None
        else None
    )
    variant = Variant(
        "fp32",
        "models/fp32.onnx",
        hashlib.sha256(model).hexdigest(),
        "fp32",
        Tolerance(1e-4, "cosine", 0.9999),
        parity={"passed": True, "max_rel": 0.0},
        benchmark=bench,
    )
    m = Manifest(
        name=name,
        version="0.0.0",
        created="2026-01-01T00:00:00+00:00",
        task=None,
        labels=None,
        signature=Signature(
            (TensorSpec("x", "float32", ("batch", 2)),), (TensorSpec("y", "float32", ("batch", 2)),)
        ),
        variants=(variant,),
        default_variant="fp32",
        fingerprint=Fingerprint("sha256:a", "sha256:w", "sha256:s", "sha256:m"),
        golden=Golden("golden/inputs.npz", "golden/expected.npz", 3),
        change=Change("first", None, "first handoff of this model"),
        provenance=Provenance(None, Exporter("dynamo", 18, None), {"python": "3.11"}, {}),
    )
    return m, files


def wide_bundle(store: Path, n: int, name: str = "wide") -> Path:
    """A valid bundle whose manifest lists ``n`` variants (all the same tiny Identity graph),
    written by the real writer; past the contract's cap the manifest is widened by hand and
    resealed, as an attacker would."""
    m, files = small_manifest(name)
    v = m.variants[0]
    if n <= MAX_VARIANTS:
        wide = replace(m, variants=tuple(replace(v, name=f"v{i}") for i in range(n)))
        return write_bundle(store, name, "1.0.0", files, replace(wide, default_variant="v0"))
    bundle = write_bundle(store, name, "1.0.0", files, m)
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text())
    one = raw["variants"][0]
    raw["variants"] = [{**one, "name": f"v{i}"} for i in range(n)]
    raw["default_variant"] = "v0"
    raw[DIGEST_FIELD] = self_digest(raw)
    path.chmod(0o644)
    path.write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    return bundle
