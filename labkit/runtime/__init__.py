"""The torch-free runtime: load a verified bundle, predict, self-test.

Imports NumPy and ONNX Runtime only; never torch, never onnx (a test proves it).
"""

from labkit.bundle.integrity import verify
from labkit.runtime.model import Model, SelfTestReport, load
from labkit.runtime.signature import TensorSpec

__all__ = ["Model", "SelfTestReport", "TensorSpec", "load", "verify"]
