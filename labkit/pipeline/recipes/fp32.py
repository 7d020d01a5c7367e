"""fp32 recipes: the portable graph every engine runs, and ONNX Runtime's fused one.

- ``fp32``: the exported graph as it is (the dynamo exporter already ran onnxscript's
  standard-op optimizer on it). Not ONNX Runtime's EXTENDED level: measured on a BERT
  classifier, that level emits ``com.microsoft`` ``FusedGemm``, ``FusedMatMul`` and
  ``SkipLayerNormalization``, from which OpenVINO computed logits off by half their
  magnitude. ONNX Runtime applies its own fusions when it loads the graph anyway.
- ``fp32-fused``: transformer fusions that ONNX Runtime cannot do at load time
  (onnxscript's attention rules, :mod:`labkit.pipeline.fusion`) plus the EXTENDED level,
  stored for ONNX Runtime only. Offered only when attention was fused.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from labkit.pipeline.graph import nonstandard_ops, op_counts, op_domains
from labkit.pipeline.optimize import ort_extended
from labkit.pipeline.options import HandoffOptions
from labkit.pipeline.recipes.base import Built, Context, Graph, Recipe
from labkit.runtime.engines import DEFAULT_ENGINE

__all__ = ["FusedFP32", "PortableFP32"]


class PortableFP32(Recipe):
    name = "fp32"
    precision = "fp32"
    runs_on = None
    required = True

    def applies(self, graph: Graph, options: HandoffOptions) -> bool:
        return True

    def build(self, ctx: Context, dst: Path) -> Built:
        shutil.copyfile(ctx.exported, dst)
        model = onnx.load(str(dst))
        other = nonstandard_ops(model)
        info = {"graph": "exported", "ops": op_counts(model), "domains": op_domains(model)}
        if not other:
            return Built(dst, optimization=info)
        # An exporter that emitted a custom op: say so rather than promise portability.
        return Built(
            dst,
            optimization={**info, "not_portable": f"non-standard operators: {', '.join(other)}"},
            runs_on=(DEFAULT_ENGINE,),
        )


class FusedFP32(Recipe):
    name = "fp32-fused"
    precision = "fp32"
    runs_on = (DEFAULT_ENGINE,)

    def applies(self, graph: Graph, options: HandoffOptions) -> bool:
        return graph.has("MatMul", "Gemm") and graph.has("Softmax")

    def build(self, ctx: Context, dst: Path) -> Built | None:
        from labkit.pipeline.fusion import fuse_transformer

        fused = dst.with_name(dst.stem + "-rewritten.onnx")
        fusion = fuse_transformer(ctx.exported, fused)
        if fusion is None:
            return None  # no attention matched: ONNX Runtime's own load-time fusions suffice
        # A rewrite rule may match a pattern it should not have (GPT-2: a Gemm fed a rank-3
        # tensor); ONNX Runtime then refuses the graph, which rejects this recipe with that
        # reason, and the portable graph stays.
        info = ort_extended(fused, dst)
        return Built(dst, optimization={**info, "fusion": fusion})
