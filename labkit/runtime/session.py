"""ONNX Runtime sessions, made from bytes that were already verified.

Loading from bytes (not from a path) means ONNX Runtime never opens the model file on its
own: no link following. It does NOT stop it from opening files a tensor names as external
data — given bytes, ORT 1.32 resolves such a ``location`` against the process's working
directory, ``../`` included. Two layers keep that from happening:

1. [external-data]: the model is walked with the wire reader and refused before any session
   exists (``verify`` does it for every variant; done again here for any other caller).
2. ONNX Runtime is told that the model's external-data folder is a fresh, empty, private
   directory (``session.model_external_initializers_file_folder_path``, a documented config
   key; there is no documented key that forbids external data outright). Measured with ORT
   1.32: plain names are then not found, ``../`` escapes and absolute paths are refused.
   ``session.load_model_format=ONNX`` also keeps ORT from taking the bytes as an ORT-format
   (flatbuffer) model that the wire reader does not understand.

Machine-specific graph fusions (ORT_ENABLE_ALL) are applied here, at load time; bundles ship
the portable ENABLE_EXTENDED graph.
"""

from __future__ import annotations

import tempfile
from typing import Any

from labkit.bundle.graph_check import check_no_external_data
from labkit.errors import MissingDependencyError

EXTERNAL_FOLDER_KEY = "session.model_external_initializers_file_folder_path"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "runtime") from None
    return onnxruntime


def make_session(model_bytes: bytes, *, threads: int | None = None, where: str = "model") -> Any:
    """A CPU session for ``model_bytes``; ``where`` names the model in refusals."""
    check_no_external_data(model_bytes, where)
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.load_model_format", "ONNX")
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    # Initializers are copied into the session while it is built, so the empty folder is
    # only needed (and only exists) until the constructor returns.
    with tempfile.TemporaryDirectory(prefix="labkit-no-external-data-") as empty:
        opts.add_session_config_entry(EXTERNAL_FOLDER_KEY, empty)
        return ort.InferenceSession(
            model_bytes, sess_options=opts, providers=["CPUExecutionProvider"]
        )
