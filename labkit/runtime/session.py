"""ONNX Runtime sessions, made from bytes that were already verified.

Loading from bytes (not from a path) means ONNX Runtime never opens a file on its own: no
link following, no external-data paths. Machine-specific graph fusions (ORT_ENABLE_ALL) are
applied here, at load time; bundles ship the portable ENABLE_EXTENDED graph.
"""

from __future__ import annotations

from typing import Any

from labkit.errors import MissingDependencyError


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "runtime") from None
    return onnxruntime


def make_session(model_bytes: bytes, *, threads: int | None = None) -> Any:
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, sess_options=opts,
                                providers=["CPUExecutionProvider"])

