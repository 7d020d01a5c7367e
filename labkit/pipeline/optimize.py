"""ONNX Runtime as a build tool: its graph optimizer and its quantizer.

The kinds of variant, and when each is made, are recipes (:mod:`labkit.pipeline.recipes`);
this module is the one place where our option dataclasses become ONNX Runtime's option
dicts. Nothing here opens a session to *run* a graph: parity goes through the engine seam.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx

from labkit.errors import EngineError
from labkit.pipeline.freeze import Batch
from labkit.pipeline.graph import op_counts
from labkit.pipeline.options import Quantize
from labkit.pipeline.rewrite import gemm_to_matmul


def ort_extended(src: Path, dst: Path) -> dict[str, Any]:
    """Save ONNX Runtime's EXTENDED-level graph of ``src`` to ``dst``.

    Portable across CPUs for ONNX Runtime (the machine-specific ALL level is applied at load
    time), but not across engines: its fusions are ``com.microsoft`` contrib ops
    (``FusedGemm``, ``FusedMatMul``, ``SkipLayerNormalization``…), so the result is for ONNX
    Runtime only. Raises :class:`EngineError` when ONNX Runtime refuses the graph.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    try:
        ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])
    # ORT's pybind errors (Fail, InvalidGraph, …) derive from Exception only.
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EngineError(f"ONNX Runtime refused the graph: {first}"[:500]) from exc
    return {"graph_optimization_level": "ORT_ENABLE_EXTENDED", "ops": op_counts(onnx.load(dst))}


def _rows(batches: Sequence[Batch]) -> list[Batch]:
    return [
        {k: v[i : i + 1] for k, v in b.items()}
        for b in batches
        for i in range(len(next(iter(b.values()))))
    ]


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol over our batches."""

    def __init__(self, batches: Sequence[Batch]) -> None:
        self._it: Iterator[Batch] = iter(batches)

    def get_next(self) -> Batch | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - some ORT versions call it
        pass


def _qtype(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[name]


def _calibrator(name: str) -> Any:
    """ORT's calibrator for ``Quantize.calibration_method`` (checked against
    ``CALIBRATION_METHODS`` when the Quantize was made)."""
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[name]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def prepared_path(q: Quantize, workdir: Path) -> Path:
    """Where :func:`quantize` leaves the pre-processed graph whose node names it excludes."""
    return workdir / f"{q.name}-pre.onnx"


def quantize(
    src: Path,
    dst: Path,
    q: Quantize,
    calibration: Sequence[Batch],
    workdir: Path,
    exclude: Sequence[str] = (),
) -> dict[str, Any]:
    """Quantize ``src`` into ``dst``; ``exclude`` names nodes (of the pre-processed graph,
    see :func:`prepared_path`) kept in fp32."""
    from onnxruntime.quantization import (
        QuantFormat,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = prepared_path(q, workdir)
    with _quiet():
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if q.mode == "dynamic":
            # ORT's dynamic quantizer has no Gemm kernel: Linear layers exported as Gemm
            # would silently stay fp32, so they are rewritten as MatMul + Add first.
            model = onnx.load(str(pre))
            rewritten = gemm_to_matmul(model)
            onnx.save_model(model, str(pre))
            quantize_dynamic(
                str(pre),
                str(dst),
                op_types_to_quantize=list(q.op_types),
                per_channel=q.per_channel,
                weight_type=_qtype(q.weight_type),
                nodes_to_exclude=list(exclude),
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        else:
            rewritten = 0
            # ORT's histogram calibrators (entropy, percentile) stack every batch into one
            # array, so batches of different sizes fail there: feed them one row at a time.
            feed = calibration if q.calibration_method == "minmax" else _rows(calibration)
            quantize_static(
                str(pre),
                str(dst),
                _Reader(feed),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(q.op_types),
                per_channel=q.per_channel,
                activation_type=_qtype(q.activation_type),
                weight_type=_qtype(q.weight_type),
                calibrate_method=_calibrator(q.calibration_method),
                nodes_to_exclude=list(exclude),
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
    ops = op_counts(onnx.load(str(dst)))
    quantized_ops = sum(
        ops.get(k, 0)
        for k in (
            "MatMulInteger",
            "DynamicQuantizeLinear",
            "DynamicQuantizeLSTM",
            "QuantizeLinear",
            "QLinearMatMul",
            "QLinearConv",
        )
    )
    if not quantized_ops:
        raise ValueError(f"{q.name}: no operator was quantized (ops: {ops})")
    return {
        "options": q.to_dict(),
        "ops": ops,
        "gemm_rewritten": rewritten,
        "calibration_batches": len(calibration) if q.mode == "static" else 0,
    }
