"""Helpers for the hostile-serving tests (tests/attacks/test_serve_*.py): small real bundles
made by the pipeline, re-sealed after a file is replaced (so only the property under test is
wrong), ONNX graphs built with ``onnx.helper``, and a server run under an open-file limit."""

from __future__ import annotations

import io
import json
import resource
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labkit.bundle.integrity import sha256_file
from labkit.bundle.manifest import DIGEST_FIELD, self_digest


def build_mlp(store: Path, seed: int = 0, name: str = "mlp") -> Path:
    """A real bundle of an 8-16-3 MLP (input ``input_0`` [batch, 8] -> ``output`` [batch, 3])."""
    torch = pytest.importorskip("torch")
    import labkit
    from labkit.pipeline import HandoffOptions, run

    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)
    ).eval()
    spec = labkit.register(mlp, (torch.randn(2, 8),), name=name)
    result = run(spec, store=store, options=HandoffOptions(quantize=False, benchmark=False))
    return Path(result.to_dict()["path"])


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def reseal(bundle: Path, files: dict[str, bytes], **manifest_changes: Any) -> None:
    """Replace files of ``bundle`` and re-seal its manifest (file digests, self-digest)."""
    for rel, data in files.items():
        (bundle / rel).write_bytes(data)
    path = bundle / "manifest.json"
    m = json.loads(path.read_text())
    for entry in m["files"]:
        if entry["path"] in files:
            entry["sha256"] = sha256_file(bundle / entry["path"])
            entry["bytes"] = (bundle / entry["path"]).stat().st_size
    for variant in m["variants"]:
        if variant["file"] in files:
            variant["sha256"] = sha256_file(bundle / variant["file"])
    m.update(manifest_changes)
    m[DIGEST_FIELD] = self_digest(m)
    path.write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")


def with_model(bundle: Path, model_bytes: bytes, golden_rows: np.ndarray) -> None:
    """Put ``model_bytes`` in as the bundle's fp32 model, with golden vectors made by running
    it (ONNX Runtime) on ``golden_rows``, so verification and the self-test pass."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    x = golden_rows.astype(np.float32)
    expected = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {"input_0": x}), strict=True)
    )
    m = json.loads((bundle / "manifest.json").read_text())
    golden = {**m["golden"], "rows": int(x.shape[0])}
    reseal(
        bundle,
        {
            "models/fp32.onnx": model_bytes,
            m["golden"]["inputs"]: _npz({"input_0": x}),
            m["golden"]["expected"]: _npz(expected),
        },
        golden=golden,
    )


def onnx_model(kind: str) -> bytes:
    """``input_0`` [batch, 8] -> ``output`` [batch, 3] float32 graphs:

    - ``batch_mean``: ``x @ W - mean over the batch of (x @ W)``: rows depend on each other
      (served batched, a client would get an answer shaped by other clients' rows);
    - ``log``: ``log(x @ W)``: NaN for rows whose projection is negative.
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3), "W")
    nodes = [helper.make_node("MatMul", ["input_0", "W"], ["p"])]
    if kind == "batch_mean":
        nodes += [
            helper.make_node("ReduceMean", ["p"], ["m"], axes=[0], keepdims=1),
            helper.make_node("Sub", ["p", "m"], ["output"]),
        ]
    elif kind == "log":
        nodes += [helper.make_node("Log", ["p"], ["output"])]
    else:
        raise ValueError(kind)
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("input_0", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def limit_open_files(n: int) -> Any:
    """A ``preexec_fn`` giving the child process ``ulimit -n n``."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))

    return apply


def rss_mib(pid: int) -> float:
    """Resident memory of a process now (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory of a process so far (VmHWM, from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def proc_alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None
