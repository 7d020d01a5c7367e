"""int8 recipes: ONNX Runtime's quantizer with our options (:class:`Quantize`), judged by
the accuracy budget, rescued by per-layer sensitivity when they miss it.

- ``int8-dynamic``: MatMul/RNN graphs without convolutions. ONNX Runtime only: OpenVINO
  ran dynamically quantized graphs slower than fp32 (docs/performance.md).
- ``int8-static``: QDQ with calibration, U8S8, for conv nets (dynamically quantized convs
  ran 2–3× slower than eager). QDQ is standard ONNX, so any engine may run it; OpenVINO maps
  it to its int8 kernels.
"""

from __future__ import annotations

from pathlib import Path

from labkit.bundle import Tolerance
from labkit.pipeline.optimize import quantize
from labkit.pipeline.options import HandoffOptions, Quantize
from labkit.pipeline.recipes.base import Built, Context, Graph, Recipe
from labkit.runtime.engines import DEFAULT_ENGINE

__all__ = ["CONV_OPS", "MATMUL_OPS", "DynamicInt8", "QuantizeRecipe", "StaticInt8"]

MATMUL_OPS = ("MatMul", "Gemm", "LSTM", "GRU", "Attention")
CONV_OPS = ("Conv", "ConvTranspose")


class QuantizeRecipe(Recipe):
    """One :class:`Quantize` candidate as a recipe; ``HandoffOptions.candidates`` become
    these, applying to any graph."""

    precision = "int8"

    def __init__(self, q: Quantize) -> None:
        self.q = q
        self.name = q.name
        # OpenVINO runs dynamically quantized graphs slower than fp32: not offered there.
        self.runs_on = (DEFAULT_ENGINE,) if q.mode == "dynamic" else None

    def applies(self, graph: Graph, options: HandoffOptions) -> bool:
        return True

    def build(self, ctx: Context, dst: Path) -> Built:
        ctx.emit(f"quantizing: {self.name}")
        info = quantize(ctx.exported, dst, self.q, ctx.calibration, ctx.workdir)
        return Built(dst, quantization=info)

    def rescue(self, ctx: Context, built: Built, dst: Path, budget: Tolerance) -> Built | None:
        from labkit.pipeline.sensitivity import rescue

        ctx.emit(f"{self.name}: outside its budget; measuring per-layer sensitivity")
        fix = rescue(
            ctx.exported, dst, self.q, ctx.calibration, ctx.workdir, ctx.ref, ctx.outputs, budget
        )
        return None if fix is None else Built(dst, quantization=fix.info)


class DynamicInt8(QuantizeRecipe):
    def __init__(self) -> None:
        super().__init__(Quantize.dynamic_int8())

    def applies(self, graph: Graph, options: HandoffOptions) -> bool:
        return graph.has(*MATMUL_OPS) and not graph.has(*CONV_OPS)


class StaticInt8(QuantizeRecipe):
    def __init__(self) -> None:
        super().__init__(Quantize.static_int8())

    def applies(self, graph: Graph, options: HandoffOptions) -> bool:
        return graph.has(*CONV_OPS)
