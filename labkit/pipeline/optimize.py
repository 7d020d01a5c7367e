"""Stage 4, optimize: CPU variants of the exported graph.

- ``fp32``: ORT's EXTENDED graph optimizations, saved. They are portable across CPUs; the
  machine-specific ALL level is applied by the runtime at load time (a graph saved after
  ALL holds fusions that are only valid on the machine that made it).
- ``int8-dynamic``: for MatMul/RNN models. Convolutions stay fp32.
- ``int8-static``: QDQ with calibration, U8S8, for conv nets.

This is the one place where our option dataclasses become ONNX Runtime's option dicts.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx

from labkit.pipeline.freeze import Batch
from labkit.pipeline.graph import op_counts
from labkit.pipeline.options import Quantize
from labkit.pipeline.rewrite import gemm_to_matmul

MATMUL_OPS = {"MatMul", "Gemm", "LSTM", "GRU", "Attention"}
CONV_OPS = {"Conv", "ConvTranspose"}


def optimize_fp32(src: Path, dst: Path, *, fuse: bool = True) -> dict[str, Any]:
    """ORT's EXTENDED optimizations, after transformer fusions when any match (``fusion``).

    A fused graph that ONNX Runtime itself refuses to load (a rewrite rule that matched a
    pattern it should not have) is dropped for the exported one, and the reason recorded as
    ``fusion_rejected``, like a fused graph that fails parity (``run._optimize``).
    """
    if fuse:
        from labkit.pipeline.fusion import fuse_transformer

        fused = dst.with_name(dst.stem + "-fused.onnx")
        fusion = fuse_transformer(src, fused)
        if fusion is not None:
            try:
                _extended(fused, dst)
            # ORT's pybind errors (Fail, InvalidGraph, …) derive from Exception only.
            except Exception as exc:  # noqa: BLE001
                info = optimize_fp32(src, dst, fuse=False)
                return {
                    **info,
                    "fusion_rejected": f"ONNX Runtime refused the fused graph: {exc}"[:500],
                }
            return {**_info(dst), "fusion": fusion}
    _extended(src, dst)
    return {**_info(dst), "fusion": None}


def _extended(src: Path, dst: Path) -> None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(dst)
    opts.log_severity_level = 3
    ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])


def _info(dst: Path) -> dict[str, Any]:
    return {
        "graph_optimization_level": "ORT_ENABLE_EXTENDED",
        "ops": op_counts(onnx.load(str(dst))),
    }


def choose_candidates(model: onnx.ModelProto) -> list[Quantize]:
    """Dynamic INT8 for MatMul/RNN graphs, static QDQ for conv nets (docs/performance.md)."""
    ops = set(op_counts(model))
    if ops & CONV_OPS:
        return [Quantize.static_int8()]
    if ops & MATMUL_OPS:
        return [Quantize.dynamic_int8()]
    return []


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
