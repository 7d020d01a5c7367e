"""Transformer fusions for dynamo-exported graphs: attention, skip-LayerNorm, GELU.

Measured here (onnxscript 0.7, ORT 1.32) on ``nn.TransformerEncoderLayer`` as the dynamo
exporter emits it: ONNX Runtime's own EXTENDED level fuses LayerNorm (SkipLayerNormalization)
but not attention, and its BERT optimizer (``onnxruntime.transformers.optimizer``) misses
that attention pattern too; onnxscript's ``optimize_for_ort`` matches it (scaled dot-product
attention → ``com.microsoft.MultiHeadAttention``). The fused graph is stored only when it
passes the same parity gate as any fp32 graph. The contrib ops are portable across x86 CPUs
in ONNX Runtime (unlike the machine-specific fusions of ORT_ENABLE_ALL) and OpenVINO reads
them too; an engine that cannot is simply left out by ``handoff tune``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Fusion counters of ``optimize_for_ort`` that change what runs (not mere clean-ups).
FUSED_OPS = (
    "MultiHeadAttention",
    "Attention",
    "SkipLayerNormalization",
    "Gelu",
    "FastGelu",
    "BiasGelu",
    "GroupQueryAttention",
)


def fuse_transformer(src: Path, dst: Path) -> dict[str, Any] | None:
    """Write the fused graph of ``src`` to ``dst``; its fusion counts, or None when no
    attention was fused (then nothing is written and the caller keeps ``src``)."""
    try:
        import onnx_ir as ir
        from onnxscript.rewriter.ort_fusions import optimize_for_ort
    except ImportError:  # an older onnxscript: no fusions, the graph stays as exported
        return None
    model = ir.load(str(src))
    model, counts = optimize_for_ort(model)
    fused = {k: int(v) for k, v in sorted(counts.items()) if v}
    if not any(
        k in fused
        for k in (
            "sdpa",
            "mha1",
            "mha2",
            "mha_bias",
            "mha_scale",
            "attention",
            "gqa",
            "sdpa_via_mha",
        )
    ):
        return None
    ir.save(model, str(dst))
    return {"tool": "onnxscript.rewriter.ort_fusions.optimize_for_ort", "fusions": fused}
