"""int8 recipes: ONNX Runtime's quantizer with our options (:class:`Quantize`), judged by
the accuracy budget, rescued by per-layer sensitivity when they miss it.

- ``int8-dynamic``: MatMul/RNN graphs without convolutions. ONNX Runtime only: OpenVINO
  ran dynamically quantized graphs slower than fp32 (docs/performance.md).
- ``int8-static``: QDQ with calibration. For conv nets U8S8 over convs and their
  neighbours (dynamically quantized convs ran 2–3× slower than eager); for transformers
  (MatMul-heavy, attention, no convs) S8S8 on the weight MatMuls only
  (``Quantize.static_int8_transformer``). QDQ is standard ONNX, so any engine may run it;
  OpenVINO maps it to its int8 (VNNI/AMX) kernels and may compute the rest in bf16.
"""

from __future__ import annotations

from pathlib import Path

from labkit.bundle import Tolerance
from labkit.pipeline.optimize import quantize
from labkit.pipeline.options import HandoffOptions, Quantize
from labkit.pipeline.recipes.base import Built, Context, Graph, Recipe
from labkit.runtime.engines import DEFAULT_ENGINE

__all__ = [
    "CONV_OPS",
    "MATMUL_OPS",
    "DynamicInt8",
    "QuantizeRecipe",
    "StaticInt8",
    "is_transformer",
]

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

    def options(self, ctx: Context) -> Quantize:
        """The quantizer options for this graph."""
        return self.q

    def build(self, ctx: Context, dst: Path) -> Built:
        q = self.options(ctx)
        ctx.emit(f"quantizing: {self.name}")
        info = quantize(ctx.exported, dst, q, ctx.calibration, ctx.workdir)
        return Built(dst, quantization=info)

    def rescue(self, ctx: Context, built: Built, dst: Path, budget: Tolerance) -> Built | None:
        from labkit.pipeline.sensitivity import rescue

        ctx.emit(f"{self.name}: outside its budget; measuring per-layer sensitivity")
        q = self.options(ctx)
        fix = rescue(
            ctx.exported, dst, q, ctx.calibration, ctx.workdir, ctx.ref, ctx.outputs, budget
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
        return graph.has(*CONV_OPS) or is_transformer(graph)

    def options(self, ctx: Context) -> Quantize:
        return Quantize.static_int8_transformer() if is_transformer(ctx.graph) else self.q


def is_transformer(graph: Graph) -> bool:
    """Attention (a Softmax among MatMuls) and no convolutions."""
    return graph.has("MatMul", "Gemm") and graph.has("Softmax") and not graph.has(*CONV_OPS)
