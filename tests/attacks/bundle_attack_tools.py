"""Hostile bundles for tests/attacks/test_bundle_*.py, built for real in each test.

A tiny *leak* model: ``y = x + w`` on uint8[batch, 16], so with ``x = 0`` the output is
``w``'s bytes. A benign bundle of it is written by the real writer; an attack then rewrites
a file (e.g. ``w`` as external data naming a secret file) and :func:`reseal` recomputes every
digest, so only the rule under test can refuse it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from labkit.bundle.manifest import DIGEST_FIELD, Manifest, self_digest
from labkit.bundle.writer import write_bundle

SECRET = b"TOP-SECRET-KEY!!"  # 16 bytes: exactly w's size
MODEL = "models/fp32.onnx"
OPSET = [helper.make_opsetid("", 17)]


def value(
    name: str, elem: int = TensorProto.UINT8, shape: list[int | str] | None = None
) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, ["batch", 16] if shape is None else shape)


def embedded_w() -> TensorProto:
    return helper.make_tensor("w", TensorProto.UINT8, [16], bytes(range(16)), raw=True)


def external_w(location: str = "secret.txt", name: str = "w") -> TensorProto:
    t = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[16])
    t.data_location = TensorProto.EXTERNAL
    for key, val in (("location", location), ("offset", "0"), ("length", "16")):
        entry = t.external_data.add()
        entry.key, entry.value = key, val
    return t


def model_bytes(graph: onnx.GraphProto, **kw: Any) -> bytes:
    m = helper.make_model(graph, opset_imports=kw.pop("opset_imports", OPSET), **kw)
    m.ir_version = 8
    return m.SerializeToString()


def leak_model(w: TensorProto | None = None) -> bytes:
    """``y = x + w`` with ``w`` an initializer (embedded unless given)."""
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "leak",
        [value("x")],
        [value("y")],
        [w or embedded_w()],
    )
    return model_bytes(g)


def manifest_for(
    inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], model: bytes
) -> Manifest:
    """A draft manifest (the writer names, versions and lists it)."""
    return Manifest.from_dict(
        {
            "schema_version": 1,
            "name": "draft",
            "version": "0.0.0",
            "created": "2026-01-01T00:00:00Z",
            "task": None,
            "labels": None,
            "signature": {"inputs": inputs, "outputs": outputs},
            "variants": [
                {
                    "name": "fp32",
                    "file": MODEL,
                    "sha256": hashlib.sha256(model).hexdigest(),
                    "precision": "fp32",
                    "tolerance": {"rel": 1e-6, "metric": None, "min_metric": None},
                }
            ],
            "default_variant": "fp32",
            "golden": {"inputs": "golden/inputs.npz", "expected": "golden/expected.npz"},
            "fingerprint": {
                "architecture": "sha256:x",
                "weights": "sha256:x",
                "signature": "sha256:x",
                "metadata": "sha256:x",
            },
            "change": {"kind": "first", "from": None, "reason": "attack test"},
            "provenance": {
                "source": None,
                "libraries": {},
                "cpu": {},
                "exporter": {"name": "hand", "opset": 17, "fallback_reason": None},
            },
            "files": [],
        },
        check_files=False,
    )


def npz(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


LEAK_IN = [{"name": "x", "dtype": "uint8", "shape": ["batch", 16]}]
LEAK_OUT = [{"name": "y", "dtype": "uint8", "shape": ["batch", 16]}]


def leak_bundle(store: Path, name: str = "leak") -> Path:
    """A benign, valid bundle of the leak model (written and verified by the real writer)."""
    model = leak_model()
    x = np.zeros((2, 16), np.uint8)
    files = {
        MODEL: model,
        "golden/inputs.npz": npz(x=x),
        "golden/expected.npz": npz(y=x + np.arange(16, dtype=np.uint8)),
    }
    return write_bundle(store, name, "1.0.0", files, manifest_for(LEAK_IN, LEAK_OUT, model))


def reseal(bundle: Path, change: Any = None) -> None:
    """Re-list every file with its current digest/size (and variant digests), optionally
    edit the manifest with ``change(m)``, and recompute the manifest's self-digest."""
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    if change is not None:
        change(m)
    files = []
    for f in sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != "manifest.json"):
        data = f.read_bytes()
        files.append(
            {
                "path": f.relative_to(bundle).as_posix(),
                "sha256": hashlib.sha256(data).hexdigest(),
                "bytes": len(data),
            }
        )
    m["files"] = files
    digests = {f["path"]: f["sha256"] for f in files}
    for v in m["variants"]:
        v["sha256"] = digests.get(v["file"], v["sha256"])
    m[DIGEST_FIELD] = self_digest(m)
    path.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


def put(bundle: Path, rel: str, data: bytes) -> None:
    """Replace one file of a bundle and reseal it."""
    target = bundle / rel
    target.unlink()
    target.write_bytes(data)
    reseal(bundle)


@contextlib.contextmanager
def cwd(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def ort_leaks(model: bytes, secret_dir: Path) -> bytes:
    """Run ``model`` in a plain ONNX Runtime session (no labkit check) with the working
    directory beside the secret; return output ``y``'s bytes for ``x = 0``."""
    import onnxruntime as ort

    with cwd(secret_dir):
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        y = session.run(["y"], {"x": np.zeros((1, 16), np.uint8)})[0]
    return bytes(np.asarray(y).tobytes())
