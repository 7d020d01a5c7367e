"""Stage 3, parity: does an ONNX variant compute what PyTorch computes?

Every input set of the reference is run; per output we record max |Δ|, max relative error
and the task metric. All failures are collected and reported together. The fp32 variant is
judged on every set with a tight tolerance; a quantized variant on real data when the user
gave some (random inputs on random weights make logits nearly tie, so top-1 agreement there
is a stress signal, not an accuracy estimate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.bundle.tolerance import TOP1, Tolerance, metric_for_task
from labkit.errors import LabkitError
from labkit.pipeline.freeze import Batch, Reference
from labkit.runtime import engines
from labkit.runtime.compare import accumulate
from labkit.runtime.engines import DEFAULT_ENGINE, EXACT, Candidate

Predictor = Callable[[Batch], Batch]
DEFAULT_FP32_REL = 1e-4


@dataclass
class ParityReport:
    variant: str
    passed: bool
    tolerance: Tolerance
    judged_on: str
    outputs: dict[str, dict[str, Any]]
    sets: list[dict[str, Any]]
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "passed": self.passed,
            "tolerance": self.tolerance.to_dict(),
            "judged_on": self.judged_on,
            "outputs": self.outputs,
            "sets": self.sets,
            "failures": list(self.failures),
        }

    def summary(self) -> dict[str, Any]:
        """The compact form stored on each manifest variant."""
        return {
            "passed": self.passed,
            "judged_on": self.judged_on,
            "max_rel": max((o["max_rel"] for o in self.outputs.values()), default=0.0),
            "max_abs": max((o["max_abs"] for o in self.outputs.values()), default=0.0),
            "metric": self.tolerance.metric,
            "metric_value": min(
                (o[self.tolerance.metric] for o in self.outputs.values()), default=1.0
            )
            if self.tolerance.metric
            else None,
        }


def session_predictor(
    model_bytes: bytes,
    output_names: list[str],
    threads: int | None = None,
    *,
    engine: str = DEFAULT_ENGINE,
    precision: str = EXACT,
) -> Predictor:
    """Run ``model_bytes`` through the engine seam (:mod:`labkit.runtime.engines`): the same
    sessions, and the same error types, as a deployment host gets."""
    session = engines.make_session(model_bytes, Candidate("-", engine, precision, threads))

    def predict(batch: Batch) -> Batch:
        return dict(zip(output_names, session.run(output_names, batch)))

    return predict


def fp32_tolerance(ref: Reference) -> Tolerance:
    """The fp32 graph must match PyTorch: ``ModelSpec.tolerance`` (default 1e-4) relative
    error, every top-1 decision kept, cosine within the same margin."""
    rel = ref.spec.tolerance or DEFAULT_FP32_REL
    metric = metric_for_task(ref.spec.task)
    return Tolerance(rel, metric, 1.0 if metric == TOP1 else 1.0 - rel)


def judged_on(ref: Reference, real_data_only: bool) -> str:
    """Which inputs a verdict rests on (``labkit.bundle.JUDGED_ON``): every set for exact
    arithmetic; for an accuracy budget the real data when given, else the generated."""
    if not real_data_only:
        return "all"
    return "real" if any(s.kind == "real" for s in ref.sets) else "generated"


def check_parity(
    ref: Reference,
    predictor: Predictor,
    tolerance: Tolerance,
    *,
    variant: str,
    real_data_only: bool = False,
) -> ParityReport:
    names = list(ref.spec.output_names)
    on = judged_on(ref, real_data_only)
    judged = [s for s in ref.sets if s.kind == "real"] if on == "real" else ref.sets
    per_set, pairs, errors = [], [], []
    for s in ref.sets:
        try:
            got = predictor(s.inputs)
        except LabkitError as exc:  # engines raise InputError / EngineError only
            errors.append(f"{s.label}: the {variant} graph failed to run: {exc}")
            continue
        stats = accumulate([(s.outputs, got)], names)
        per_set.append(
            {
                "label": s.label,
                "kind": s.kind,
                "batch": s.batch_size,
                "outputs": {n: st.to_dict() for n, st in stats.items()},
            }
        )
        if s in judged:
            pairs.append((s.outputs, got))
    stats = accumulate(pairs, names)
    fails = errors + tolerance.judge(stats, variant)
    return ParityReport(
        variant,
        not fails,
        tolerance,
        on,
        {n: st.to_dict() for n, st in stats.items()},
        per_set,
        fails,
    )
