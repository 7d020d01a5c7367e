"""Stage 4, optimize: every recipe that applies, built and judged the same way.

For each recipe (:mod:`labkit.pipeline.recipes`) that applies to the exported graph:

1. build its graph; an error rejects the recipe with the error as its reason (the
   required portable ``fp32`` graph fails the handoff instead);
2. judge it on the default engine (ONNX Runtime, as stored) by the recipe's tolerance; a
   graph outside its accuracy budget gets one more try from the recipe (per-layer
   sensitivity keeps the worst layers in fp32);
3. still failing: rejected with the failures (the required one raises :class:`ParityError`);
4. passing: every other (engine, precision) this machine offers for it, only on engines it
   ``runs_on``, is judged too and recorded as passed or rejected with the reason
   (``Variant.checks``). Only passed configurations are timed later.

Each configuration costs one session and one run of the parity sets: no thread sweeps here
(that is ``handoff tune``'s job, on the deployment host).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx

from labkit.bundle import EngineCheck, Quantization, Tolerance, Variant
from labkit.errors import LabkitError, ParityError
from labkit.pipeline.freeze import InputSet
from labkit.pipeline.judge import Judged, judge, self_test_tolerance
from labkit.pipeline.parity import ParityReport
from labkit.pipeline.recipes import Built, Context, Graph, Recipe
from labkit.runtime import engines
from labkit.runtime.engines import DEFAULT_ENGINE, Candidate
from labkit.runtime.machine import cpu_info

__all__ = ["Outcome", "optimize"]

# What a failed build raises: ours, ONNX Runtime's quantizer (ValueError, RuntimeError), onnx.
BUILD_ERRORS = (LabkitError, ValueError, RuntimeError, onnx.checker.ValidationError)


@dataclass
class Outcome:
    variants: list[Variant] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)  # variant name -> its temp file
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {"name", "reason"}
    reports: dict[str, ParityReport] = field(default_factory=dict)  # default-engine parity
    configurations: dict[str, Any] = field(default_factory=dict)  # label -> report / error


def optimize(
    ctx: Context,
    chosen: Sequence[Recipe],
    golden: InputSet,
    *,
    exported_parity: ParityReport | None = None,
) -> Outcome:
    """Build and judge ``chosen`` recipes (those that apply); ``exported_parity`` is the
    parity stage's report on the exported graph, reused for the identical ``fp32`` bytes."""
    out = Outcome()
    if ctx.options.calibration is not None:
        _ = ctx.calibration  # a bad file is the user's to fix: it fails the handoff, now
    graph = Graph.load(ctx.exported)
    cpu = cpu_info()
    for recipe in chosen:
        if not recipe.applies(graph, ctx.options):
            continue
        built = _build(recipe, ctx, out)
        if built is None:
            continue
        kept = _judge_default(recipe, built, ctx, exported_parity, out)
        if kept is None:
            continue
        built, first = kept
        draft = _variant(recipe, built, first.check.judged_on, recipe.judged_by(ctx))
        judged = [first]
        data = built.path.read_bytes()
        for cand in engines.configurations(draft, cpu):
            if cand.engine == DEFAULT_ENGINE and cand.exact:
                continue  # judged above
            # Reduced precision is judged like a quantized graph: by the accuracy budget.
            tol = recipe.judged_by(ctx) if cand.exact else ctx.budget
            j = judge(
                ctx.ref,
                data,
                cand,
                tol,
                real_data_only=recipe.quantized or not cand.exact,
                also=[golden.inputs] if recipe.quantized and cand.exact else [],
            )
            _record(ctx, j, out)
            judged.append(j)
        tolerance = draft.tolerance
        if recipe.quantized:
            exact = [j.predictor for j in judged if j.check.passed and j.candidate.exact]
            tolerance = self_test_tolerance(
                tolerance, golden, [p for p in exact if p is not None], ctx.outputs
            )
        out.variants.append(
            replace(
                draft,
                tolerance=tolerance,
                parity=first.report.summary() if first.report else None,
                checks=tuple(j.check for j in judged),
            )
        )
        out.paths[recipe.name] = built.path
    return out


def _build(recipe: Recipe, ctx: Context, out: Outcome) -> Built | None:
    dst = ctx.workdir / f"{recipe.name}.onnx"
    try:
        return recipe.build(ctx, dst)
    except BUILD_ERRORS as exc:
        if recipe.required:
            raise
        out.rejected.append({"name": recipe.name, "reason": f"could not be built: {exc}"})
        ctx.emit(f"{recipe.name}: could not be built: {str(exc)[:160]}")
        return None


def _judge_default(
    recipe: Recipe, built: Built, ctx: Context, known: ParityReport | None, out: Outcome
) -> tuple[Built, Judged] | None:
    """The recipe's graph on the default engine, rescued once if the recipe can; None when
    it is rejected (recorded in ``out``)."""
    tol = recipe.judged_by(ctx)
    cand = Candidate(recipe.name)
    data = built.path.read_bytes()
    if (
        known is not None
        and not recipe.quantized
        and known.tolerance == tol
        and data == ctx.exported.read_bytes()
    ):
        # The parity stage judged these very bytes on this engine by this tolerance.
        j = _known(known, cand)
    else:
        j = judge(ctx.ref, data, cand, tol, real_data_only=recipe.quantized)
    if not j.check.passed and recipe.quantized:
        fixed = recipe.rescue(ctx, built, built.path, tol)
        if fixed is not None:
            built = fixed
            j = judge(ctx.ref, built.path.read_bytes(), cand, tol, real_data_only=True)
    _record(ctx, j, out)
    if j.report is not None:
        out.reports[recipe.name] = j.report
    if j.check.passed:
        return built, j
    failures = list(j.report.failures) if j.report else [j.check.reason or ""]
    if recipe.required:
        raise ParityError(
            f"the {recipe.name} graph does not match PyTorch on {DEFAULT_ENGINE}:\n  "
            + "\n  ".join(failures),
            j.report,
        )
    what = "outside its accuracy budget" if recipe.quantized else "failed parity"
    out.rejected.append({"name": recipe.name, "reason": f"{what}: " + "; ".join(failures)})
    return None


def _known(report: ParityReport, cand: Candidate) -> Judged:
    s = report.summary()
    check = EngineCheck(
        cand.engine,
        cand.precision,
        report.passed,
        report.tolerance,
        report.judged_on,
        max_rel=s["max_rel"],
        metric=s["metric"],
        metric_value=s["metric_value"],
        reason=None if report.passed else "; ".join(report.failures),
    )
    return Judged(cand, check, report, None)


def _record(ctx: Context, j: Judged, out: Outcome) -> None:
    label, check = j.candidate.label, j.check
    out.configurations[label] = (
        j.report.to_dict() if j.report is not None else {"passed": False, "error": check.reason}
    )
    if check.passed:
        ctx.emit(f"{label}: passed (max rel err {check.max_rel or 0.0:.2g})")
    else:
        ctx.emit(f"{label}: rejected: {(check.reason or '')[:160]}")


def _variant(recipe: Recipe, built: Built, judged_on: str, tolerance: Tolerance) -> Variant:
    quant = None
    if built.quantization is not None:
        quant = Quantization.from_dict(
            {**built.quantization, "judged_on": judged_on}, "quantization"
        )
    return Variant(
        recipe.name,
        f"models/{recipe.name}.onnx",
        hashlib.sha256(built.path.read_bytes()).hexdigest(),
        recipe.precision,
        tolerance,
        quantization=quant,
        optimization=built.optimization,
        runs_on=built.runs_on or recipe.runs_on,
    )
