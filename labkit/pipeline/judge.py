"""Parity per (variant, engine, precision), through the engine seam.

Each configuration a variant is offered with on this machine
(:func:`labkit.runtime.engines.configurations`) runs the reference's input sets in the
session a deployment host would get, and is judged by a :class:`Tolerance`: the variant's
own (the fp32 parity tolerance, or the accuracy budget of a quantized graph) when the graph
runs as stored, the accuracy budget when the engine computes at reduced precision. The
verdict, passed or rejected with its reason, becomes an :class:`EngineCheck`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from labkit.bundle import EngineCheck, Tolerance, Variant
from labkit.errors import EngineError, LabkitError
from labkit.pipeline.freeze import Batch, InputSet, Reference
from labkit.pipeline.parity import ParityReport, Predictor, check_parity, judged_on
from labkit.pipeline.parity import session_predictor as predictor_for
from labkit.runtime import engines
from labkit.runtime.compare import accumulate
from labkit.runtime.engines import Candidate
from labkit.runtime.isolated import isolated_outputs

__all__ = ["Judged", "judge", "passed_candidates", "self_test_tolerance"]

MAX_REASON = 1000


@dataclass
class Judged:
    candidate: Candidate
    check: EngineCheck
    report: ParityReport | None  # None: the engine could not load the graph
    predictor: Predictor | None


def judge(
    ref: Reference,
    model_bytes: bytes,
    candidate: Candidate,
    tolerance: Tolerance,
    *,
    real_data_only: bool,
    also: Sequence[Batch] = (),
) -> Judged:
    """Run and judge one configuration; an engine that cannot load the graph rejects it.

    An engine marked ``isolated`` runs in a process of its own (:mod:`labkit.runtime.
    isolated`), on the reference's input sets and ``also`` (e.g. the golden inputs, which
    the returned predictor then answers too); any other in this process."""
    on = judged_on(ref, real_data_only)
    names = list(ref.spec.output_names)
    try:
        if getattr(engines.get(candidate.engine), "isolated", False):
            batches = [s.inputs for s in ref.sets] + list(also)
            predictor = _precomputed(
                batches, isolated_outputs(model_bytes, candidate, batches, names)
            )
        else:
            predictor = predictor_for(
                model_bytes, names, engine=candidate.engine, precision=candidate.precision
            )
    except LabkitError as exc:  # the engines' EngineError: it could not load/compile it
        reason = f"{candidate.engine} could not load the graph: {exc}"[:MAX_REASON]
        check = EngineCheck(
            candidate.engine, candidate.precision, False, tolerance, on, reason=reason
        )
        return Judged(candidate, check, None, None)
    report = check_parity(
        ref, predictor, tolerance, variant=candidate.label, real_data_only=real_data_only
    )
    s = report.summary()
    check = EngineCheck(
        candidate.engine,
        candidate.precision,
        report.passed,
        tolerance,
        report.judged_on,
        max_rel=s["max_rel"],
        metric=s["metric"],
        metric_value=s["metric_value"],
        reason=None if report.passed else "; ".join(report.failures)[:MAX_REASON],
    )
    return Judged(candidate, check, report, predictor)


def _precomputed(batches: Sequence[Batch], results: Sequence[Batch | LabkitError]) -> Predictor:
    """A predictor answering the batches it was computed for (by identity)."""
    table = {id(b): r for b, r in zip(batches, results)}

    def predict(batch: Batch) -> Batch:
        r = table.get(id(batch))
        if r is None:
            raise EngineError("no outputs were computed for this batch")
        if isinstance(r, LabkitError):
            raise r
        return dict(r)

    return predict


def self_test_tolerance(
    base: Tolerance, golden: InputSet, predictors: Sequence[Predictor], names: list[str]
) -> Tolerance:
    """A quantized variant's self-test tolerance: what the configurations that passed
    measured on the golden set (the worst of them), with a margin, so that each of them
    passes its self-test on a host like this one."""
    rel, observed = 0.0, 1.0
    metric = base.metric
    for predict in predictors:
        stats = accumulate([(golden.outputs, predict(golden.inputs))], names)
        rel = max(rel, max(s.max_rel for s in stats.values()))
        if metric is not None:
            observed = min(observed, min(s.metric(metric) for s in stats.values()))
    if metric is None:
        return Tolerance(max(2 * rel, 1e-3))
    return Tolerance(max(2 * rel, 1e-3), metric, max(0.0, observed - 2 / max(golden.batch_size, 1)))


def passed_candidates(variants: Sequence[Variant]) -> list[Candidate]:
    """Every configuration that passed at handoff, as candidates (the benchmark times
    these and no others)."""
    return [Candidate(v.name, c.engine, c.precision) for v in variants for c in v.passed()]
