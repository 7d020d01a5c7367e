"""ONNX Runtime: always installed, the default engine, runs every variant as stored.

Its sessions speak labkit's errors: ONNX Runtime's own exception types (pybind classes in
``onnxruntime.capi``) become :class:`~labkit.errors.InputError` when the inputs' sizes are
what the graph cannot take, and :class:`~labkit.errors.EngineError` otherwise, so nothing
above the engine seam imports onnxruntime to tell them apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import numpy as np

from labkit.bundle.parts import Variant
from labkit.errors import EngineError, InputError, LabkitError
from labkit.runtime.engines import EXACT, Session

TITLE = "ONNX Runtime"
_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_SHAPEY = re.compile(r"broadcast|shape|dimension|out of (data )?bounds|invalid (dim|axis)", re.I)


def _is_ort(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("onnxruntime")


def _detail(exc: BaseException) -> str:
    """ONNX Runtime's message without its status prefix, first line, bounded."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _PREFIX.sub("", text).replace("Non-zero status code returned while running ", "")[:240]


def classify(exc: BaseException) -> LabkitError:
    """An error ONNX Runtime raised while running a graph, as labkit's: the inputs' fault
    (``InvalidArgument``, or a shape/broadcast/bounds failure inside a kernel) or not."""
    detail = _detail(exc)
    if type(exc).__name__ == "InvalidArgument" or _SHAPEY.search(str(exc)):
        return InputError(
            f"the model cannot run on these inputs ({TITLE}: {detail})", engine=TITLE, detail=detail
        )
    return EngineError(f"{TITLE} failed while running the graph: {detail}")


class ORTSession:
    """An ONNX Runtime session whose errors are labkit's."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def run(
        self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]
    ) -> list[np.ndarray]:
        try:
            out: list[np.ndarray] = self._inner.run(output_names, feed)
        except Exception as exc:  # ORT's pybind errors derive from Exception only
            if not _is_ort(exc):
                raise
            raise classify(exc) from exc
        return out


class ORTEngine:
    name = "onnxruntime"

    def available(self) -> bool:
        return self.version() is not None

    def version(self) -> str | None:
        try:
            return metadata.version("onnxruntime")
        except metadata.PackageNotFoundError:
            return None

    def precisions(self, variant: Variant, cpu: Mapping[str, Any]) -> tuple[str, ...]:
        return (EXACT,)

    def session(
        self, model_bytes: bytes, *, precision: str = EXACT, threads: int | None = None
    ) -> Session:
        if precision != EXACT:
            raise ValueError(
                f"ONNX Runtime runs graphs as stored; precision {precision!r} "
                f"is not offered (use {EXACT!r})"
            )
        # session.py owns how an ORT session is made from verified bytes (and any check
        # that must run before one exists).
        from labkit.runtime.session import make_session

        try:
            inner = make_session(model_bytes, threads=threads)
        except Exception as exc:  # ORT's pybind errors derive from Exception only
            if not _is_ort(exc):
                raise
            raise EngineError(f"{TITLE} could not load the graph: {_detail(exc)}") from exc
        return ORTSession(inner)
