"""Pre-handoff warnings: what will go wrong at handoff, said while the model is designed.

- data-dependent control flow: the exporter's tracer warns when a tensor value decides a
  Python branch (the exported graph then holds one path only);
- ops without an ONNX mapping: the quick export names the operator it could not convert;
- layers that quantize badly: a weight tensor whose largest value dwarfs the typical one
  makes a per-tensor int8 scale round the rest to zero (the handoff's sensitivity pass would
  then keep that layer in fp32; see :mod:`labkit.pipeline.sensitivity`).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["OUTLIER_RATIO", "export_failure_warning", "quantization_warnings", "tracer_warnings"]

# max|w| over the 99th percentile of |w|: above this, int8's 255 levels spent on the outlier
# leave under ~2 levels for 99% of the weights.
OUTLIER_RATIO = 50.0
_UNSUPPORTED = re.compile(
    r"operator '?([\w:.]+)'? to ONNX opset version (\d+) is not supported", re.IGNORECASE
)


def tracer_warnings(messages: list[str]) -> list[str]:
    return [
        f"data-dependent control flow or value use ({m}): the exported graph keeps "
        "only the path taken for these example inputs"
        for m in messages
    ]


def export_failure_warning(exc: BaseException) -> str:
    text = str(exc)
    found = _UNSUPPORTED.search(text)
    if found:
        return (
            f"operator {found.group(1)} has no ONNX mapping at opset {found.group(2)}: "
            "the handoff cannot export this model as is (replace the op, or register a "
            "custom symbolic)"
        )
    first = text.splitlines()[0] if text else ""
    return f"quick ONNX export failed: {type(exc).__name__}: {first}"


def quantization_warnings(model: Any) -> list[str]:
    import torch

    out = []
    for name, mod in model.named_modules():
        weight = getattr(mod, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.dim() < 2 or weight.numel() < 64:
            continue
        w = weight.detach().abs().flatten().float()
        typical = float(torch.quantile(w[: 1 << 24], 0.99))
        peak = float(w.max())
        if typical > 0 and peak / typical > OUTLIER_RATIO:
            out.append(
                f"{name or type(mod).__name__} quantizes badly: max |w| = {peak:.3g} is "
                f"{peak / typical:.0f}× its 99th percentile ({typical:.3g}); int8 would "
                "round most of its weights to zero (the handoff keeps it fp32 if it "
                "misses the budget)"
            )
    return out
