"""Tolerance: the one place a measured result meets the accuracy it must keep.

The fp32 parity tolerance, a quantized variant's accuracy budget and the self-test
tolerance a bundle records are all a :class:`Tolerance`; :meth:`Tolerance.judge` is the
only code that compares measurements with one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from labkit.bundle._check import fail, obj, require

#: Task metrics, by the name manifests, parity reports and output statistics all use.
TOP1 = "top1_agreement"
COSINE = "cosine"
METRICS = (TOP1, COSINE)


def metric_for_task(task: str | None) -> str:
    """Top-1 agreement for classifiers, cosine similarity for everything else."""
    return TOP1 if task == "classification" else COSINE


class OutputStatsLike(Protocol):
    """What :meth:`Tolerance.judge` reads of one output's statistics
    (``labkit.runtime.compare.OutputStats``)."""

    name: str
    max_abs: float
    shapes: tuple[tuple[int, ...], ...]

    @property
    def max_rel(self) -> float: ...

    def metric(self, name: str) -> float: ...


@dataclass(frozen=True)
class Tolerance:
    """Largest relative error allowed, and the least task metric (when ``min_metric`` set)."""

    rel: float
    metric: str | None = None
    min_metric: float | None = None

    def __post_init__(self) -> None:
        if not self.rel > 0:
            raise fail("tolerance.rel", f"must be > 0, got {self.rel!r}")
        if self.metric is not None and self.metric not in METRICS:
            raise fail("tolerance.metric", f"{self.metric!r} is not one of {list(METRICS)}")

    @classmethod
    def from_dict(cls, d: Any, where: str = "tolerance") -> Tolerance:
        t = obj(d, where)
        rel = require(t, "rel", (int, float), f"{where}.")
        if not rel > 0:
            raise fail(f"{where}.rel", "must be > 0")
        metric = require(t, "metric", (str, type(None)), f"{where}.")
        if metric is not None and metric not in METRICS:
            raise fail(f"{where}.metric", f"{metric!r} is not one of {list(METRICS)}")
        min_metric = require(t, "min_metric", (int, float, type(None)), f"{where}.")
        return cls(rel, metric, min_metric)

    def to_dict(self) -> dict[str, Any]:
        return {"rel": self.rel, "metric": self.metric, "min_metric": self.min_metric}

    @classmethod
    def from_budget(cls, budget: Mapping[str, Any], metric: str) -> Tolerance:
        """An accuracy budget (the pipeline's ``Budget``, as recorded in a bundle's
        ``provenance.options.budget``) as the tolerance a candidate is judged by."""
        key = "min_top1_agreement" if metric == TOP1 else "min_cosine"
        return cls(float(budget["max_rel"]), metric, float(budget[key]))

    def judge(self, stats: Mapping[str, OutputStatsLike], variant: str) -> list[str]:
        """Every way ``stats`` breaks this tolerance, one readable line each."""
        out = []
        rel = float(self.rel)
        for s in stats.values():
            shape = list(s.shapes[-1]) if s.shapes else []
            if s.max_rel > rel:
                out.append(
                    f"{s.name}: max |Δ| = {s.max_abs:.3g} is {s.max_rel:.3g} of the "
                    f"output's magnitude > rel {rel:.3g} (shape {shape}, "
                    f"variant {variant})"
                )
            if self.metric and self.min_metric is not None:
                value = s.metric(self.metric)
                if value < float(self.min_metric):
                    out.append(
                        f"{s.name}: {self.metric} = {value:.4f} < "
                        f"{float(self.min_metric):.4f} (variant {variant})"
                    )
        return out
