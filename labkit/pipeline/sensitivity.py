"""Per-layer quantization sensitivity: rescue an int8 candidate that missed its budget.

The question MATLAB's Deep Network Quantizer answers — which layers lose the accuracy — asked
the direct way: quantize one block (the nodes of one module) at a time, everything else
fp32, and measure the error on the same inputs and budget the candidate was judged by. Then
retry the whole candidate with the most sensitive blocks kept in fp32 (ONNX Runtime's
``nodes_to_exclude``), one more block at a time, until it is inside its budget or half the
blocks are excluded (past that the int8 variant would hardly be int8). What was excluded, and
the measurement that excluded it, goes into the variant's ``quantization`` record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from labkit.bundle import Tolerance
from labkit.errors import LabkitError
from labkit.pipeline.freeze import Batch, Reference
from labkit.pipeline.optimize import prepared_path, quantize
from labkit.pipeline.options import Quantize
from labkit.pipeline.parity import ParityReport, Predictor, check_parity, session_predictor
from labkit.pipeline.scopes import lookup, module_paths

__all__ = ["MAX_BLOCKS", "Rescue", "blocks", "rescue"]

# Nodes that carry the weights a quantizer rounds; the rest (Relu, Add…) follow them.
WEIGHTED_OPS = {"MatMul", "Gemm", "Conv", "ConvTranspose", "LSTM", "GRU", "Attention"}
MAX_BLOCKS = 24  # each block costs one quantization + one parity run
MAX_EXCLUDED = 0.5  # of the blocks (rounded up): beyond that it is hardly int8


@dataclass
class Rescue:
    info: dict[str, Any]  # quantize()'s info + "excluded" and "sensitivity"
    predictor: Predictor
    report: ParityReport


def _unwrapped(paths: dict[str, str], attr: str = "model") -> dict[str, str]:
    """Module paths of the user's model: the export wraps it (``_Flat.model`` in
    :mod:`labkit.pipeline.export`), so every scope starts with the wrapper's attribute."""
    if paths and all(p == attr or p.startswith(attr + ".") for p in paths.values()):
        return {n: p[len(attr) + 1 :] for n, p in paths.items()}
    return paths


def _truncate(module: str, depth: int) -> str:
    return ".".join(module.split(".")[:depth])


def blocks(
    model: onnx.ModelProto, op_types: Sequence[str], modules: dict[str, str]
) -> dict[str, list[str]]:
    """Weighted quantizable nodes grouped by the module they came from (``modules``: node
    name -> module path of the exported graph), coarsened until at most MAX_BLOCKS."""
    names = [
        n.name
        for n in model.graph.node
        if n.op_type in WEIGHTED_OPS and n.op_type in op_types and n.name
    ]
    owner = {n: lookup(modules, n) or n for n in names}  # unknown: the node is its own block
    depth = max((len(m.split(".")) for m in owner.values()), default=1)
    while True:
        grouped: dict[str, list[str]] = {}
        for n in names:
            grouped.setdefault(_truncate(owner[n], depth) or "(root)", []).append(n)
        if len(grouped) <= MAX_BLOCKS or depth <= 1:
            return grouped
        depth -= 1


def _judge(
    ref: Reference, path: Path, outputs: list[str], budget: Tolerance, name: str
) -> tuple[Predictor, ParityReport]:
    predictor = session_predictor(path.read_bytes(), outputs)
    return predictor, check_parity(ref, predictor, budget, variant=name, real_data_only=True)


def _describe(summary: dict[str, Any]) -> str:
    return (
        f"max rel err {summary['max_rel']:.3g}, {summary.get('metric')} "
        f"{summary['metric_value']:.4f}"
    )


def rescue(
    exported: Path,
    dst: Path,
    q: Quantize,
    calibration: Sequence[Batch],
    tmp: Path,
    ref: Reference,
    outputs: list[str],
    budget: Tolerance,
) -> Rescue | None:
    """Measure per-block sensitivity and retry ``q`` with the worst blocks in fp32 (into
    ``dst``, which :func:`quantize` made from ``exported`` in ``tmp`` just before).

    Returns None when no exclusion within the limit brings the candidate inside ``budget``.
    """
    groups = blocks(
        onnx.load(str(prepared_path(q, tmp))),
        q.op_types,
        _unwrapped(module_paths(onnx.load(str(exported)))),
    )
    if len(groups) < 2:
        return None  # excluding the only block leaves nothing quantized
    work = tmp / f"{q.name}-sensitivity"
    work.mkdir(exist_ok=True)
    everything = [n for nodes in groups.values() for n in nodes]
    table: list[dict[str, Any]] = []
    for i, (block, nodes) in enumerate(groups.items()):
        out = work / f"block{i}.onnx"
        keep = set(nodes)
        try:
            quantize(
                exported,
                out,
                q,
                calibration,
                work,
                exclude=[n for n in everything if n not in keep],
            )
        except (LabkitError, ValueError, RuntimeError):
            continue  # this block alone does not quantize: it cannot be the culprit
        _, report = _judge(ref, out, outputs, budget, f"{q.name}[{block}]")
        table.append(
            {
                "block": block,
                "nodes": nodes,
                "passed": report.passed,
                "metric": budget.metric,
                **{k: report.summary()[k] for k in ("max_rel", "metric_value")},
            }
        )
    # Most sensitive first: the lowest task metric, then the largest relative error.
    table.sort(key=lambda r: (r["metric_value"], -r["max_rel"]))
    limit = max(1, math.ceil(len(groups) * MAX_EXCLUDED))
    for k in range(1, min(limit, len(table)) + 1):
        worst = table[:k]
        out = work / f"exclude{k}.onnx"
        try:
            info = quantize(
                exported, out, q, calibration, work, exclude=[n for r in worst for n in r["nodes"]]
            )
        except (LabkitError, ValueError, RuntimeError):
            return None
        predictor, report = _judge(ref, out, outputs, budget, q.name)
        if report.passed:
            info["excluded"] = [
                {
                    "block": r["block"],
                    "nodes": r["nodes"],
                    "reason": f"quantized alone it gave {_describe(r)}; kept in fp32",
                    "metric": r["metric"],
                    "metric_value": r["metric_value"],
                    "max_rel": r["max_rel"],
                }
                for r in worst
            ]
            info["sensitivity"] = table
            info["rescued"] = (
                f"plain {q.name} missed its budget; kept {k} of "
                f"{len(groups)} blocks in fp32: " + ", ".join(r["block"] for r in worst)
            )
            out.replace(dst)
            return Rescue(info, predictor, report)
    return None
