"""OpenVINO: an optional engine (``pip install 'labkit[openvino]'``), imported when used.

It reads the verified ONNX bytes from memory (``Core.read_model(model=bytes, weights=empty
tensor)``), never a path. Offered precisions: ``fp32`` on the fp32 variant and on static
(QDQ) int8 variants, where OpenVINO runs the quantized ops in int8; ``bf16`` on the fp32
variant where the CPU reports bfloat16 support. Dynamically quantized graphs are not offered:
OpenVINO ran them slower than fp32 (docs/performance.md). Graphs holding ops OpenVINO does not know
(e.g. ONNX Runtime's ``com.microsoft`` fusions) fail to compile, or worse, compile and compute
wrong answers (a fused BERT graph gave logits off by half their magnitude): such graphs are
marked ``runs_on: [onnxruntime]`` and never offered here, and every other one is judged.

OpenVINO raises plain ``RuntimeError``s; its sessions turn them into labkit's
:class:`~labkit.errors.EngineError`, or :class:`~labkit.errors.InputError` when the message is
about the inputs' sizes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import numpy as np

from labkit.bundle.graph_check import check_no_external_data
from labkit.bundle.parts import Variant
from labkit.errors import EngineError, InputError, LabkitError, MissingDependencyError
from labkit.runtime.engines import EXACT, Session

TITLE = "OpenVINO"
BF16 = "bf16"
_HINTS = {EXACT: "f32", BF16: "bf16"}
_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


def _ov() -> Any:
    try:
        import openvino
    except ImportError:
        raise MissingDependencyError("openvino", "openvino") from None
    return openvino


_SHAPEY = re.compile(r"broadcast|shape|dimension|out of (data )?bounds", re.I)
# OpenVINO prefixes its messages with one "Exception from src/...cpp:N:" line per layer.
_SOURCE_LINE = re.compile(r"^Exception from \S+:\d+:?$")


def _detail(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    said = [ln for ln in lines if not _SOURCE_LINE.match(ln)]
    return (said[0] if said else lines[0] if lines else type(exc).__name__)[:240]


def classify(exc: BaseException) -> LabkitError:
    """An error OpenVINO raised while running a graph, as labkit's."""
    detail = _detail(exc)
    if _SHAPEY.search(str(exc)):
        return InputError(
            f"the model cannot run on these inputs ({TITLE}: {detail})", engine=TITLE, detail=detail
        )
    return EngineError(f"{TITLE} failed while running the graph: {detail}")


def cpu_has_bf16(cpu: Mapping[str, Any]) -> bool:
    """From the flags labkit records (the same ones a profile is keyed on)."""
    return bool(_BF16_FLAGS & set(cpu.get("flags", ())))


class OpenVINOSession:
    """One compiled model and one infer request; a lock keeps the request single-user."""

    def __init__(self, model_bytes: bytes, precision: str, threads: int | None) -> None:
        # The same [external-data] refusal as every ONNX Runtime session, before OpenVINO
        # parses anything: its ONNX reader would otherwise resolve external tensor
        # locations on its own. The weights argument is an empty tensor for the same reason.
        check_no_external_data(model_bytes, "model")
        ov = _ov()
        try:
            self._compile(ov, model_bytes, precision, threads)
        except RuntimeError as exc:  # what OpenVINO's C++ exceptions arrive as
            raise EngineError(f"{TITLE} could not compile the graph: {_detail(exc)}") from exc
        self._outputs = {o.get_any_name(): o for o in self._compiled.outputs}
        self._lock = threading.Lock()

    def _compile(self, ov: Any, model_bytes: bytes, precision: str, threads: int | None) -> None:
        core = ov.Core()
        model = core.read_model(model=model_bytes, weights=ov.Tensor(np.empty(0, dtype=np.uint8)))
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": _HINTS[precision],
            # One synchronous request per session: LATENCY mode with a
            # single stream; parallelism comes from several sessions.
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()

    def run(
        self, output_names: Sequence[str] | None, feed: Mapping[str, np.ndarray]
    ) -> list[np.ndarray]:
        names = list(output_names) if output_names else list(self._outputs)
        with self._lock:
            try:
                res = self._request.infer(dict(feed))
            except RuntimeError as exc:
                raise classify(exc) from exc
            return [np.array(res[self._outputs[n]], copy=True) for n in names]


class OpenVINOEngine:
    name = "openvino"
    # Judged at handoff in a process of its own, not in the researcher's (labkit.runtime.
    # isolated): beside PyTorch it made `handoff export` crash on Ctrl-C.
    isolated = True

    def available(self) -> bool:
        return self.version() is not None

    def version(self) -> str | None:
        try:
            return metadata.version("openvino")
        except metadata.PackageNotFoundError:
            return None

    def precisions(self, variant: Variant, cpu: Mapping[str, Any]) -> tuple[str, ...]:
        if variant.precision == "fp32":
            return (EXACT, BF16) if cpu_has_bf16(cpu) else (EXACT,)
        if variant.quantization is not None and variant.quantization.mode == "static":
            return (EXACT,)
        return ()

    def session(
        self, model_bytes: bytes, *, precision: str = EXACT, threads: int | None = None
    ) -> Session:
        if precision not in _HINTS:
            raise ValueError(f"OpenVINO precision {precision!r} is not one of {sorted(_HINTS)}")
        return OpenVINOSession(model_bytes, precision, threads)
